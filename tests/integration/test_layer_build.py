"""What a charm built with this layer carries from it: only what a deployed unit needs.

A real build (kubernetes-control-plane) takes layer:vault-kv as the
repository is, a clone of it with the tests and tooling beside the layer;
``layer.yaml``'s ``exclude:`` is what keeps those out of the charm.  The
simulator builds (``build_charms.stage_layer``) copy only the layer's files
and cannot see a file the exclude list misses, so this test builds one small
charm with the real ``charm build`` from a copy of the whole repository (its
tracked files and new ones not ignored, as a clone would have them) and
reads the built charm's ``.build.manifest``, which names the layer every
file came from.
"""

import json
import re
import shutil
import subprocess

import yaml

from tests.support import build_charms

REPO = build_charms.REPO

# what layer:vault-kv may put into a charm: what a unit runs, and the build's metadata
LAYER_ALLOWED = [
    "layer.yaml",
    "metadata.yaml",
    "copyright",
    "copyright.layer-vault-kv",
    "actions.yaml",
    "wheelhouse.txt",
    "wheelhouse-constraints.txt",
    "wheelhouse/*.whl",
    "wheelhouse/*.tar.gz",
    "reactive/*.py",
    "lib/charms/layer/vault_kv/*.py",
    "lib/charms/layer/vault_kv/*/*.py",
]
INTERFACE_ALLOWED = ["README.md", "copyright", "interface.yaml", "*.py"]
# the repository's own files that are not layer content: none may be in the charm, whoever it is attributed to
NOT_LAYER = [
    "pytest.ini",
    "ruff.toml",
    "tox.ini",
    "Makefile",
    ".ci",
    ".gitignore",
    "tests",
    "requirements",
    "interface-vault-kv",
]


def repository_files():
    """The repository as a clone has it: tracked files and new files not ignored (not yet committed)."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=str(REPO),
        capture_output=True,
        check=True,
    ).stdout.decode()
    return sorted(name for name in set(listing.split("\0")) if name and (REPO / name).is_file())


def matches(path, patterns):
    """Whether ``path`` matches one of the glob ``patterns``; ``*`` stays within one path segment."""
    return any(re.fullmatch(re.escape(p).replace(r"\*", "[^/]*"), path) for p in patterns)


def test_a_charm_built_from_the_whole_repository_carries_only_the_layers_runtime_files(tmp_path):
    layers, interfaces = tmp_path / "layers", tmp_path / "interfaces"
    layer = layers / "vault-kv"
    for name in repository_files():
        (layer / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(str(REPO / name), str(layer / name))
    assert (layer / "pytest.ini").exists() and (layer / "tests").is_dir()  # the repository, not the layer's files
    (layers / "basic-sim").symlink_to(REPO / "tests" / "layers" / "basic-sim")
    interfaces.mkdir()
    (interfaces / "vault-kv").symlink_to(layer / "interface-vault-kv")
    charm = tmp_path / "wrapper"
    charm.mkdir()
    (charm / "layer.yaml").write_text(yaml.safe_dump({"includes": ["layer:basic-sim", "layer:vault-kv"]}))
    metadata = {
        "name": "vault-kv-contents",
        "summary": "Test-only charm: what layer:vault-kv puts into a charm",
        "description": "Test-only charm.\n",
        "requires": {"vault-kv": {"interface": "vault-kv"}},
        "maintainer": "layer-vault-kv developers <layer-vault-kv@example.invalid>",
        "tags": ["misc"],
        "series": ["jammy"],
    }
    (charm / "metadata.yaml").write_text(yaml.safe_dump(metadata))
    (charm / "copyright").write_text("Test-only charm of layer-vault-kv; Apache-2.0.\n")
    (charm / "README.md").write_text("Test-only charm: what layer:vault-kv puts into a charm.\n")
    env = build_charms.build_environment(layers, interfaces, tmp_path / "cache")
    build_charms._charm_build(charm, tmp_path / "out", env, tmp_path, offline=True)
    built = tmp_path / "out" / "vault-kv-contents"

    signatures = json.loads((built / ".build.manifest").read_text())["signatures"]
    from_layer = sorted(f for f, (source, _kind, _sum) in signatures.items() if source == "layer:vault-kv")
    actions = sorted(yaml.safe_load((REPO / "actions.yaml").read_text()))
    allowed = LAYER_ALLOWED + ["actions/" + name for name in actions]
    assert "reactive/vault_kv.py" in from_layer and "lib/charms/layer/vault_kv/__init__.py" in from_layer
    assert [f for f in from_layer if not matches(f, allowed)] == []
    relations = "hooks/relations/vault-kv/"
    from_interface = [f for f, (source, _k, _s) in signatures.items() if source == "interface:vault-kv"]
    assert all(f.startswith(relations) for f in from_interface)
    assert [f for f in from_interface if not matches(f[len(relations) :], INTERFACE_ALLOWED)] == []
    # and none of the repository's other files is in the charm, whoever the manifest says brought it
    assert [name for name in NOT_LAYER if (built / name).exists()] == []
    assert [f for f in signatures if f.split("/")[0] in NOT_LAYER] == []
    # the charm's README is the charm's own, never the layer's
    assert signatures["README.md"][0] == "vault-kv-contents"
