"""A key rotation carried by Juju events, one kube-apiserver at a time (issue 24).

(The same for 3 units is ``test_key_rotation.py``'s full rotation.)  From
``rotate-encryption-key`` to ``done`` with no update-status: the turn is
in leader data, acknowledgements and the witness's relay on the peer relation
``coordinator``.  After every hook ``RotationInvariant`` checks the files and
what every apiserver runs with, the encrypting apiservers read every Secret,
and ``RestartWindows`` counts the apiservers that restarted between two
consecutive hooks of the leader: never more than one.
"""

import json
from pathlib import Path

from charms.layer.vault_kv.secure_storage import rolling
from tests.jujusim.state import locked
from tests.support import rotation
from tests.support.cluster import APP

TURN = "vault-kv-rotation-turn"

leader = rotation.leader


def ok(answer):
    assert answer["returncode"] == 0, answer["stderr"][-2000:]
    assert answer["failed"] is None, answer["failed"]
    return answer["results"]


def rotate_on_events(cluster, model, backend, after_hook=None, rewrite="manual"):
    """The operator's whole rotation, rewriting at once each time it is asked; no update-status.

    ``rewrite="auto"``: the operator only starts it; the leader rewrites the Secrets itself.
    Returns the RestartWindows that watched it."""
    watch = rotation.RotationWatch(cluster, model, backend, also=after_hook)

    ok(rotation.action(cluster, model, leader(cluster, model), "rotate-encryption-key", rewrite=rewrite))
    cluster.settle(after_hook=watch, fail_fast=True, max_hooks=2000)
    for number in (1, 2) if rewrite == "manual" else ():
        current = rotation.state(cluster, backend)
        assert current["phase"] == rotation.REWRITE_PHASES[number - 1], current["phase"]
        assert "({} of 2)".format(number) in cluster.controller.status(model, leader(cluster, model))["message"]
        rotation.rewrite_stored_secrets(cluster, model)
        ok(rotation.action(cluster, model, leader(cluster, model), "finish-encryption-key-rotation"))
        cluster.settle(after_hook=watch, fail_fast=True, max_hooks=2000)
    assert rotation.phase(cluster, backend) == "done"
    return watch.windows


def test_five_units_rotate_with_no_update_status_one_apiserver_at_a_time_through_a_leader_change_in_every_phase(
    five_units,
):
    """5 units; the hook that enters each phase is followed at once by a new leader (the next unit by number),
    which continues the order: still no update-status, never two apiservers restarting at once.  Unattended
    (rewrite=auto): each new leader rewrites the Secrets through its own apiserver's Kubernetes API, one
    replace meeting a conflict, and etcd shows them all under the new key before the old one leaves a file."""
    cluster, model, backend = five_units
    units = cluster.units(model)
    cluster.apiservers.api.conflict_once.add((model, "default/secret-00000"))  # someone else replaces it first
    phases, leaders = [], []

    def change_leader_on_a_new_phase(item, process):
        phase = rotation.phase(cluster, backend)
        if phases and phase != phases[-1] and phase != "done":
            following = units[(units.index(leader(cluster, model)) + 1) % len(units)]
            cluster.controller.set_leader(model, APP, following)
            leaders.append(following)
        if not phases or phase != phases[-1]:
            phases.append(phase)

    windows = rotate_on_events(cluster, model, backend, after_hook=change_leader_on_a_new_phase, rewrite="auto")
    assert cluster.apiservers.api.conflicts[model] == 1 and cluster.apiservers.api.replaced[model] > 10
    assert cluster.apiservers.stored_under(model) == {"key1": cluster.apiservers.stored(model)}
    assert windows.update_status_hooks == 0
    assert windows.most == 1, windows.violations
    assert len(leaders) == 7 and set(windows.per_unit) == set(units)  # a new leader in promote ... rename-retire
    print("hooks", windows.hooks, "restarts", windows.per_unit)
    assert all(count == 6 for count in windows.per_unit.values()), windows.per_unit  # once per file-changing phase
    new = rotation.state(cluster, backend)["fingerprint"]
    assert set(map(tuple, rotation.file_key_lists(cluster, model).values())) == {(("key1", new),)}
    rotation.assert_a_charm_written_file_reads_everything(cluster, model, backend)


APISERVER_FAILS = "/var/lib/kcp-consumer/apiserver-fails"


