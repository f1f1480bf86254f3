"""Key rotation: the phase rules (rotation_state) and the named-key file writes (encryption_config)."""

import json
import os
import stat

import pytest
import yaml

from charms.layer.vault_kv.secure_storage import encryption_config as ec
from charms.layer.vault_kv.secure_storage import rotation_state as rs

OLD, NEW = "A" * 32, "B" * 32


def started(old_name="key1", names=("key1",)):
    return rs.start(OLD, old_name, names, NEW)


def ack(state, keys, unit="app/0", phase=None, rotation=None):
    return {
        "id": rotation or state["id"],
        "phase": phase or state["phase"],
        "unit": unit,
        "keys": [[name, rs.key_fingerprint(value)] for name, value in keys],
    }


# -- names and phases -----------------------------------------------------------------


def test_the_new_key_gets_a_name_no_stored_secret_carries():
    assert started()["new"]["name"] == "key2"
    assert started("key2", ("key2", "key1"))["new"]["name"] == "key3"
    assert rs.next_key_name(["other", "key9"]) == "key10"


def test_a_second_rotation_is_refused_while_one_runs_and_allowed_once_done():
    state = started()
    with pytest.raises(rs.RotationRefused, match="phase add"):
        rs.refuse_start(state)
    rs.refuse_start({"phase": "done", "name": "key2", "fingerprint": "x"})
    rs.refuse_start(None)


def test_each_phase_plans_the_kubernetes_order_of_keys():
    state = started()
    assert rs.file_plan(state, OLD) == ([("key1", OLD), ("key2", NEW)], [])
    for phase in ("promote", "rewrite"):
        assert rs.file_plan(dict(state, phase=phase), NEW) == ([("key2", NEW), ("key1", OLD)], [])
    assert rs.file_plan(dict(state, phase="retire"), NEW) == ([("key2", NEW)], [OLD])


def test_a_vault_key_the_state_does_not_speak_of_gets_no_plan_so_the_file_keeps_every_key():
    state = started()
    assert rs.file_plan(state, NEW) is None  # add, but Vault already holds another key
    assert rs.file_plan(dict(state, phase="promote"), OLD) is None
    assert rs.file_plan(None, OLD) is None
    assert rs.file_plan({"phase": "bogus"}, OLD) is None


def test_the_rotation_ends_with_the_charms_own_file_key1_alone_after_a_rename_leg():
    state = started()
    plans = {}
    for phase in ("rename-add", "rename-promote", "rename-rewrite", "rename-retire"):
        plans[phase] = rs.file_plan(dict(state, phase=phase), NEW)
    assert plans["rename-add"] == ([("key2", NEW), ("key1", NEW)], [OLD])
    assert plans["rename-promote"] == plans["rename-rewrite"] == ([("key1", NEW), ("key2", NEW)], [OLD])
    assert plans["rename-retire"] == ([("key1", NEW)], [OLD, NEW])  # nothing after key1 holds either key


def test_key1_leaves_every_file_before_it_comes_back_for_the_new_key():
    """No two phases in a row (the files in use at one time) give one name two keys."""
    state = started()
    phases = [p for p in rs.RUNNING]
    for first, second in zip(phases, phases[1:]):
        names = {}
        for phase in (first, second):
            keys, _ = rs.file_plan(dict(state, phase=phase), rs.vault_key_in(dict(state, phase=phase)))
            for name, value in keys:
                assert names.setdefault(name, value) == value, (first, second, name)


def test_the_files_of_two_neighbouring_phases_read_everything_either_writes():
    """A Secret written under a phase's write key is readable in the phases before and after it."""
    state = started()
    plans = [rs.phase_plan(dict(state, phase=p))[0] for p in rs.RUNNING]
    for i, keys in enumerate(plans):
        for neighbour in plans[max(0, i - 1) : i + 2]:
            assert keys[0] in neighbour


def test_done_names_the_key_key1_and_forgets_both_keys():
    retire = dict(started(), phase="retire")
    updates, following = rs.next_state(retire)
    assert following["phase"] == "rename-add" and "encryption_key" not in updates
    rewrite = dict(started(), phase="rename-rewrite", confirmed=False)
    with pytest.raises(rs.RotationRefused, match="not confirmed"):
        rs.next_state(rewrite)
    _, last = rs.next_state(rs.confirm(rewrite))
    assert last["phase"] == "rename-retire" and last["confirmed"] is False
    updates, done = rs.next_state(last)
    assert done["phase"] == "done" and done["name"] == "key1"
    assert OLD not in repr(updates) and NEW not in repr(updates)
    assert rs.file_plan(done, NEW) == ([("key1", NEW)], [])
    assert rs.file_plan(done, OLD) is None  # Vault's key set by hand since: not this rotation's


