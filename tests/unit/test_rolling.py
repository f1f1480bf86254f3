"""One kube-apiserver at a time: the rotation's turn (rolling), and a changed flag held back until it (store)."""

import json

from charms.layer.vault_kv.secure_storage import rolling
from charms.layer.vault_kv.secure_storage import rotation_state as rs

OLD, NEW = "A" * 32, "B" * 32
UNITS = ["app/0", "app/1", "app/2"]
LEADER = "app/0"
T = 1000.0


def started(phase="add"):
    return dict(rs.start(OLD, "key1", ("key1",), NEW), phase=phase)


def acked(state, *units):
    """Acknowledgements of ``state``'s phase by ``units`` (their files hold the phase's plan)."""
    keys, _ = rs.phase_plan(state)
    return {unit: rs.acknowledgement(state, unit, keys) for unit in units}


def test_units_take_their_turns_by_number_and_the_leader_last():
    assert rolling.order(["app/10", "app/2", "app/0", "app/1"], "app/1") == ["app/0", "app/2", "app/10", "app/1"]


def test_the_first_turn_of_a_phase_goes_to_the_first_unit_and_waits_for_its_acknowledgement():
    state = started()
    first = rolling.decide(state, UNITS, {}, None, LEADER, T)
    assert first.turn == {"id": state["id"], "phase": "add", "unit": "app/1", "since": T, "leader": LEADER}
    assert not first.enter_next and first.holder == "app/1"
    waiting = rolling.decide(state, UNITS, {}, first.turn, LEADER, T + 5)
    assert waiting.turn is None and waiting.holder == "app/1" and not waiting.enter_next
    after = rolling.decide(state, UNITS, acked(state, "app/1"), first.turn, LEADER, T + 9)
    assert after.turn["unit"] == "app/2" and after.turn["since"] == T + 9


def test_the_leaders_own_turn_has_two_stages_relayed_by_a_witness_then_the_phase_moves_on():
    state = started("promote")
    acks = acked(state, "app/1", "app/2")
    mine = rolling.decide(state, UNITS, acks, {"id": state["id"], "phase": "promote", "unit": "app/2"}, LEADER, T)
    assert mine.turn["unit"] == LEADER and mine.turn["stage"] == rolling.GO and mine.turn["witness"] == "app/1"
    # it restarts in its next hook only (the turn as that hook found it), and passes nothing on before its ack
    assert rolling.may_apply(state, mine.turn, LEADER, leader=True, alone=False)
    assert not rolling.may_apply(state, dict(mine.turn, stage=None), LEADER, leader=True, alone=False)
    assert rolling.decide(state, UNITS, acks, mine.turn, LEADER, T).holder == LEADER  # not acknowledged yet
    everyone = dict(acks, **acked(state, LEADER))
    assert rolling.decide(state, UNITS, everyone, mine.turn, LEADER, T).enter_next


def test_only_the_holder_changes_its_file_and_only_for_the_current_phase():
    state = started("retire")
    turn = {"id": state["id"], "phase": "retire", "unit": "app/1"}
    assert rolling.may_apply(state, turn, "app/1", leader=False, alone=False)
    assert not rolling.may_apply(state, turn, "app/2", leader=False, alone=False)
    assert not rolling.may_apply(state, dict(turn, phase="promote"), "app/1", leader=False, alone=False)
    assert not rolling.may_apply(state, dict(turn, id="other"), "app/1", leader=False, alone=False)
    assert not rolling.may_apply(state, None, "app/1", leader=False, alone=False)
    assert rolling.may_apply(state, None, LEADER, leader=True, alone=True)  # nobody else's apiserver to keep up


def test_a_holder_that_went_away_loses_the_turn_and_a_witness_that_went_away_is_replaced():
    state = started()
    turn = {"id": state["id"], "phase": "add", "unit": "app/1"}
    assert rolling.decide(state, ["app/0", "app/2"], {}, turn, LEADER, T).turn["unit"] == "app/2"
    mine = {"id": state["id"], "phase": "add", "unit": LEADER, "stage": rolling.GO, "witness": "app/1"}
    acks = acked(state, "app/2")
    replaced = rolling.decide(state, ["app/0", "app/2"], acks, mine, LEADER, T)
    assert replaced.turn["witness"] == "app/2" and replaced.turn["stage"] == rolling.GO


