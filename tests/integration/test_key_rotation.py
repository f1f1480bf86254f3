"""Coordinated rotation of the encryption key: 3 units of the kubernetes-control-plane-shaped
consumer with the layer's secure storage on, real charms.reactive hooks, real OpenBao.

After every hook of every scenario ``RotationInvariant`` checks the files and what each
apiserver was last started with: every unit's write key is a key of every other unit,
and no key leaves a file before the rewrite is confirmed.
"""

import json
import re

from charmhelpers.core import hookenv
from charms.reactive import set_flag

from charms.layer.vault_kv.hashing import fingerprint
from tests.support import kube_apiserver, rotation
from tests.support.cluster import APP, ENCRYPTION_CONFIG

RUNNING = rotation.RUNNING
REWRITTEN = "layer.vault-kv.encryption-key.rewritten"
TURN = "vault-kv-rotation-turn"
PENDING = "kubernetes-control-plane.vault-kv.pending"  # the charm's, set or cleared by its hook-start check
leader = rotation.leader


def ok(answer):
    assert answer["returncode"] == 0, answer["stderr"][-2000:]
    assert answer["failed"] is None, answer["failed"]
    return answer["results"]


def refused(answer):
    assert answer["returncode"] == 0, answer["stderr"][-2000:]
    assert answer["failed"], answer["results"]
    return answer["failed"]


def raw_keys(cluster, backend):
    """The rotation's two key values, only to look for them in logs (never printed)."""
    state = rotation.state(cluster, backend)
    return [state["old"]["value"], state["new"]["value"]]


def assert_no_key_in_logs_or_statuses(cluster, model, values, *answers):
    for unit in cluster.units(model):
        log = cluster.controller.log(model, unit) + cluster.controller.hooks_output(model, unit)
        message = cluster.controller.status(model, unit)["message"]
        assert not any(value in log or value in message for value in values), unit
    for answer in answers:
        assert not any(value in repr(answer) for value in values)
    # what the rotation puts in Juju (the turn in leader data, acknowledgements on the peer relation): no key
    with open(cluster.controller.state_path) as handle:
        juju_data = handle.read()
    assert "vault-kv-rotation-ack" in juju_data and "vault-kv-rotation-seen" in juju_data
    assert not any(value in juju_data for value in values)


