"""The state machine of a coordinated encryption key rotation: pure functions, no I/O.

Kubernetes' order for several apiservers (add the new key for reading
everywhere, then make it the write key everywhere, rewrite every Secret, then
drop the old key) is kept by four phases.  The leader enters the next phase
only when every unit of the application has acknowledged the current one, and
an acknowledgement names exactly what that unit's file holds, so a unit that
joined late, or whose hook died, holds the rotation back instead of being
skipped:

    add      [old, new]  the new key is a read key on every unit
    promote  [new, old]  the new key writes everywhere; Vault's encryption_key is the new one
    rewrite  [new, old]  the operator rewrites the stored Secrets, then confirms
    retire   [new]       the old key leaves every file
    done     [new, new as key1]  the old key is forgotten; the new key is also named key1, the
                         name kubernetes-control-plane gives it on a unit it adds later

The state lives in the application's Vault data (``ROTATION_KEY``), written
by the leader only, so a leader change or a killed hook resumes where it
stood; the new key is generated once, when the rotation starts, and the old
one stays in the state until retire is acknowledged everywhere.  Key names
are fixed when the rotation starts (the apiserver finds a key by the name
stored with each Secret): every unit's file uses the same name for the same
key.
"""

import re
import time
import uuid
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from charms.layer.vault_kv.hashing import fingerprint

#: the application data key that holds the rotation's state
ROTATION_KEY = "encryption_key_rotation"
#: the unit data key that holds a unit's acknowledgement
ACK_KEY = "encryption_key_rotation_ack"

ADD, PROMOTE, REWRITE, RETIRE, DONE = "add", "promote", "rewrite", "retire", "done"
PHASES = (ADD, PROMOTE, REWRITE, RETIRE, DONE)
RUNNING = (ADD, PROMOTE, REWRITE, RETIRE)

REWRITE_COMMANDS = (
    "apply a StorageVersionMigration for secrets (Kubernetes 1.30+ with the storagemigration API),"
    " or run: kubectl get secrets --all-namespaces -o json | kubectl replace -f -"
)

NamedKey = Tuple[str, str]

#: the name kubernetes-control-plane gives Vault's key when it writes the file itself
CHARM_KEY_NAME = "key1"


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


def start(old_value: str, old_name: str, names_in_use: Iterable[str], new_value: str) -> Dict[str, Any]:
    """The state of a rotation that starts now from ``old_value`` (named ``old_name`` in the files)."""
    if old_value == new_value:
        raise RotationRefused("the new key equals the current one")
    return {
        "id": uuid.uuid4().hex,
        "phase": ADD,
        "old": {"name": old_name, "value": old_value},
        "new": {"name": next_key_name(set(names_in_use) | {old_name}), "value": new_value},
        "confirmed": False,
        "started": int(time.time()),
    }


def refuse_start(state: Optional[Dict[str, Any]]) -> None:
    """Raise RotationRefused while a rotation runs."""
    if is_running(state):
        raise RotationRefused(
            "a rotation is running (phase {}); finish it before starting another".format(state["phase"])
        )


def phase_plan(state: Dict[str, Any]) -> Tuple[List[NamedKey], List[str]]:
    """For a running rotation: (named keys every file starts with, first = write key), values to drop."""
    phase = state["phase"]
    old = (state["old"]["name"], state["old"]["value"])
    new = (state["new"]["name"], state["new"]["value"])
    if phase == ADD:
        return [old, new], []
    if phase in (PROMOTE, REWRITE):
        return [new, old], []
    return [new], [old[1]]


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
            # also as key1: a unit added later gets the key from the charm's own first write as
            # key1, and what its apiserver stores before the layer renames it stays readable
            return [(name, vault_key)] + ([(CHARM_KEY_NAME, vault_key)] if name != CHARM_KEY_NAME else []), []
        return None
    if phase not in RUNNING or vault_key != vault_key_in(state):
        return None
    return phase_plan(state)


