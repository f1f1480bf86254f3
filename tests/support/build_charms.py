"""Build every test charm with ``charm build`` (charm-tools from PyPI), from one table.

Each consumer build is the same charm, ``kcp-consumer``: the layer
``kcp-consumer-core`` (kubernetes-control-plane 1.28's Vault handlers) on a
base layer, with layer options.  ``CONSUMERS`` lists them; the wrapper charm
(its ``layer.yaml`` and ``metadata.yaml``) is written from the table at build
time, so a new variant is one row.  The simulated vault application is a
charm of its own (``tests/charms/vault-sim``).  Charms that need no ``charm
build`` (``PLAIN_CHARMS``: the model of kubernetes-control-plane 1.29+, an ops
charm without the layer, ``tests/charms/kcp-ops``) are copied as they are.

Simulator builds are offline: layers and interfaces are served from local
folders (CHARM_LAYERS_DIR, CHARM_INTERFACES_DIR) made of links to this
repository, so the build uses exactly the layer and interface being tested,
and wheels are taken as binaries (--binary-wheels).  Functional builds put
the charm on the real ``layer:basic`` and ``layer:leadership``, fetched from
the layer index: they need network access.

Outputs (git-ignored), by build name:
  current       build/charms/current/kcp-consumer      charm-{model-uuid}-{app}
  legacy        build/charms/legacy/kcp-consumer       charm-{app}, as 1.27 was first released
  ss            build/charms/ss/kcp-consumer           current, with the layer's secure storage on too
  vault         build/charms/current/vault-sim         the simulated vault application
  ops           build/charms/ops/kcp-ops               kubernetes-control-plane 1.29+ (no layer), copied
  functional/current, functional/legacy   build/functional/{current,legacy}/kcp-consumer

Run: python -m tests.support.build_charms [build-dir]          (simulator charms)
     python -m tests.support.build_charms --functional          (make functional-charms)
"""

import hashlib
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, NamedTuple, Tuple

import yaml

REPO = Path(__file__).resolve().parents[2]
ENCRYPTION_CONFIG = "/var/snap/kube-apiserver/common/encryption/encryption_config.yaml"
SIM_BASE = ["layer:basic-sim"]
REAL_BASE = ["layer:basic", "layer:leadership"]  # leadership sets leadership.is_leader, as kcp has


class Consumer(NamedTuple):
    """One build of the consumer charm."""

    base: List[str]
    options: Dict[str, str]
    summary: str


CONSUMERS: Dict[str, Consumer] = {
    "current": Consumer(SIM_BASE, {}, "kubernetes-control-plane 1.28-shaped: charm-{model-uuid}-{app}"),
    "legacy": Consumer(
        SIM_BASE, {"secrets-backend-format": "charm-{app}"}, "as first released for 1.27 and before: charm-{app}"
    ),
    "ss": Consumer(
        SIM_BASE,
        {"encryption-config-path": ENCRYPTION_CONFIG},
        "1.28-shaped, with the layer's own secure storage on as well",
    ),
    "functional/current": Consumer(REAL_BASE, {}, "for a real controller: charm-{model-uuid}-{app}"),
    "functional/legacy": Consumer(
        REAL_BASE, {"secrets-backend-format": "charm-{app}"}, "for a real controller: charm-{app}"
    ),
}
SIMULATOR_BUILDS = ["current", "legacy", "ss"]
# plain charm directories, copied rather than built: build name -> (source folder, charm name)
PLAIN_CHARMS: Dict[str, Tuple[str, str]] = {"ops": ("tests/charms/kcp-ops", "kcp-ops")}
FUNCTIONAL_BUILDS = ["functional/current", "functional/legacy"]

# what the simulator builds read: a change to any of them rebuilds
SOURCES = [
    "layer.yaml",
    "metadata.yaml",
    "wheelhouse.txt",
    "lib",
    "reactive",
    "actions",
    "actions.yaml",
    "interface-vault-kv",
]
SOURCES += ["tests/layers", "tests/charms", "tests/support/build_charms.py"]
LAYER_FILES = ["layer.yaml", "metadata.yaml", "wheelhouse.txt", "lib", "reactive", "actions", "actions.yaml"]


