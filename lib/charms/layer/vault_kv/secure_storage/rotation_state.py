"""The state machine of a coordinated encryption key rotation: pure functions, no I/O.

Kubernetes' order for several apiservers (add the new key for reading
everywhere, then make it the write key everywhere, rewrite every Secret, then
drop the old key) is kept by phases.  The leader enters the next phase only
when every unit of the application has acknowledged the current one, and an
acknowledgement names exactly what that unit's file holds, so a unit that
joined late, or whose hook died, holds the rotation back instead of being
skipped.

A rotation ends in kubernetes-control-plane's own terms: one ``aescbc`` key
named ``key1`` holding Vault's key, the file the charm writes itself on a unit
it adds (1.28's ``create_secure_storage``, 1.29's ``EncryptionAtRest``).  The
old key is usually ``key1`` already, and the apiserver finds a key by the name
stored with each Secret, so the new key first takes another name and, once the
old key is gone from every file, moves to ``key1`` with a second rewrite
(``old`` = key1:O, ``new`` = key2:N)::

    add             [key1:O, key2:N]  the new key is a read key on every unit
    promote         [key2:N, key1:O]  the new key writes everywhere; Vault's encryption_key is N
    rewrite         [key2:N, key1:O]  the operator rewrites the stored Secrets, then confirms
    retire          [key2:N]          the old key leaves every file; key1 is in no file now
    rename-add      [key2:N, key1:N]  key1 comes back, now for the new key, as a read key
    rename-promote  [key1:N, key2:N]  key1 writes everywhere
    rename-rewrite  [key1:N, key2:N]  the operator rewrites the stored Secrets again, then confirms
    rename-retire   [key1:N]          the charm's own file, on every unit
    done

Each name stands for one key in every file in use at one time: ``key1``
leaves every file (retire acknowledged by all) before it comes back for the
new key.  When the old key is not named ``key1`` (a rotation done by hand),
the new key is named ``key1`` at once and the rename phases are skipped.

A unit that has no file yet gets one from the charm itself: ``key1`` with
Vault's key.  In the phases where that file would give ``key1`` a second key
or miss a name Secrets are stored under (``holds_new_units``), such a unit is
held (the layer keeps ``layer.vault-kv.ready`` down, so the charm neither
writes nor starts its apiserver) and acknowledges as held; it gets its file
when the phase no longer holds it.

The state lives in the application's Vault data (``ROTATION_KEY``), written
by the leader only (acknowledgements and the turn travel through Juju, see
``rolling``), so a leader change or a killed hook resumes where it
stood; the new key is generated once, when the rotation starts, and the old
one stays in the state until retire is acknowledged everywhere.
"""

import re
import time
import uuid
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from charms.layer.vault_kv.hashing import fingerprint

#: the application data key that holds the rotation's state
ROTATION_KEY = "encryption_key_rotation"

ADD, PROMOTE, REWRITE, RETIRE = "add", "promote", "rewrite", "retire"
RENAME_ADD, RENAME_PROMOTE, RENAME_REWRITE, RENAME_RETIRE = (
    "rename-add",
    "rename-promote",
    "rename-rewrite",
    "rename-retire",
)
DONE = "done"
PHASES = (ADD, PROMOTE, REWRITE, RETIRE, RENAME_ADD, RENAME_PROMOTE, RENAME_REWRITE, RENAME_RETIRE, DONE)
RUNNING = PHASES[:-1]
#: the phases that wait for the operator's rewrite of the stored Secrets, with their number
REWRITES = {REWRITE: 1, RENAME_REWRITE: 2}

REWRITE_COMMANDS = (
    "apply a StorageVersionMigration for secrets (Kubernetes 1.30+ with the storagemigration API),"
    " or run: kubectl get secrets --all-namespaces -o json | kubectl replace -f -"
)

NamedKey = Tuple[str, str]

#: the name kubernetes-control-plane gives Vault's key when it writes the file itself
CHARM_KEY_NAME = "key1"

