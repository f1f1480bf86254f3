"""layer:vault-kv's public API: key-value stores kept in Vault.

Charms import this package as they imported the old layer's module::

    from charms.layer import vault_kv
    vault_kv.VaultAppKV()["key"] = "value"

Public: ``VaultAppKV``, ``VaultUnitKV``, ``get_vault_config``,
``register_local_copy`` (a charm's own copy of an app value, trusted when a
move has to restore it), ``ask_vault_when`` (a reason of the charm's for a
hook to ask Vault although no app value changed; see ``quiet_hooks``),
``hold_ready_while`` (a reason of the charm's to keep ``layer.vault-kv.ready``
down although Vault answered; see ``ready_holds``), ``hold_changes_while``
(keep a key's changed flags back while a change must wait; see ``store``)
and the exceptions.
``_get_secret_backend`` is private but kept, because
kubernetes-control-plane 1.27 and 1.28 call it.  Everything else in this
package is private to the layer:

- ``store``: the two stores (dicts whose writes go to Vault), their flags.
- ``session``: one authenticated Vault session per hook; error translation;
  Vault HA (next URL, write index).
- ``credentials``: role id, one-shot token, secret_id; ``get_vault_config``.
- ``backend``: which backend and unit name this build wants, and which one
  the unit's data is in (``wanted``/``active``).
- ``migration``: moving data from ``charm-{app}`` to ``charm-{model-uuid}-{app}``.
- ``lifecycle``: what the layer does at hook start and exit (and an action records).
- ``ready_holds``: registered reasons to keep ready down although Vault answered.
- ``local_copies``: what a unit knows without Vault (seen hashes, local
  copies of values a charm or secure storage registered).
- ``hashing``, ``options``, ``status``, ``errors``: small helpers.
- ``names``: every flag, unitdata key and leader-data key the layer owns.
- ``secure_storage``: the kube-apiserver EncryptionConfiguration (opt-in,
  kubernetes-control-plane's key); nothing else depends on it.
"""

from charms.layer.vault_kv import lifecycle as _lifecycle
from charms.layer.vault_kv import migration as _migration
from charms.layer.vault_kv.credentials import get_vault_config
from charms.layer.vault_kv.errors import (
    VaultAppKVNotLeader,
    VaultCredentialsInvalid,
    VaultMisconfigured,
    VaultNotReady,
    VaultOperatorActionNeeded,
    VaultUnreachable,
)
from charms.layer.vault_kv.local_copies import register_local_copy
from charms.layer.vault_kv.quiet_hooks import ask_vault_when, quiet_hook
from charms.layer.vault_kv.ready_holds import hold_ready_while
from charms.layer.vault_kv.store import (
    VaultAppKV,
    VaultUnitKV,
    _get_secret_backend,
    backend_of,
    hold_changes_while,
    reset_cached_state,
)

# The one place the parts are wired together: a unit that joined with no data of
# its own settles (waits for a move to finish) before its app data is read.
VaultAppKV.settle_before_open = _migration.settle_without_legacy

# Hook start is registered on the first import of this package, so that it runs
# before the start callbacks of a charm that imports it (see ``lifecycle``).
_lifecycle.register()

__all__ = [
    "VaultNotReady",
    "VaultUnreachable",
    "VaultCredentialsInvalid",
    "VaultMisconfigured",
    "VaultOperatorActionNeeded",
    "VaultAppKVNotLeader",
    "VaultUnitKV",
    "VaultAppKV",
    "get_vault_config",
    "register_local_copy",
    "ask_vault_when",
    "hold_ready_while",
    "hold_changes_while",
    "quiet_hook",
    "reset_cached_state",
    "backend_of",
    "_get_secret_backend",
]