def test_a_rotation_from_a_key_not_named_key1_names_the_new_key_key1_and_needs_one_rewrite():
    state = started("key5", ("key5",))
    assert state["new"]["name"] == "key1" and rs.rewrites_in(state) == 1
    assert rs.next_state(dict(state, phase="retire"))[1]["phase"] == "done"
    assert rs.file_plan(dict(state, phase="retire"), NEW) == ([("key1", NEW)], [OLD])


def test_a_done_state_of_a_rotation_that_ended_as_key2_still_lists_key1():
    done = {"id": "x", "phase": "done", "name": "key2", "fingerprint": rs.key_fingerprint(NEW)}
    assert rs.file_plan(done, NEW) == ([("key2", NEW), ("key1", NEW)], [])


def test_a_unit_without_a_file_is_held_where_the_charms_own_file_would_not_fit():
    state = started()
    held = {phase for phase in rs.RUNNING if rs.holds_new_units(dict(state, phase=phase))}
    assert held == {"promote", "rewrite", "retire", "rename-add", "rename-promote", "rename-rewrite"}
    assert not rs.holds_new_units(None) and not rs.holds_new_units({"phase": "done"})
    by_hand = started("key5", ("key5",))  # the new key is key1 from the start: key1 means NEW
    assert {p for p in ("add", "promote", "rewrite", "retire") if rs.holds_new_units(dict(by_hand, phase=p))} == {
        "add",
        "promote",
        "rewrite",
    }


def test_a_held_unit_counts_as_acknowledged_only_in_a_phase_that_holds():
    state = dict(started(), phase="promote")
    assert rs.acknowledged(state, rs.held_acknowledgement(state, "app/3"))
    add = started()
    assert not rs.acknowledged(add, rs.held_acknowledgement(add, "app/3"))
    last = dict(started(), phase="rename-retire")
    assert not rs.acknowledged(last, rs.held_acknowledgement(last, "app/3"))
    forged = dict(rs.held_acknowledgement(state, "app/3"), keys=[["key1", rs.key_fingerprint(NEW)]])
    assert not rs.acknowledged(state, forged)


def test_rename_retire_is_acknowledged_by_key1_alone():
    state = dict(started(), phase="rename-retire")
    assert rs.acknowledged(state, ack(state, [("key1", NEW)]))
    assert not rs.acknowledged(state, ack(state, [("key1", NEW), ("key2", NEW)]))
    assert rs.file_matches([("key1", NEW)], [OLD, NEW], [("key1", NEW)])
    assert not rs.file_matches([("key1", NEW)], [OLD, NEW], [("key1", NEW), ("key2", NEW)])


def test_entering_promote_makes_the_new_key_vaults_key_in_the_same_write():
    updates, following = rs.next_state(started())
    assert following["phase"] == "promote"
    assert updates == {rs.ROTATION_KEY: following, "encryption_key": NEW}
    updates, following = rs.next_state(following)
    assert following["phase"] == "rewrite" and set(updates) == {rs.ROTATION_KEY}


def test_retire_waits_for_the_rewrite_confirmation():
    rewrite = dict(started(), phase="rewrite")
    with pytest.raises(rs.RotationRefused, match="not confirmed"):
        rs.next_state(rewrite)
    _, retire = rs.next_state(rs.confirm(rewrite))
    assert retire["phase"] == "retire"


def test_the_rewrite_is_confirmed_only_in_the_rewrite_phase():
    with pytest.raises(rs.RotationRefused, match="no rotation"):
        rs.confirm(None)
    for phase in ("add", "promote", "retire", "rename-add", "rename-promote", "rename-retire"):
        with pytest.raises(rs.RotationRefused, match="phase " + phase):
            rs.confirm(dict(started(), phase=phase))
    assert rs.confirm(dict(started(), phase="rename-rewrite"))["confirmed"] is True


