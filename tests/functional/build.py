"""Build the charms the functional bundles deploy (needs network: layer:basic comes from the layer index).

Outputs, which the bundles name by relative path:
  build/functional/current/kcp-consumer   backend charm-{model-uuid}-{app}
  build/functional/legacy/kcp-consumer    backend charm-{app}

Run: python -m tests.functional.build   (make functional-charms)
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.build_charms import stage_layer

REPO = Path(__file__).resolve().parents[2]
OUTPUTS = {
    "current": REPO / "build" / "functional" / "current" / "kcp-consumer",
    "legacy": REPO / "build" / "functional" / "legacy" / "kcp-consumer",
}
SOURCES = {
    "current": REPO / "tests" / "functional" / "charms" / "kcp-consumer",
    "legacy": REPO / "tests" / "functional" / "charms" / "kcp-consumer-legacy",
}


def build() -> None:
    work = REPO / "build" / "functional-build"
    shutil.rmtree(work, ignore_errors=True)
    (work / "layers").mkdir(parents=True)
    (work / "interfaces").mkdir()
    stage_layer(work / "layers" / "vault-kv")
    (work / "layers" / "kcp-consumer-core").symlink_to(REPO / "tests" / "charms" / "kcp-consumer-core")
    (work / "layers" / "vaultlocker-sim").symlink_to(REPO / "tests" / "layers" / "vaultlocker-sim")
    (work / "interfaces" / "vault-kv").symlink_to(REPO / "interface-vault-kv")
    env = dict(os.environ, CHARM_LAYERS_DIR=str(work / "layers"), CHARM_INTERFACES_DIR=str(work / "interfaces"))
    env["PATH"] = "{}:{}".format(Path(sys.executable).parent, env.get("PATH", ""))
    for flavour, source in SOURCES.items():
        out = OUTPUTS[flavour].parent
        command = [str(Path(sys.executable).parent / "charm-build"), "--no-report", "-o", str(out), str(source)]
        result = subprocess.run(command, env=env, cwd=str(work))
        if result.returncode not in (0, 100):
            raise SystemExit("charm build of {} failed".format(source))
        print("{}: {}".format(flavour, OUTPUTS[flavour]))


if __name__ == "__main__":
    build()
