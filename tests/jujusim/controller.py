"""The simulator's driver: deploy, relate, upgrade, and run hooks until settled.

Hooks run as real processes: ``python3 <unit charm dir>/hooks/<hook>`` with
the environment Juju gives a hook, the hook tools first on PATH, and the
unit's own state database (``UNIT_STATE_DB``), so charms.reactive dispatch,
flags, ``atstart``/``atexit`` and unitdata behave as on a real unit.

Each unit gets its own copy of the charm (as Juju unpacks it per unit) and,
where the kernel allows it, its own view of ``/var`` and ``/root`` (overlays in a private
mount namespace), so files a charm writes to absolute paths such as
``/var/snap/kube-apiserver/...`` stay per unit and never touch the host, and
its own host name (a private UTS namespace), as units on separate machines.
"""

import importlib.util
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
import tempfile
import uuid as uuidlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

from tests.jujusim import hookserver, hooktools, toolserver
from tests.jujusim.state import app_units, is_peer, locked, queue_hook, relation_ends, unit_key

TOOLS_DIR = Path(hooktools.__file__).resolve()
TESTS_DIR = TOOLS_DIR.parent.parent
REPO_DIR = TESTS_DIR.parent
HOOK_SITE = TESTS_DIR / "jujusim" / "hook_site"
# test helpers a test charm imports (vault-sim: tests.support.vault_provider), copied for its hooks
HOOK_HELPERS = ["support/vault_provider.py"]


def _python_files(root: Path) -> Dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*.py") if "__pycache__" not in p.parts}


def _library_files() -> Dict[str, bytes]:
    """This process's layer:vault-kv library (the checkout's), as it is when the simulator is imported:
    with the rest of the test code, before the charms are built; later edits to the tree do not count."""
    try:
        spec = importlib.util.find_spec("charms.layer.vault_kv")
    except ImportError:  # no layer importable here: nothing for in_hook to run
        return {}
    return _python_files(Path(spec.origin).resolve().parent) if spec is not None and spec.origin else {}


LIBRARY_AT_IMPORT = _library_files()


class HookFailed(Exception):
    """A hook exited non-zero more times than Juju's retries would allow here."""


def _same_ends(first: List[Dict[str, str]], second: List[Dict[str, str]]) -> bool:
    """Whether two relations join the same endpoints (in either order)."""
    return sorted(json.dumps(end, sort_keys=True) for end in first) == sorted(
        json.dumps(end, sort_keys=True) for end in second
    )


class RelationExists(Exception):
    """``juju integrate`` refused: the relation exists, or is dying but not yet removed."""


class UpgradeRefused(Exception):
    """``juju refresh`` refused, as Juju refuses it: the new charm lacks an endpoint a relation is established on."""


def charm_endpoints(charm: str) -> Dict[str, Dict[str, str]]:
    """{"requires"|"provides"|"peers": {endpoint: interface}} of a charm directory's metadata.yaml."""
    import yaml

    metadata = yaml.safe_load((Path(charm) / "metadata.yaml").read_text()) or {}
    return {
        kind: {name: (spec or {}).get("interface", "") for name, spec in (metadata.get(kind) or {}).items()}
        for kind in ("requires", "provides", "peers")
    }


def overlay_supported() -> bool:
    """Whether this machine lets us give each unit a private /var."""
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    return probe.returncode == 0 and os.geteuid() == 0


