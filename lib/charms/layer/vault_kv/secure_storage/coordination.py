"""The leader's side of a key rotation, the operator's actions, and each unit's report at hook exit.

- ``advance``: the leader hands the turn on (``rolling``: one unit at a time
  changes its file) and enters the next phase once every unit acknowledged
  the current one (the rewrite phases also wait for the operator's
  confirmation).
- ``start`` / ``confirm_rewrite`` / ``status_report``: what the actions
  ``rotate-encryption-key``, ``finish-encryption-key-rotation`` and
  ``encryption-key-status`` do.
- ``at_hook_exit``: a unit relays the leader's turn if it is the witness,
  records that its apiserver runs with the file and acknowledges the phase
  on the peer relation; the leader shows the rolling order in its status.

Nothing here logs, reports or raises a key: keys appear only as
``rotation_state.key_fingerprint``.
"""

from typing import Any, Dict, List, Optional

from charmhelpers.core import hookenv

from charms.layer import vault_kv
from charms.layer.vault_kv import names
from charms.layer.vault_kv import status as vault_kv_status
from charms.layer.vault_kv.secure_storage import (
    KEY,
    config_path,
    encryption_config,
    etcd_census,
    rewrite_check,
    rolling,
    rotation,
    rotation_state,
)

RotationRefused = rotation_state.RotationRefused


def _log(message: str, level: str = hookenv.INFO) -> None:
    hookenv.log("vault-kv: " + message, level=level)


# -- the leader ------------------------------------------------------------------


def advance(app_kv: Any, state: Dict[str, Any], verified: bool = False) -> Dict[str, Any]:
    """The leader's step: hand the turn on, or enter the next phase once every unit acknowledged this one.

    See ``rolling``: within a phase one unit at a time changes its file;
    the turn passes on once the holder acknowledged.  Entering a phase
    hands out its first turn in the same hook.  A rewrite phase is left only
    through ``rewrite_check.may_leave`` (etcd shows every Secret under the
    write key; ``verified``: the census was just taken by the operator's
    confirmation).  Returns the state now in force; raises VaultNotReady when Vault cannot be written (the phase
    stays; the next hook tries again).
    """
    try:
        units = rotation.application_units()
    except RotationRefused as error:
        _log("key rotation held: {}".format(error), hookenv.WARNING)
        return state
    acks = rotation.read_acknowledgements()
    me = hookenv.local_unit()
    for _ in range(2):  # at most: enter the next phase, then hand out its first turn
        decision = rolling.decide(state, units, acks, rolling.read_turn(), me, rolling.now())
        if decision.turn is not None:
            rolling.publish_turn(decision.turn)
            _log("key rotation: phase {}, turn to {}".format(state["phase"], decision.turn["unit"]))
        if not decision.enter_next or _waiting_for(state, units, acks):
            return state
        if state["phase"] in rotation_state.REWRITES:
            state, leave = rewrite_check.may_leave(app_kv, state, verified)
            if not leave:
                return state
        try:
            updates, following = rotation_state.next_state(state)
        except RotationRefused:  # the rewrite is not confirmed yet
            return state
        app_kv.update(updates)
        rotation.follow(following)
        _log("key rotation {}: entered phase {}".format(state["id"][:8], following["phase"]))
        state = following
        if not rotation_state.is_running(state):
            rolling.publish_turn(None)
            return state
    return state


def _waiting_for(
    state: Dict[str, Any], units: List[str], acks: Dict[str, Any], dying: Optional[List[str]] = None
) -> List[str]:
    """What the leader waits for before the next phase: the units that have not acknowledged this one, and
    units being removed, until they are gone.

    A dying unit is asked no acknowledgement (it has left the peer relation,
    and may never run another hook if its machine is lost), and it never
    changes its file again; but its apiserver runs until its stop hook, with
    the file of this phase or the one before.  Adjacent phases' files read
    each other's Secrets, two phases apart do not (a write key missing, or
    ``key1`` standing for another key): so no phase starts until it is gone.
    ``dying``: goal-state's dying units, when the caller read them already.
    """
    if dying is None:
        dying = rotation.dying_units()
    return rotation_state.waiting_for(state, units, acks) + ["{} (to be gone)".format(unit) for unit in dying]


def restore_vault_key(app_kv: Any, state: Dict[str, Any]) -> None:
    """Put the rotation's current key back in Vault if something wrote the old one over it (leader only).

    See ``rotation_state.went_back_to_the_old_key``.  Raises VaultNotReady
    when Vault cannot be written (the next hook tries again).
    """
    if rotation_state.went_back_to_the_old_key(state, app_kv.get(KEY)):
        app_kv[KEY] = rotation_state.vault_key_in(state)
        _log(
            "key rotation {}: Vault held the old key in phase {} (a refresh's migration?); put the new one back".format(
                state["id"][:8], state["phase"]
            ),
            hookenv.WARNING,
        )