def planned_fingerprints(plan: Sequence[NamedKey]) -> List[List[str]]:
    """The acknowledgement form of a plan: [name, fingerprint] of each planned key, in order."""
    return [[name, key_fingerprint(value)] for name, value in plan]


def file_matches(plan: Sequence[NamedKey], drop: Sequence[str], in_file: Sequence[Tuple[str, Optional[str]]]) -> bool:
    """Whether the file's keys start with the plan and hold nothing to drop."""
    planned = list(plan)
    return list(in_file[: len(planned)]) == planned and not any(value in drop for _, value in in_file)


def acknowledgement(state: Dict[str, Any], unit: str, in_file: Sequence[Tuple[str, Optional[str]]]) -> Dict[str, Any]:
    """What a unit reports: which rotation and phase, and the keys its file holds (fingerprints)."""
    return {
        "id": state["id"],
        "phase": state["phase"],
        "unit": unit,
        "keys": [[name, key_fingerprint(value) if value else None] for name, value in in_file],
    }


def acknowledged(state: Dict[str, Any], ack: Any) -> bool:
    """Whether ``ack`` says its unit's file holds the current phase's plan."""
    if not isinstance(ack, dict) or ack.get("id") != state["id"] or ack.get("phase") != state["phase"]:
        return False
    keys, drop = phase_plan(state)
    wanted = planned_fingerprints(keys)
    dropped = {key_fingerprint(value) for value in drop}
    held = ack.get("keys")
    if not isinstance(held, list) or not all(isinstance(item, list) and len(item) == 2 for item in held):
        return False
    return held[: len(wanted)] == wanted and not any(item[1] in dropped for item in held)


def waiting_for(state: Dict[str, Any], units: Iterable[str], acks: Dict[str, Any]) -> List[str]:
    """The units whose acknowledgement of the current phase is missing."""
    return sorted(unit for unit in units if not acknowledged(state, acks.get(unit)))


def next_state(state: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(the application data to write, the new state) for entering the phase after ``state``'s.

    Entering promote also makes the new key Vault's ``encryption_key``, in
    the same write as the state, so the two never disagree.  Leaving retire
    forgets the old key.
    """
    phase = state["phase"]
    if phase == REWRITE and not state.get("confirmed"):
        raise RotationRefused("the stored Secrets were not confirmed rewritten")
    if phase == RETIRE:
        done = {
            "id": state["id"],
            "phase": DONE,
            "name": state["new"]["name"],
            "fingerprint": key_fingerprint(state["new"]["value"]),
            "finished": int(time.time()),
        }
        return {ROTATION_KEY: done}, done
    following = dict(state, phase=PHASES[PHASES.index(phase) + 1])
    updates: Dict[str, Any] = {ROTATION_KEY: following}
    if following["phase"] == PROMOTE:
        updates["encryption_key"] = state["new"]["value"]
    return updates, following


def confirm(state: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """The state with the rewrite confirmed; refused outside the rewrite phase."""
    if not is_running(state):
        raise RotationRefused("no rotation is running")
    if state["phase"] != REWRITE:
        raise RotationRefused(
            "the rotation is in phase {}; the rewrite is confirmed in phase rewrite".format(state["phase"])
        )
    return dict(state, confirmed=True)


def describe(state: Optional[Dict[str, Any]], waiting: Sequence[str] = ()) -> str:
    """One line for a status message: the phase and what it waits for (never a key)."""
    if not is_running(state):
        return ""
    phase = state["phase"]
    if phase == REWRITE and not waiting and not state.get("confirmed"):
        return "key rotation: rewrite stored Secrets, then run finish-encryption-key-rotation ({})".format(
            REWRITE_COMMANDS
        )
    text = "key rotation: phase {}".format(phase)
    if waiting:
        text += ", waiting for {}".format(", ".join(waiting))
    return text
