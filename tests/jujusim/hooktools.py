"""Juju's hook tools, as the simulator answers them.

Every tool is this one program under another name (a symlink in the
simulator's bin directory); it reads the hook's JUJU_* environment to know
which unit is asking.  Changes that would make Juju run hooks elsewhere
(relation-set, leader-set) queue those hooks in the state file.
"""

import json
import os
import sys
from typing import Any, Dict, List, Optional

# run as a script by the launcher: the repository root makes ``tests.jujusim`` importable
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tests.jujusim.state import app_units, locked, queue_hook, relation_ends, relation_members, unit_key  # noqa: E402

STATE = os.environ.get("JUJUSIM_STATE", "")
MODEL = os.environ.get("JUJU_MODEL_UUID", "")
UNIT = os.environ.get("JUJU_UNIT_NAME", "")
APP = UNIT.split("/")[0]


def _yaml():
    import yaml  # only the few tools that speak YAML pay for importing it

    return yaml


def out(value: Any, fmt: Optional[str]) -> None:
    if fmt == "json":
        sys.stdout.write(json.dumps(value) + "\n")
    elif fmt == "yaml":
        sys.stdout.write(_yaml().safe_dump(value))
    elif value is None:
        return
    elif isinstance(value, (dict, list)):
        sys.stdout.write(_yaml().safe_dump(value))
    else:
        sys.stdout.write("{}\n".format(value))


def parse(argv: List[str], flags=(), options=()) -> (Dict[str, Any], List[str]):
    """A tiny parser for the tools' command lines."""
    found: Dict[str, Any] = {}
    rest: List[str] = []
    items = list(argv)
    while items:
        item = items.pop(0)
        if item.startswith("--") and "=" in item:
            key, value = item[2:].split("=", 1)
            found[key] = value
        elif item.lstrip("-") in options and item.startswith("-"):
            found[item.lstrip("-")] = items.pop(0)
        elif item.lstrip("-") in flags and item.startswith("-"):
            found[item.lstrip("-")] = True
        else:
            rest.append(item)
    return found, rest


def relation_id_number(rid: Optional[str]) -> str:
    rid = rid or os.environ.get("JUJU_RELATION_ID", "")
    return rid.split(":")[-1]


def visible_relation(state, rid_number: str):
    relation = state["relations"].get(rid_number)
    if relation is None:
        raise SystemExit("ERROR relation not found")
    return relation


def remote_members(state, relation) -> List[str]:
    """Remote units this unit sees in a relation (none once it is being removed; its peers, not itself)."""
    return relation_members(state, relation, MODEL, UNIT)


def settings_of(relation, model: str, unit: str) -> Dict[str, str]:
    return relation["data"].setdefault(unit_key(model, unit), {})


def unit_model(state, relation, unit: str) -> str:
    """Which model a unit named in a relation lives in."""
    local, remote = relation_ends(relation, MODEL, APP)
    if unit.split("/")[0] == APP and local is not None:
        return local["model"]
    return remote["model"]


def tool_relation_ids(argv):
    opts, rest = parse(argv, options=("format",))
    with locked(STATE, write=False) as state:
        ids = []
        for number, relation in sorted(state["relations"].items(), key=lambda i: int(i[0])):
            local, _ = relation_ends(relation, MODEL, APP)
            if local is None:
                continue
            if rest and local["endpoint"] != rest[0]:
                continue
            ids.append("{}:{}".format(local["endpoint"], number))
    out(ids, opts.get("format"))


def tool_relation_list(argv):
    opts, rest = parse(argv, options=("format", "r", "relation"))
    with locked(STATE, write=False) as state:
        relation = visible_relation(state, relation_id_number(opts.get("r") or opts.get("relation")))
        out(remote_members(state, relation), opts.get("format"))


def tool_relation_get(argv):
    opts, rest = parse(argv, flags=("app",), options=("format", "r", "relation"))
    key = rest[0] if rest else "-"
    unit = rest[1] if len(rest) > 1 else os.environ.get("JUJU_REMOTE_UNIT")
    with locked(STATE, write=False) as state:
        relation = visible_relation(state, relation_id_number(opts.get("r") or opts.get("relation")))
        if opts.get("app"):
            app = (unit or "").split("/")[0]
            model = MODEL if app == APP else relation_ends(relation, MODEL, APP)[1]["model"]
            data = relation.get("app_data", {}).get("{}:{}".format(model, app), {})
        else:
            data = relation["data"].get(unit_key(unit_model(state, relation, unit), unit), {})
    out(data if key == "-" else data.get(key), opts.get("format"))


