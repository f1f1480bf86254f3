"""The simulator's state file, shared by the controller and the hook tools.

One JSON document, read and written under an exclusive lock so that a hook
tool and the controller never interleave their updates.
"""

import contextlib
import fcntl
import json
import os
from typing import Any, Dict, Iterator


def unit_key(model_uuid: str, unit: str) -> str:
    """Units are named per model, so the state keys them by both."""
    return "{}:{}".format(model_uuid, unit)


def empty_state() -> Dict[str, Any]:
    return {"next_relation_id": 1, "models": {}, "units": {}, "relations": {}, "queue": [], "history": []}


@contextlib.contextmanager
def locked(path: str, write: bool = True) -> Iterator[Dict[str, Any]]:
    """Yield the state; written back on exit when ``write``."""
    with open(path + ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(path) as handle:
                state = json.load(handle)
        except FileNotFoundError:
            state = empty_state()
        yield state
        if write:
            tmp = path + ".tmp"
            with open(tmp, "w") as handle:
                json.dump(state, handle, indent=1, sort_keys=True)
            os.replace(tmp, path)


def queue_hook(state: Dict[str, Any], model: str, unit: str, hook: str, **env: Any) -> None:
    """Queue a hook the way Juju coalesces them: an identical pending one is not added twice."""
    item = {"model": model, "unit": unit, "hook": hook}
    item.update({k: v for k, v in env.items() if v is not None})
    if item not in state["queue"]:
        state["queue"].append(item)


def relation_ends(relation: Dict[str, Any], model: str, app: str):
    """(local end, remote end) of a relation for an application, or (None, None)."""
    first, second = relation["ends"]
    if first["model"] == model and first["app"] == app:
        return first, second
    if second["model"] == model and second["app"] == app:
        return second, first
    return None, None


def app_units(state: Dict[str, Any], model: str, app: str, dying: bool = True):
    """The application's units by number; without ``dying``, the ones being removed are left out."""
    return sorted(
        (
            u["name"]
            for u in state["units"].values()
            if u["model"] == model and u["app"] == app and (dying or not u.get("dying"))
        ),
        key=lambda name: int(name.split("/")[1]),
    )


def is_peer(relation: Dict[str, Any]) -> bool:
    """A peer relation: both ends are the same application's same endpoint (Juju makes it, one per peer endpoint)."""
    return bool(relation.get("peer"))


def relation_members(state: Dict[str, Any], relation: Dict[str, Any], model: str, unit: str):
    """The units across ``relation`` from ``unit``: the remote application's, or for a peer relation the
    other units of its own; units being removed have left the relation (Juju ran their departed hooks)."""
    app = unit.split("/")[0]
    local, remote = relation_ends(relation, model, app)
    if remote is None or relation.get("dying"):
        return []
    return [u for u in app_units(state, remote["model"], remote["app"], dying=False) if u != unit]
