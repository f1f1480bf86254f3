"""The layer's hook start runs before a charm's own hook-start callbacks, and only in hooks.

kubernetes-control-plane 1.28 imports ``charms.layer.vault_kv`` at the top of
its reactive module and registers ``check_vault_pending`` with
``hookenv.atstart`` further down; it reads ``layer.vault-kv.ready`` there.
charms.reactive loads reactive modules in directory order, so the layer's
module may be loaded after the charm's.  These run the real charmhelpers in a
process of their own (the other unit tests have it mocked).
"""

import json
import os
import subprocess
import sys

from tests.support.loading import REPO

PRELUDE = """
import json, sys
import charmhelpers.osplatform
charmhelpers.osplatform.get_platform = lambda: "ubuntu"
from charmhelpers.core import hookenv, unitdata
from charms.layer import vault_kv  # the charm's module imports the layer at its top

def check_vault_pending():  # then registers its own hook-start check
    pass

hookenv.atstart(check_vault_pending)
"""

IN_A_HOOK = """
from tests.support.loading import load_reactive
layer = load_reactive("vault_kv")  # charms.reactive loads the layer's module after the charm's
callbacks = [callback for callback, _args, _kwargs in hookenv._atstart]
print(json.dumps({
    "layer": [n for n, callback in enumerate(callbacks) if callback is layer.derive_app_kv_flags],
    "charm": callbacks.index(check_vault_pending),
}))
"""

IN_A_CHARMS_ACTION = """
from charms.reactive import is_flag_set, set_flag
set_flag("layer.vault-kv.ready")
hookenv._run_atstart()  # kubernetes-control-plane's actions import every layer library and run these
print(json.dumps({"ready": is_flag_set("layer.vault-kv.ready")}))
"""


def run(script, tmp_path):
    env = dict(os.environ, PYTHONPATH="{}:{}".format(REPO, REPO / "lib"), UNIT_STATE_DB=str(tmp_path / "state.db"))
    for name in [name for name in env if name.startswith(("JUJU_", "CHARM_"))]:
        del env[name]
    env.update(JUJU_UNIT_NAME="app/0", CHARM_DIR=str(tmp_path))
    (tmp_path / "metadata.yaml").write_text("name: app\n")
    process = subprocess.run(
        [sys.executable, "-c", PRELUDE + script], cwd=str(tmp_path), env=env, capture_output=True, text=True
    )
    assert process.returncode == 0, process.stderr[-2000:]
    return json.loads(process.stdout.strip().splitlines()[-1])


def test_the_layers_hook_start_runs_once_and_before_the_charms_own_and_not_in_the_charms_actions(tmp_path):
    order = run(IN_A_HOOK, tmp_path)
    assert len(order["layer"]) == 1 and order["layer"][0] < order["charm"], order
    # the charm's actions run the start callbacks of every library they import: ours does nothing there
    assert run(IN_A_CHARMS_ACTION, tmp_path) == {"ready": True}