def test_an_acknowledgement_counts_only_for_this_rotation_this_phase_and_this_phases_keys():
    state = started()
    good = ack(state, [("key1", OLD), ("key2", NEW)])
    assert rs.acknowledged(state, good)
    assert not rs.acknowledged(state, ack(state, [("key1", OLD)]))  # the new key missing
    assert not rs.acknowledged(state, ack(state, [("key2", NEW), ("key1", OLD)]))  # wrong order
    assert not rs.acknowledged(state, ack(state, [("key1", OLD), ("key2", NEW)], rotation="other"))
    assert not rs.acknowledged(state, ack(state, [("key1", OLD), ("key2", NEW)], phase="promote"))
    assert not rs.acknowledged(state, {"id": state["id"], "phase": "add", "keys": "nonsense"})
    retire = dict(state, phase="retire")
    assert rs.acknowledged(retire, ack(retire, [("key2", NEW)]))
    assert not rs.acknowledged(retire, ack(retire, [("key2", NEW), ("key9", OLD)]))  # old key under any name


def test_the_leader_waits_for_every_expected_unit_including_one_that_never_reported():
    state = started()
    acks = {"app/0": ack(state, [("key1", OLD), ("key2", NEW)])}
    assert rs.waiting_for(state, ["app/0", "app/1"], acks) == ["app/1"]
    assert rs.waiting_for(state, ["app/0"], acks) == []


def test_status_lines_never_hold_a_key():
    state = started()
    for phase in rs.RUNNING:
        line = rs.describe(dict(state, phase=phase), ["app/1"])
        assert phase in line and OLD not in line and NEW not in line
    assert "finish-encryption-key-rotation" in rs.describe(dict(state, phase="rewrite"))
    assert "(1 of 2)" in rs.describe(dict(state, phase="rewrite"))
    assert "(2 of 2)" in rs.describe(dict(state, phase="rename-rewrite"))
    assert "(1 of 1)" in rs.describe(dict(started("key5", ("key5",)), phase="rewrite"))
    for phase in rs.RUNNING:  # kubernetes-control-plane 1.29+ does not include the layer: nothing would finish it
        assert "before refreshing kubernetes-control-plane (to 1.29+" in rs.describe(dict(state, phase=phase))


# -- the file, by named keys -----------------------------------------------------------------


def keys_of(path):
    return [(name, value) for name, value in ec.read_named_keys(str(path))]


def test_named_keys_are_placed_in_order_and_other_entries_and_keys_kept(tmp_path):
    path = tmp_path / "encryption_config.yaml"
    document = {
        "kind": "EncryptionConfig",
        "apiVersion": "v1",
        "resources": [
            {
                "resources": ["secrets"],
                "providers": [
                    {"aescbc": {"keys": [{"name": "key1", "secret": ec.file_secret(OLD)}]}},
                    {"identity": {}},
                ],
            },
            {"resources": ["configmaps"], "providers": [{"identity": {}}]},
        ],
    }
    path.write_text(yaml.safe_dump(document))
    assert ec.write_named_keys(str(path), [("key1", OLD), ("key2", NEW)])
    assert keys_of(path) == [("key1", OLD), ("key2", NEW)]
    written = yaml.safe_load(path.read_text())
    assert written["resources"][1] == document["resources"][1]
    assert written["resources"][0]["providers"][1] == {"identity": {}}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not ec.write_named_keys(str(path), [("key1", OLD), ("key2", NEW)])  # unchanged: not rewritten
    assert ec.write_named_keys(str(path), [("key2", NEW), ("key1", OLD)])
    assert keys_of(path) == [("key2", NEW), ("key1", OLD)]
    assert ec.read_key(str(path)) == NEW  # what the charm's reader takes: the first key


def test_dropping_a_value_removes_it_under_every_name_and_a_taken_name_is_replaced(tmp_path):
    path = str(tmp_path / "encryption_config.yaml")
    ec.write_named_keys(path, [("key2", NEW), ("key1", OLD), ("key7", OLD)])
    ec.write_named_keys(path, [("key2", NEW)], drop=[OLD])
    assert keys_of(path) == [("key2", NEW)]
    other = "C" * 32
    ec.write_named_keys(path, [("key1", other)])  # the charm's key1 for a value the rotation names key2
    ec.write_named_keys(path, [("key2", NEW), ("key1", OLD)])
    assert keys_of(path) == [("key2", NEW), ("key1", OLD)]