def _leader_store() -> Any:
    if not hookenv.is_leader():
        raise RotationRefused("run this action on the leader unit")
    if not config_path():
        raise RotationRefused("secure storage is off (the layer option encryption-config-path is empty)")
    return vault_kv.VaultAppKV()


def start() -> Dict[str, str]:
    """Start a rotation (leader only); refused while one runs or while this unit's file is not in line."""
    app_kv = _leader_store()
    state = rotation.read_state(app_kv)
    rotation_state.refuse_start(state)
    current = app_kv.get(KEY)
    if not encryption_config.valid_key(current):
        raise RotationRefused("there is no encryption key in Vault yet")
    in_file = rotation.file_keys() or []
    if not in_file or in_file[0][1] != current:
        raise RotationRefused("this unit's encryption configuration does not hold Vault's key yet; try again later")
    rewrite = _action_param("rewrite") or "manual"
    if rewrite not in ("manual", rewrite_check.AUTO):
        raise RotationRefused("rewrite is manual or auto, not {!r}".format(rewrite))
    following = rotation_state.start(
        current, in_file[0][0], [name for name, _ in in_file], encryption_config.generate_key(), rewrite=rewrite
    )
    app_kv[rotation_state.ROTATION_KEY] = following  # the new key exists from here on, in Vault only
    rotation.follow(following)
    _log("key rotation {}: started, phase add".format(following["id"][:8]))
    advance(app_kv, following)  # the first turn: a Juju event carries the rotation from here
    return {
        "id": following["id"],
        "phase": following["phase"],
        "old-key": rotation_state.key_fingerprint(current),
        "new-key": rotation_state.key_fingerprint(following["new"]["value"]),
        "rewrite": rewrite,
        "next": "every unit adds the new key as a read key; follow with the encryption-key-status action; "
        + rotation_state.NO_REFRESH,
    }


def _action_param(name: str) -> Any:
    """An action parameter (a string or a boolean); None when not given or not in an action."""
    try:
        value = hookenv.action_get(name)
    except Exception:  # not in an action (a hook), or the tool failed: the default
        return None
    return value if isinstance(value, (str, bool)) else None


def confirm_rewrite() -> Dict[str, str]:
    """Record that the stored Secrets were rewritten with the new key (in a rewrite phase).

    On the leader: refused while etcd shows Secrets not under the new write
    key, naming the first of them, or while etcd cannot be read (the answer
    says why), unless ``force=true``: then the operator's word is taken, and
    logged as such.  On another unit: verified there and handed to the
    leader (``_verify_for_the_leader``).
    """
    force = _action_param("force") in (True, "true", "True")
    if not hookenv.is_leader():
        return _verify_for_the_leader(force)
    app_kv = _leader_store()
    state = rotation.read_state(app_kv)
    rotation_state.confirm(state)  # refused outside a rewrite phase
    census = None if force else rewrite_check.refuse_unless_rewritten(state)  # type: ignore[arg-type]
    state = rotation_state.confirm(state, forced=force)
    app_kv[rotation_state.ROTATION_KEY] = state
    if force:
        _log(
            "key rotation {}: rewrite confirmed with force, not verified in etcd".format(state["id"][:8]),
            hookenv.WARNING,
        )
    else:
        _log("key rotation {}: rewrite confirmed: {}".format(state["id"][:8], census.progress()))
    following = advance(app_kv, state, verified=True)  # on to the next phase now, if every unit is there
    return {
        "id": state["id"],
        "phase": following["phase"],
        "verified": "no: confirmed with force=true" if force else census.progress(),
        "next": "every unit removes the old key, one at a time; follow with encryption-key-status",
    }


