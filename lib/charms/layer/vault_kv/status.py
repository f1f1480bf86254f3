"""Workload status set by layer:vault-kv.

The charm owns its status.  The layer only reports what stops it (waiting
for Vault, blocked on credentials) and, once that is over, replaces its own
message only if it is still the one shown, never the charm's.
"""

from charmhelpers.core import hookenv, unitdata

from charms.layer.vault_kv import names

KV_OUR_MESSAGE = names.STATUS_MESSAGE


def _set(state: str, message: str) -> None:
    message = "vault-kv: " + message
    hookenv.status_set(state, message)
    unitdata.kv().set(KV_OUR_MESSAGE, message)


def waiting(message: str) -> None:
    """Vault cannot be used yet; it should pass by itself."""
    _set("waiting", message)


def maintenance(message: str) -> None:
    """Work of the layer's under way (a key rotation's progress); it ends by itself."""
    _set("maintenance", message)


def blocked(message: str) -> None:
    """Vault cannot be used until an operator acts."""
    _set("blocked", message)


def resolved() -> None:
    """Our condition is over: take our message down if it is still shown."""
    ours = unitdata.kv().get(KV_OUR_MESSAGE)
    if not ours:
        return
    unitdata.kv().unset(KV_OUR_MESSAGE)
    try:
        _state, shown = hookenv.status_get()
    except Exception:  # status-get is unavailable in some hook contexts
        return
    if shown == ours:
        hookenv.status_set("active", "vault-kv: ready")
