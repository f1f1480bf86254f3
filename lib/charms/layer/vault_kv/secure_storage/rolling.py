"""One kube-apiserver at a time: the turn a key rotation gives each unit, carried by Juju events.

Why: kubernetes-control-plane restarts its apiserver in the hook in which its
EncryptionConfiguration changes, and Juju runs different units' hooks in
parallel.  Units told of a phase at once (leader-settings-changed reaches
them all) would restart at once, an API outage behind one load balancer.
So within a phase a unit changes its file only while it holds the *turn*,
and the leader passes the turn on only once the holder acknowledged that
its apiserver runs with the phase's file.

Transport, all Juju events, no update-status:

- the turn is in leader data (``LEADER_ROTATION_TURN``): rotation id, phase,
  the unit that may change its file, and for the leader's own turn its
  stage and a *witness*; a change reaches every other unit as
  leader-settings-changed;
- each unit's acknowledgement is in its own data on the peer relation
  ``coordinator`` (``PEER_ROTATION_ACK``: key names and fingerprints, never a
  key); a change reaches the leader as relation-changed;
- the leader cannot give itself a hook, so when the turn is its own, one
  other unit (the witness) relays the turn back on the peer relation
  (``PEER_ROTATION_SEEN``), which gives the leader the next hook.

Why ``coordinator``: it is the peer relation layer:coordinator declares,
which kubernetes-control-plane 1.28 already has (layer:kubernetes-node-base),
and which 1.29+ still declares because Juju refuses a refresh to a charm
that lacks a peer endpoint the application has (LP:2049953).  A peer
endpoint of this layer's own would make the refresh to 1.29+ fail.  The
layer declares it too (same name and interface, so the metadata merges),
and uses only its own keys there: charmhelpers.coordinator's locks are
untouched.  Its locks are not used for the turn: a lock is released at the
end of the hook in which it was granted, which covers the restart, not the
apiserver running with the new file, the condition for the next unit.

The order within a phase is by unit number, the leader last.  The leader's
own turn takes three hooks of its own: in the first it only names itself
(stage ``go``, with a witness); in its next hook (the witness's relay) it
changes its file and restarts, and acknowledges at that hook's exit; in
the next (the witness relays the acknowledgement) it hands the turn on.  So
between two consecutive hooks of the leader at most one apiserver restarts,
the leader's own included.  A leader alone in its application needs no
witness and no stages.
"""

import json
import time
from typing import Any, Dict, List, NamedTuple, Optional

from charmhelpers.core import hookenv

from charms.layer.vault_kv import names
from charms.layer.vault_kv.secure_storage import rotation_state

GO = "go"
#: after this long without the holder's acknowledgement the leader shows ``blocked`` naming it
PATIENCE_SECONDS = 15 * 60

Turn = Dict[str, Any]


def unit_number(unit: str) -> int:
    try:
        return int(unit.rsplit("/", 1)[1])
    except (IndexError, ValueError):
        return -1


def order(units: List[str], leader: str) -> List[str]:
    """The order units take their turns in: by unit number, the leader last."""
    return sorted(units, key=lambda unit: (unit == leader, unit_number(unit), unit))


def changes_files(state: Dict[str, Any]) -> bool:
    """Whether the phase changes files at all: the rewrite phases keep the previous phase's keys."""
    return state["phase"] not in rotation_state.REWRITES


def turn_of(state: Optional[Dict[str, Any]], turn: Any) -> Optional[Turn]:
    """The turn if it is for this rotation's current phase, else None (a stale or malformed one)."""
    if not rotation_state.is_running(state) or not isinstance(turn, dict):
        return None
    if turn.get("id") != state["id"] or turn.get("phase") != state["phase"] or not isinstance(turn.get("unit"), str):
        return None
    return turn


def token(turn: Optional[Turn]) -> str:
    """What a witness relays: names the turn and its stage, nothing else."""
    if not turn:
        return ""
    return "{}:{}:{}:{}".format(turn.get("id", "")[:12], turn.get("phase"), turn.get("unit"), turn.get("stage", ""))


def may_apply(state: Dict[str, Any], turn: Any, me: str, leader: bool, alone: bool) -> bool:
    """Whether this unit may change its file (restart its apiserver) for the current phase now.

    ``turn`` is the turn as it stood at this hook's start: a leader that
    names itself in a hook restarts only in a later one.
    """
    if alone:
        return True
    current = turn_of(state, turn)
    if current is None or current["unit"] != me:
        return False
    return current.get("stage") == GO if leader else True