def _verify_for_the_leader(force: bool) -> Dict[str, str]:
    """``finish-encryption-key-rotation`` on a unit other than the leader: the census taken here, handed on.

    For a leader that cannot read etcd: a unit added during the rotation is
    held without a file, so its kube-apiserver was never configured, and if
    it becomes leader it has no etcd arguments to take a census with.  This
    unit's census goes on the peer relation; the leader confirms with it in
    the hook that gives it (``rewrite_check.verified_elsewhere``).  Nothing
    is written to Vault from here: only the leader changes the rotation.
    """
    if not config_path():
        raise RotationRefused("secure storage is off (the layer option encryption-config-path is empty)")
    if force:
        raise RotationRefused("force=true is the leader's to take: run it on the leader unit")
    state = rotation.read_state(vault_kv.VaultAppKV())
    rotation_state.confirm(state)  # refused outside a rewrite phase
    found = rewrite_check.refuse_unless_rewritten(state, on_leader=False)  # type: ignore[arg-type]
    me = hookenv.local_unit()
    if not rolling.publish_verification(rewrite_check.verification_record(state, me, found)):  # type: ignore
        raise RotationRefused("no peer relation {} to hand the census to the leader on".format(names.PEER_RELATION))
    _log(
        "key rotation {}: rewrite verified on {}: {}; handed to the leader".format(
            state["id"][:8], me, found.progress()
        )
    )
    return {
        "id": state["id"],
        "phase": state["phase"],
        "verified": found.progress(),
        "next": "the leader confirms the rewrite at its next hook (soon: this census reaches it as a peer relation"
        " change); follow with encryption-key-status",
    }


# -- reports ---------------------------------------------------------------------------


def _key_list(keys: Any) -> str:
    """``name:fingerprint`` of each key, the write key first."""
    if not isinstance(keys, list):
        return "not reported"
    return " ".join("{}:{}".format(item[0], item[1] or "unreadable") for item in keys if isinstance(item, list))


def _action_key(unit: str) -> str:
    return unit.replace("/", "-")


def status_report() -> Dict[str, str]:
    """Phase, and per unit: key names, fingerprints, write key, and whether it matches the others."""
    app_kv = vault_kv.VaultAppKV()
    state = rotation.read_state(app_kv)
    me = hookenv.local_unit()
    mine = rotation.file_keys() or []
    report: Dict[str, str] = {
        "phase": (state or {}).get("phase", "none"),
        "vault-key": rotation_state.key_fingerprint(app_kv[KEY]) if app_kv.get(KEY) else "none",
        "this-unit": _key_list(
            [[name, rotation_state.key_fingerprint(value) if value else None] for name, value in mine]
        ),
    }
    if not rotation_state.is_running(state):
        return report
    report["rotation"] = state["id"]
    report["confirmed"] = str(bool(state.get("confirmed"))).lower()
    try:
        units = rotation.application_units()
    except RotationRefused:
        units = [me]
    acks = rotation.read_acknowledgements()
    current = {unit: ack for unit, ack in acks.items() if ack.get("id") == state["id"]}
    lists = {unit: ack.get("keys") for unit, ack in current.items()}
    for unit in units:
        prefix = "units.{}.".format(_action_key(unit))
        ack, keys = current.get(unit), lists.get(unit)
        report[prefix + "phase"] = ack.get("phase", "") if ack else "not reported"
        report[prefix + "keys"] = (
            "held: no file until a phase the charm's own file fits" if ack and ack.get("held") else _key_list(keys)
        )
        report[prefix + "write-key"] = str(keys[0][0]) if isinstance(keys, list) and keys else "unknown"
        report[prefix + "same-as-others"] = str(
            bool(keys) and all(other == keys for name, other in lists.items() if name != unit)
        ).lower()
    report["waiting-for"] = ", ".join(_waiting_for(state, units, acks)) or "none"
    turn = rolling.turn_of(state, rolling.read_turn())
    leader = me if rolling.is_leader() else (turn or {}).get("leader", "")
    report["rolling-order"] = ", ".join(rolling.order(units, leader))
    report["applying"] = turn["unit"] if turn and turn["unit"] not in _acked(state, units, acks) else "none"
    if turn and rolling.overdue(turn, rolling.now()) and report["applying"] != "none":
        report["blocks"] = turn["unit"]
    report["next"] = rotation_state.describe(state, []) or "none"
    if state["phase"] in rotation_state.REWRITES:
        try:
            census = rewrite_check.census(state)
            report["secrets"] = census.progress()
            report["secrets-stored-under"] = ", ".join(
                "{} {}".format(name, count) for name, count in sorted(census.stored_under.items())
            )
            if not census.clean:
                report["secrets-not-under-write-key"] = census.first_missing()
        except etcd_census.EtcdUnavailable as error:
            report["secrets"] = "cannot be verified: {}".format(error)
    return report


def _acked(state: Dict[str, Any], units: List[str], acks: Dict[str, Any]) -> List[str]:
    return [unit for unit in units if rotation_state.acknowledged(state, acks.get(unit))]


# -- every unit, at hook exit ---------------------------------------------------------------