def apiserver_fails(cluster, model, unit, fails=True):
    """A test's fault on one unit: its kube-apiserver does not come up (the consumer leaves configured unset)."""
    info = cluster.controller.unit(model, unit)
    marker = Path(info["dir"]) / "var-upper" / APISERVER_FAILS[len("/var/") :]
    if fails:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("")
    elif marker.exists():
        marker.unlink()


def make_the_turn_overdue(cluster, model):
    """Time passes: the holder's turn was handed out longer ago than the leader's patience."""
    with locked(cluster.controller.state_path) as state:
        settings = state["models"][model]["apps"][APP]["leader_settings"]
        turn = json.loads(settings[TURN])
        turn["since"] -= rolling.PATIENCE_SECONDS + 60
        settings[TURN] = json.dumps(turn, sort_keys=True)


def turn_holder(cluster, model):
    with locked(cluster.controller.state_path, write=False) as state:
        return json.loads(state["models"][model]["apps"][APP]["leader_settings"][TURN])["unit"]


def test_a_unit_whose_apiserver_does_not_come_back_stops_the_rotation_until_it_recovers_or_is_removed(
    secure_storage_deployed,
):
    """No other apiserver restarts behind a unit that did not acknowledge; the leader names it, then goes on."""
    cluster, model, backend = secure_storage_deployed
    watch = rotation.RotationWatch(cluster, model, backend)
    windows = watch.windows

    lead = leader(cluster, model)
    first, second = [unit for unit in cluster.units(model) if unit != lead]
    apiserver_fails(cluster, model, first)
    started = ok(rotation.action(cluster, model, lead, "rotate-encryption-key"))
    early = cluster.controller.add_unit(
        model, APP
    )  # added in add: the charm's file (key1 = the old key), then its turn
    cluster.settle(after_hook=watch, fail_fast=True)
    assert rotation.phase(cluster, backend) == "add" and turn_holder(cluster, model) == first
    assert rotation.file_key_list(cluster, model, early) == [("key1", started["old-key"])]  # its turn is to come
    assert set(windows.per_unit) == {first}  # it restarted with the new file (its service failing); nobody else did
    assert first not in cluster.apiservers.running(model)
    status = cluster.controller.status(model, lead)
    assert status["status"] == "maintenance" and "{} applying".format(first) in status["message"]
    report = ok(rotation.action(cluster, model, lead, "encryption-key-status"))
    assert report["applying"] == first and first in report["waiting-for"]
    assert report["rolling-order"] == ", ".join([first, second, early, lead])

    make_the_turn_overdue(cluster, model)
    cluster.update_status(model)  # the safety net notices
    status = cluster.controller.status(model, lead)
    assert status["status"] == "blocked" and first in status["message"] and "remove-unit" in status["message"]
    assert ok(rotation.action(cluster, model, lead, "encryption-key-status"))["blocks"] == first
    assert set(windows.per_unit) == {first}

    apiserver_fails(cluster, model, first, fails=False)  # repaired: its next hook configures the apiserver
    cluster.controller.queue(model, first, "update-status")
    cluster.settle(after_hook=watch, fail_fast=True)
    assert rotation.phase(cluster, backend) == "rewrite"
    assert rotation.file_key_list(cluster, model, early) == [("key2", started["new-key"]), ("key1", started["old-key"])]

    apiserver_fails(cluster, model, second)
    rotation.rewrite_stored_secrets(cluster, model)
    ok(rotation.action(cluster, model, lead, "finish-encryption-key-rotation"))
    cluster.settle(after_hook=watch, fail_fast=True)
    assert rotation.phase(cluster, backend) == "retire" and turn_holder(cluster, model) == second
    cluster.controller.remove_unit(model, second)  # the operator removes it instead
    cluster.settle(after_hook=watch, fail_fast=True)
    assert second not in cluster.units(model)
    assert rotation.phase(cluster, backend) == "rename-rewrite"
    rotation.rewrite_stored_secrets(cluster, model)
    ok(rotation.action(cluster, model, lead, "finish-encryption-key-rotation"))
    cluster.settle(after_hook=watch, fail_fast=True)
    assert rotation.phase(cluster, backend) == "done"
    assert windows.most == 1, windows.violations
    assert cluster.controller.status(model, lead)["status"] == "active"
    rotation.assert_a_charm_written_file_reads_everything(cluster, model, backend)