#: kubernetes-control-plane 1.29 and later no longer include this layer: nothing would finish the
#: rotation, and its own handler rewrites a file whose first key is not Vault's to key1 alone; a
#: refresh that moves the backend runs 1.28's migration, which writes a file's first key to Vault
NO_REFRESH = "finish the rotation before refreshing kubernetes-control-plane (to 1.29+, or to a new backend)"


class RotationRefused(Exception):
    """An operator's request that cannot be done now; the message says why (never a key)."""


def is_running(state: Optional[Dict[str, Any]]) -> bool:
    return isinstance(state, dict) and state.get("phase") in RUNNING


def key_fingerprint(value: str) -> str:
    """The short fingerprint reports and acknowledgements use for a key (never the key)."""
    return fingerprint(value)


def next_key_name(names_in_use: Iterable[str]) -> str:
    """``key{n}`` with n one more than the highest number in use: a name no stored Secret carries."""
    numbers = [int(match.group(1)) for match in (re.fullmatch(r"key(\d+)", name) for name in names_in_use) if match]
    return "key{}".format(max(numbers, default=0) + 1)


def start(
    old_value: str, old_name: str, names_in_use: Iterable[str], new_value: str, rewrite: str = "manual"
) -> Dict[str, Any]:
    """The state of a rotation that starts now from ``old_value`` (named ``old_name`` in the files).

    The new key is named ``key1`` at once when no file key has that name;
    otherwise it gets a name nothing is stored under and the rename phases
    bring it to ``key1`` at the end.
    """
    if old_value == new_value:
        raise RotationRefused("the new key equals the current one")
    in_use = set(names_in_use) | {old_name}
    new_name = CHARM_KEY_NAME if CHARM_KEY_NAME not in in_use else next_key_name(in_use)
    return {
        "id": uuid.uuid4().hex,
        "phase": ADD,
        "old": {"name": old_name, "value": old_value},
        "new": {"name": new_name, "value": new_value},
        "rename": new_name != CHARM_KEY_NAME,
        "confirmed": False,
        "rewrite": rewrite,
        "started": int(time.time()),
    }


def refuse_start(state: Optional[Dict[str, Any]]) -> None:
    """Raise RotationRefused while a rotation runs."""
    if is_running(state):
        raise RotationRefused(
            "a rotation is running (phase {}); finish it before starting another".format(state["phase"])
        )


def phase_plan(state: Dict[str, Any]) -> Tuple[List[NamedKey], List[str]]:
    """For a running rotation: (named keys every file starts with, first = write key), values to drop.

    A value to drop may not appear in the file after the planned keys (under
    any name); the planned keys themselves may hold it (rename-retire keeps
    the new key as ``key1`` only).
    """
    phase = state["phase"]
    old = (state["old"]["name"], state["old"]["value"])
    new = (state["new"]["name"], state["new"]["value"])
    final = (CHARM_KEY_NAME, new[1])
    if phase == ADD:
        return [old, new], []
    if phase in (PROMOTE, REWRITE):
        return [new, old], []
    if phase == RETIRE:
        return [new], [old[1]]
    if phase == RENAME_ADD:
        return [new, final], [old[1]]
    if phase in (RENAME_PROMOTE, RENAME_REWRITE):
        return [final, new], [old[1]]
    return [final], [old[1], new[1]]


def renames(state: Dict[str, Any]) -> bool:
    """Whether the rotation ends with the rename leg: its new key was not named ``key1`` at once.

    Read from the new key's name when the state does not say (a rotation
    started by an earlier build of this layer, whose states have no
    ``rename`` field): a rotation to ``key2`` must still end as ``key1``.
    """
    if isinstance(state.get("rename"), bool):
        return state["rename"]
    return state["new"]["name"] != CHARM_KEY_NAME


def next_phase(state: Dict[str, Any]) -> str:
    """The phase after ``state``'s: retire goes to done when the new key was named ``key1`` at once."""
    phase = state["phase"]
    if phase == RETIRE and not renames(state):
        return DONE
    return PHASES[PHASES.index(phase) + 1]