def at_hook_exit() -> None:
    """Relay the leader's turn if asked, record a restart that happened, acknowledge the phase, show it.

    Nothing escapes a hook's end.
    """
    try:
        rolling.relay_if_witness()
    except Exception as error:  # never fail a hook at its very end
        _log("key rotation turn not relayed: unexpected {}".format(type(error).__name__), hookenv.ERROR)
    try:
        _report_at_exit()
    except vault_kv.VaultNotReady as error:
        _log("key rotation not acknowledged yet: {}".format(error), hookenv.DEBUG)
    except Exception as error:  # never fail a hook at its very end
        _log("key rotation not acknowledged: unexpected {}".format(type(error).__name__), hookenv.ERROR)


def _report_at_exit() -> None:
    app_kv = vault_kv.VaultAppKV.loaded()
    if app_kv is None or not config_path():
        return
    restarted = rotation.note_loaded_if_restarted()
    state = rotation.read_state(app_kv)
    leader = rolling.is_leader()
    if not rotation_state.is_running(state):
        if leader and rolling.read_turn() is not None:
            rolling.publish_turn(None)  # the rotation is over: no turn left behind
            vault_kv_status.resolved()  # and no progress line
        rotation.forget_seen()
        return
    me = hookenv.local_unit()
    held = rotation.is_held_new_unit(state, app_kv.get(KEY))
    ack: Optional[Dict[str, Any]]
    if held:
        ack = rotation_state.held_acknowledgement(state, me)
    else:
        ack = rotation.settled_acknowledgement(state, me) if restarted else None
        turn = rolling.turn_of(state, rolling.read_turn())
        if ack is None and turn is not None and turn["unit"] == me:
            ack = rotation.not_up_report(state, me)  # its turn, its file changed, its apiserver not up
    if ack is not None and not rolling.publish_acknowledgement(ack):
        _log("key rotation: no peer relation {} to acknowledge on yet".format(names.PEER_RELATION))
    settled = ack is not None and rotation_state.acknowledged(state, ack)
    rotation.remember_seen(settled)
    if not leader:
        return
    if held:
        # a held leader has no ready, so write_encryption_config does not run: it moves the phase on here,
        # then records the layer's hashes and digest again (the layer's own exit may have run before this one)
        restore_vault_key(app_kv, state)
        following = advance(app_kv, state)
        if following is not state:
            from charms.layer.vault_kv import lifecycle

            lifecycle.at_hook_exit()
            state = following
    _show_progress(state, ack)


def _show_progress(state: Dict[str, Any], own_ack: Optional[Dict[str, Any]]) -> None:
    """The leader's status: the rolling order, who applies, who blocks, or the operator's rewrite."""
    if not rotation_state.is_running(state):
        vault_kv_status.resolved()
        return
    try:
        units = rotation.application_units()
    except RotationRefused:
        return
    me = hookenv.local_unit()
    acks = rotation.read_acknowledgements()
    if own_ack is not None:
        acks[me] = own_ack
    dying = rotation.dying_units()
    waiting = _waiting_for(state, units, acks, dying)
    unacknowledged = rotation_state.waiting_for(state, units, acks)
    others_dying = [unit for unit in dying if unit != me]  # a dying leader: the next one goes on
    rewrite_asked = state["phase"] in rotation_state.REWRITES and not state.get("confirmed")
    if others_dying and not rewrite_asked and not unacknowledged:
        vault_kv_status.show_at_exit(
            "waiting",
            "key rotation phase {}: every unit done; the next phase waits for {} to be removed (its"
            " kube-apiserver may still run with an earlier file); if its machine is gone: juju remove-unit"
            " --force {}; {}".format(
                state["phase"], ", ".join(others_dying), " ".join(others_dying), rotation_state.NO_REFRESH
            ),
        )
        return
    if state["phase"] in rotation_state.REWRITES and not unacknowledged:
        running = [
            unit
            for unit in units
            if unit != me and rotation_state.acknowledged(state, acks.get(unit)) and not acks[unit].get("held")
        ]
        vault_kv_status.show_at_exit(*rewrite_check.status_line(state, running))
        return
    turn = rolling.turn_of(state, rolling.read_turn())
    progress = rolling.describe_turn(state, units, acks, turn, me)
    if turn and turn["unit"] in waiting and rolling.overdue(turn, rolling.now()):
        vault_kv_status.show_at_exit(
            "blocked",
            "key rotation phase {}: {} has not confirmed for {} min that its kube-apiserver runs with the new"
            " encryption configuration; no other unit restarts until it does: repair it or remove it"
            " (juju remove-unit {}); {}".format(
                state["phase"], turn["unit"], rolling.PATIENCE_SECONDS // 60, turn["unit"], rotation_state.NO_REFRESH
            ),
        )
        return
    vault_kv_status.show_at_exit(
        "maintenance", "key rotation phase {}: {}; {}".format(state["phase"], progress, rotation_state.NO_REFRESH)
    )
