"""Key rotation: the phase rules (rotation_state) and the named-key file writes (encryption_config)."""

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


def test_once_done_the_key_is_also_named_key1_as_the_charm_names_it_on_a_new_unit():
    _, done = rs.next_state(dict(started(), phase="retire"))
    assert rs.file_plan(done, NEW) == ([("key2", NEW), ("key1", NEW)], [])
    assert rs.file_plan(done, OLD) is None  # Vault's key set by hand since: not this rotation's


def test_entering_promote_makes_the_new_key_vaults_key_in_the_same_write():
    updates, following = rs.next_state(started())
    assert following["phase"] == "promote"
    assert updates == {rs.ROTATION_KEY: following, "encryption_key": NEW}
    updates, following = rs.next_state(following)
    assert following["phase"] == "rewrite" and set(updates) == {rs.ROTATION_KEY}


def test_retire_waits_for_the_rewrite_confirmation_and_done_forgets_both_keys():
    rewrite = dict(started(), phase="rewrite")
    with pytest.raises(rs.RotationRefused, match="not confirmed"):
        rs.next_state(rewrite)
    _, retire = rs.next_state(rs.confirm(rewrite))
    assert retire["phase"] == "retire"
    updates, done = rs.next_state(retire)
    assert done["phase"] == "done" and OLD not in repr(updates) and NEW not in repr(updates)
    assert done["fingerprint"] == rs.key_fingerprint(NEW)


def test_the_rewrite_is_confirmed_only_in_the_rewrite_phase():
    with pytest.raises(rs.RotationRefused, match="no rotation"):
        rs.confirm(None)
    for phase in ("add", "promote", "retire"):
        with pytest.raises(rs.RotationRefused, match="phase " + phase):
            rs.confirm(dict(started(), phase=phase))


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
    with pytest.raises(rs.RotationRefused, match="leader"):
        coordination.confirm_rewrite()
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
