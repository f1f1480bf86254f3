"""A charm whose Vault relation is optional pays no import of hvac or requests in hooks without it."""

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROGRAM = textwrap.dedent(
    """
    import sys
    import charmhelpers.osplatform
    charmhelpers.osplatform.get_platform = lambda: "ubuntu"
    import charms.reactive
    charms.reactive.endpoint_from_name = lambda name: None  # no vault-kv relation in this hook
    from charms.layer import vault_kv
    try:
        vault_kv.VaultAppKV()
    except vault_kv.VaultNotReady:
        pass
    print(sorted(name for name in ("hvac", "requests") if name in sys.modules))
    """
)


def test_no_relation_no_hvac_no_requests(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT / "lib"),
        "UNIT_STATE_DB": str(tmp_path / "state.db"),
        "JUJU_UNIT_NAME": "app/0",
        "JUJU_MODEL_UUID": "0b5e1b6a-0000-4000-8000-00000000000a",
        "CHARM_DIR": str(tmp_path),
    }
    result = subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
