"""Exceptions of layer:vault-kv.

``VaultNotReady`` is the one charms already catch.  Every failure of Vault,
of the relation or of the layer's own settings is a ``VaultNotReady``, so a
charm that catches it never fails a hook, whatever Vault or the network does.
Two kinds are told apart by subclasses:

- ``VaultOperatorActionNeeded``: will not pass by itself; the layer shows
  ``blocked`` with the remedy.  ``VaultCredentialsInvalid`` (Vault refused the
  credentials, a one-shot token was spent) and ``VaultMisconfigured`` (an
  option or the relation is wrong: a backend format, http with a CA) are its
  two kinds.
- anything else: should pass by itself (down, sealed, a path not yet
  granted); the layer shows ``waiting`` with the reason.

``VaultAppKVNotLeader`` is not a ``VaultNotReady``: writing app data from a
non-leader is a programming error, as ``leader-set`` refuses it in Juju.

Messages name the condition and the path, never a value or a credential.
"""


class VaultNotReady(Exception):
    """Vault cannot be used right now; try again in a later hook."""


class VaultOperatorActionNeeded(VaultNotReady):
    """Vault cannot be used until an operator acts; the message says what to do."""


class VaultCredentialsInvalid(VaultOperatorActionNeeded):
    """Vault refused this unit's credentials (bad secret_id, spent one-shot token).

    Waiting will not fix this: the unit needs Vault to issue a new secret_id.
    """


class VaultMisconfigured(VaultOperatorActionNeeded):
    """A setting the operator or the charm author controls is wrong (backend format, URL scheme)."""


class VaultAppKVNotLeader(RuntimeError):
    """Only the leader writes application data (``VaultAppKV``), as only it may ``leader-set``."""