class Decision(NamedTuple):
    """What the leader does in this hook: publish ``turn`` (None: leave it), enter the next phase, or wait."""

    turn: Optional[Turn]
    enter_next: bool
    holder: Optional[str]  # the unit the rotation waits on now


def decide(state: Dict[str, Any], units: List[str], acks: Dict[str, Any], turn: Any, me: str, now: float) -> Decision:
    """The leader's step: wait for the holder, hand the turn on, or (everyone acknowledged) enter the next phase.

    Pure: the caller reads the inputs and carries the decision out.  After
    entering the next phase it calls again with the new state.
    """
    current = turn_of(state, turn)
    acked = {unit for unit in units if rotation_state.acknowledged(state, acks.get(unit))}
    if current is not None and current["unit"] in units and current["unit"] not in acked:
        if current["unit"] == me and len(units) > 1:
            if current.get("stage") != GO:
                # granted to this unit before it became leader: a leader's turn, from its next hook
                return Decision(dict(current, stage=GO, witness=witness_for(units, me), since=now), False, me)
            if current.get("witness") not in units:
                # the witness went away: name another, so that someone relays the leader's turn
                return Decision(dict(current, witness=witness_for(units, me), since=now), False, me)
        return Decision(None, False, current["unit"])
    waiting = [unit for unit in order(units, me) if unit not in acked]
    if not waiting:
        return Decision(None, True, None)
    if not changes_files(state):
        return Decision(None, False, waiting[0])  # every unit acknowledges as it is: nothing to hand out
    following = waiting[0]
    if current is not None and current["unit"] == following:
        return Decision(None, False, following)
    granted: Turn = {"id": state["id"], "phase": state["phase"], "unit": following, "since": now, "leader": me}
    if following == me and len(units) > 1:
        granted.update(stage=GO, witness=witness_for(units, me))
    return Decision(granted, False, following)


def witness_for(units: List[str], leader: str) -> Optional[str]:
    """The unit that relays the leader's own turn: the first other unit in the order."""
    others = [unit for unit in order(units, leader) if unit != leader]
    return others[0] if others else None


def overdue(turn: Optional[Turn], now: float) -> bool:
    since = (turn or {}).get("since")
    return isinstance(since, (int, float)) and now - since > PATIENCE_SECONDS


# -- reading and writing the turn and the peer data ---------------------------------------


_AT_START, _NOW = "vault-kv.rotation-turn.at-start", "vault-kv.rotation-turn.now"
_LEADER = "vault-kv.rotation.is-leader"


def _parse(raw: Any) -> Optional[Turn]:
    if not raw:
        return None
    try:
        turn = json.loads(raw)
    except (TypeError, ValueError):
        return None
    return turn if isinstance(turn, dict) else None


def turn_at_start() -> Optional[Turn]:
    """The turn as this hook found it (leader data), whatever the leader publishes later in the hook.

    Kept in charmhelpers' per-hook cache: a hook is one process, and the
    simulator's in-process hooks clear that cache.
    """
    if _AT_START not in hookenv.cache:
        hookenv.cache[_AT_START] = _parse(hookenv.leader_get(names.LEADER_ROTATION_TURN))
    return hookenv.cache[_AT_START]


def read_turn() -> Optional[Turn]:
    """The turn now: as this hook found it, or as the leader published it since."""
    if _NOW in hookenv.cache:
        return hookenv.cache[_NOW]
    return turn_at_start()


def publish_turn(turn: Optional[Turn]) -> None:
    """Leader only: the turn every unit sees (leader-settings-changed on each); None clears it."""
    turn_at_start()  # read before it changes
    hookenv.leader_set({names.LEADER_ROTATION_TURN: json.dumps(turn, sort_keys=True) if turn else None})
    hookenv.cache[_NOW] = turn


def is_leader() -> bool:
    """is-leader, asked once per hook for the rotation's purposes (a hook tool call each time otherwise).

    A hook is short against Juju's 30-second leadership lease, and the
    store trusts the answer for 20 s likewise (``store.LEADERSHIP_TRUSTED_SECONDS``).
    """
    if _LEADER not in hookenv.cache:
        hookenv.cache[_LEADER] = bool(hookenv.is_leader())
    return hookenv.cache[_LEADER]


def peer_relation_id() -> Optional[str]:
    ids = hookenv.relation_ids(names.PEER_RELATION)
    return ids[0] if ids else None


