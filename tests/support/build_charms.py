"""Build the test charms with ``charm build`` (charm-tools from PyPI), offline.

Layers and interfaces are served from local folders (CHARM_LAYERS_DIR,
CHARM_INTERFACES_DIR) made of links to this repository, so the build uses
exactly the layer and interface being tested.  Wheels are taken as binaries
(--binary-wheels): seconds instead of minutes, and the simulator runs hooks
with an interpreter that already has the dependencies anyway.

Outputs (git-ignored):
  build/charms/current/kcp-consumer   kubernetes-control-plane 1.28-shaped: charm-{model-uuid}-{app}
  build/charms/legacy/kcp-consumer    the same handlers with charm-{app}, as 1.27 was first released
  build/charms/ss/kcp-consumer        1.28-shaped with the layer's secure storage on as well
  build/charms/current/vault-sim      the simulated vault application

Run: python -m tests.support.build_charms [build-dir]
"""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCES = [
    "layer.yaml",
    "metadata.yaml",
    "wheelhouse.txt",
    "lib",
    "reactive",
    "interface-vault-kv",
    "tests/layers",
    "tests/charms",
]
BUILDS = [
    ("current", "tests/charms/kcp-consumer"),
    ("legacy", "tests/charms/kcp-consumer-legacy"),
    ("ss", "tests/charms/kcp-consumer-ss"),
    ("current", "tests/charms/vault-sim"),
]


def source_digest() -> str:
    """A digest of every file the builds read, to rebuild only when one changed."""
    digest = hashlib.sha256()
    for source in SOURCES:
        path = REPO / source
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for item in files:
            if "__pycache__" in item.parts:
                continue
            digest.update(str(item.relative_to(REPO)).encode())
            digest.update(item.read_bytes())
    return digest.hexdigest()


LAYER_FILES = ["layer.yaml", "metadata.yaml", "wheelhouse.txt", "lib", "reactive"]


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


def charm_paths(build_dir: Path):
    charms = build_dir / "charms"
    return {
        "current": charms / "current" / "kcp-consumer",
        "legacy": charms / "legacy" / "kcp-consumer",
        "ss": charms / "ss" / "kcp-consumer",
        "vault": charms / "current" / "vault-sim",
    }


def build(build_dir: Path = REPO / "build", force: bool = False) -> dict:
    """Build the charms if their sources changed; returns their paths."""
    build_dir = Path(build_dir).resolve()
    paths = charm_paths(build_dir)
    stamp = build_dir / "charms" / ".sources"
    digest = source_digest()
    if not force and stamp.exists() and stamp.read_text() == digest and all(p.exists() for p in paths.values()):
        return paths
    work = build_dir / "charm-build"
    layers, interfaces = work / "layers", work / "interfaces"
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(build_dir / "charms", ignore_errors=True)
    layers.mkdir(parents=True)
    interfaces.mkdir(parents=True)
    stage_layer(layers / "vault-kv")
    (layers / "basic-sim").symlink_to(REPO / "tests/layers/basic-sim")
    (layers / "vaultlocker-sim").symlink_to(REPO / "tests/layers/vaultlocker-sim")
    (layers / "kcp-consumer-core").symlink_to(REPO / "tests/charms/kcp-consumer-core")
    (interfaces / "vault-kv").symlink_to(REPO / "interface-vault-kv")
    env = dict(os.environ)
    env.update(
        {
            "CHARM_LAYERS_DIR": str(layers),
            "CHARM_INTERFACES_DIR": str(interfaces),
            "CHARM_CACHE_DIR": str(work / "cache"),
            "PATH": "{}:{}".format(Path(sys.executable).parent, env.get("PATH", "")),
        }
    )
    tool = str(Path(sys.executable).parent / "charm-build")
    for flavour, source in BUILDS:
        out = build_dir / "charms" / flavour
        command = [tool, "--no-report", "--binary-wheels", "-l", "WARNING", "-o", str(out), str(REPO / source)]
        result = subprocess.run(command, env=env, cwd=str(work), capture_output=True, text=True)
        if result.returncode not in (0, 100):  # 100: built, with proof warnings
            raise RuntimeError("charm build of {} failed:\n{}{}".format(source, result.stdout, result.stderr))
    for name, path in paths.items():
        if not (path / "hooks" / "install").exists():
            raise RuntimeError("charm build produced no {} charm at {}".format(name, path))
    stamp.write_text(digest)
    return paths


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "build"
    for name, path in build(target).items():
        print("{}: {}".format(name, path))