class Controller:
    """A Juju controller in a directory: models, units, relations and a hook queue."""

    def __init__(self, workdir: str, python: str = sys.executable, private_var: Optional[bool] = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.state_path = str(self.workdir / "state.json")
        self.python = python
        self.private_var = overlay_supported() if private_var is None else private_var
        if private_var is None and not self.private_var:
            # without it every unit would write the same host files under /var
            raise RuntimeError(
                "jujusim gives each unit a private /var with an overlay in a mount namespace:"
                " run as root on a machine that allows `unshare -m` (or pass private_var=False)"
            )
        self.bin = self.workdir / "bin"
        self.bin.mkdir(exist_ok=True)
        launcher = self.bin / "jujusim-tool"
        # -S: no site module, so none of site-packages' .pth start-up code runs (setuptools'
        # distutils hack among it) in the process a hook starts most; its own packages are
        # still found (YAML for the few tools that speak it)
        launcher.write_text(
            "#!{} -S\nimport sys\nsys.path.insert(0, {!r})\nsys.path.extend({!r})\n"
            "from tests.jujusim.hooktools import main\nmain()\n".format(
                python, str(REPO_DIR), sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
            )
        )
        launcher.chmod(0o755)
        # one server answers the tools (a bash client each) unless JUJUSIM_TOOL_SERVER=0
        self.tool_port = toolserver.ensure_running() if os.environ.get("JUJUSIM_TOOL_SERVER", "1") != "0" else None
        for name in hooktools.TOOLS:
            link = self.bin / name
            if name == "juju-log":
                # the most frequent tool by far: a shell one-liner, not a Python start-up
                if link.is_symlink():
                    link.unlink()
                link.write_text(
                    '#!/bin/sh\nwhile [ "${1#-}" != "$1" ]; do shift; [ $# -gt 0 ] && shift; done\n'
                    'printf "%s: %s\\n" "$JUJU_HOOK_NAME" "$*" >> "$JUJUSIM_UNIT_DIR/juju.log"\n'
                )
                link.chmod(0o755)
            elif self.tool_port:
                if link.is_symlink():
                    link.unlink()
                link.write_text(toolserver.client_script(str(launcher)))
                link.chmod(0o755)
            elif not link.exists():
                link.symlink_to(launcher)
        self.hook_helpers = self._copy_hook_helpers()
        self.hook_env: Dict[str, str] = {}  # extra environment for every hook (fault injection)
        self.hooks_run: List[Dict[str, Any]] = []
        # called with (item, finished process) after every hook, failed or not (checks of an invariant)
        self.after_every_hook: List[Callable[[Dict[str, Any], subprocess.CompletedProcess], None]] = []
        self.unit_env: Dict[Any, Dict[str, str]] = {}  # extra environment for one unit's hooks
        self.kills: List[Dict[str, Any]] = []
        with locked(self.state_path):
            pass

    def _copy_hook_helpers(self) -> Path:
        """A folder holding only the test helpers test charms import, as the ``tests`` package.

        Hooks get it and ``hook_site`` on ``PYTHONPATH``, never this checkout:
        its ``reactive/`` would come before the charm's own (``reactive`` is a
        namespace package, and ``PYTHONPATH`` precedes the charm dir charms.reactive
        appends), so a charm built from other reactive files would run this
        checkout's handlers.
        """
        helpers = self.workdir / "hook-helpers"
        for name in HOOK_HELPERS:
            target = helpers / "tests" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(str(TESTS_DIR / name), str(target))
            for package in target.relative_to(helpers).parents:
                if package.parts:
                    (helpers / package / "__init__.py").touch()
        return helpers

    def hook_pythonpath(self) -> str:
        """``PYTHONPATH`` of a hook or action: the simulator's sitecustomize and the copied test helpers only."""
        return "{}:{}".format(HOOK_SITE, self.hook_helpers)

    # -- snapshots (one deployment, many runs) ---------------------------------

    def snapshot(self, destination: str) -> None:
        """Copy the whole controller (state, unit dirs, unitdata, private /var) to ``destination``."""
        shutil.copytree(str(self.workdir), destination, symlinks=True)

    def restore(self, source: str) -> None:
        """Put the controller back as ``snapshot`` left it (same paths), forgetting runs and faults."""
        shutil.rmtree(str(self.workdir))
        shutil.copytree(source, str(self.workdir), symlinks=True)
        self.hooks_run = []
        self.unit_env = {}
        self.kills = []

    # -- models and applications ------------------------------------------------

    def add_model(self, name: str, model_uuid: Optional[str] = None) -> str:
        model_uuid = model_uuid or str(uuidlib.uuid4())
        with locked(self.state_path) as state:
            state["models"][model_uuid] = {"name": name, "apps": {}}
        return model_uuid

    def deploy(self, model: str, app: str, charm: str, units: int = 1, config: Optional[Dict] = None) -> List[str]:
        """Deploy ``charm`` (a built charm dir) as ``app`` with ``units`` units."""
        defaults = self._config_defaults(charm)
        defaults.update(config or {})
        with locked(self.state_path) as state:
            state["models"][model]["apps"][app] = {
                "charm": str(charm),
                "leader": "{}/0".format(app),
                "config": defaults,
                "leader_settings": {},
                "next_unit": 0,
            }
            self._add_peer_relations(state, model, app, charm)
        return [self.add_unit(model, app) for _ in range(units)]

    @staticmethod
    def _add_peer_relations(state, model: str, app: str, charm: str) -> List[str]:
        """Juju makes one relation per peer endpoint of the charm, with the application on both ends."""
        made = []
        have = {
            relation["ends"][0]["endpoint"]
            for relation in state["relations"].values()
            if is_peer(relation) and relation["ends"][0]["model"] == model and relation["ends"][0]["app"] == app
        }
        for endpoint in sorted(charm_endpoints(charm)["peers"]):
            if endpoint in have:
                continue
            number = str(state["next_relation_id"])
            state["next_relation_id"] += 1
            end = {"model": model, "app": app, "endpoint": endpoint}
            state["relations"][number] = {"ends": [end, dict(end)], "data": {}, "app_data": {}, "peer": True}
            made.append(number)
        return made

    def add_unit(self, model: str, app: str) -> str:
        with locked(self.state_path) as state:
            application = state["models"][model]["apps"][app]
            number = application["next_unit"]
            application["next_unit"] += 1
            name = "{}/{}".format(app, number)
            unit_dir = self.workdir / "units" / model[:8] / name.replace("/", "-")
            # every simulated machine is this host: Vault sees its requests
            # come from 127.0.0.1, so that is the address the AppRole binds
            address = "127.0.0.1"
            state["units"][unit_key(model, name)] = {
                "model": model,
                "app": app,
                "name": name,
                "address": address,
                "status": {"status": "unknown", "message": ""},
                "app_version": "",
                "dir": str(unit_dir),
            }
            charm = application["charm"]
            if application.get("leader") is None:
                application["leader"] = name  # nobody leads (the last leader was removed): Juju elects this one
            leader = application["leader"] == name
        unit_dir.mkdir(parents=True, exist_ok=True)
        (unit_dir / "var-upper").mkdir(exist_ok=True)
        (unit_dir / "var-work").mkdir(exist_ok=True)
        (unit_dir / "root-upper").mkdir(exist_ok=True)
        (unit_dir / "root-work").mkdir(exist_ok=True)
        self._install_charm(unit_dir, charm)
        with locked(self.state_path) as state:
            for hook in [
                "install",
                "leader-elected" if leader else "leader-settings-changed",
                "config-changed",
                "start",
            ]:
                queue_hook(state, model, name, hook)
            for number_, relation in state["relations"].items():
                local, remote = relation_ends(relation, model, app)
                if local is not None and is_peer(relation):
                    # Juju creates a unit's peer relations with it: relation-created before any joined
                    queue_hook(state, model, name, "{}-relation-created".format(local["endpoint"]), relation_id=number_)
                if local is not None:
                    self._queue_join(state, number_, relation, [(model, name)])
        return name

    @staticmethod
    def _config_defaults(charm: str) -> Dict[str, Any]:
        import yaml

        path = Path(charm) / "config.yaml"
        if not path.exists():
            return {}
        options = (yaml.safe_load(path.read_text()) or {}).get("options") or {}
        return {k: v.get("default") for k, v in options.items() if "default" in v}

    @staticmethod
    def _install_charm(unit_dir: Path, charm: str) -> None:
        """Unpack the charm into the unit's charm dir, replacing an older one."""
        target = unit_dir / "charm"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(charm, target, symlinks=True)

    def upgrade(self, model: str, app: str, charm: str) -> None:
        """``juju refresh``: every unit gets the new charm, then upgrade-charm and config-changed.

        Refused, as Juju refuses it ("would break relation"), when the new charm
        lacks the endpoint of a relation the application has, peer relations
        included (kubernetes-control-plane 1.29+ keeps 1.28's ``coordinator`` peer
        endpoint for that reason, LP:2049953).  New peer endpoints get their
        relation, joined by every unit.
        """
        endpoints = charm_endpoints(charm)
        declared = set(endpoints["requires"]) | set(endpoints["provides"]) | set(endpoints["peers"])
        with locked(self.state_path) as state:
            for relation in state["relations"].values():
                local, _ = relation_ends(relation, model, app)
                if local is not None and local["endpoint"] not in declared:
                    raise UpgradeRefused(
                        'cannot upgrade application "{}": would break relation "{}:{}"'.format(
                            app, app, local["endpoint"]
                        )
                    )
            state["models"][model]["apps"][app]["charm"] = str(charm)
            units = [(u, state["units"][unit_key(model, u)]["dir"]) for u in app_units(state, model, app)]
        for name, unit_dir in units:
            self._install_charm(Path(unit_dir), charm)
            with locked(self.state_path) as state:
                queue_hook(state, model, name, "upgrade-charm")
                queue_hook(state, model, name, "config-changed")
        with locked(self.state_path) as state:  # after upgrade-charm: the relations of new peer endpoints
            for number in self._add_peer_relations(state, model, app, charm):
                relation = state["relations"][number]
                for unit, _ in units:
                    endpoint = relation["ends"][0]["endpoint"]
                    queue_hook(state, model, unit, "{}-relation-created".format(endpoint), relation_id=number)
                self._queue_join(state, number, relation, [(model, unit) for unit, _ in units])

    def set_leader(self, model: str, app: str, unit: str) -> None:
        with locked(self.state_path) as state:
            state["models"][model]["apps"][app]["leader"] = unit
            for other in app_units(state, model, app):
                queue_hook(state, model, other, "leader-elected" if other == unit else "leader-settings-changed")

    def set_config(self, model: str, app: str, **values: Any) -> None:
        with locked(self.state_path) as state:
            state["models"][model]["apps"][app]["config"].update(values)
            for unit in app_units(state, model, app):
                queue_hook(state, model, unit, "config-changed")

    # -- relations ---------------------------------------------------------------

    def relate(self, model_a: str, app_a: str, endpoint_a: str, model_b: str, app_b: str, endpoint_b: str) -> str:
        """Relate two applications (in the same or different models, as with offers).

        Refused, as Juju refuses it, while a relation between the same endpoints is still dying (some
        unit has not run its relation-broken hook yet): a unit never sees the new relation before the
        old one is gone.
        """
        ends = [
            {"model": model_a, "app": app_a, "endpoint": endpoint_a},
            {"model": model_b, "app": app_b, "endpoint": endpoint_b},
        ]
        with locked(self.state_path) as state:
            for number, existing in state["relations"].items():
                if _same_ends(existing["ends"], ends):
                    raise RelationExists(
                        "relation {} is dying, but not yet removed".format(number)
                        if existing.get("dying")
                        else "relation {} already exists".format(number)
                    )
            number = str(state["next_relation_id"])
            state["next_relation_id"] += 1
            relation = {
                "ends": ends,
                "data": {},
                "app_data": {},
            }
            state["relations"][number] = relation
            units = [(model_a, u) for u in app_units(state, model_a, app_a)]
            self._queue_join(state, number, relation, units)
        return number

    def _queue_join(self, state, number: str, relation, joining) -> None:
        """Each joining unit and each unit across the relation meet: joined, then changed.

        In a peer relation a unit meets the other units of its application, each pair once."""
        met = set()
        for model, unit in joining:
            local, remote = relation_ends(relation, model, unit.split("/")[0])
            data = relation["data"].setdefault(unit_key(model, unit), {})
            address = state["units"][unit_key(model, unit)]["address"]
            data.update({"private-address": address, "ingress-address": address, "egress-subnets": address + "/32"})
            for other in app_units(state, remote["model"], remote["app"], dying=False):
                if is_peer(relation) and (other == unit or frozenset((unit, other)) in met):
                    continue
                met.add(frozenset((unit, other)))
                other_key = unit_key(remote["model"], other)
                other_address = state["units"][other_key]["address"]
                relation["data"].setdefault(other_key, {}).update(
                    {"private-address": other_address, "ingress-address": other_address}
                )
                for who, who_model, who_end, peer in (
                    (unit, model, local, other),
                    (other, remote["model"], remote, unit),
                ):
                    for kind in ("joined", "changed"):
                        queue_hook(
                            state,
                            who_model,
                            who,
                            "{}-relation-{}".format(who_end["endpoint"], kind),
                            relation_id=number,
                            remote_unit=peer,
                            remote_app=peer.split("/")[0],
                        )

    def remove_relation(self, number: str) -> None:
        """``juju remove-relation``: departed for each remote unit, then broken."""
        with locked(self.state_path) as state:
            relation = state["relations"][number]
            relation["dying"] = True
            relation["broken_pending"] = []
            for end, other in (relation["ends"], relation["ends"][::-1]):
                for unit in app_units(state, end["model"], end["app"]):
                    for peer in app_units(state, other["model"], other["app"]):
                        queue_hook(
                            state,
                            end["model"],
                            unit,
                            "{}-relation-departed".format(end["endpoint"]),
                            relation_id=number,
                            remote_unit=peer,
                            remote_app=other["app"],
                        )
                    queue_hook(
                        state, end["model"], unit, "{}-relation-broken".format(end["endpoint"]), relation_id=number
                    )
                    relation["broken_pending"].append(unit_key(end["model"], unit))

    def remove_unit(self, model: str, unit: str) -> None:
        """``juju remove-unit``: the unit is dying (goal-state says so) until its own hooks ran.

        Every unit across its relations (its peers too) runs departed for it
        at once and no longer sees it in relation-list; the dying unit runs
        departed for each of them, broken for each relation, then stop, after
        which it is gone (``_finish_removal``).  Until then its workload (its
        apiserver) still runs.  A dying leader hands leadership to the lowest
        remaining unit, as Juju elects another.
        """
        with locked(self.state_path) as state:
            info = state["units"][unit_key(model, unit)]
            if info.get("dying"):
                return
            info["dying"] = True
            app = info["app"]
            for number, relation in sorted(state["relations"].items(), key=lambda item: int(item[0])):
                local, remote = relation_ends(relation, model, app)
                if local is None or relation.get("dying"):
                    continue
                for other in app_units(state, remote["model"], remote["app"], dying=False):
                    if other == unit:
                        continue
                    queue_hook(
                        state,
                        remote["model"],
                        other,
                        "{}-relation-departed".format(remote["endpoint"]),
                        relation_id=number,
                        remote_unit=unit,
                        remote_app=app,
                    )
                    queue_hook(
                        state,
                        model,
                        unit,
                        "{}-relation-departed".format(local["endpoint"]),
                        relation_id=number,
                        remote_unit=other,
                        remote_app=remote["app"],
                    )
                queue_hook(state, model, unit, "{}-relation-broken".format(local["endpoint"]), relation_id=number)
            queue_hook(state, model, unit, "stop")
            application = state["models"][model]["apps"][app]
            if application["leader"] == unit:
                remaining = app_units(state, model, app, dying=False)
                if remaining:
                    application["leader"] = remaining[0]
                    for other in app_units(state, model, app):
                        queue_hook(
                            state,
                            model,
                            other,
                            "leader-elected" if other == remaining[0] else "leader-settings-changed",
                        )

    def _finish_removal(self, item: Dict[str, Any]) -> None:
        """A dying unit's stop hook ran: the unit and its relation data are gone."""
        with locked(self.state_path) as state:
            key = unit_key(item["model"], item["unit"])
            if not state["units"].get(key, {}).get("dying"):
                return
            app = state["units"][key]["app"]
            del state["units"][key]
            for relation in state["relations"].values():
                relation["data"].pop(key, None)
            application = state["models"][item["model"]]["apps"][app]
            if application.get("leader") == item["unit"]:
                # a leader removed with no other unit alive kept leading until gone; now Juju elects a unit
                # added since, or nobody until one is added
                remaining = app_units(state, item["model"], app, dying=False)
                application["leader"] = remaining[0] if remaining else None
                for other in app_units(state, item["model"], app):
                    if other != item["unit"]:
                        queue_hook(
                            state,
                            item["model"],
                            other,
                            "leader-elected" if other == application["leader"] else "leader-settings-changed",
                        )
            state["queue"] = [
                queued
                for queued in state["queue"]
                if (queued["model"], queued["unit"]) != (item["model"], item["unit"])
            ]

    # -- running hooks -------------------------------------------------------------

    def unit(self, model: str, unit: str) -> Dict[str, Any]:
        with locked(self.state_path, write=False) as state:
            return dict(state["units"][unit_key(model, unit)])

    def _hook_command(self, unit_info: Dict[str, Any], hook: str) -> List[str]:
        charm_dir = Path(unit_info["dir"]) / "charm"
        command = [self.python, str(charm_dir / "hooks" / hook)]
        if not self.private_var:
            return command
        upper, work = Path(unit_info["dir"]) / "var-upper", Path(unit_info["dir"]) / "var-work"
        script = (
            "mount --make-rprivate / && "
            "mount -t overlay overlay -o lowerdir=/var,upperdir={},workdir={} /var && "
            "mount -t overlay overlay -o lowerdir=/root,upperdir={},workdir={} /root && "
            "hostname {} && "
            'exec "$@"'
        ).format(
            upper,
            work,
            Path(unit_info["dir"]) / "root-upper",
            Path(unit_info["dir"]) / "root-work",
            self.hostname(unit_info),
        )
        return ["unshare", "-m", "-u", "sh", "-c", script, "jujusim-hook"] + command

    @staticmethod
    def hostname(unit_info: Dict[str, Any]) -> str:
        """The machine name a unit's hooks see (its own UTS namespace), as on separate machines."""
        return "juju-{}-{}".format(unit_info["model"][:8], unit_info["name"].replace("/", "-"))[:63]

    def hook_environment(
        self, model: str, unit: str, hook: str, item: Optional[Dict[str, Any]] = None
    ) -> Dict[str, str]:
        """The environment Juju gives a hook of ``unit`` (plus the simulator's own variables)."""
        info = self.unit(model, unit)
        charm_dir = Path(info["dir"]) / "charm"
        with locked(self.state_path, write=False) as state:
            model_name = state["models"][model]["name"]
        # Juju gives a hook neither this machine's Juju/Vault variables nor PYTHONDONTWRITEBYTECODE: a unit
        # keeps its charm's compiled modules from one hook to the next
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("JUJU_", "CHARM_", "VAULT_", "BAO_")) and k != "PYTHONDONTWRITEBYTECODE"
        }
        env.update(
            {
                "PATH": "{}:{}:{}".format(self.bin, Path(self.python).parent, os.environ.get("PATH", "")),
                "JUJUSIM_STATE": self.state_path,
                "JUJUSIM_UNIT_DIR": info["dir"],
                "JUJU_UNIT_NAME": unit,
                "JUJU_MODEL_UUID": model,
                "JUJU_MODEL_NAME": model_name,
                "JUJU_CHARM_DIR": str(charm_dir),
                "CHARM_DIR": str(charm_dir),
                "JUJU_HOOK_NAME": hook,
                "JUJU_AVAILABILITY_ZONE": "",
                "JUJU_MACHINE_ID": "0",
                "JUJU_PRINCIPAL_UNIT": "",
                "JUJU_VERSION": "3.4.0",
                "UNIT_STATE_DB": str(Path(info["dir"]) / "unit-state.db"),
            }
        )
        if self.tool_port:
            env["JUJUSIM_TOOL_PORT"] = str(self.tool_port)
        if sys.version_info < (3, 12):
            # `import distutils` as on the Ubuntu interpreters charms run on (3.8 to 3.11 ship
            # it), not setuptools' replacement, which costs every hook half a second
            env["SETUPTOOLS_USE_DISTUTILS"] = "stdlib"
        item = item or {}
        if "relation_id" in item:
            endpoint = hook.rsplit("-relation-", 1)[0]
            env["JUJU_RELATION"] = endpoint
            env["JUJU_RELATION_ID"] = "{}:{}".format(endpoint, item["relation_id"])
        if "remote_unit" in item:
            env["JUJU_REMOTE_UNIT"] = item["remote_unit"]
            env["JUJU_REMOTE_APP"] = item["remote_app"]
        return env

    @contextmanager
    def in_hook(self, model: str, unit: str, hook: str = "update-status") -> Iterator[None]:
        """Run the test's own code as if inside a hook of ``unit``, in this process.

        The real charmhelpers and charms.reactive read the unit's relation
        data, leader data and unitdata through the simulator; the endpoints
        are set up as at hook start, and relation data and unitdata are
        written back at the end, as after a successful hook.  The layer's
        library is this process's (the checkout's): a unit whose charm carries
        a different one is refused.
        """
        from charmhelpers.core import hookenv, unitdata
        from charms.reactive.endpoints import Endpoint

        from charms.layer import vault_kv

        self._check_in_process_layer(model, unit)
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(self.hook_environment(model, unit, hook))
        hookenv.cache.clear()
        unitdata._KV = None
        Endpoint._endpoints = {}
        del hookenv._atstart[:]
        del hookenv._atexit[:]
        vault_kv.reset_cached_state()
        try:
            Endpoint._startup()
            yield
            hookenv._run_atexit()
            unitdata.kv().flush()
        finally:
            del hookenv._atexit[:]
            unitdata._KV = None
            hookenv.cache.clear()
            vault_kv.reset_cached_state()
            os.environ.clear()
            os.environ.update(saved)

    def _check_in_process_layer(self, model: str, unit: str) -> None:
        """``in_hook`` runs the test process's layer library, not the unit's: refuse a unit whose charm has another."""
        theirs = Path(self.unit(model, unit)["dir"]) / "charm" / "lib" / "charms" / "layer" / "vault_kv"
        if _python_files(theirs) != LIBRARY_AT_IMPORT:
            raise RuntimeError(
                "in_hook would run this process's layer:vault-kv library, but {}'s charm carries another"
                " ({}): run that unit's own code with start_hook_script".format(unit, theirs)
            )

    def run_hook(self, item: Dict[str, Any]) -> subprocess.CompletedProcess:
        """Run one queued hook as a process; returns the finished process."""
        model, unit, hook = item["model"], item["unit"], item["hook"]
        info = self.unit(model, unit)
        charm_dir = Path(info["dir"]) / "charm"
        if not (charm_dir / "hooks" / hook).exists():
            return subprocess.CompletedProcess([hook], 0, "", "")
        env = self.hook_environment(model, unit, hook, item)
        env["PYTHONPATH"] = self.hook_pythonpath()
        env.update(self.hook_env)
        env.update(self.unit_env.get((model, unit), {}))
        process = self._run_hook_process(info, hook, env)
        if process.returncode == 137 and (model, unit) in self.unit_env:
            self.kills.append(dict(item))
            del self.unit_env[(model, unit)]  # died once, as asked; the retry runs normally
        record = dict(item, returncode=process.returncode)
        self.hooks_run.append(record)
        with open(Path(info["dir"]) / "hooks.log", "a") as handle:
            handle.write("=== {} rc={}\n{}{}\n".format(hook, process.returncode, process.stdout, process.stderr))
        if process.returncode == 0 and hook.endswith("-relation-broken"):
            self._finish_broken(item)
        if process.returncode == 0 and hook == "stop":
            self._finish_removal(item)
        for observe in self.after_every_hook:
            observe(record, process)
        return process

    def _run_hook_process(self, info: Dict[str, Any], hook: str, env: Dict[str, str]) -> subprocess.CompletedProcess:
        """One hook, as a process of its own: forked from the hook server, or a new interpreter without it."""
        charm_dir = Path(info["dir"]) / "charm"
        command = self._hook_command(info, hook)
        port = None
        # a new interpreter when the hook sets one of its own variables (an import list, a hash seed, ...)
        if os.environ.get("JUJUSIM_HOOK_SERVER", "1") != "0" and hookserver.serves(env):
            port = hookserver.ensure_running(self.python, env["PYTHONPATH"])
        if port is None:
            return subprocess.run(command, cwd=str(charm_dir), env=env, capture_output=True, text=True, timeout=300)
        scratch = Path(tempfile.mkdtemp(dir=str(self.workdir), prefix="hook-"))
        request = {
            "argv": [str(charm_dir / "hooks" / hook)],
            "cwd": str(charm_dir),
            "env": env,
            "stdout": str(scratch / "stdout"),
            "stderr": str(scratch / "stderr"),
            "private_var": None,
        }
        if self.private_var:
            request["private_var"] = {
                "upper": str(Path(info["dir"]) / "var-upper"),
                "work": str(Path(info["dir"]) / "var-work"),
                "hostname": self.hostname(info),
            }
        try:
            code = hookserver.run(port, request)
            out = (scratch / "stdout").read_text(errors="surrogateescape")
            err = (scratch / "stderr").read_text(errors="surrogateescape")
        finally:
            shutil.rmtree(str(scratch), ignore_errors=True)
        return subprocess.CompletedProcess(command, code, out, err)

    def start_hook_script(
        self, model: str, unit: str, hook: str, script: str, extra_env: Optional[Dict[str, str]] = None
    ) -> subprocess.Popen:
        """Start ``script`` as if it were ``unit``'s ``hook`` (same environment, same sandbox), not waited for.

        For tests that need two units' hooks to run at the same time; the
        caller waits for the process.
        """
        info = self.unit(model, unit)
        charm_dir = Path(info["dir"]) / "charm"
        env = self.hook_environment(model, unit, hook)
        env["PYTHONPATH"] = self.hook_pythonpath()
        env.update(self.hook_env)
        env.update(extra_env or {})
        command = self._hook_command(info, hook)
        command[command.index(str(charm_dir / "hooks" / hook))] = script
        return subprocess.Popen(
            command, cwd=str(charm_dir), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def run_action(self, model: str, unit: str, action: str, params: Optional[Dict[str, Any]] = None) -> Dict:
        """Run ``action`` on ``unit`` as ``juju run`` would; returns its results.

        The answer has ``results`` (what action-set gave, nested at dots),
        ``failed`` (the action-fail message or None), ``returncode`` and the
        process's ``stderr``.
        """
        info = self.unit(model, unit)
        charm_dir = Path(info["dir"]) / "charm"
        script = charm_dir / "actions" / action
        if not script.exists():
            raise KeyError("{} has no action {}".format(unit, action))
        scratch = Path(tempfile.mkdtemp(dir=str(self.workdir), prefix="action-"))
        (scratch / "params.json").write_text(json.dumps(params or {}))
        env = self.hook_environment(model, unit, action)
        env["PYTHONPATH"] = self.hook_pythonpath()
        env.update(
            {
                "JUJU_ACTION_NAME": action,
                "JUJU_ACTION_UUID": scratch.name,
                "JUJUSIM_ACTION_PARAMS": str(scratch / "params.json"),
                "JUJUSIM_ACTION_RESULTS": str(scratch / "results.json"),
            }
        )
        env.update(self.hook_env)
        env.update(self.unit_env.get((model, unit), {}))
        command = self._hook_command(info, action)
        command[command.index(str(charm_dir / "hooks" / action))] = str(script)
        process = subprocess.run(command, cwd=str(charm_dir), env=env, capture_output=True, text=True, timeout=300)
        with open(Path(info["dir"]) / "hooks.log", "a") as handle:
            handle.write(
                "=== action {} rc={}\n{}{}\n".format(action, process.returncode, process.stdout, process.stderr)
            )
        if process.returncode == 137:
            self.unit_env.pop((model, unit), None)  # died once, as asked
        results_file = scratch / "results.json"
        answer = json.loads(results_file.read_text()) if results_file.exists() else {"results": {}, "failed": None}
        shutil.rmtree(str(scratch), ignore_errors=True)
        answer.update(returncode=process.returncode, stderr=process.stderr)
        return answer

    def _finish_broken(self, item) -> None:
        with locked(self.state_path) as state:
            relation = state["relations"].get(item["relation_id"])
            if relation is None or not relation.get("dying"):
                return  # a unit being removed leaves the relation; the relation stays
            pending = relation.get("broken_pending", [])
            key = unit_key(item["model"], item["unit"])
            if key in pending:
                pending.remove(key)
            if not pending:
                del state["relations"][item["relation_id"]]

    def queue(self, model: str, unit: str, hook: str) -> None:
        """Queue a hook by hand (update-status, say) for the next settle."""
        with locked(self.state_path) as state:
            queue_hook(state, model, unit, hook)

    def kill_at_vault_request(self, model: str, unit: str, number: int, files_under: str = "") -> None:
        """Make ``unit``'s hooks die right after their ``number``-th Vault request, once.

        Requests are counted across hooks from now on; after the kill the unit
        runs normally again (Juju retries the hook that died).  With
        ``files_under``, a file put in place under that directory counts as a
        step too (a kill right after each file write).
        """
        counter = self.workdir / "vault-requests-{}-{}".format(model[:8], unit.replace("/", "-"))
        counter.write_text("0")
        self.unit_env[(model, unit)] = {
            "JUJUSIM_KILL_AT_VAULT_REQUEST": str(number),
            "JUJUSIM_KILL_COUNTER": str(counter),
        }
        if files_under:
            self.unit_env[(model, unit)]["JUJUSIM_KILL_COUNTS_FILES_UNDER"] = files_under

    def stop_killing(self, model: str, unit: str) -> None:
        """Forget a kill that did not happen (the hook made fewer steps)."""
        self.unit_env.pop((model, unit), None)

    def pop_hook(self) -> Optional[Dict[str, Any]]:
        with locked(self.state_path) as state:
            return state["queue"].pop(0) if state["queue"] else None

    def requeue_front(self, item: Dict[str, Any]) -> None:
        with locked(self.state_path) as state:
            state["queue"].insert(0, item)

    def settle(self, max_hooks: int = 400, retries: int = 3, after_hook=None, fail_fast: bool = False) -> int:
        """Run queued hooks until none is left; a failing hook is retried like Juju does.

        ``after_hook(item, process)`` is called after every hook (a check of an
        invariant); with ``fail_fast`` the first failed hook raises HookFailed.
        """
        ran = 0
        failures: Dict[str, int] = {}
        while True:
            item = self.pop_hook()
            if item is None:
                return ran
            ran += 1
            if ran > max_hooks:
                raise HookFailed("model did not settle after {} hooks".format(max_hooks))
            process = self.run_hook(item)
            if after_hook is not None:
                after_hook(item, process)
            if process.returncode != 0 and fail_fast:
                raise HookFailed("{} on {} failed:\n{}".format(item["hook"], item["unit"], process.stderr[-3000:]))
            if process.returncode != 0:
                key = json.dumps(item, sort_keys=True)
                failures[key] = failures.get(key, 0) + 1
                if failures[key] > retries:
                    raise HookFailed(
                        "{} on {} failed {} times:\n{}".format(
                            item["hook"], item["unit"], failures[key], process.stderr[-3000:]
                        )
                    )
                self.requeue_front(item)

    # -- reading a unit's state -----------------------------------------------------

    def unitdata(self, model: str, unit: str) -> Dict[str, Any]:
        """The unit's local key-value store (charmhelpers unitdata), decoded."""
        path = Path(self.unit(model, unit)["dir"]) / "unit-state.db"
        if not path.exists():
            return {}
        with sqlite3.connect(str(path)) as db:
            rows = db.execute("SELECT key, data FROM kv").fetchall()
        return {key: json.loads(data) for key, data in rows}

    def forget_unitdata(self, model: str, unit: str, keys) -> None:
        """Delete ``keys`` from the unit's unitdata (to recreate what another layer version left)."""
        path = Path(self.unit(model, unit)["dir"]) / "unit-state.db"
        with sqlite3.connect(str(path)) as db:
            db.executemany("DELETE FROM kv WHERE key = ?", [(key,) for key in keys])

    def forget_leader_settings(self, model: str, app: str, keys) -> None:
        """Delete ``keys`` from the application's leader data (to recreate what another layer version left)."""
        with locked(self.state_path) as state:
            settings = state["models"][model]["apps"][app]["leader_settings"]
            for key in keys:
                settings.pop(key, None)

    def run_hooks(self, count: int) -> None:
        """Run the next ``count`` queued hooks (a settle interrupted part-way)."""
        for _ in range(count):
            item = self.pop_hook()
            if item is None:
                return
            if self.run_hook(item).returncode != 0:
                self.requeue_front(item)

    def flags(self, model: str, unit: str) -> List[str]:
        prefix = "reactive.states."
        return sorted(k[len(prefix) :] for k in self.unitdata(model, unit) if k.startswith(prefix))

    def status(self, model: str, unit: str) -> Dict[str, str]:
        return self.unit(model, unit)["status"]

    def log(self, model: str, unit: str) -> str:
        path = Path(self.unit(model, unit)["dir"]) / "juju.log"
        return path.read_text() if path.exists() else ""

    def hooks_output(self, model: str, unit: str) -> str:
        path = Path(self.unit(model, unit)["dir"]) / "hooks.log"
        return path.read_text() if path.exists() else ""

    def unit_file(self, model: str, unit: str, absolute_path: str) -> Optional[bytes]:
        """A file the unit wrote at an absolute path under /var or /root, read from its private view."""
        path = self.unit_path(model, unit, absolute_path)
        return path.read_bytes() if path.exists() else None

    def unit_path(self, model: str, unit: str, absolute_path: str) -> Path:
        """Where the unit's private view of an absolute path under /var or /root is on this machine.

        Written between hooks (a test's fault switch, what the environment gives the unit), a file
        there is what the unit's next hook finds at ``absolute_path``.
        """
        info = self.unit(model, unit)
        for top in ("var", "root"):
            if self.private_var and absolute_path.startswith("/{}/".format(top)):
                return Path(info["dir"]) / "{}-upper".format(top) / absolute_path[len(top) + 2 :]
        return Path(absolute_path)

    def unit_file_mode(self, model: str, unit: str, absolute_path: str) -> Optional[int]:
        info = self.unit(model, unit)
        path = Path(info["dir"]) / "var-upper" / absolute_path[len("/var/") :]
        return (path.stat().st_mode & 0o777) if path.exists() else None

    def units(self, model: str, app: str) -> List[str]:
        with locked(self.state_path, write=False) as state:
            return app_units(state, model, app)

    def leader_settings(self, model: str, app: str) -> Dict[str, str]:
        with locked(self.state_path, write=False) as state:
            return dict(state["models"][model]["apps"][app]["leader_settings"])

    def leader(self, model: str, app: str) -> str:
        with locked(self.state_path, write=False) as state:
            return state["models"][model]["apps"][app]["leader"]

    def relation_data(self, number: str) -> Dict[str, Dict[str, str]]:
        with locked(self.state_path, write=False) as state:
            return json.loads(json.dumps(state["relations"][number]["data"]))