def test_a_file_that_cannot_be_read_is_never_replaced_and_no_key_is_echoed(tmp_path):
    path = tmp_path / "encryption_config.yaml"
    path.write_text("kind: [unclosed\n")
    with pytest.raises(ec.EncryptionConfigError):
        ec.write_named_keys(str(path), [("key1", OLD)])
    assert path.read_text() == "kind: [unclosed\n"
    with pytest.raises(ValueError) as error:
        ec.write_named_keys(str(tmp_path / "other.yaml"), [("key1", "short-secret")])
    assert "short-secret" not in str(error.value)


# -- this unit's side: expected units, the restart record, refusals ------------------------


@pytest.fixture
def secure_storage_on(juju):
    import json

    path = juju["charm_dir"] / "encryption" / "encryption_config.yaml"
    options_file = {"options": {"vault-kv": {"encryption-config-path": str(path)}}}
    (juju["charm_dir"] / "layer.yaml").write_text(json.dumps(options_file))
    return str(path)


def test_the_units_to_wait_for_are_goal_states_without_dying_ones_and_with_this_one(juju):
    from charmhelpers.core import hookenv

    from charms.layer.vault_kv.secure_storage import rotation

    hookenv.goal_state.side_effect = lambda: {
        "units": {"app/1": {"status": "active"}, "app/2": {"status": "dying"}, "app/3": {"status": "waiting"}}
    }
    assert rotation.application_units() == ["app/0", "app/1", "app/3"]
    hookenv.goal_state.side_effect = NotImplementedError
    with pytest.raises(rs.RotationRefused, match="goal-state"):
        rotation.application_units()


def test_a_changed_file_counts_as_loaded_only_once_the_charm_configured_the_apiserver_again(
    juju, flags, secure_storage_on
):
    from charms.layer.vault_kv import names
    from charms.layer.vault_kv.secure_storage import rotation

    ec.write_named_keys(secure_storage_on, [("key1", OLD)])
    rotation.adopt_current_file()  # a unit that never recorded a load: what it has is what runs
    assert not rotation.reload_needed()
    ec.write_named_keys(secure_storage_on, [("key1", OLD), ("key2", NEW)])
    assert rotation.reload_needed()
    rotation.adopt_current_file()  # a record exists: adopting never hides a change
    assert rotation.reload_needed()
    flags.discard(names.APISERVER_CONFIGURED)
    assert not rotation.note_loaded_if_restarted() and rotation.reload_needed()
    flags.add(names.APISERVER_CONFIGURED)
    assert rotation.note_loaded_if_restarted() and not rotation.reload_needed()
    record = juju["charm_dir"] / rotation.LOADED_RECORD
    assert OLD not in record.read_text() and NEW not in record.read_text()


def test_the_actions_refuse_off_the_leader_and_with_secure_storage_off(juju, vault, secure_storage_on):
    from charms.layer.vault_kv.secure_storage import coordination

    juju["leader"] = False
    with pytest.raises(rs.RotationRefused, match="leader"):
        coordination.start()
    with pytest.raises(rs.RotationRefused, match="no rotation is running"):
        coordination.confirm_rewrite()  # off the leader it verifies only, in a rewrite phase
    juju["leader"] = True
    (juju["charm_dir"] / "layer.yaml").write_text("{}")
    with pytest.raises(rs.RotationRefused, match="secure storage is off"):
        coordination.start()


# -- the actions: their own work, and this layer's record of it ------------------------------------


def run_action(name, monkeypatch):
    """Run the layer's action ``name``; returns (results, failure message or None)."""
    from charmhelpers.core import hookenv

    from charms.layer import vault_kv
    from charms.layer.vault_kv.secure_storage import actions

    monkeypatch.setattr(actions, "_open_vault_endpoint", lambda: None)  # conftest's endpoint stands in
    vault_kv.reset_cached_state()  # each action is a process of its own
    hookenv.action_set.reset_mock()
    hookenv.action_fail.reset_mock()
    actions.run(name)
    results = hookenv.action_set.call_args[0][0] if hookenv.action_set.called else None
    failure = hookenv.action_fail.call_args[0][0] if hookenv.action_fail.called else None
    return results, failure


