"""A simulated hook runs only what a deployed unit has: its charm, the Python install, the simulator's shims.

``reactive/`` has no ``__init__.py``: it is a namespace package whose
portions are every ``reactive`` folder on ``sys.path``, and charms.reactive
imports ``reactive.<name>`` for each file of the charm's ``reactive/``.  A
folder put on a hook's ``PYTHONPATH`` that holds a ``reactive/`` (this
checkout) comes before the charm's own, so a charm built with other reactive
files (the old layer) would silently run the checkout's handlers.  Here a
built charm's real hook or action runs under ``hook_probe.py``, which reports
``sys.path``, the file of every module loaded and of every handler registered.
No OpenBao: the units are deployed and not related; no hook but the probe's runs.
"""

import json
import os
import shutil
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.jujusim.controller import Controller

PROBE = str(Path(__file__).with_name("hook_probe.py"))
TESTS = Path(__file__).resolve().parents[1]
HOOK_SITE = os.path.realpath(str(TESTS / "jujusim" / "hook_site"))
CONSUMER = "kubernetes-control-plane/0"


@pytest.fixture
def controller(charms, tmp_path):
    """One unit of the consumer and one of the simulated vault, deployed (no hook run yet)."""
    controller = Controller(str(tmp_path / "sim"))
    model = controller.add_model("isolation")
    controller.deploy(model, "kubernetes-control-plane", str(charms["current"]))
    controller.deploy(model, "vault", str(charms["vault"]))
    return controller, model


def charm_dir(controller, model, unit):
    return os.path.realpath(str(Path(controller.unit(model, unit)["dir"]) / "charm"))


def probe(controller, model, unit, tmp_path, way="start_hook_script"):
    """Run ``unit``'s update-status hook (or its encryption-key-status action) under the probe; its report."""
    report = tmp_path / "probe-{}-{}.json".format(unit.replace("/", "-"), way)
    charm = Path(charm_dir(controller, model, unit))
    if way == "start_hook_script":
        process = controller.start_hook_script(model, unit, "update-status", PROBE, {"PROBE_REPORT": str(report)})
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err[-3000:]
    elif way == "run_hook":
        hook = charm / "hooks" / "update-status"
        real = hook.with_name("update-status.real")
        shutil.copy2(str(hook), str(real))
        shutil.copy2(PROBE, str(hook))
        controller.hook_env.update(PROBE_REPORT=str(report), PROBE_TARGET=str(real))
        process = controller.run_hook({"model": model, "unit": unit, "hook": "update-status"})
        assert process.returncode == 0, process.stderr[-3000:]
    else:
        shutil.copy2(PROBE, str(charm / "actions" / "probe"))
        target = charm / "actions" / "encryption-key-status"
        controller.hook_env.update(PROBE_REPORT=str(report), PROBE_TARGET=str(target))
        answer = controller.run_action(model, unit, "probe")
        assert answer["returncode"] == 0, answer["stderr"][-3000:]
    for name in ("PROBE_REPORT", "PROBE_TARGET"):
        controller.hook_env.pop(name, None)
    return json.loads(report.read_text())


def outside(path, roots):
    return not any(path == root or path.startswith(root + os.sep) for root in roots)


def python_install():
    paths = sysconfig.get_paths()
    return {os.path.realpath(paths[name]) for name in ("stdlib", "purelib", "platlib")}


def interpreter():
    """What ``sys.path`` may hold besides the charm: the interpreter's and the virtualenv's folders."""
    return {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)}


@pytest.mark.parametrize("way", ["start_hook_script", "run_hook", "run_action"])
def test_a_consumer_hook_loads_its_handlers_and_the_layer_from_its_own_charm_only(controller, tmp_path, way):
    controller, model = controller
    charm = charm_dir(controller, model, CONSUMER)
    report = probe(controller, model, CONSUMER, tmp_path, way)
    modules = report["modules"]

    assert modules["charms.layer.vault_kv"] == os.path.join(charm, "lib", "charms", "layer", "vault_kv", "__init__.py")
    if way != "run_action":  # a hook dispatches the charm's handlers (an action need not load them)
        for name in ("reactive.vault_kv", "reactive.vault_kv_secure_storage", "reactive.kcp_consumer"):
            assert modules[name] == os.path.join(charm, "reactive", name.split(".")[1] + ".py")
        assert report["packages"]["reactive"] == [os.path.join(charm, "reactive")]
        assert all(p.startswith(os.path.join(charm, "hooks") + os.sep) for p in report["packages"]["relations"])
        assert report["handlers"]
    # every handler registered is a file of the charm
    assert [h for h in report["handlers"] if outside(h, [charm])] == []
    # an import of reactive.* or relations.* finds the charm's folders only, so no later import finds another
    assert report["importable"]["reactive"] in ([], [os.path.join(charm, "reactive")])
    assert [p for p in report["importable"]["relations"] if outside(p, [os.path.join(charm, "hooks")])] == []
    assert report["packages"]["charms.layer"] == [os.path.join(charm, "lib", "charms", "layer")]
    # nothing comes from elsewhere but the Python install and the simulator's sitecustomize
    assert {n: p for n, p in modules.items() if outside(p, python_install() | {charm, HOOK_SITE})} == {}
    hook_path = controller.hook_pythonpath().split(":")
    assert [p for p in report["sys_path"] if outside(p, interpreter() | {charm} | set(hook_path))] == []
    assert str(TESTS.parent) not in report["sys_path"]