def test_a_full_rotation_goes_through_every_phase_on_every_unit_and_restarts_each_apiserver_once(
    secure_storage_deployed,
):
    cluster, model, backend = secure_storage_deployed
    old = cluster.vault_fingerprint(backend)
    before = rotation.restarts(cluster, model)
    # the actions do their own work only: the charm's hook-start check and final status
    # (kubernetes-control-plane's check_vault_pending and set_final_status) run in hooks
    first = leader(cluster, model)
    marked = {"status": "maintenance", "message": "left by the test"}
    with cluster.controller.in_hook(model, first):
        hookenv.status_set(marked["status"], marked["message"])
        set_flag(PENDING)  # Vault is ready: the charm's hook-start check would clear it
    hashes_path = "{}/kv/app-hashes/{}".format(backend, first.split("/")[1])
    assert rotation.ROTATION_KEY not in cluster.bao.read(hashes_path)
    assert ok(rotation.action(cluster, model, first, "encryption-key-status"))["phase"] == "none"

    started = ok(rotation.action(cluster, model, leader(cluster, model), "rotate-encryption-key"))
    assert started["phase"] == "add" and started["old-key"] == old and started["new-key"] != old
    new = started["new-key"]
    values = raw_keys(cluster, backend)
    second = rotation.action(cluster, model, leader(cluster, model), "rotate-encryption-key")
    assert RUNNING in refused(second)
    early = rotation.action(cluster, model, leader(cluster, model), "finish-encryption-key-rotation")
    assert "phase add" in refused(early)
    not_leader = [u for u in cluster.units(model) if u != leader(cluster, model)][0]
    assert "leader" in refused(rotation.action(cluster, model, not_leader, "rotate-encryption-key"))
    assert cluster.controller.status(model, first) == marked and PENDING in cluster.flags(model, first)
    assert rotation.ROTATION_KEY in cluster.bao.read(hashes_path)  # the layer's own record of its write

    # Juju events carry the rotation (issue 24): no update-status, one apiserver restarting at a time
    watch = rotation.RotationWatch(cluster, model, backend)
    phases, windows = watch.phases, watch.windows

    cluster.settle(after_hook=watch, fail_fast=True, max_hooks=2000)
    assert rotation.phase(cluster, backend) == "rewrite"
    assert cluster.controller.status(model, first) != marked and PENDING not in cluster.flags(model, first)  # hooks ran
    report = ok(rotation.action(cluster, model, leader(cluster, model), "encryption-key-status"))
    assert report["phase"] == "rewrite" and report["waiting-for"] == "none"
    assert "finish-encryption-key-rotation" in report["next"] and "StorageVersionMigration" in report["next"]
    for unit in cluster.units(model):
        entry = report["units"][unit.replace("/", "-")]
        assert entry == {
            "phase": "rewrite",
            "keys": "key2:{} key1:{}".format(new, old),
            "write-key": "key2",
            "same-as-others": "true",
        }
    assert "(1 of 2)" in cluster.controller.status(model, leader(cluster, model))["message"]
    rotation.rewrite_stored_secrets(cluster, model)
    finished = ok(rotation.action(cluster, model, leader(cluster, model), "finish-encryption-key-rotation"))
    cluster.settle(after_hook=watch, fail_fast=True, max_hooks=2000)
    assert rotation.phase(cluster, backend) == "rename-rewrite"
    # the second rewrite: the Secrets move from key2 to key1, the name the charm gives Vault's key
    assert set(cluster.apiservers.etcd[model].stored_under()) <= {"key2", "key1"}
    again = rotation.action(cluster, model, leader(cluster, model), "encryption-key-status")
    assert "(2 of 2)" in ok(again)["next"] and ok(again)["waiting-for"] == "none"
    assert ok(again)["units"][first.replace("/", "-")]["keys"] == "key1:{} key2:{}".format(new, new)
    assert "(2 of 2)" in cluster.controller.status(model, leader(cluster, model))["message"]
    rotation.rewrite_stored_secrets(cluster, model)
    second = ok(rotation.action(cluster, model, leader(cluster, model), "finish-encryption-key-rotation"))
    cluster.settle(after_hook=watch, fail_fast=True, max_hooks=2000)
    assert rotation.phase(cluster, backend) == "done"
    seen = phases.lists
    assert phases.order == ["add", "promote", "rewrite", "retire", "rename-add", "rename-promote"] + [
        "rename-rewrite",
        "rename-retire",
        "done",
    ]
    assert windows.update_status_hooks == 0 and windows.most == 1, windows.violations
    # the rewrites moved every Secret to the new key under key1, and every apiserver read every one after every hook
    assert set(cluster.apiservers.etcd[model].stored_under()) == {"key1"} and cluster.apiservers.stored(model) > 10
    # what kubernetes-control-plane (1.28, 1.29+) writes itself on a unit it adds reads every Secret
    rotation.assert_a_charm_written_file_reads_everything(cluster, model, backend)

    everywhere = lambda keys: {unit: keys for unit in cluster.units(model)}  # noqa: E731
    assert seen["add"] == everywhere([("key1", old), ("key2", new)])
    assert seen["promote"] == everywhere([("key2", new), ("key1", old)])
    assert seen["rewrite"] == everywhere([("key2", new), ("key1", old)])
    assert seen["retire"] == everywhere([("key2", new)])
    assert seen["rename-add"] == everywhere([("key2", new), ("key1", new)])
    assert seen["rename-promote"] == seen["rename-rewrite"] == everywhere([("key1", new), ("key2", new)])
    assert seen["done"] == everywhere([("key1", new)])
    assert rotation.loaded_key_lists(cluster, model) == everywhere([("key1", new)])
    assert cluster.vault_fingerprint(backend) == new
    assert {k: v - before[k] for k, v in rotation.restarts(cluster, model).items()} == everywhere(1)
    assert set(rotation.state(cluster, backend)) == {"id", "phase", "name", "fingerprint", "finished"}
    assert watch.invariant.checks > 20
    assert_no_key_in_logs_or_statuses(cluster, model, values, started, report, finished, again, second)
    for unit in cluster.units(model):
        assert cluster.controller.unit_file_mode(model, unit, ENCRYPTION_CONFIG) == 0o600
    # each confirmation was checked against etcd (issue 25), through the leader's apiserver arguments
    assert report["secrets"].endswith("Secrets under key2")
    assert finished["verified"].endswith("Secrets under key2") and second["verified"].endswith("Secrets under key1")
    for answer, name in ((finished, "key2"), (second, "key1")):
        under, total = re.fullmatch(r"(\d+) of (\d+) Secrets under " + name, answer["verified"]).groups()
        assert under == total and int(total) > 10