def test_the_status_action_only_reads_and_rotate_records_the_leaders_hashes_and_wakes_the_others(
    juju, vault, secure_storage_on, monkeypatch
):
    from charms.layer.vault_kv.hashing import value_hash
    from charms.layer.vault_kv.names import LEADER_NONCE

    vault.data["charm-app/kv/app"] = {"encryption_key": OLD}
    ec.write_named_keys(secure_storage_on, [("key1", OLD)])

    report, failure = run_action("encryption-key-status", monkeypatch)
    assert failure is None and report["phase"] == "none" and report["vault-key"] == rs.key_fingerprint(OLD)
    assert [request for request in vault.requests if request[0] in ("write", "delete")] == []  # only reads
    assert "charm-app/kv/app-hashes/0" not in vault.data and LEADER_NONCE not in juju["leader_data"]

    started, failure = run_action("rotate-encryption-key", monkeypatch)
    assert failure is None and started["phase"] == "add"
    app = vault.data["charm-app/kv/app"]
    assert app["encryption_key"] == OLD and app[rs.ROTATION_KEY]["id"] == started["id"]
    hashes = vault.data["charm-app/kv/app-hashes/0"]  # recorded as at a hook's exit
    assert hashes == {key: value_hash(value) for key, value in app.items()}
    assert juju["leader_data"][LEADER_NONCE]  # the other units get leader-settings-changed

    _results, failure = run_action("finish-encryption-key-rotation", monkeypatch)
    assert "phase add" in failure


# -- a unit that joins while a rotation runs ---------------------------------------------------


def test_a_new_unit_is_held_without_ready_or_the_keys_set_flag_only_in_a_phase_that_holds(
    juju, vault, flags, secure_storage_on
):
    from charms.layer import vault_kv
    from charms.layer.vault_kv import names, ready_holds
    from charms.layer.vault_kv.secure_storage import rotation

    ready_holds.hold_ready_while(rotation.hold_new_unit)
    set_flag = names.app_kv_flag(names.APP_KV_SET_KEY, "encryption_key")
    state = dict(started(), phase="promote")
    vault.data["charm-app/kv/app"] = {"encryption_key": NEW, rs.ROTATION_KEY: state}
    why = ready_holds.set_ready_unless_held(vault_kv.VaultAppKV())
    assert "phase promote" in why and "rename-retire" in why and OLD not in why and NEW not in why
    assert names.READY not in flags and set_flag not in flags and names.ROTATING in flags

    for phase, held in (("add", False), ("retire", True), ("rename-rewrite", True), ("rename-retire", False)):
        flags.discard(names.READY)
        vault_key = OLD if phase == "add" else NEW
        vault.data["charm-app/kv/app"] = {"encryption_key": vault_key, rs.ROTATION_KEY: dict(state, phase=phase)}
        vault_kv.reset_cached_state()
        assert bool(ready_holds.set_ready_unless_held(vault_kv.VaultAppKV())) is held, phase
        assert (names.READY in flags) is not held and (set_flag in flags) is not held, phase

    vault.data["charm-app/kv/app"] = {"encryption_key": NEW, rs.ROTATION_KEY: state}
    ec.write_named_keys(secure_storage_on, [("key2", NEW), ("key1", OLD)])  # a unit that has its file
    vault_kv.reset_cached_state()
    assert ready_holds.set_ready_unless_held(vault_kv.VaultAppKV()) is None and names.READY in flags
    os.remove(secure_storage_on)
    flags.add(names.SECURE_STORAGE_CREATED)  # lost its file: not new, it waits for the file instead
    vault_kv.reset_cached_state()
    assert ready_holds.set_ready_unless_held(vault_kv.VaultAppKV()) is None


def test_a_hold_that_fails_keeps_ready_down(juju, flags):
    from charms.layer.vault_kv import names, ready_holds

    def broken(_app_kv):
        raise KeyError("x")

    flags.add(names.READY)
    ready_holds.hold_ready_while(broken)
    try:
        assert "KeyError" in ready_holds.set_ready_unless_held({})
        assert names.READY not in flags
    finally:
        ready_holds._holds.remove(broken)