def test_a_unit_granted_its_turn_before_it_became_leader_takes_it_as_a_leader_from_its_next_hook():
    state = started()
    turn = {"id": state["id"], "phase": "add", "unit": "app/1"}
    decision = rolling.decide(state, UNITS, acked(state, "app/0"), turn, "app/1", T)
    assert decision.turn["unit"] == "app/1" and decision.turn["stage"] == rolling.GO
    assert decision.turn["witness"] == "app/0"
    assert not rolling.may_apply(state, turn, "app/1", leader=True, alone=False)  # not in the hook it finds out


def test_the_rewrite_phases_hand_out_no_turn_every_unit_acknowledges_as_it_is():
    state = started("rewrite")
    decision = rolling.decide(state, UNITS, acked(state, "app/1"), None, LEADER, T)
    assert decision.turn is None and decision.holder == "app/2" and not decision.enter_next
    assert rolling.decide(state, UNITS, acked(state, *UNITS), None, LEADER, T).enter_next


def test_a_turn_is_overdue_after_the_patience_and_the_status_line_names_units_not_keys():
    state = started("promote")
    turn = {"id": state["id"], "phase": "promote", "unit": "app/1", "since": T}
    assert not rolling.overdue(turn, T + rolling.PATIENCE_SECONDS - 1)
    assert rolling.overdue(turn, T + rolling.PATIENCE_SECONDS + 1)
    line = rolling.describe_turn(state, UNITS, acked(state, "app/2"), turn, LEADER)
    assert line == "app/1 applying; then app/0; 1 of 3 done"
    assert OLD not in line and NEW not in line


def test_acknowledgements_and_the_relay_travel_on_the_peer_relation(juju):
    state = started()
    ack = rs.acknowledgement(state, "app/0", [("key1", OLD), ("key2", NEW)])
    assert rolling.publish_acknowledgement(ack)
    juju["peer"]["app/1"] = {"vault-kv-rotation-ack": json.dumps(dict(ack, unit="app/1"))}
    juju["peer"]["app/2"] = {"vault-kv-rotation-ack": json.dumps(dict(ack, unit="app/9"))}  # not its own: ignored
    assert set(rolling.read_acknowledgements()) == {"app/0", "app/1"}
    assert OLD not in json.dumps(juju["peer"]) and NEW not in json.dumps(juju["peer"])

    turn = {"id": state["id"], "phase": "add", "unit": "app/2", "stage": rolling.GO, "witness": "app/0"}
    juju["leader"] = False
    juju["leader_data"]["vault-kv-rotation-turn"] = json.dumps(turn)
    rolling.relay_if_witness()
    assert juju["peer"]["app/0"]["vault-kv-rotation-seen"] == rolling.token(turn)
    juju["peer"]["app/2"]["vault-kv-rotation-ack"] = json.dumps(dict(ack, unit="app/2"))  # the holder acknowledged
    rolling.relay_if_witness()
    assert juju["peer"]["app/0"]["vault-kv-rotation-seen"] == rolling.token(turn) + ":acknowledged"


def test_a_turn_published_in_a_hook_does_not_change_the_turn_that_hook_found(juju):
    juju["leader_data"]["vault-kv-rotation-turn"] = json.dumps({"unit": "app/1"})
    assert rolling.turn_at_start() == {"unit": "app/1"}
    rolling.publish_turn({"unit": "app/0", "stage": rolling.GO})
    assert rolling.turn_at_start() == {"unit": "app/1"}
    assert rolling.read_turn() == {"unit": "app/0", "stage": rolling.GO}
    assert json.loads(juju["leader_data"]["vault-kv-rotation-turn"])["unit"] == "app/0"