def test_the_simulated_vault_gets_its_test_helper_from_a_folder_holding_only_that(controller, tmp_path):
    controller, model = controller
    unit = "vault/0"
    charm = charm_dir(controller, model, unit)
    report = probe(controller, model, unit, tmp_path)
    modules = report["modules"]

    assert modules["reactive.vault_sim"] == os.path.join(charm, "reactive", "vault_sim.py")
    assert report["packages"]["reactive"] == [os.path.join(charm, "reactive")]
    assert report["handlers"] and [h for h in report["handlers"] if outside(h, [charm])] == []
    helper = Path(modules["tests.support.vault_provider"])
    assert helper.read_bytes() == (TESTS / "support" / "vault_provider.py").read_bytes()
    # the helper's folder (the simulator's own, not the checkout) holds that module and its packages, nothing else
    helpers = Path(os.path.realpath(str(controller.hook_helpers)))
    files = sorted(str(p.relative_to(helpers)) for p in helpers.rglob("*") if "__pycache__" not in p.parts)
    assert files == [
        "tests",
        "tests/__init__.py",
        "tests/support",
        "tests/support/__init__.py",
        "tests/support/vault_provider.py",
    ]
    allowed = python_install() | {charm, HOOK_SITE, str(helpers)}
    assert {n: p for n, p in modules.items() if outside(p, allowed)} == {}


def test_in_hook_refuses_a_unit_whose_charm_carries_another_layer_library(controller):
    controller, model = controller
    with controller.in_hook(model, CONSUMER):
        pass  # the charm was built from this checkout: the test process's library is the unit's

    library = Path(charm_dir(controller, model, CONSUMER)) / "lib" / "charms" / "layer" / "vault_kv" / "store.py"
    library.write_text(library.read_text() + "\n# another build of the layer\n")
    ran = []
    with pytest.raises(RuntimeError, match="charm carries another"):
        with controller.in_hook(model, CONSUMER):
            ran.append(CONSUMER)
    assert ran == []


def replace_hook(controller, model, unit, body):
    """Make ``unit``'s update-status hook the Python ``body`` (a charm whose hook does only that)."""
    hook = Path(charm_dir(controller, model, unit)) / "hooks" / "update-status"
    hook.write_text("#!/usr/bin/env python3\n" + body)
    return {"model": model, "unit": unit, "hook": "update-status"}


def test_a_forked_hook_ends_as_a_process_does_and_is_killed_past_its_timeout(controller, tmp_path, monkeypatch):
    """Hooks forked from the hook server: a signal's death, an exit status, the timeout, a new interpreter
    for a hook with interpreter variables of its own (the same answers as subprocess.run gives)."""
    import subprocess

    from tests.jujusim import hookserver

    controller, model = controller
    item = replace_hook(controller, model, CONSUMER, "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n")
    assert controller.run_hook(item).returncode == -15
    item = replace_hook(controller, model, CONSUMER, "import sys\nprint('out'); sys.exit(3)\n")
    process = controller.run_hook(item)
    assert (process.returncode, process.stdout) == (3, "out\n")

    marker = tmp_path / "still-running"
    item = replace_hook(
        controller, model, CONSUMER, "import time\ntime.sleep(3)\nopen({!r}, 'w').write('x')\n".format(str(marker))
    )
    real_run = hookserver.run
    monkeypatch.setattr(hookserver, "run", lambda port, request: real_run(port, request, timeout=1))
    with pytest.raises(subprocess.TimeoutExpired):
        controller.run_hook(item)
    monkeypatch.undo()
    import time

    time.sleep(3)
    assert not marker.exists()  # killed, not left running beside the unit's next hook

    item = replace_hook(controller, model, CONSUMER, "import sys\nprint(sys.flags.hash_randomization)\n")
    controller.hook_env["PYTHONHASHSEED"] = "0"  # acts only when an interpreter starts: a new one is used
    try:
        assert controller.run_hook(item).stdout == "0\n"
    finally:
        del controller.hook_env["PYTHONHASHSEED"]
    assert controller.run_hook(item).stdout == "1\n"