def test_finish_is_refused_while_etcd_shows_a_secret_the_old_key_still_holds_or_cannot_be_read(
    secure_storage_deployed,
):
    """The operator's word is checked against etcd (issue 25): a Secret the rewrite missed, or one written
    under the old key after it, refuses the confirmation by name; etcd down refuses it with the reason
    until the operator says force=true.  Nothing leaves a file meanwhile."""
    cluster, model, backend = secure_storage_deployed
    watch = rotation.RotationWatch(cluster, model, backend)
    ok(rotation.action(cluster, model, leader(cluster, model), "rotate-encryption-key"))
    cluster.settle(after_hook=watch, fail_fast=True, max_hooks=2000)
    assert rotation.phase(cluster, backend) == "rewrite"
    files = rotation.file_key_lists(cluster, model)
    old_value, new_value = raw_keys(cluster, backend)

    def finish(**params):
        return rotation.action(cluster, model, leader(cluster, model), "finish-encryption-key-rotation", **params)

    def leader_status():
        cluster.controller.queue(model, leader(cluster, model), "update-status")
        cluster.settle(after_hook=watch, fail_fast=True)
        return cluster.controller.status(model, leader(cluster, model))

    # the rewrite missed one Secret (a webhook refused it, kubectl stopped at a conflict)
    missed = "kube-system/secret-00001"
    cluster.apiservers.rewrite(model, via=leader(cluster, model), skip={missed})
    total = cluster.apiservers.stored(model)
    answer = refused(finish())
    assert "1 of {} Secrets are not stored under key2 yet: {}".format(total, missed) in answer, answer
    status = leader_status()  # the census in the leader's hook: every Secret but the one missed
    counted = re.search(r"(\d+) of (\d+) Secrets under key2", status["message"])
    assert status["status"] == "blocked" and counted, status
    assert int(counted.group(1)) == int(counted.group(2)) - 1
    assert "finish-encryption-key-rotation" in status["message"]
    # rewritten; then an apiserver one phase behind (old write key) stores one before the confirmation
    cluster.apiservers.rewrite(model, via=leader(cluster, model))
    behind = kube_apiserver.config_bytes(("key1", old_value), ("key2", new_value))
    late = cluster.apiservers.store_through(model, behind, "an apiserver still writing with key1")
    answer = refused(finish())
    assert "1 of" in answer and late in answer, answer
    # etcd cannot be read: a clear answer and status, nothing confirmed, then force=true
    cluster.apiservers.rewrite(model, via=leader(cluster, model))
    etcd = cluster.apiservers.etcd_of(model).server
    etcd.stop()
    try:
        answer = refused(finish())
        assert "cannot be verified: etcd could not be read" in answer and "force=true" in answer, answer
        status = leader_status()
        assert status["status"] == "blocked" and "cannot be verified" in status["message"], status
        assert rotation.phase(cluster, backend) == "rewrite" and not rotation.state(cluster, backend)["confirmed"]
        assert rotation.file_key_lists(cluster, model) == files  # nothing retired
        forced = ok(finish(force=True))
        assert forced["verified"] == "no: confirmed with force=true" and forced["phase"] == "retire"
    finally:
        etcd.restart()
    cluster.settle(after_hook=watch, fail_fast=True, max_hooks=2000)
    assert rotation.phase(cluster, backend) == "rename-rewrite"
    assert not rotation.state(cluster, backend)["confirmed"] and "forced" not in rotation.state(cluster, backend)
    assert cluster.apiservers.stored_under(model).keys() <= {"key1", "key2"}
    assert_no_key_in_logs_or_statuses(cluster, model, [old_value, new_value], answer, forced)