def source_digest(sources: List[str] = SOURCES, leave_out: Tuple[str, ...] = ()) -> str:
    """A digest of every file under ``sources`` but ``leave_out``, to rebuild only when one changed."""
    digest = hashlib.sha256()
    for source in sources:
        path = REPO / source
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for item in files:
            relative = str(item.relative_to(REPO))
            if "__pycache__" in item.parts or relative.startswith(tuple(folder + "/" for folder in leave_out)):
                continue
            digest.update(relative.encode())
            digest.update(item.read_bytes())
    return digest.hexdigest()


def stage_layer(target: Path) -> None:
    """Copy just the layer's own files: a link to the whole repository would make
    charm build walk the virtualenvs and build outputs that live in it."""
    target.mkdir(parents=True)
    for name in LAYER_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target / name)


def write_consumer(target: Path, consumer: Consumer) -> Path:
    """The wrapper charm of one build: its base layers, the core layer, its options."""
    target.mkdir(parents=True)
    layer = {"includes": consumer.base + ["layer:kcp-consumer-core"]}
    if consumer.options:
        layer["options"] = {"vault-kv": dict(consumer.options)}
    (target / "layer.yaml").write_text(yaml.safe_dump(layer, sort_keys=False))
    metadata = {
        "name": "kcp-consumer",
        "summary": "Test consumer of layer:vault-kv, " + consumer.summary,
        "description": "Keeps the kube-apiserver encryption-at-rest key through layer:vault-kv and\n"
        "reports, without revealing it, which key each unit holds.\n",
        "requires": {"vault-kv": {"interface": "vault-kv"}},
        "maintainer": "layer-vault-kv developers <layer-vault-kv@example.invalid>",
        "tags": ["misc"],
        "series": ["jammy"],
    }
    (target / "metadata.yaml").write_text(yaml.safe_dump(metadata, sort_keys=False))
    (target / "copyright").write_text("Test-only charm of layer-vault-kv; Apache-2.0.\n")
    return target


def output_of(build_dir: Path, name: str) -> Path:
    if name == "vault":
        return build_dir / "charms" / "current" / "vault-sim"
    if name in PLAIN_CHARMS:
        return build_dir / "charms" / name / PLAIN_CHARMS[name][1]
    if name.startswith("functional/"):
        return build_dir / "functional" / name.split("/", 1)[1] / "kcp-consumer"
    return build_dir / "charms" / name / "kcp-consumer"


def charm_paths(build_dir: Path) -> Dict[str, Path]:
    return {name: output_of(build_dir, name) for name in SIMULATOR_BUILDS + ["vault"] + list(PLAIN_CHARMS)}


def _work_dir(work: Path, offline: bool) -> Dict[str, str]:
    """Local layer and interface folders for charm build; its environment."""
    layers, interfaces = work / "layers", work / "interfaces"
    shutil.rmtree(work, ignore_errors=True)
    layers.mkdir(parents=True)
    interfaces.mkdir(parents=True)
    stage_layer(layers / "vault-kv")
    local_layers = ["vaultlocker-sim"] + (["basic-sim"] if offline else [])
    for name in local_layers:
        (layers / name).symlink_to(REPO / "tests" / "layers" / name)
    (layers / "kcp-consumer-core").symlink_to(REPO / "tests" / "charms" / "kcp-consumer-core")
    (interfaces / "vault-kv").symlink_to(REPO / "interface-vault-kv")
    return build_environment(layers, interfaces, work / "cache")


def build_environment(layers: Path, interfaces: Path, cache: Path) -> Dict[str, str]:
    """charm build's environment: local layer and interface folders, its cache, this virtualenv's tools."""
    env = dict(os.environ)
    env.update(
        {
            "CHARM_LAYERS_DIR": str(layers),
            "CHARM_INTERFACES_DIR": str(interfaces),
            "CHARM_CACHE_DIR": str(cache),
            "PATH": "{}:{}".format(Path(sys.executable).parent, env.get("PATH", "")),
        }
    )
    return env


