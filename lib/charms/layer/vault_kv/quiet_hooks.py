"""Whether this hook needs Vault at all: Vault's load follows change, not time.

Vault is shared by many models, and ``update-status`` runs every five
minutes on every unit, forever.  A hook in which nothing changed should
cost Vault nothing: no login (each creates a token and a lease in Vault's
storage), no read.  A unit knows without asking Vault that nothing changed
when all of these hold:

- the layer is ready: the last hook that asked Vault was answered, and no
  move to another backend is under way;
- the leader's digest of the app data's hashes (leader data, published by
  the leader whenever it differs from what it recorded) is the digest of
  the hashes this unit recorded, at this backend, and Vault holds them too;
- the relation carries what it carried when this unit last asked (URLs,
  role id, tokens, CA): new credentials are tried at once;
- no app-data write of this unit is unrecorded (a hook that died between a
  write and its hook exit: its flags were rolled back, Vault kept the write);
- no key is awaited after a move, and no vaultlocker key is waiting to be
  copied by an operator;
- nothing registered with ``ask_vault_when`` asks (secure storage: a
  rotation running, the file not as last synced);
- the unit asked Vault less than ``CHECK_EVERY_SECONDS`` ago.

The last is a freshness check, kept on purpose: a value changed by anything
but this layer's leader (an operator, kubernetes-control-plane 1.29 during
a refresh) reaches the unit within the hour, and the unit's credentials are
used at least hourly, so a secret_id Vault stopped accepting shows as
``blocked`` within the hour, not at the next change.  It costs a login and
a read an hour: 48 requests a unit-day.  When that check alone finds Vault
sealed or unreachable, nothing moves: the flags and the status stay, and
the next hook asks again.

Nothing here is a value: the records are digests and times.
"""

import time
from typing import Callable, List, Optional, Set

from charmhelpers.core import hookenv, unitdata
from charms.reactive import get_flags

from charms.layer.vault_kv import names
from charms.layer.vault_kv.hashing import fingerprint, hashes_digest

CHECK_EVERY_SECONDS = 3600
FRESHNESS = "the hourly freshness check is due"

KV_LAST_ASKED = names.LAST_ASKED
KV_WRITE_PENDING = names.WRITE_PENDING

_askers: List[Callable[[Set[str]], Optional[str]]] = []
_decided: List[Optional[str]] = []  # this process's answer, once computed


def ask_vault_when(asker: Callable[[Set[str]], Optional[str]]) -> None:
    """Register ``asker``: called with the set of flags set, it returns why this hook needs Vault, or None.

    Called once a hook, at hook start; it must be cheap and must not raise
    (an exception counts as a reason to ask).  It is given the flags read
    once for all (charms.reactive reads every flag for each ``is_flag_set``,
    which a charm with many app-kv keys pays for).  Secure storage registers
    its own (a rotation running, the file changed since it was last synced).
    """
    if asker not in _askers:
        _askers.append(asker)


def relation_digest() -> Optional[str]:
    """A digest of what the relation gives this unit to reach Vault (never the values themselves)."""
    from charms.layer.vault_kv import credentials

    endpoint = credentials.vault_endpoint()
    if endpoint is None or not endpoint.is_joined:
        return None
    name, role_id, tokens = credentials.granted_credentials(endpoint)
    return fingerprint(
        [credentials.published_urls(endpoint), name, role_id, sorted(tokens), credentials.ca_pem_of(endpoint)]
    )


def _recorded_digest() -> Optional[str]:
    """The digest of the hashes this unit recorded at its current backend, if Vault holds them too."""
    from charms.layer.vault_kv import backend as vault_kv_backend
    from charms.layer.vault_kv import local_copies, store

    current = vault_kv_backend.active()
    if not current:
        return None
    recorded = local_copies.recorded_hashes(store.hash_path(current["backend"]))
    if recorded is None or not local_copies.hashes_in_vault():
        return None
    return hashes_digest(recorded)


def _reason() -> Optional[str]:
    from charms.layer.vault_kv import backend as vault_kv_backend
    from charms.layer.vault_kv import local_copies

    store = unitdata.kv()
    flags = set(get_flags())
    if names.READY not in flags:
        return "the layer is not ready"
    if vault_kv_backend.needed(flags):
        return "the data is moving to a new backend"
    if store.get(KV_WRITE_PENDING):
        return "a write of this unit is not recorded yet"
    if local_copies.awaited_keys() or store.get(names.UNIT_SECRETS_NOT_COPIED):
        return "keys are awaited after a move"
    recorded = _recorded_digest()
    if recorded is None or hookenv.leader_get(names.LEADER_NONCE) != recorded:
        return "the app data changed"
    last = store.get(KV_LAST_ASKED) or {}
    if last.get("relation") != relation_digest():
        return "the relation changed"
    for asker in _askers:
        try:
            why = asker(flags)
        except Exception as error:  # a broken asker must not make hooks quiet
            why = "unexpected {}".format(type(error).__name__)
        if why:
            return why
    at = last.get("at")
    if not isinstance(at, (int, float)) or not 0 <= time.time() - at < CHECK_EVERY_SECONDS:
        return FRESHNESS
    return None


def reason_to_ask() -> Optional[str]:
    """Why this hook needs Vault, or None when nothing changed (decided once, at the first call)."""
    if not _decided:
        try:
            _decided.append(_reason())
        except Exception as error:  # never quiet by accident
            _decided.append("unexpected {}".format(type(error).__name__))
    return _decided[0]


def quiet_hook() -> bool:
    """Whether this hook asks Vault nothing (nothing changed; see the module's text)."""
    return reason_to_ask() is None


def only_for_freshness() -> bool:
    """Whether the hourly check is this hook's only reason to ask Vault."""
    return reason_to_ask() == FRESHNESS


def note_write_pending() -> None:
    """Before an app-data write: recorded at once, so a hook that dies after it asks Vault next time."""
    store = unitdata.kv()
    if not store.get(KV_WRITE_PENDING):
        store.set(KV_WRITE_PENDING, True)
        store.flush()


def record_asked() -> None:
    """At hook exit, once Vault answered and the hashes were recorded: the next hooks may be quiet."""
    store = unitdata.kv()
    store.set(KV_LAST_ASKED, {"at": time.time(), "relation": relation_digest()})
    store.unset(KV_WRITE_PENDING)


def forget() -> None:
    """A new hook (or a test starting afresh) decides again."""
    del _decided[:]
