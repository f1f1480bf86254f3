"""Exceptions of layer:vault-kv.

``VaultNotReady`` is the one charms already catch.  Every failure that can
pass by itself (Vault down, sealed, a path not yet granted, the relation not
complete) is a ``VaultNotReady``, so a charm that catches it never fails a hook
on a transient outage.  Failures that will not pass without new credentials are
the subclass ``VaultCredentialsInvalid``, so they can be told apart.

Messages name the condition and the path, never a value or a credential.
"""


class VaultNotReady(Exception):
    """Vault cannot be used right now; try again in a later hook."""


class VaultCredentialsInvalid(VaultNotReady):
    """Vault refused this unit's credentials (bad secret_id, spent one-shot token).

    Waiting will not fix this: the unit needs Vault to issue a new secret_id.
    """
