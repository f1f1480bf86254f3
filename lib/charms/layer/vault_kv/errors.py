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
  ``VaultUnreachable`` is the kind where one Vault server could not serve
  (refused connection, sealed, 5xx): another unit of the Vault application
  may, so the session tries the next published URL before giving up.

``VaultAppKVNotLeader``: a non-leader tried to change application data (Juju's
``leader-set`` refuses non-leaders too).  It is a ``VaultNotReady`` so that a
charm that catches those (kubernetes-control-plane's handlers do) retries on
the leader instead of failing every hook; nothing was written.

Messages name the condition and the path, never a value or a credential.
"""


class VaultNotReady(Exception):
    """Vault cannot be used right now; try again in a later hook."""


class VaultUnreachable(VaultNotReady):
    """This Vault server cannot serve now (down, sealed, no leader, 5xx); another may."""


class VaultOperatorActionNeeded(VaultNotReady):
    """Vault cannot be used until an operator acts; the message says what to do."""


class VaultCredentialsInvalid(VaultOperatorActionNeeded):
    """Vault refused this unit's credentials (bad secret_id, spent one-shot token).

    Waiting will not fix this: the unit needs Vault to issue a new secret_id.
    """


class VaultMisconfigured(VaultOperatorActionNeeded):
    """A setting the operator or the charm author controls is wrong (backend format, URL scheme)."""


class VaultAppKVNotLeader(VaultNotReady):
    """Only the leader changes application data (``VaultAppKV``), as only it may ``leader-set``."""
