"""The layer's actions: ``rotate-encryption-key``, ``encryption-key-status``, ``finish-encryption-key-rotation``.

Each script in ``actions/`` calls ``run`` with its name.  An action runs as a
hook does for this layer (charms.reactive's start and exit callbacks, so
relation data is read through the endpoints and app-data hashes are recorded,
and unitdata is saved) but dispatches no handler.  A refusal or Vault being
unavailable fails the action with the reason; nothing else escapes, and no
key is ever in the output.
"""

from typing import Callable, Dict

from charmhelpers.core import hookenv, unitdata


def _bodies() -> Dict[str, Callable[[], Dict[str, str]]]:
    from charms.layer.vault_kv.secure_storage import coordination

    return {
        "rotate-encryption-key": coordination.start,
        "encryption-key-status": coordination.status_report,
        "finish-encryption-key-rotation": coordination.confirm_rewrite,
    }


def run(name: str) -> None:
    """Run action ``name`` in this unit's context."""
    from charms.reactive import bus

    from charms.layer import vault_kv
    from charms.layer.vault_kv.secure_storage import rotation_state

    bus.discover()  # the reactive modules register the start and exit callbacks (endpoints, app data)
    hookenv._run_atstart()
    try:
        hookenv.action_set(_bodies()[name]())
    except rotation_state.RotationRefused as error:
        hookenv.action_fail(str(error))
    except vault_kv.VaultNotReady as error:
        hookenv.action_fail("Vault is not available: {}".format(error))
    except Exception as error:  # a defect: say what kind, never a value
        hookenv.log("vault-kv: action {} failed: {}".format(name, type(error).__name__), level=hookenv.ERROR)
        hookenv.action_fail("unexpected {}; see the unit's log".format(type(error).__name__))
    hookenv._run_atexit()
    unitdata.kv().flush()