class TestAChangeHeldBackUntilTheUnitsTurn:
    """``hold_changes_while``: the flag waits; the hashes do not; the change is delivered once."""

    def test_a_held_change_raises_no_flag_is_recorded_and_is_delivered_once_released(self, vault, flags):
        from charms.layer import vault_kv
        from charms.layer.vault_kv import store

        held = {"now": True}

        def hold(_app_kv):
            return held["now"]

        vault.data["charm-app/kv/app"] = {"k": "v1"}
        vault_kv.VaultAppKV().update_hashes()
        flags.clear()
        store.hold_changes_while("k", hold)
        try:
            vault.data["charm-app/kv/app"] = {"k": "v2"}
            vault_kv.reset_cached_state()
            kv = vault_kv.VaultAppKV()
            assert "layer.vault-kv.app-kv.changed.k" not in flags and not kv.is_changed("k")
            kv.update_hashes()
            assert vault.data["charm-app/kv/app-hashes/0"]["k"] == store.value_hash("v2")  # recorded as seen

            vault_kv.reset_cached_state()  # a later hook, still held
            vault_kv.VaultAppKV().update_hashes()
            assert "layer.vault-kv.app-kv.changed.k" not in flags

            held["now"] = False  # this unit's turn
            vault_kv.reset_cached_state()
            kv = vault_kv.VaultAppKV()
            assert "layer.vault-kv.app-kv.changed.k" in flags and kv.is_changed("k")
            kv.update_hashes()
            flags.discard("layer.vault-kv.app-kv.changed.k")
            vault_kv.reset_cached_state()
            assert not vault_kv.VaultAppKV().is_changed("k")  # delivered once
        finally:
            store._change_holds.pop("k", None)

    def test_a_change_undone_while_held_is_never_delivered(self, vault, flags):
        from charms.layer import vault_kv
        from charms.layer.vault_kv import store

        held = {"now": True}
        vault.data["charm-app/kv/app"] = {"k": "v1"}
        vault_kv.VaultAppKV().update_hashes()
        store.hold_changes_while("k", lambda _kv: held["now"])
        try:
            vault.data["charm-app/kv/app"] = {"k": "v2"}  # put there, then put back (a refresh's migration)
            vault_kv.reset_cached_state()
            vault_kv.VaultAppKV().update_hashes()
            vault.data["charm-app/kv/app"] = {"k": "v1"}
            held["now"] = False
            vault_kv.reset_cached_state()
            flags.clear()
            assert not vault_kv.VaultAppKV().is_changed("k") and "layer.vault-kv.app-kv.changed.k" not in flags
        finally:
            store._change_holds.pop("k", None)

    def test_a_hold_that_fails_delivers_the_change(self, vault, flags):
        from charms.layer import vault_kv
        from charms.layer.vault_kv import store

        def broken(_app_kv):
            raise KeyError("x")

        vault.data["charm-app/kv/app"] = {"k": "v1"}
        vault_kv.VaultAppKV().update_hashes()
        store.hold_changes_while("k", broken)
        try:
            vault.data["charm-app/kv/app"] = {"k": "v2"}
            vault_kv.reset_cached_state()
            assert vault_kv.VaultAppKV().is_changed("k")
        finally:
            store._change_holds.pop("k", None)


def test_a_unit_holding_the_turn_changes_its_file_unless_it_is_being_removed(juju):
    from charmhelpers.core import hookenv

    from charms.layer.vault_kv.secure_storage import rotation

    state = started()
    juju["leader"], juju["unit"] = False, "app/1"
    juju["leader_data"]["vault-kv-rotation-turn"] = json.dumps({"id": state["id"], "phase": "add", "unit": "app/1"})
    units = {"app/0": {"status": "active"}, "app/1": {"status": "active"}}
    hookenv.goal_state.side_effect = lambda: {"units": units}
    assert rotation.may_change_file(state)
    hookenv.cache.clear()  # a later hook
    units["app/1"] = {"status": "dying"}
    assert not rotation.may_change_file(state)
    assert rotation.may_change_file(None)  # no rotation: the file follows Vault as always
