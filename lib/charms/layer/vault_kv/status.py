"""Workload status set by layer:vault-kv.

The charm owns its status.  The layer only reports what stops it (waiting
for Vault, blocked on credentials) and, once that is over, replaces its own
message only if it is still the one shown, never the charm's.
"""

from typing import List, Tuple

from charmhelpers.core import hookenv, unitdata

from charms.layer.vault_kv import names

KV_OUR_MESSAGE = names.STATUS_MESSAGE
_final: List[Tuple[str, str]] = []  # this hook's status to show once the charm set its own at hook exit


def _set(state: str, message: str) -> None:
    message = "vault-kv: " + message
    hookenv.status_set(state, message)
    unitdata.kv().set(KV_OUR_MESSAGE, message)


def waiting(message: str) -> None:
    """Vault cannot be used yet; it should pass by itself."""
    _set("waiting", message)


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


def show_at_exit(state: str, message: str) -> None:
    """Set a status now and show it again after the charm's own final status (see ``apply_final``).

    For what an operator must see on the leader during a key rotation (the
    rolling order, the unit that blocks, the rewrite to do):
    kubernetes-control-plane sets its status at every hook exit.
    """
    _set(state, message)
    _final[:] = [(state, "vault-kv: " + message)]


def apply_final() -> None:
    """At hook exit, after the charm's final status: put this hook's ``show_at_exit`` status back.

    Registered when the library is first imported, before the charm's own
    exit callbacks (charmhelpers runs them last registered first).  A
    ``blocked`` status of the charm's own is left as it is: its remedy
    comes first.
    """
    if not _final:
        return
    state, message = _final.pop()
    try:
        shown_state, shown = hookenv.status_get()
    except Exception:  # status-get is unavailable in some hook contexts
        shown_state, shown = "", ""
    if shown_state == "blocked" and not str(shown).startswith("vault-kv:"):
        return
    if (shown_state, shown) != (state, message):
        hookenv.status_set(state, message)