def test_a_held_unit_acknowledges_as_held_and_a_held_leader_moves_the_phase_on(juju, vault, flags, secure_storage_on):
    from charmhelpers.core import hookenv

    from charms.layer import vault_kv
    from charms.layer.vault_kv.secure_storage import coordination

    hookenv.goal_state.side_effect = lambda: {"units": {"app/0": {"status": "active"}}}
    state = dict(started(), phase="promote")
    vault.data["charm-app/kv/app"] = {"encryption_key": NEW, rs.ROTATION_KEY: state}
    juju["leader"] = False
    vault_kv.VaultAppKV()
    coordination.at_hook_exit()
    published = json.loads(juju["peer"]["app/0"]["vault-kv-rotation-ack"])
    assert published == rs.held_acknowledgement(state, "app/0")
    assert vault.data["charm-app/kv/app"][rs.ROTATION_KEY]["phase"] == "promote"

    juju["leader"] = True
    vault_kv.reset_cached_state()
    vault_kv.VaultAppKV()
    coordination.at_hook_exit()
    assert vault.data["charm-app/kv/app"][rs.ROTATION_KEY]["phase"] == "rewrite"
    assert not os.path.exists(secure_storage_on)  # held: no file written by anyone


def test_a_rotation_started_by_an_earlier_build_still_takes_the_rename_leg():
    """States written before the rename leg existed have no ``rename`` field; their new key is key2."""
    earlier = {k: v for k, v in started().items() if k != "rename"}
    assert rs.next_state(dict(earlier, phase="retire"))[1]["phase"] == "rename-add"
    assert rs.rewrites_in(earlier) == 2 and rs.holds_new_units(dict(earlier, phase="retire"))
    by_hand = {k: v for k, v in started("key5", ("key5",)).items() if k != "rename"}
    assert rs.next_state(dict(by_hand, phase="retire"))[1]["phase"] == "done"


def publish_ack(juju, acknowledgement):
    """A unit's acknowledgement on the peer relation, as it publishes it at hook exit."""
    juju["peer"].setdefault(acknowledgement["unit"], {})["vault-kv-rotation-ack"] = json.dumps(acknowledgement)


def two_units_in_rewrite(juju, vault):
    """app/0 (the leader) and app/1, both in phase rewrite with the phase's keys; returns the state."""
    from charmhelpers.core import hookenv

    units = {"app/0": {"status": "active"}, "app/1": {"status": "active"}}
    hookenv.goal_state.side_effect = lambda: {"units": units}
    rewrite = dict(started(), phase="rewrite")
    vault.data["charm-app/kv/app"] = {"encryption_key": NEW, rs.ROTATION_KEY: rewrite}
    for unit in units:
        publish_ack(juju, ack(rewrite, [("key2", NEW), ("key1", OLD)], unit=unit))
    return rewrite


def test_the_leader_waits_for_a_dying_unit_to_go_before_any_phase_starts(juju, vault, flags, secure_storage_on):
    from charmhelpers.core import hookenv

    from charms.layer import vault_kv
    from charms.layer.vault_kv.secure_storage import coordination

    units = {"app/0": {"status": "active"}, "app/1": {"status": "dying"}}
    hookenv.goal_state.side_effect = lambda: {"units": units}
    retire = dict(started(), phase="retire")
    vault.data["charm-app/kv/app"] = {"encryption_key": NEW, rs.ROTATION_KEY: retire}
    publish_ack(juju, ack(retire, [("key2", NEW)]))
    app_kv = vault_kv.VaultAppKV()
    assert coordination.advance(app_kv, retire)["phase"] == "retire"  # app/1 may still read key1 as the old key
    assert coordination.status_report()["waiting-for"] == "app/1 (to be gone)"
    coordination.at_hook_exit()
    assert juju["status"][0] == "waiting" and "waits for app/1 to be removed" in juju["status"][1]
    del units["app/1"]
    assert coordination.advance(app_kv, retire)["phase"] == "rename-add"
    add = started()
    publish_ack(juju, ack(add, [("key1", OLD), ("key2", NEW)]))
    units["app/1"] = {"status": "dying"}  # its apiserver may still run add's file, which promote's writes past
    assert coordination.advance(app_kv, add)["phase"] == "add"
    units["app/1"] = {"status": "dead"}
    assert coordination.advance(app_kv, add)["phase"] == "add"
    del units["app/1"]
    assert coordination.advance(app_kv, add)["phase"] == "promote"


