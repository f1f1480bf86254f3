"""Run a unit's real hook, then report where the code it ran came from.

Started by test_hook_isolation.py through the simulator in place of the
unit's ``hooks/<hook>`` (``start_hook_script``), or copied into the unit's
charm as a hook or an action that runs ``$PROBE_TARGET`` (``run_hook``,
``run_action``): the hook or action file is run as Juju runs it (its folder
first on ``sys.path``, as ``__main__``), and at exit ``sys.path``, the file of
every loaded module, the folders of the ``reactive``, ``relations`` and
``charms.layer`` packages (as loaded, and where an import of ``reactive`` or
``relations`` would look) and the file of every handler charms.reactive
registered are written, as JSON, to ``$PROBE_REPORT``.
"""

import atexit
import importlib.util
import json
import os
import runpy
import sys


def _report():
    modules = {}
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if name != "__main__" and path:
            modules[name] = os.path.realpath(path)
    packages = {}
    for name in ("reactive", "relations", "charms.layer"):
        module = sys.modules.get(name)
        packages[name] = [os.path.realpath(p) for p in getattr(module, "__path__", None) or []]
    importable = {}
    for name in ("reactive", "relations"):
        # where ``import reactive.x`` would look now, whether or not the hook imported the package
        spec = importlib.util.find_spec(name)
        locations = (spec.submodule_search_locations if spec is not None else None) or []
        importable[name] = [os.path.realpath(p) for p in locations]
    handlers = []
    bus = sys.modules.get("charms.reactive.bus")
    if bus is not None:
        for handler in bus.Handler.get_handlers():
            action = getattr(handler, "_action", None)
            code = getattr(action, "__code__", None)
            if code is not None:
                handlers.append(os.path.realpath(code.co_filename))
    with open(os.environ["PROBE_REPORT"], "w") as handle:
        json.dump(
            {
                "sys_path": [os.path.realpath(p) for p in sys.path],
                "modules": modules,
                "packages": packages,
                "importable": importable,
                "handlers": sorted(set(handlers)),
            },
            handle,
        )


atexit.register(_report)
target = os.environ.get("PROBE_TARGET") or os.path.join(os.environ["CHARM_DIR"], "hooks", os.environ["JUJU_HOOK_NAME"])
sys.path[0] = os.path.dirname(target)  # as when Python runs the hook file itself
sys.argv = [target]
runpy.run_path(target, run_name="__main__")