def tool_relation_set(argv):
    if "--help" in argv:
        sys.stdout.write(
            "usage: relation-set [options] key=value [key=value ...]\n  --file  read settings from a file\n"
        )
        return
    opts, rest = parse(argv, flags=("app",), options=("r", "relation", "file", "format"))
    settings: Dict[str, Optional[str]] = {}
    if opts.get("file"):
        with open(opts["file"]) as handle:
            settings.update(_yaml().safe_load(handle) or {})
    for item in rest:
        key, _, value = item.partition("=")
        settings[key] = value
    with locked(STATE) as state:
        number = relation_id_number(opts.get("r") or opts.get("relation"))
        relation = visible_relation(state, number)
        if opts.get("app"):
            data = relation.setdefault("app_data", {}).setdefault("{}:{}".format(MODEL, APP), {})
        else:
            data = settings_of(relation, MODEL, UNIT)
        before = dict(data)
        for key, value in settings.items():
            if value in (None, ""):
                data.pop(key, None)
            else:
                data[key] = str(value)
        if data != before and not relation.get("dying"):
            local, remote = relation_ends(relation, MODEL, APP)
            for member in remote_members(state, relation):
                queue_hook(
                    state,
                    remote["model"],
                    member,
                    "{}-relation-changed".format(remote["endpoint"]),
                    relation_id=number,
                    remote_unit=UNIT,
                    remote_app=APP,
                )


def tool_leader_get(argv):
    opts, rest = parse(argv, options=("format",))
    key = rest[0] if rest else "-"
    with locked(STATE, write=False) as state:
        data = state["models"][MODEL]["apps"][APP]["leader_settings"]
    out(data if key == "-" else data.get(key), opts.get("format"))


def tool_leader_set(argv):
    with locked(STATE) as state:
        app = state["models"][MODEL]["apps"][APP]
        if app["leader"] != UNIT:
            raise SystemExit("ERROR cannot write leadership settings: not the leader")
        before = dict(app["leader_settings"])
        for item in argv:
            key, _, value = item.partition("=")
            if value:
                app["leader_settings"][key] = value
            else:
                app["leader_settings"].pop(key, None)
        if app["leader_settings"] != before:
            for unit in app_units(state, MODEL, APP):
                if unit != UNIT:
                    queue_hook(state, MODEL, unit, "leader-settings-changed")


def tool_is_leader(argv):
    opts, _ = parse(argv, options=("format",))
    with locked(STATE, write=False) as state:
        out(state["models"][MODEL]["apps"][APP]["leader"] == UNIT, opts.get("format") or "json")


def tool_juju_log(argv):
    opts, rest = parse(argv, flags=("debug",), options=("l", "log-level"))
    level = opts.get("l") or opts.get("log-level") or "INFO"
    path = os.path.join(os.environ["JUJUSIM_UNIT_DIR"], "juju.log")
    with open(path, "a") as handle:
        handle.write("{} {}: {}\n".format(os.environ.get("JUJU_HOOK_NAME", "?"), level, " ".join(rest)))


def tool_status_set(argv):
    opts, rest = parse(argv, flags=("application",))
    with locked(STATE) as state:
        unit = state["units"][unit_key(MODEL, UNIT)]
        unit["status"] = {"status": rest[0], "message": rest[1] if len(rest) > 1 else ""}


def tool_status_get(argv):
    opts, _ = parse(argv, flags=("include-data", "application"), options=("format",))
    with locked(STATE, write=False) as state:
        status = dict(state["units"][unit_key(MODEL, UNIT)]["status"])
    status["status-data"] = {}
    out(status, opts.get("format") or "json")


def tool_config_get(argv):
    opts, rest = parse(argv, flags=("all", "a"), options=("format",))
    with locked(STATE, write=False) as state:
        config = dict(state["models"][MODEL]["apps"][APP]["config"])
    out(config if not rest else config.get(rest[0]), opts.get("format") or "json")