def holds_new_units(state: Optional[Dict[str, Any]]) -> bool:
    """Whether a unit without a file must wait: the charm's own first file does not fit this phase.

    The charm writes ``key1`` with Vault's key.  That fits when it is exactly
    the phase's plan, or in add when ``key1`` is the plan's write key (nothing
    is stored under the new key before promote).  Anywhere else it would give
    ``key1`` a second key beside the other units' files, or miss a name
    Secrets are stored under.
    """
    if not is_running(state):
        return False
    keys, _ = phase_plan(state)
    charms_own = (CHARM_KEY_NAME, vault_key_in(state))
    if keys == [charms_own]:
        return False
    return not (state["phase"] == ADD and keys[0] == charms_own)


def charms_file_fits_names(state: Dict[str, Any]) -> bool:
    """Whether the charm's own first file (``key1`` with Vault's key) gives no name of the phase's plan a
    second key: it may miss a name Secrets are stored under (they cannot be read until the layer brings the
    file in line), but it never reads a Secret with the wrong key.  False in promote and rewrite, where
    ``key1`` still stands for the old key."""
    keys, _ = phase_plan(state)
    return all(value == vault_key_in(state) for name, value in keys if name == CHARM_KEY_NAME)


def vault_key_in(state: Dict[str, Any]) -> str:
    """The value Vault's ``encryption_key`` holds in this phase (the old key only while adding)."""
    return state["old"]["value"] if state["phase"] == ADD else state["new"]["value"]


def file_plan(state: Optional[Dict[str, Any]], vault_key: str) -> Optional[Tuple[List[NamedKey], List[str]]]:
    """What this unit's file must hold now: (named keys, first = write key), values to drop.

    None when no rotation applies (the file simply follows Vault's key as
    before), also when Vault's key is not the one the state speaks of (set by
    hand since): the file then keeps every key it has.
    """
    if not isinstance(state, dict):
        return None
    phase = state.get("phase")
    if phase == DONE:
        name, expected = state.get("name"), state.get("fingerprint")
        if name and expected == key_fingerprint(vault_key):
            # a rotation this layer finished before it ended as key1 (name key2) also lists key1,
            # the name the charm gives the key on a unit it adds
            return [(name, vault_key)] + ([(CHARM_KEY_NAME, vault_key)] if name != CHARM_KEY_NAME else []), []
        return None
    if phase not in RUNNING or vault_key != vault_key_in(state):
        return None
    return phase_plan(state)


def went_back_to_the_old_key(state: Optional[Dict[str, Any]], vault_key: Optional[str]) -> bool:
    """Whether Vault holds the rotation's old key in a phase where it should hold the new one.

    Nothing in the rotation does that; a refresh during a rotation can: the
    charm's own ``migrate_vault_kv_secrets_backend`` (1.28) writes the
    leader's file's first key to Vault, which one phase behind is the old key.
    The state in Vault says which key is current, so the leader puts it back
    and meanwhile no unit changes its file for the old key.
    """
    return (
        is_running(state)
        and state["phase"] != ADD
        and vault_key is not None
        and vault_key == state["old"]["value"]
        and vault_key != state["new"]["value"]
    )


def planned_fingerprints(plan: Sequence[NamedKey]) -> List[List[str]]:
    """The acknowledgement form of a plan: [name, fingerprint] of each planned key, in order."""
    return [[name, key_fingerprint(value)] for name, value in plan]


def file_matches(plan: Sequence[NamedKey], drop: Sequence[str], in_file: Sequence[Tuple[str, Optional[str]]]) -> bool:
    """Whether the file's keys start with the plan and hold nothing to drop after it."""
    planned = list(plan)
    return list(in_file[: len(planned)]) == planned and not any(value in drop for _, value in in_file[len(planned) :])


def acknowledgement(state: Dict[str, Any], unit: str, in_file: Sequence[Tuple[str, Optional[str]]]) -> Dict[str, Any]:
    """What a unit reports: which rotation and phase, and the keys its file holds (fingerprints)."""
    return {
        "id": state["id"],
        "phase": state["phase"],
        "unit": unit,
        "keys": [[name, key_fingerprint(value) if value else None] for name, value in in_file],
    }


