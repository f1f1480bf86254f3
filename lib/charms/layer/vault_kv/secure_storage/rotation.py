"""Coordinated rotation of the encryption key: what a unit does with the state in Vault.

The phases and their rules are in ``rotation_state``; this module reads and
writes the things they are about: the application's Vault data (the state,
written by the leader), each unit's acknowledgement (on the peer relation,
see ``rolling``), the unit's EncryptionConfiguration file, and the charm's
apiserver restart.

A unit acknowledges a phase only once the apiserver runs with the phase's
file, not merely once the file is written: after each change of the file
the layer clears ``kubernetes-control-plane.apiserver.configured`` (the flag
kubernetes-control-plane restarts the apiserver on) and counts the file as
loaded when the charm set that flag again, at the end of a hook that
succeeded.  The record of what was loaded is a small file beside the
charm (``LOADED_RECORD``), written at once: a hook that dies after the
file changed leaves the record behind, so its retry asks for the restart
again (unitdata would roll back with the hook and the restart be lost).
"""

import hashlib
import os
from typing import Any, Dict, List, Optional, Tuple

from charmhelpers.core import hookenv, unitdata
from charms.reactive import clear_flag, is_flag_set, set_flag

from charms.layer.vault_kv import names
from charms.layer.vault_kv.secure_storage import KEY, config_path, encryption_config, rolling, rotation_state

LOADED_RECORD = ".vault-kv-encryption-config-loaded"

NamedKeys = List[Tuple[str, Optional[str]]]


# -- the state, in the application's data ------------------------------------------


