"""The layer's actions: ``rotate-encryption-key``, ``encryption-key-status``, ``finish-encryption-key-rotation``.

Each script in ``actions/`` calls ``run`` with its name.  An action does its
own work and nothing else: it reads the relation through the vault-kv
endpoint (set up here, as at hook start, but without managing any flag), does
its work, and records this layer's state: the app-kv hashes when it wrote
application data (``lifecycle.at_hook_exit``, as at hook exit: the leader
wakes the other units) and unitdata.  It runs no other layer's start or exit
callback and dispatches no handler: in kubernetes-control-plane those
install snaps, take locks and set the charm's final status.  A unit's
acknowledgement of a rotation phase is a hook's (its apiserver must have
been configured again), never an action's.

A refusal or Vault being unavailable fails the action with the reason;
nothing else escapes, and no key is ever in the output.
"""

from typing import Callable, Dict, NamedTuple

from charmhelpers.core import hookenv, unitdata


class _Action(NamedTuple):
    body: Callable[[], Dict[str, str]]
    writes_app_data: bool


def _actions() -> Dict[str, _Action]:
    from charms.layer.vault_kv.secure_storage import coordination

    return {
        "rotate-encryption-key": _Action(coordination.start, True),
        "encryption-key-status": _Action(coordination.status_report, False),
        "finish-encryption-key-rotation": _Action(coordination.confirm_rewrite, True),
    }


def _open_vault_endpoint() -> None:
    """The vault-kv endpoint with its relations, as charms.reactive makes it at hook start.

    Only this endpoint, and none of the framework's flag management: the
    action reads relation data and changes no flag of the interface.
    """
    from charms.reactive.endpoints import Endpoint
    from charms.reactive.relations import relation_factory

    from charms.layer.vault_kv.credentials import ENDPOINT_NAME

    factory = relation_factory(ENDPOINT_NAME)
    if not factory or not issubclass(factory, Endpoint):
        return
    ids = sorted(hookenv.relation_ids(ENDPOINT_NAME) or [])
    ids = [rid if ":" in rid else "{}:{}".format(ENDPOINT_NAME, rid) for rid in ids]
    Endpoint._endpoints[ENDPOINT_NAME] = factory(ENDPOINT_NAME, ids)


def run(name: str) -> None:
    """Run action ``name`` in this unit's context."""
    from charms.layer import vault_kv
    from charms.layer.vault_kv import lifecycle
    from charms.layer.vault_kv.secure_storage import rotation_state

    action = _actions()[name]
    try:
        _open_vault_endpoint()
        hookenv.action_set(action.body())
    except rotation_state.RotationRefused as error:
        hookenv.action_fail(str(error))
    except vault_kv.VaultNotReady as error:
        hookenv.action_fail("Vault is not available: {}".format(error))
    except Exception as error:  # a defect: say what kind, never a value
        hookenv.log("vault-kv: action {} failed: {}".format(name, type(error).__name__), level=hookenv.ERROR)
        hookenv.action_fail("unexpected {}; see the unit's log".format(type(error).__name__))
    if action.writes_app_data:
        lifecycle.at_hook_exit()
    unitdata.kv().flush()
