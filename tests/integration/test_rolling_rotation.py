"""A key rotation carried by Juju events, one kube-apiserver at a time (issue 24).

From ``rotate-encryption-key`` to ``done`` with no update-status: the turn is
in leader data, acknowledgements and the witness's relay on the peer relation
``coordinator``.  After every hook ``RotationInvariant`` checks the files and
what every apiserver runs with, the encrypting apiservers read every Secret,
and ``RestartWindows`` counts the apiservers that restarted between two
consecutive hooks of the leader: never more than one.
"""

from tests.support import rotation

leader = rotation.leader


def ok(answer):
    assert answer["returncode"] == 0, answer["stderr"][-2000:]
    assert answer["failed"] is None, answer["failed"]
    return answer["results"]


def rotate_on_events(cluster, model, backend, after_hook=None):
    """The operator's whole rotation, rewriting at once each time it is asked; no update-status.

    Returns the RestartWindows that watched it."""
    invariant = rotation.RotationInvariant(cluster, model, backend)
    windows = rotation.RestartWindows(cluster, model)

    def watch(item, process):
        invariant(item, process)
        windows(item, process)
        if after_hook is not None:
            after_hook(item, process)

    ok(rotation.action(cluster, model, leader(cluster, model), "rotate-encryption-key"))
    cluster.settle(after_hook=watch, fail_fast=True, max_hooks=2000)
    for number in (1, 2):
        current = rotation.state(cluster, backend)
        assert current["phase"] == rotation.REWRITE_PHASES[number - 1], current["phase"]
        assert "({} of 2)".format(number) in cluster.controller.status(model, leader(cluster, model))["message"]
        rotation.rewrite_stored_secrets(cluster, model)
        ok(rotation.action(cluster, model, leader(cluster, model), "finish-encryption-key-rotation"))
        cluster.settle(after_hook=watch, fail_fast=True, max_hooks=2000)
    assert rotation.phase(cluster, backend) == "done"
    return windows


def test_three_units_rotate_with_no_update_status_and_one_apiserver_restarting_at_a_time(secure_storage_deployed):
    cluster, model, backend = secure_storage_deployed
    windows = rotate_on_events(cluster, model, backend)
    assert windows.update_status_hooks == 0
    assert windows.most == 1, windows.violations
    print("hooks", windows.hooks, "restarts", windows.per_unit)
    new = rotation.state(cluster, backend)["fingerprint"]
    assert set(map(tuple, rotation.file_key_lists(cluster, model).values())) == {(("key1", new),)}
    rotation.assert_a_charm_written_file_reads_everything(cluster, model, backend)