def test_a_new_unit_with_an_identity_only_file_is_held_and_none_is_held_when_vaults_key_is_not_the_states(
    juju, vault, flags, secure_storage_on
):
    from charms.layer.vault_kv.secure_storage import rotation

    promote = dict(started(), phase="promote")
    os.makedirs(os.path.dirname(secure_storage_on), exist_ok=True)
    identity_only = {
        "kind": "EncryptionConfig",
        "apiVersion": "v1",
        "resources": [{"resources": ["secrets"], "providers": [{"identity": {}}]}],
    }
    with open(secure_storage_on, "w") as handle:
        handle.write(yaml.safe_dump(identity_only))
    assert rotation.is_held_new_unit(promote, NEW)
    assert rotation.is_held_new_unit(promote, OLD)  # put back by a refresh: the leader restores the new one
    assert not rotation.is_held_new_unit(promote, "C" * 32)  # Vault holds a key the state does not speak of


def test_vault_put_back_to_the_old_key_mid_rotation_changes_no_file_and_the_leader_restores_the_new_one(
    juju, vault, flags, secure_storage_on
):
    """kubernetes-control-plane 1.28's migrate handler, on a refresh that moves the backend, writes the
    leader's file's first key to Vault: one phase behind, the old key."""
    from charms.layer import vault_kv
    from charms.layer.vault_kv.secure_storage import coordination, rotation

    promote = dict(started(), phase="promote")
    ec.write_named_keys(secure_storage_on, [("key2", NEW), ("key1", OLD)])
    before = open(secure_storage_on).read()
    assert rs.went_back_to_the_old_key(promote, OLD) and not rs.went_back_to_the_old_key(started(), OLD)
    assert not rs.went_back_to_the_old_key(promote, NEW) and not rs.went_back_to_the_old_key(promote, "C" * 32)
    assert rotation.sync_file(promote, OLD) is False and open(secure_storage_on).read() == before
    retire = dict(promote, phase="retire")
    ec.write_named_keys(secure_storage_on, [("key2", NEW)], drop=[OLD])
    assert rotation.sync_file(retire, OLD) is False and keys_of(secure_storage_on) == [("key2", NEW)]

    vault.data["charm-app/kv/app"] = {"encryption_key": OLD, rs.ROTATION_KEY: promote}
    app_kv = vault_kv.VaultAppKV()
    coordination.restore_vault_key(app_kv, promote)
    assert vault.data["charm-app/kv/app"]["encryption_key"] == NEW
    assert vault.data["charm-app/kv/app"][rs.ROTATION_KEY] == promote  # the rest of the app data kept
    assert rotation.is_held_new_unit(promote, OLD) is False  # this unit has its file


def test_a_leader_that_cannot_read_etcd_confirms_with_the_census_another_unit_verified(
    juju, vault, flags, secure_storage_on, monkeypatch
):
    """A unit added during a rotation is held without a file (its kube-apiserver never configured); once it is
    leader in a rewrite phase it cannot take a census.  finish-encryption-key-rotation on another unit takes it
    there and hands it on (peer relation); the leader confirms with it and leaves the phase."""
    from charms.layer import vault_kv
    from charms.layer.vault_kv.secure_storage import coordination, etcd_census, rewrite_check

    rewrite = two_units_in_rewrite(juju, vault)
    readable = {"app/0": False, "app/1": True}  # app/0, the leader, has no kube-apiserver arguments

    def take(write_key, resources, args_path=None):
        if not readable[juju["unit"]]:
            raise etcd_census.EtcdUnavailable("kube-apiserver's arguments are not at {}".format(args_path))
        return etcd_census.Census(write_key, 3, 3, [], {write_key: 3})

    monkeypatch.setattr(etcd_census, "take", take)
    with pytest.raises(rs.RotationRefused, match="on another unit whose kube-apiserver runs"):
        coordination.confirm_rewrite()
    coordination.at_hook_exit()
    assert "run finish-encryption-key-rotation on app/1" in juju["status"][1]
    assert rewrite_check.verified_elsewhere(rewrite) is None

    juju["unit"], juju["leader"] = "app/1", False  # the operator runs it on app/1
    rewrite_check._found.clear()
    with pytest.raises(rs.RotationRefused, match="leader"):
        coordination._verify_for_the_leader(force=True)
    answer = coordination.confirm_rewrite()
    assert answer["verified"] == "3 of 3 Secrets under key2"
    assert rs.is_running(vault_kv.VaultAppKV()[rs.ROTATION_KEY]) and not vault.data["charm-app/kv/app"][
        rs.ROTATION_KEY
    ].get("confirmed")

    juju["unit"], juju["leader"] = "app/0", True  # the leader's hook that the peer relation change gives it
    rewrite_check._found.clear()
    vault_kv.reset_cached_state()
    assert rewrite_check.verified_elsewhere(rewrite) == "app/1"
    following = coordination.advance(vault_kv.VaultAppKV(), rewrite)
    assert following["phase"] == "retire"
    assert rewrite_check.verified_elsewhere(following) is None  # a census of one phase confirms no other