def test_a_leader_change_in_every_phase_resumes_where_the_rotation_stood(secure_storage_deployed):
    cluster, model, backend = secure_storage_deployed
    invariant = rotation.RotationInvariant(cluster, model, backend)
    before = rotation.restarts(cluster, model)
    new = ok(rotation.action(cluster, model, leader(cluster, model), "rotate-encryption-key"))["new-key"]
    units = cluster.units(model)
    phases, leaders = ["add"], [leader(cluster, model)]

    def change_leader():
        following = units[(units.index(leader(cluster, model)) + 1) % len(units)]
        cluster.controller.set_leader(model, APP, following)
        leaders.append(following)

    windows = rotation.RestartWindows(cluster, model)

    mid_turn = set()

    def after_hook(item, process):
        invariant(item, process)
        windows(item, process)
        phase = rotation.phase(cluster, backend)
        if phase != phases[-1]:  # the hook that entered a phase is followed at once by a new leader
            phases.append(phase)
            if phase != "done":
                change_leader()
            return
        turn = json.loads(cluster.controller.leader_settings(model, APP).get(TURN) or "{}")
        if turn.get("stage") == "go" and turn.get("phase") == phase and phase not in mid_turn:
            mid_turn.add(phase)  # and once more in the leader's own turn, before or after it restarted
            change_leader()

    change_leader()
    for _ in range(3):  # Juju events carry it; the operator confirms each rewrite
        current = rotation.state(cluster, backend)
        if current["phase"] in rotation.REWRITE_PHASES and not current.get("confirmed"):
            rotation.rewrite_stored_secrets(cluster, model)
            ok(rotation.action(cluster, model, leader(cluster, model), "finish-encryption-key-rotation"))
        cluster.settle(after_hook=after_hook, fail_fast=True, max_hooks=3000)
        if rotation.phase(cluster, backend) == "done":
            break
    assert phases == [
        "add",
        "promote",
        "rewrite",
        "retire",
        "rename-add",
        "rename-promote",
        "rename-rewrite",
        "rename-retire",
        "done",
    ]
    assert len(leaders) == 9 + len(mid_turn) and len(set(leaders)) == 3 and len(mid_turn) >= 3
    assert windows.most == 1, windows.violations  # each new leader continued the order: one apiserver at a time
    assert windows.update_status_hooks == 0
    assert cluster.vault_fingerprint(backend) == new
    assert set(map(tuple, rotation.file_key_lists(cluster, model).values())) == {(("key1", new),)}
    assert {k: v - before[k] for k, v in rotation.restarts(cluster, model).items()} == {u: 1 for u in units}
    rotation.assert_a_charm_written_file_reads_everything(cluster, model, backend)


