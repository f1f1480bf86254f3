"""What this unit knows without asking Vault: local copies of app data, and seen hashes.

Two kinds of local knowledge make a backend switch safe:

- A charm may *register* where it keeps its own copy of a value, for example
  the kube-apiserver EncryptionConfiguration file for ``encryption_key``.
  Such a copy is the most trusted source when a value has to be restored:
  it is what the workload is actually using.
- Every unit keeps, next to the hashes it stores in Vault, a copy of them in
  its unitdata.  When a unit moves to a backend where it has no hashes yet,
  the local copy tells which values it has already seen, so an unchanged
  value does not raise ``app-kv.changed.{key}``.

Values read from local copies are never logged or stored elsewhere.
"""

from typing import Any, Callable, Dict, List, Optional

from charmhelpers.core import hookenv, unitdata

from charms.layer.vault_kv import names
from charms.layer.vault_kv.hashing import value_hash

KV_SEEN_HASHES = names.SEEN_HASHES
KV_AWAITED = names.AWAITED_KEYS
KV_SEEN_HASHES_AT = names.SEEN_HASHES_AT
KV_SEEN_HASHES_NOT_IN_VAULT = names.SEEN_HASHES_NOT_IN_VAULT

_local_sources: Dict[str, Callable[[], Optional[Any]]] = {}


def _sources() -> Dict[str, Callable[[], Optional[Any]]]:
    """Every local copy registered in this process (the charm's, secure storage's file when on)."""
    return dict(_local_sources)


def register_local_copy(key: str, reader: Callable[[], Optional[Any]]) -> None:
    """Register ``reader`` as this unit's own copy of app key ``key``.

    ``reader`` returns the value, or None if the unit has none; an exception
    it raises is logged by type and read as "no copy".  Public as
    ``charms.layer.vault_kv.register_local_copy``: the layer's own secure
    storage registers its file through it like any charm would.
    """
    _local_sources[key] = reader


def registered_keys() -> List[str]:
    return sorted(_sources())


def local_value(key: str) -> Optional[Any]:
    """The registered local copy of ``key``, or None."""
    reader = _sources().get(key)
    if reader is None:
        return None
    try:
        return reader()
    except Exception as error:  # a broken local copy must not stop the hook
        hookenv.log(
            "vault-kv: local copy of {} unreadable: {}".format(key, type(error).__name__), level=hookenv.WARNING
        )
        return None


def remember_seen_hashes(hashes: Dict[str, str], recorded_at: Optional[str] = None, in_vault: bool = True) -> None:
    """Keep a local copy of the hashes this unit recorded in Vault (at ``recorded_at``).

    With the Vault path it was recorded at, the copy stands in for reading
    that path in later hooks: a steady hook then costs one login and one read.
    ``in_vault`` False: Vault does not hold them yet (its write failed or
    has not happened); a later hook writes them there.
    """
    store = unitdata.kv()
    store.set(KV_SEEN_HASHES, dict(hashes))
    store.set(KV_SEEN_HASHES_AT, recorded_at)
    if in_vault:
        store.unset(KV_SEEN_HASHES_NOT_IN_VAULT)
    else:
        store.set(KV_SEEN_HASHES_NOT_IN_VAULT, True)


def hashes_in_vault() -> bool:
    """Whether Vault holds the hashes of the local copy (see ``remember_seen_hashes``)."""
    return not unitdata.kv().get(KV_SEEN_HASHES_NOT_IN_VAULT)


def recorded_hashes(path: str) -> Optional[Dict[str, str]]:
    """The local copy of the hashes recorded at ``path`` in Vault, or None if it is not that path's."""
    store = unitdata.kv()
    if store.get(KV_SEEN_HASHES_AT) != path:
        return None
    hashes = store.get(KV_SEEN_HASHES)
    return dict(hashes) if isinstance(hashes, dict) else None


def seen_hashes() -> Dict[str, str]:
    """Hashes this unit has seen, from its local copy and its registered local values."""
    hashes = dict(unitdata.kv().get(KV_SEEN_HASHES) or {})
    for key in registered_keys():
        if key not in hashes:
            value = local_value(key)
            if value is not None:
                hashes[key] = value_hash(value)
    return hashes


def awaited_keys() -> List[str]:
    """Keys this unit had before a move that the move could not bring (legacy backend unreadable).

    Until one is written again its ``set`` flag stays up and no ``changed`` is
    raised for it, so a charm restores it (kubernetes-control-plane's
    ``migrate_vault_kv_secrets_backend`` does, from its file) instead of
    generating a replacement.
    """
    return list(unitdata.kv().get(KV_AWAITED) or [])


def set_awaited_keys(keys) -> None:
    unitdata.kv().set(KV_AWAITED, sorted(set(keys)))


def _reset_for_tests() -> None:
    _local_sources.clear()