def _charm_build(source: Path, out: Path, env: Dict[str, str], cwd: Path, offline: bool) -> None:
    command = [str(Path(sys.executable).parent / "charm-build"), "--no-report", "-l", "WARNING", "-o", str(out)]
    if offline:
        command.append("--binary-wheels")
    result = subprocess.run(command + [str(source)], env=env, cwd=str(cwd), capture_output=True, text=True)
    if result.returncode not in (0, 100):  # 100: built, with proof warnings
        raise RuntimeError("charm build of {} failed:\n{}{}".format(source, result.stdout, result.stderr))


def build(build_dir: Path = REPO / "build", force: bool = False) -> Dict[str, Path]:
    """Build the simulator charms if their sources changed; returns their paths by build name.

    One build at a time per build folder (an exclusive lock on a file in it): pytest-xdist
    workers started without ``make charms`` first each call this, and the second then finds
    the first's build up to date instead of building over it.
    """
    import fcntl

    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    with open(str(build_dir / ".build.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_unlocked(build_dir, force)


def _build_unlocked(build_dir: Path, force: bool) -> Dict[str, Path]:
    paths = charm_paths(build_dir)
    stamp = build_dir / "charms" / ".sources"
    # a plain charm's change costs a copy, not the charm builds
    digest = source_digest(leave_out=tuple(source for source, _ in PLAIN_CHARMS.values()))
    built = [name for name in paths if name not in PLAIN_CHARMS]
    if force or not (stamp.exists() and stamp.read_text() == digest and all(paths[n].exists() for n in built)):
        _build_all(build_dir, paths)
        stamp.write_text(digest)
    for name in PLAIN_CHARMS:
        _copy_plain_charm(name, paths[name])
    for name, path in paths.items():
        if not (path / "hooks" / "install").exists():
            raise RuntimeError("charm build produced no {} charm at {}".format(name, path))
    return paths


def _copy_plain_charm(name: str, target: Path) -> None:
    """Copy a plain charm directory when its files changed (put in place by a rename)."""
    source = PLAIN_CHARMS[name][0]
    stamp = target.parent / ".sources"
    digest = source_digest([source])
    if stamp.exists() and stamp.read_text() == digest and target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / ".{}.{}".format(target.name, os.getpid())
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(REPO / source, staging, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.rmtree(target, ignore_errors=True)
    os.rename(staging, target)
    stamp.write_text(digest)


def _build_all(build_dir: Path, paths: Dict[str, Path]) -> None:
    """charm build of every consumer build and of the vault application."""
    work = build_dir / "charm-build"
    shutil.rmtree(build_dir / "charms", ignore_errors=True)
    env = _work_dir(work, offline=True)
    sources = {name: write_consumer(work / "wrappers" / name, CONSUMERS[name]) for name in SIMULATOR_BUILDS}
    sources["vault"] = REPO / "tests" / "charms" / "vault-sim"

    def build_one(name: str) -> None:
        # each build its own cache: charm build fetches wheels into it
        own_env = dict(env, CHARM_CACHE_DIR=str(work / "cache" / name))
        _charm_build(sources[name], paths[name].parent, own_env, work, offline=True)

    with ThreadPoolExecutor(max_workers=2) as pool:  # two at a time: the machine has two cores
        for done in [pool.submit(build_one, name) for name in sources]:
            done.result()


def build_functional(build_dir: Path = REPO / "build") -> Dict[str, Path]:
    """Build the charms the functional bundles deploy (network: layer:basic from the layer index)."""
    build_dir = Path(build_dir).resolve()
    work = build_dir / "functional-build"
    env = _work_dir(work, offline=False)
    outputs = {}
    for name in FUNCTIONAL_BUILDS:
        source = write_consumer(work / "wrappers" / name.replace("/", "-"), CONSUMERS[name])
        outputs[name] = output_of(build_dir, name)
        _charm_build(source, outputs[name].parent, env, work, offline=False)
    return outputs


if __name__ == "__main__":
    arguments = sys.argv[1:]
    functional = "--functional" in arguments
    arguments = [a for a in arguments if a != "--functional"]
    target = Path(arguments[0]) if arguments else REPO / "build"
    for name, path in (build_functional(target) if functional else build(target)).items():
        print("{}: {}".format(name, path))