def test_units_added_mid_rotation_never_run_an_apiserver_that_misreads_and_a_charm_flag_confirms_a_rewrite(
    secure_storage_deployed,
):
    """A unit added in promote is held until its own file fits.

    kubernetes-control-plane writes a new unit's file itself (key1 = Vault's
    key); in promote that would give key1 the new key while the other units
    read key1 as the old one.  The layer keeps ready down on such a unit, so
    the charm neither writes the file nor starts the apiserver, and the
    leader counts it as held; it gets the charm's own file in rename-retire.
    """
    cluster, model, backend = secure_storage_deployed
    watch = rotation.RotationWatch(cluster, model, backend)
    phases, windows = watch.phases, watch.windows
    started = ok(rotation.action(cluster, model, leader(cluster, model), "rotate-encryption-key"))
    old, new = started["old-key"], started["new-key"]

    # (a unit added in add, which follows the phase in its turn: test_rolling_rotation.py)
    rotation.settle_until(cluster, lambda: rotation.phase(cluster, backend) == "promote", after_hook=watch)
    assert phases.lists["add"] == {unit: [("key1", old), ("key2", new)] for unit in cluster.units(model)}

    added = cluster.controller.add_unit(model, APP)
    waiting = ok(rotation.action(cluster, model, leader(cluster, model), "encryption-key-status"))["waiting-for"]
    assert added in waiting.split(", ")
    cluster.settle(after_hook=watch, fail_fast=True, max_hooks=2000)
    assert rotation.phase(cluster, backend) == "rewrite" and windows.update_status_hooks == 0
    assert rotation.file_key_list(cluster, model, added) is None
    assert added not in cluster.apiservers.running(model)  # the charm did not start it
    assert "layer.vault-kv.ready" not in cluster.flags(model, added)
    assert cluster.controller.status(model, added)["status"] == "waiting"

    def held_until_its_file_fits(item, process):
        watch(item, process)
        if rotation.phase(cluster, backend) not in ("rename-retire", "done"):
            assert rotation.file_key_list(cluster, model, added) is None, rotation.phase(cluster, backend)
            assert added not in cluster.apiservers.running(model)

    report = ok(rotation.action(cluster, model, leader(cluster, model), "encryption-key-status"))
    assert report["units"][added.replace("/", "-")]["keys"].startswith("held") and report["waiting-for"] == "none"
    # here the charm rewrites the Secrets itself and says so with the layer's flag (in one of its hooks), not the action
    for phase in rotation.REWRITE_PHASES:
        assert rotation.phase(cluster, backend) == phase
        rotation.rewrite_stored_secrets(cluster, model)
        with cluster.controller.in_hook(model, leader(cluster, model)):
            set_flag(REWRITTEN)
        cluster.controller.queue(model, leader(cluster, model), "update-status")  # the charm's next hook
        cluster.settle(after_hook=held_until_its_file_fits, fail_fast=True, max_hooks=3000)
    assert rotation.phase(cluster, backend) == "done"
    assert REWRITTEN not in cluster.flags(model, leader(cluster, model))
    lists = rotation.file_key_lists(cluster, model)
    assert len(lists) == 4 and set(map(tuple, lists.values())) == {(("key1", new),)}
    assert rotation.loaded_key_lists(cluster, model)[added] == [("key1", new)]
    assert "layer.vault-kv.ready" in cluster.flags(model, added)
    assert windows.most == 1, windows.violations
    rotation.assert_a_charm_written_file_reads_everything(cluster, model, backend)
    generated = sum(
        cluster.controller.log(model, u).count("generated a new encryption_key")
        + cluster.controller.log(model, u).count("stored encryption_key from a newly generated key")
        for u in cluster.units(model)
    )
    assert generated == 1  # the first deploy's key; the rotation's new key is not "generated" by a charm


def observed(cluster, model):
    return {u: (set(cluster.flags(model, u)), cluster.controller.status(model, u)) for u in cluster.units(model)}


def test_with_secure_storage_on_a_hook_in_which_nothing_changed_costs_vault_nothing(secure_storage_deployed):
    cluster, model, _backend = secure_storage_deployed
    cluster.update_status(model)
    before = observed(cluster, model)
    files = {u: cluster.controller.unit_file(model, u, ENCRYPTION_CONFIG) for u in cluster.units(model)}
    mark = cluster.bao.mark()
    for _ in range(2):
        cluster.update_status(model)
    assert cluster.bao.requests_since(mark) == []
    assert observed(cluster, model) == before
    assert {u: cluster.controller.unit_file(model, u, ENCRYPTION_CONFIG) for u in cluster.units(model)} == files