def held_acknowledgement(state: Dict[str, Any], unit: str) -> Dict[str, Any]:
    """What a unit held without a file reports: it runs no apiserver with any key of this rotation."""
    return {"id": state["id"], "phase": state["phase"], "unit": unit, "keys": [], "held": True}


def acknowledged(state: Dict[str, Any], ack: Any) -> bool:
    """Whether ``ack`` says its unit's file holds the current phase's plan (or it is held in a phase that holds)."""
    if not isinstance(ack, dict) or ack.get("id") != state["id"] or ack.get("phase") != state["phase"]:
        return False
    if ack.get("up") is False:  # its file holds the keys, its apiserver did not come up with them
        return False
    if ack.get("held") is True:
        return ack.get("keys") == [] and holds_new_units(state)
    keys, drop = phase_plan(state)
    wanted = planned_fingerprints(keys)
    dropped = {key_fingerprint(value) for value in drop}
    held = ack.get("keys")
    if not isinstance(held, list) or not all(isinstance(item, list) and len(item) == 2 for item in held):
        return False
    return held[: len(wanted)] == wanted and not any(item[1] in dropped for item in held[len(wanted) :])


def waiting_for(state: Dict[str, Any], units: Iterable[str], acks: Dict[str, Any]) -> List[str]:
    """The units whose acknowledgement of the current phase is missing."""
    return sorted(unit for unit in units if not acknowledged(state, acks.get(unit)))


def next_state(state: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(the application data to write, the new state) for entering the phase after ``state``'s.

    Entering promote also makes the new key Vault's ``encryption_key``, in
    the same write as the state, so the two never disagree.  Each rewrite
    phase is left only once the operator confirmed it (the confirmation
    is reset for the second one).  Done forgets both keys.
    """
    phase = state["phase"]
    if phase in REWRITES and not state.get("confirmed"):
        raise RotationRefused("the stored Secrets were not confirmed rewritten")
    phase_after = next_phase(state)
    if phase_after == DONE:
        done = {
            "id": state["id"],
            "phase": DONE,
            "name": CHARM_KEY_NAME,
            "fingerprint": key_fingerprint(state["new"]["value"]),
            "finished": int(time.time()),
        }
        return {ROTATION_KEY: done}, done
    following = dict(state, phase=phase_after)
    if phase in REWRITES:
        following["confirmed"] = False
        following.pop("forced", None)
    updates: Dict[str, Any] = {ROTATION_KEY: following}
    if following["phase"] == PROMOTE:
        updates["encryption_key"] = state["new"]["value"]
    return updates, following


def confirm(state: Optional[Dict[str, Any]], forced: bool = False) -> Dict[str, Any]:
    """The state with the rewrite confirmed (``forced``: on the operator's word alone); refused outside a rewrite."""
    if not is_running(state):
        raise RotationRefused("no rotation is running")
    if state["phase"] not in REWRITES:
        raise RotationRefused(
            "the rotation is in phase {}; a rewrite is confirmed in phase {} or {}, once every unit is there".format(
                state["phase"], REWRITE, RENAME_REWRITE
            )
        )
    confirmed = dict(state, confirmed=True)
    if forced:
        confirmed["forced"] = True
    return confirmed


def rewrites_in(state: Dict[str, Any]) -> int:
    """How many rewrites of the stored Secrets this rotation asks of the operator (1, or 2 with the rename)."""
    return 2 if renames(state) else 1


def describe(state: Optional[Dict[str, Any]], waiting: Sequence[str] = ()) -> str:
    """One line for a status message: the phase and what it waits for (never a key)."""
    if not is_running(state):
        return ""
    phase = state["phase"]
    if phase in REWRITES and not waiting and not state.get("confirmed"):
        return (
            "key rotation: rewrite stored Secrets ({} of {}), then run finish-encryption-key-rotation ({}); {}".format(
                REWRITES[phase], rewrites_in(state), REWRITE_COMMANDS, NO_REFRESH
            )
        )
    text = "key rotation: phase {}".format(phase)
    if waiting:
        text += ", waiting for {}".format(", ".join(waiting))
    return text + "; " + NO_REFRESH
