"""Coordinated key rotation with every hook and action killed after each Vault request and file write.

Three units of the kubernetes-control-plane-shaped consumer with the layer's
secure storage on, real OpenBao: each hook of the rotation is run again and
again, dying one step later each time (as Juju retries a hook that died),
until it gets through; ``RotationInvariant`` is checked after every run.
"""

from tests.support import rotation
from tests.support.cluster import ENCRYPTION_CONFIG

RUNNING = rotation.RUNNING
leader = rotation.leader


def settle_killing_at_every_step(cluster, model, after_hook, units):
    """Run the queued hooks; each hook of ``units`` dies after its 1st, then 2nd, ... Vault request or file write.

    Juju retries a hook that died, and the retry dies one step later, until a
    run gets through: every step of every such hook is a place the unit was
    killed.  Returns the number of kills.
    """
    controller, kills = cluster.controller, 0
    directory = ENCRYPTION_CONFIG.rsplit("/", 1)[0]
    while True:
        item = controller.pop_hook()
        if item is None:
            return kills
        step = 1
        while True:
            if item["model"] == model and item["unit"] in units:
                controller.kill_at_vault_request(model, item["unit"], step, files_under=directory)
            process = controller.run_hook(item)
            after_hook(item, process)
            if process.returncode == 137:
                kills, step = kills + 1, step + 1
                continue
            controller.stop_killing(item["model"], item["unit"])
            assert process.returncode == 0, process.stderr[-3000:]
            break


def action_killing_at_every_step(cluster, model, unit, name):
    """Run an action that dies after its 1st, 2nd, ... step until it answers (an operator runs it again)."""
    for step in range(1, 60):
        cluster.controller.kill_at_vault_request(model, unit, step)
        answer = rotation.action(cluster, model, unit, name)
        if answer["returncode"] != 137:
            cluster.controller.stop_killing(model, unit)
            return step - 1, answer
    raise AssertionError("the action never finished")


def test_killed_after_each_vault_request_and_file_write_the_rotation_resumes_and_loses_no_key(secure_storage_deployed):
    cluster, model, backend = secure_storage_deployed
    old = cluster.vault_fingerprint(backend)
    invariant = rotation.RotationWatch(cluster, model, backend)
    windows = invariant.windows

    before = rotation.restarts(cluster, model)
    first = leader(cluster, model)

    # the leader and one other unit are killed at every step; the third plays the second's part
    killed = [first, next(u for u in cluster.units(model) if u != first)]
    kills, answer = action_killing_at_every_step(cluster, model, first, "rotate-encryption-key")
    # killed after the state was written, the action run again is refused: one new key, never two
    new = rotation.state(cluster, backend)["new"]
    assert kills >= 2 and (answer["failed"] is None or RUNNING in answer["failed"])
    for _ in range(18):
        for unit in cluster.units(model):
            cluster.controller.queue(model, unit, "update-status")
        kills += settle_killing_at_every_step(cluster, model, invariant, killed)
        assert rotation.state(cluster, backend)["phase"] == "done" or rotation.state(cluster, backend)["new"] == new
        current = rotation.state(cluster, backend)
        if current["phase"] in rotation.REWRITE_PHASES and not current["confirmed"]:
            rotation.rewrite_stored_secrets(cluster, model)
            action_killing_at_every_step(cluster, model, leader(cluster, model), "finish-encryption-key-rotation")
        if rotation.phase(cluster, backend) == "done":
            break
    assert rotation.phase(cluster, backend) == "done"
    fingerprint = rotation.state(cluster, backend)["fingerprint"]
    assert fingerprint != old and cluster.vault_fingerprint(backend) == fingerprint
    final = {(("key1", fingerprint),)}
    assert set(map(tuple, rotation.file_key_lists(cluster, model).values())) == final
    assert set(map(tuple, rotation.loaded_key_lists(cluster, model).values())) == final
    assert {k: v - before[k] for k, v in rotation.restarts(cluster, model).items()} == {
        u: 1 for u in cluster.units(model)
    }
    assert kills > 60, kills
    assert windows.most == 1, windows.violations  # killed anywhere, still one apiserver restarting at a time
    rotation.assert_a_charm_written_file_reads_everything(cluster, model, backend)