def read_state(app_kv: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The rotation state, None when there is none or it is not one this layer wrote.

    A state that does not have the expected shape is ignored (logged): the
    file then keeps every key it has, which never loses a Secret.
    """
    state = app_kv.get(rotation_state.ROTATION_KEY)
    if state is not None and not _well_formed(state):
        hookenv.log("vault-kv: the encryption key rotation state is malformed; ignored", level=hookenv.WARNING)
        state = None
    follow(state)
    return state


def follow(state: Optional[Dict[str, Any]]) -> None:
    """Keep ``layer.vault-kv.encryption-key.rotating`` as the state in Vault says, wherever it is read or written.

    A running rotation makes every hook ask Vault (phases, acknowledgements;
    see ``secure_storage.why_ask_vault``), so the flag must be up from the
    hook or action that started it, not only from the next file write.
    """
    if rotation_state.is_running(state):
        set_flag(names.ROTATING)
    else:
        clear_flag(names.ROTATING)


def _well_formed(state: Any) -> bool:
    if not isinstance(state, dict) or state.get("phase") not in rotation_state.PHASES:
        return False
    if state["phase"] == rotation_state.DONE:
        return isinstance(state.get("name"), str) and isinstance(state.get("fingerprint"), str)
    for which in ("old", "new"):
        part = state.get(which)
        if not (
            isinstance(part, dict)
            and isinstance(part.get("name"), str)
            and encryption_config.valid_key(part.get("value"))
        ):
            return False
    return isinstance(state.get("id"), str)


# -- a unit that joins while a rotation runs -------------------------------------------


def is_held_new_unit(state: Optional[Dict[str, Any]], vault_key: Any = None) -> bool:
    """Whether this unit has no key file yet and the rotation's phase holds such units (``holds_new_units``).

    "No key file" is the charm's view too: ``secure-storage.created`` unset,
    and nothing at the path or a file with no ``aescbc`` key (the identity-only
    file kubernetes-control-plane writes while it has no secure storage).  A
    unit that has its file follows the phase as any other; a unit that lost
    it (created set) is not new and waits for it.  When Vault's key is not the
    one the state speaks of (``file_plan`` gives no plan: set by hand, or put
    back by a move), the phases mean nothing and nobody is held.
    """
    if is_flag_set(names.SECURE_STORAGE_CREATED) or not rotation_state.holds_new_units(state):
        return False
    if (
        isinstance(vault_key, str)
        and rotation_state.file_plan(state, vault_key) is None
        and not rotation_state.went_back_to_the_old_key(state, vault_key)
    ):
        return False
    path = config_path()
    if not path:
        return False
    try:
        if encryption_config.read_named_keys(path):
            return False
    except encryption_config.EncryptionConfigError:
        return False  # a file that cannot be read: the handlers block on it, a hold would hide that
    if rotation_state.charms_file_fits_names(state) and not _another_unit_has_a_file(state):  # type: ignore
        return False  # nobody's apiserver to keep up, and nothing else would ever give this unit a file
    return True


def _another_unit_has_a_file(state: Dict[str, Any]) -> bool:
    """Whether another unit Juju expects has acknowledged this rotation with a file (not held).

    Every unit that had the keys may have been removed during the rotation:
    the units left were added since and are held, so no apiserver runs and
    no rewrite can be done or verified.  Where the charm's first file gives
    no name a second key (``charms_file_fits_names``), holding them protects
    nothing: they get their file, and the layer brings it to the phase's.
    Goal-state unreadable: assume another unit has one (the hold stays).
    """
    try:
        units = set(application_units()) - {hookenv.local_unit()}
    except rotation_state.RotationRefused:
        return True
    for unit, ack in read_acknowledgements().items():
        if unit in units and ack.get("id") == state["id"] and not ack.get("held") and ack.get("keys"):
            return True
    return False


def hold_new_unit(app_kv: Any) -> Optional[str]:
    """Registered with ``hold_ready_while``: keep a unit without a file from getting one in the wrong phase.

    kubernetes-control-plane writes a new unit's file itself as soon as it
    sees ready (through vaultlocker) and the key set: ``key1`` with Vault's
    key.  In the phases that hold new units that file would give ``key1`` a
    second key beside the other units' files, or miss a name Secrets are
    stored under, and the apiserver would start with it.  So ready stays
    down, and ``set.encryption_key`` too (the charm's ``create_secure_storage``
    gates on it and vaultlocker may be configured already); nothing generates
    a key without ready.  The unit acknowledges the phase as held at hook
    exit, and gets its file once a phase no longer holds it (rename-retire,
    or done).
    """
    state = read_state(app_kv)
    if not is_held_new_unit(state, app_kv.get(KEY)):
        return None
    clear_flag(names.app_kv_flag(names.APP_KV_SET_KEY, KEY))
    return "key rotation in phase {}: this new unit gets its encryption configuration in phase {}".format(
        state["phase"], rotation_state.RENAME_RETIRE if rotation_state.renames(state) else rotation_state.RETIRE
    )


# -- the units that must acknowledge -------------------------------------------------


GOING = ("dying", "dead")


def _goal_state_units() -> Dict[str, Any]:
    """goal-state's units of this application, by name; RotationRefused when goal-state cannot be read."""
    try:
        return hookenv.goal_state().get("units") or {}
    except (NotImplementedError, OSError, ValueError) as error:
        raise rotation_state.RotationRefused(
            "goal-state is not available ({}): the units to wait for are unknown".format(type(error).__name__)
        ) from None


def application_units() -> List[str]:
    """Every unit of this application Juju expects (goal-state), dying ones left out, this one in."""
    units = _goal_state_units()
    members = {name for name, info in units.items() if (info or {}).get("status") not in GOING}
    return sorted(members | {hookenv.local_unit()})


def dying_units() -> List[str]:
    """The units goal-state says are going away (they may still run an apiserver with an older file)."""
    try:
        units = _goal_state_units()
    except rotation_state.RotationRefused:
        return []
    return sorted(name for name, info in units.items() if (info or {}).get("status") in GOING)


def read_acknowledgements() -> Dict[str, Any]:
    """Every unit's acknowledgement, by Juju unit name, from the peer relation (see ``rolling``)."""
    return rolling.read_acknowledgements()


def alone() -> bool:
    """Whether this unit is the application's only one (goal-state): nobody else's apiserver to keep up."""
    try:
        return application_units() == [hookenv.local_unit()]
    except rotation_state.RotationRefused:
        return False


def may_change_file(state: Optional[Dict[str, Any]]) -> bool:
    """Whether this unit may change its file for the rotation's phase in this hook: it holds the turn
    (a leader since an earlier hook), or it is alone.  Without a running rotation, always.  A unit being
    removed never does: the leader hands its turn on, and it would restart beside the next holder."""
    if not rotation_state.is_running(state):
        return True
    if hookenv.local_unit() in dying_units():
        return False
    memo = "vault-kv.rotation.may-change:{}:{}".format(state["id"], state["phase"])
    if memo not in hookenv.cache:  # asked for each change check of the key: once per hook and phase
        hookenv.cache[memo] = rolling.may_apply(
            state, rolling.turn_at_start(), hookenv.local_unit(), rolling.is_leader(), alone()
        )
    return hookenv.cache[memo]


def hold_key_change(app_kv: Any) -> bool:
    """Registered with ``hold_changes_while``: keep ``changed.encryption_key`` back until this unit's turn.

    kubernetes-control-plane restarts its apiserver on that flag, and the
    key changes for every unit at once (promote, or the old key put back
    and restored): the restart waits for the unit's turn, where the file
    changes too, so it is one restart, one unit at a time.  A unit without
    its file yet is not held (the charm's first write clears the flag).
    """
    if not is_flag_set(names.SECURE_STORAGE_CREATED):
        return False
    state = app_kv.get(rotation_state.ROTATION_KEY)
    if not (rotation_state.is_running(state) and _well_formed(state)):
        return False
    return not may_change_file(state)


# -- this unit's file ----------------------------------------------------------------


def file_keys() -> Optional[NamedKeys]:
    """The named keys of this unit's file (None without a file)."""
    path = config_path()
    return encryption_config.read_named_keys(path) if path else None


def sync_file(state: Optional[Dict[str, Any]], vault_key: str, may_change: bool = True) -> bool:
    """Make the file hold what the rotation's phase asks (or, without one, Vault's key); True if changed.

    During a rotation a file that does not hold the phase's keys yet is
    changed only when ``may_change`` (this unit's turn, see ``rolling``).
    """
    path = config_path()
    plan = rotation_state.file_plan(state, vault_key)
    if plan is None and rotation_state.went_back_to_the_old_key(state, vault_key):
        return False  # leave every key where it is: the leader puts the rotation's key back (restore_vault_key)
    if plan is None:
        return encryption_config.write_key(path, vault_key)
    keys, drop = plan
    if not may_change:
        return False  # the file keeps what it has until this unit's turn
    return encryption_config.write_named_keys(path, keys, drop)


def _digest(path: str) -> Optional[str]:
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except FileNotFoundError:
        return None


def _record_path() -> str:
    return os.path.join(hookenv.charm_dir(), LOADED_RECORD)


def loaded_digest() -> Optional[str]:
    """The digest of the file the apiserver was last seen running with."""
    try:
        with open(_record_path()) as handle:
            return handle.read().strip() or None
    except FileNotFoundError:
        return None


def _write_record(digest: str) -> None:
    encryption_config.write_atomically(_record_path(), digest + "\n")


def adopt_current_file() -> None:
    """A unit that never recorded a load counts the file it has as loaded (the charm restarted on it)."""
    if loaded_digest() is None:
        digest = _digest(config_path())
        if digest is not None:
            _write_record(digest)


def reload_needed() -> bool:
    """Whether the file differs from the one the apiserver was last seen running with."""
    digest = _digest(config_path())
    return digest is not None and digest != loaded_digest()


def apiserver_up() -> bool:
    """Whether the charm configured its apiserver again and, if it says so, the service runs.

    kubernetes-control-plane 1.28 sets ``apiserver.configured`` after its
    restart whether or not the service came up, and ``apiserver.running``
    once it runs (clearing it with configured).  A charm that never set
    ``running`` (an older one, or another charm) is taken at ``configured``.
    """
    if not is_flag_set(names.APISERVER_CONFIGURED):
        return False
    store = unitdata.kv()
    if is_flag_set(names.APISERVER_RUNNING):
        if not store.get(names.APISERVER_RUNNING_KNOWN):
            store.set(names.APISERVER_RUNNING_KNOWN, True)
        return True
    return not store.get(names.APISERVER_RUNNING_KNOWN)


def note_loaded_if_restarted() -> bool:
    """At hook exit: the charm configured the apiserver again (and it runs), so it runs with the file as it is."""
    if not apiserver_up():
        return False
    digest = _digest(config_path())
    if digest is not None and digest != loaded_digest():
        _write_record(digest)
    return True


# -- acknowledging -------------------------------------------------------------------


def not_up_report(state: Dict[str, Any], unit: str) -> Optional[Dict[str, Any]]:
    """What a unit reports in its turn when its file holds the phase's keys but its apiserver is not up:
    no acknowledgement (``up`` false), and the leader gets a hook to say which unit it waits for."""
    in_file = file_keys()
    keys, drop = rotation_state.phase_plan(state)
    if not in_file or not rotation_state.file_matches(keys, drop, in_file):
        return None
    return dict(rotation_state.acknowledgement(state, unit, in_file), up=False)


def settled_acknowledgement(state: Dict[str, Any], unit: str) -> Optional[Dict[str, Any]]:
    """This unit's acknowledgement of the current phase, or None while its file or apiserver is not there."""
    in_file = file_keys()
    if not in_file:
        return None
    keys, drop = rotation_state.phase_plan(state)
    if not rotation_state.file_matches(keys, drop, in_file) or reload_needed():
        return None
    return rotation_state.acknowledgement(state, unit, in_file)


# -- what a non-leader needs Vault for during a rotation -------------------------------


def remember_seen(settled: bool) -> None:
    """At the exit of a hook that asked Vault during a rotation: the turn it saw, the charm's apiserver flag
    then, and whether its file and apiserver were settled in the phase (see ``news_for_this_unit``)."""
    unitdata.kv().set(
        names.ROTATION_SEEN,
        {
            "turn": rolling.token(rolling.read_turn()),
            "configured": [is_flag_set(names.APISERVER_CONFIGURED), is_flag_set(names.APISERVER_RUNNING)],
            "settled": bool(settled),
        },
    )


def forget_seen() -> None:
    unitdata.kv().unset(names.ROTATION_SEEN)


def news_for_this_unit(flags: Any) -> Optional[str]:
    """Why a non-leader must ask Vault in this hook of a running rotation, None when nothing concerns it.

    A phase change changes the app data (the leader's digest says so, see
    ``quiet_hooks``); what is left is the turn moving (leader data), the
    charm having configured its apiserver since (the unit may acknowledge
    now), and this unit holding the turn without having settled.  The peer
    relation's relation-changed hooks every other unit's acknowledgement
    gives are quiet otherwise.
    """
    seen = unitdata.kv().get(names.ROTATION_SEEN)
    if not isinstance(seen, dict):
        return "a key rotation is running"
    turn = rolling.turn_at_start()
    if seen.get("turn") != rolling.token(turn):
        return "the key rotation's turn moved"
    if seen.get("configured") != [names.APISERVER_CONFIGURED in flags, names.APISERVER_RUNNING in flags]:
        return "the apiserver was configured or started since"
    if turn and turn.get("unit") == hookenv.local_unit() and not seen.get("settled"):
        return "this unit holds the key rotation's turn"
    return None