def tool_goal_state(argv):
    opts, _ = parse(argv, options=("format",))
    with locked(STATE, write=False) as state:
        units = {
            u: {"status": "dying" if state["units"][unit_key(MODEL, u)].get("dying") else "active", "since": ""}
            for u in app_units(state, MODEL, APP)
        }
        relations: Dict[str, Dict] = {}
        for relation in state["relations"].values():
            local, remote = relation_ends(relation, MODEL, APP)
            if local is None or relation.get("dying"):
                continue
            entry = relations.setdefault(local["endpoint"], {})
            entry[remote["app"]] = {"status": "joined", "since": ""}
            for member in app_units(state, remote["model"], remote["app"]):
                entry[member] = {"status": "active", "since": ""}
    out({"units": units, "relations": relations}, opts.get("format") or "json")


def _address() -> str:
    with locked(STATE, write=False) as state:
        return state["units"][unit_key(MODEL, UNIT)]["address"]


def tool_network_get(argv):
    opts, rest = parse(argv, flags=("primary-address", "ingress-address", "bind-address"), options=("format", "r"))
    address = _address()
    if opts.get("primary-address") or opts.get("ingress-address") or opts.get("bind-address"):
        out(address, None)
        return
    info = {
        "bind-addresses": [{"interface-name": "eth0", "addresses": [{"value": address, "cidr": address + "/32"}]}],
        "egress-subnets": [address + "/32"],
        "ingress-addresses": [address],
    }
    out(info, opts.get("format") or "yaml")


def tool_unit_get(argv):
    opts, rest = parse(argv, options=("format",))
    out(_address(), opts.get("format"))


def tool_application_version_set(argv):
    with locked(STATE) as state:
        state["units"][unit_key(MODEL, UNIT)]["app_version"] = argv[0] if argv else ""


def tool_open_port(argv):
    return


# -- actions: parameters from a JSON file, results and failure written to another ------------


def _action_file(variable: str) -> str:
    path = os.environ.get(variable, "")
    if not path:
        raise SystemExit("ERROR not running an action")
    return path


def _action_results() -> Dict[str, Any]:
    path = _action_file("JUJUSIM_ACTION_RESULTS")
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return {"results": {}, "failed": None, "log": []}


def _save_action_results(results: Dict[str, Any]) -> None:
    with open(_action_file("JUJUSIM_ACTION_RESULTS"), "w") as handle:
        json.dump(results, handle)


def tool_action_get(argv):
    opts, rest = parse(argv, options=("format",))
    with open(_action_file("JUJUSIM_ACTION_PARAMS")) as handle:
        params = json.load(handle)
    out(params if not rest else params.get(rest[0]), opts.get("format") or "json")


def tool_action_set(argv):
    results = _action_results()
    for item in argv:
        key, _, value = item.partition("=")
        node = results["results"]
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    _save_action_results(results)


def tool_action_fail(argv):
    results = _action_results()
    results["failed"] = " ".join(argv) or "action failed"
    _save_action_results(results)


def tool_action_log(argv):
    results = _action_results()
    results["log"].append(" ".join(argv))
    _save_action_results(results)


TOOLS = {
    "action-get": tool_action_get,
    "action-set": tool_action_set,
    "action-fail": tool_action_fail,
    "action-log": tool_action_log,
    "relation-ids": tool_relation_ids,
    "relation-list": tool_relation_list,
    "relation-get": tool_relation_get,
    "relation-set": tool_relation_set,
    "leader-get": tool_leader_get,
    "leader-set": tool_leader_set,
    "is-leader": tool_is_leader,
    "juju-log": tool_juju_log,
    "status-set": tool_status_set,
    "status-get": tool_status_get,
    "config-get": tool_config_get,
    "goal-state": tool_goal_state,
    "network-get": tool_network_get,
    "unit-get": tool_unit_get,
    "application-version-set": tool_application_version_set,
    "open-port": tool_open_port,
    "close-port": tool_open_port,
}


def main() -> None:
    name = os.path.basename(sys.argv[0])
    if name not in TOOLS:
        raise SystemExit("jujusim: unknown hook tool " + name)
    if not STATE:
        raise SystemExit("jujusim: {} run outside a simulated hook".format(name))
    TOOLS[name](sys.argv[1:])


if __name__ == "__main__":
    main()