def test_a_census_from_another_unit_that_the_leaders_own_contradicts_is_never_used_again(
    juju, vault, flags, secure_storage_on, monkeypatch
):
    """The leader's census, when it can take one, decides; a census it contradicted (or one taken before a
    confirmation was withdrawn) does not come back when etcd fails the leader for a moment later."""
    from charms.layer import vault_kv
    from charms.layer.vault_kv.secure_storage import coordination, etcd_census, rewrite_check

    two_units_in_rewrite(juju, vault)
    etcd = {"app/0": "clean", "app/1": "clean"}

    def take(write_key, resources, args_path=None):
        found = etcd[juju["unit"]]
        if found == "down":
            raise etcd_census.EtcdUnavailable("etcd could not be read")
        if found == "clean":
            return etcd_census.Census(write_key, 3, 3, [], {write_key: 3})
        return etcd_census.Census(write_key, 3, 2, ["ns/late"], {write_key: 2, "key1": 1})

    monkeypatch.setattr(etcd_census, "take", take)

    def as_unit(unit, leader):
        juju["unit"], juju["leader"] = unit, leader
        rewrite_check._found.clear()
        vault_kv.reset_cached_state()

    def state_now():
        return vault.data["charm-app/kv/app"][rs.ROTATION_KEY]

    as_unit("app/1", False)
    coordination.confirm_rewrite()  # app/1 verifies: clean there
    as_unit("app/0", True)
    etcd["app/0"] = "unclean"  # a Secret written under key1 since (a charm's handler, a rollback)
    assert coordination.advance(vault_kv.VaultAppKV(), state_now())["phase"] == "rewrite"
    assert not state_now().get("confirmed") and state_now()["withdrawals"] == 1
    etcd["app/0"] = "down"  # a passing etcd failure on the leader
    as_unit("app/0", True)
    assert coordination.advance(vault_kv.VaultAppKV(), state_now())["phase"] == "rewrite"  # the stale one: no
    as_unit("app/1", False)
    coordination.confirm_rewrite()  # verified again, after the Secret was rewritten
    as_unit("app/0", True)
    assert coordination.advance(vault_kv.VaultAppKV(), state_now())["phase"] == "retire"


def test_units_added_after_every_unit_with_the_keys_was_removed_get_their_file_where_key1_keeps_its_key(
    juju, vault, flags, secure_storage_on
):
    """Found by the explorer: every unit that had the keys was removed during a rotation; the unit left had
    been added since and was held without a file, so no apiserver ran and the rotation could never finish
    (its rewrite could be neither done nor verified; force=true would have lost the Secrets under key2).
    Where the charm's own first file gives key1 no second key (retire and the rename phases), a unit with no
    one to keep in step is not held; in promote and rewrite, where key1 is still the old key, it is."""
    from charmhelpers.core import hookenv

    from charms.layer.vault_kv.secure_storage import rotation

    units = {"app/0": {"status": "active"}, "app/1": {"status": "dying"}}
    hookenv.goal_state.side_effect = lambda: {"units": units}
    for phase in ("promote", "rewrite", "retire", "rename-add", "rename-promote", "rename-rewrite"):
        state = dict(started(), phase=phase)
        fits = phase not in ("promote", "rewrite")
        publish_ack(juju, ack(state, [("key2", NEW), ("key1", OLD)], unit="app/1"))
        assert rotation.is_held_new_unit(state, NEW) is not fits, phase  # only app/1 had a file, and it is dying
        units["app/2"] = {"status": "active"}
        publish_ack(juju, ack(state, [("key2", NEW), ("key1", OLD)], unit="app/2"))
        assert rotation.is_held_new_unit(state, NEW), phase  # another unit has a file: held as ever
        del units["app/2"]
        held_only = dict(ack(state, [], unit="app/2"), held=True)
        units["app/2"] = {"status": "active"}
        publish_ack(juju, held_only)
        assert rotation.is_held_new_unit(state, NEW) is not fits, phase  # the other one is held too
        del units["app/2"]