def read_acknowledgements() -> Dict[str, Any]:
    """Every unit's acknowledgement on the peer relation (this unit's own included), by unit name."""
    return _peer_records(names.PEER_ROTATION_ACK, own=True)


def _peer_records(field: str, own: bool) -> Dict[str, Dict[str, Any]]:
    """Each unit's JSON record under ``field`` on the peer relation (``own``: this unit's too), by unit name;
    a record that does not parse, or names another unit than the one that wrote it, is left out."""
    rid = peer_relation_id()
    if rid is None:
        return {}
    found: Dict[str, Dict[str, Any]] = {}
    for unit in ([hookenv.local_unit()] if own else []) + list(hookenv.related_units(rid)):
        raw = hookenv.relation_get(field, unit=unit, rid=rid)
        try:
            record = json.loads(raw) if raw else None
        except ValueError:
            record = None
        if isinstance(record, dict) and record.get("unit") == unit:
            found[unit] = record
    return found


def _own(field: str, rid: str) -> Optional[str]:
    return hookenv.relation_get(field, unit=hookenv.local_unit(), rid=rid)


def publish_acknowledgement(ack: Dict[str, Any]) -> bool:
    """Put this unit's acknowledgement on the peer relation (the leader gets relation-changed); False without one."""
    rid = peer_relation_id()
    if rid is None:
        return False
    text = json.dumps(ack, sort_keys=True)
    if _own(names.PEER_ROTATION_ACK, rid) != text:
        hookenv.relation_set(rid, {names.PEER_ROTATION_ACK: text})
    return True


def publish_verification(record: Dict[str, Any]) -> bool:
    """Put this unit's verified census on the peer relation (the leader gets relation-changed); False without one.

    Written from the ``finish-encryption-key-rotation`` action run on a unit
    other than the leader (relation-set works in an action's context).
    """
    rid = peer_relation_id()
    if rid is None:
        return False
    hookenv.relation_set(rid, {names.PEER_REWRITE_VERIFIED: json.dumps(record, sort_keys=True)})
    return True


def read_verifications() -> Dict[str, Dict[str, Any]]:
    """The other units' verified censuses on the peer relation, by unit name (malformed ones left out)."""
    return _peer_records(names.PEER_REWRITE_VERIFIED, own=False)


def relay_if_witness() -> None:
    """The witness relays the leader's turn back on the peer relation, so the leader gets its next hook.

    Twice per leader's turn: when the turn names the leader (the leader
    restarts in the hook this relay gives it), and when the leader's
    acknowledgement of the phase appears (the leader hands the turn on in
    the hook this relay gives it).  Runs at every hook exit with secure
    storage on, Vault or not: it needs leader data and the peer relation only.
    """
    turn = read_turn()
    if not turn or turn.get("witness") != hookenv.local_unit() or is_leader():
        return
    rid = peer_relation_id()
    if rid is None:
        return
    relayed = token(turn)
    try:
        leaders_ack = json.loads(hookenv.relation_get(names.PEER_ROTATION_ACK, unit=turn["unit"], rid=rid) or "{}")
    except ValueError:
        leaders_ack = {}
    if isinstance(leaders_ack, dict) and (leaders_ack.get("id"), leaders_ack.get("phase"), leaders_ack.get("unit")) == (
        turn.get("id"),
        turn.get("phase"),
        turn.get("unit"),
    ):
        relayed += ":acknowledged"
    if _own(names.PEER_ROTATION_SEEN, rid) != relayed:
        hookenv.relation_set(rid, {names.PEER_ROTATION_SEEN: relayed})


def describe_turn(state: Dict[str, Any], units: List[str], acks: Dict[str, Any], turn: Any, leader: str) -> str:
    """The rolling order for a status line: who applies, who waits, who is done (names only)."""
    current = turn_of(state, turn)
    acked = [unit for unit in order(units, leader) if rotation_state.acknowledged(state, acks.get(unit))]
    waiting = [unit for unit in order(units, leader) if unit not in acked]
    parts = []
    if current is not None and current["unit"] in waiting:
        down = (acks.get(current["unit"]) or {}).get("up") is False
        parts.append("{} applying{}".format(current["unit"], " (its kube-apiserver is not up)" if down else ""))
        waiting = [unit for unit in waiting if unit != current["unit"]]
    if waiting:
        parts.append("then {}".format(", ".join(waiting)))
    parts.append("{} of {} done".format(len(acked), len(units)))
    return "; ".join(parts)


def now() -> float:
    return time.time()
