"""Load the layer's reactive modules and the interface the way a built charm has them.

A built charm has ``reactive/*.py`` loaded by charms.reactive's bus (by file,
not as a package) and the interface under ``hooks/relations/vault-kv``.  Tests
and the benchmark load them from this repository with these two helpers;
``load_kcp_ops`` loads the kubernetes-control-plane 1.29+ model charm's script.
"""

import importlib
import importlib.util
import itertools
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
_loaded = {}
_fresh = itertools.count()


def load_reactive(name: str, fresh: bool = False) -> ModuleType:
    """``reactive/{name}.py`` as a module; the same one each call, unless ``fresh``.

    ``fresh`` executes the file again (a module that decides at import what it
    registers, such as secure storage reading its layer option).
    """
    if fresh or name not in _loaded:
        module_name = "reactive_{}{}".format(name, "_{}".format(next(_fresh)) if fresh else "")
        spec = importlib.util.spec_from_file_location(module_name, REPO / "reactive" / "{}.py".format(name))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if fresh:
            return module
        _loaded[name] = module
    return _loaded[name]


def load_interface(side: str) -> ModuleType:
    """``interface-vault-kv/{side}.py`` (``requires`` or ``provides``), imported as part of its package."""
    package = "relations_vault_kv"
    if package not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            package,
            REPO / "interface-vault-kv" / "__init__.py",
            submodule_search_locations=[str(REPO / "interface-vault-kv")],
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[package] = module
        spec.loader.exec_module(module)
    return importlib.import_module("{}.{}".format(package, side))


def load_kcp_ops() -> ModuleType:
    """``tests/charms/kcp-ops/src/kcp_ops.py`` (the kubernetes-control-plane 1.29+ model) as a module, once."""
    if "kcp-ops" not in _loaded:
        spec = importlib.util.spec_from_file_location(
            "kcp_ops_model", REPO / "tests" / "charms" / "kcp-ops" / "src" / "kcp_ops.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _loaded["kcp-ops"] = module
    return _loaded["kcp-ops"]