def test_the_charms_migration_putting_the_old_key_back_mid_rotation_is_undone_and_no_secret_is_lost(
    secure_storage_deployed,
):
    """The leader's hook dies after entering promote (Vault: the new key) and before its own file follows;
    then kubernetes-control-plane 1.28's migrate_vault_kv_secrets_backend (set on a refresh that moves the
    backend) runs on it and writes that file's first key, the old one, to Vault.

    Both orders of that hook's handlers are run: the charm's after the layer's (the file is in line by
    then: the charm writes the new key), and the charm's first (its write of the old key, done here as it
    does it, in the leader's hook).  The other units then see the old key in Vault: no file follows it;
    the leader puts the rotation's key back, and the rotation ends as any other."""
    cluster, model, backend = secure_storage_deployed
    controller = cluster.controller
    invariant = rotation.RotationInvariant(cluster, model, backend)
    ok(rotation.action(cluster, model, leader(cluster, model), "rotate-encryption-key"))
    old_value, new_value = raw_keys(cluster, backend)
    new = fingerprint(new_value)
    lead = leader(cluster, model)
    adding = [("key1", fingerprint(old_value)), ("key2", new)]
    everyone_added = lambda: set(map(tuple, rotation.loaded_key_lists(cluster, model).values())) == {tuple(adding)}  # noqa: E731
    rotation.settle_until(cluster, everyone_added, after_hook=invariant)  # every unit in add; the leader's hook next
    directory = ENCRYPTION_CONFIG.rsplit("/", 1)[0]
    for step in range(1, 40):  # the leader's next hook, killed one step later each time
        controller.kill_at_vault_request(model, lead, step, files_under=directory)
        process = controller.run_hook({"model": model, "unit": lead, "hook": "update-status"})
        invariant()
        assert process.returncode in (0, 137), process.stderr[-2000:]
        if rotation.phase(cluster, backend) == "promote":
            break
    controller.stop_killing(model, lead)
    assert process.returncode == 137 and cluster.bao.read("{}/kv/app".format(backend))["encryption_key"] == new_value
    assert rotation.file_key_list(cluster, model, lead)[0][0] == "key1"  # its file is one phase behind

    # the charm's handler after the layer's: the layer brings the file in line first, the charm writes that key
    with controller.in_hook(model, lead):
        set_flag("kubernetes-control-plane.secure-storage.migrate")
    controller.queue(model, lead, "upgrade-charm")
    cluster.settle(after_hook=invariant, fail_fast=True, max_hooks=2000)
    assert "kubernetes-control-plane.secure-storage.migrate" not in cluster.flags(model, lead)  # the charm's ran
    assert cluster.bao.read("{}/kv/app".format(backend))["encryption_key"] == new_value

    # the charm's handler first: it writes the old key (its file's first key one phase behind) over the new one
    files = rotation.file_key_lists(cluster, model)
    phase_then = rotation.phase(cluster, backend)
    with controller.in_hook(model, lead):
        from charms.layer import vault_kv

        vault_kv.VaultAppKV()["encryption_key"] = old_value
    others = [unit for unit in cluster.units(model) if unit != lead]
    for unit in others:  # they see the old key in Vault before the leader runs again
        controller.run_hook({"model": model, "unit": unit, "hook": "update-status"})
        invariant()
    assert {unit: rotation.file_key_list(cluster, model, unit) for unit in others} == {u: files[u] for u in others}
    controller.run_hook({"model": model, "unit": lead, "hook": "update-status"})
    invariant()
    assert "Vault held the old key in phase {}".format(phase_then) in controller.log(model, lead)
    assert cluster.bao.read("{}/kv/app".format(backend))["encryption_key"] == new_value
    cluster.settle(after_hook=invariant, fail_fast=True)
    for phase in rotation.REWRITE_PHASES:
        rotation.drive(
            cluster, model, backend, lambda phase=phase: rotation.phase(cluster, backend) == phase, after_hook=invariant
        )
        rotation.rewrite_stored_secrets(cluster, model)
        ok(rotation.action(cluster, model, leader(cluster, model), "finish-encryption-key-rotation"))
    rotation.drive(cluster, model, backend, lambda: rotation.phase(cluster, backend) == "done", after_hook=invariant)
    assert set(map(tuple, rotation.file_key_lists(cluster, model).values())) == {(("key1", new),)}
    rotation.assert_a_charm_written_file_reads_everything(cluster, model, backend)
