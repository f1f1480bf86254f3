"""Public API of layer:vault-kv: key-value stores kept in Vault.

Charms use ``VaultAppKV`` (data shared by every unit of the application, a
secure replacement for leader data) and ``VaultUnitKV`` (data of one unit).
Both are dicts, one instance per hook process, whose writes go straight to
Vault.  ``get_vault_config`` gives the raw credentials to tools that talk to
Vault themselves; ``VaultNotReady`` is raised whenever Vault cannot be used yet.

Differences from the old layer, each a defect it had:

- A kv version 1 write replaces the whole secret, so every write here carries
  the whole mapping; before the first write of a hook the path is read again
  so keys another unit wrote meanwhile are kept.  Deleting is explicit.
- One login per hook instead of one per request (see ``session``).
- ``vault_ca`` from the relation is used to verify Vault's certificate.
"""

import json
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Set

from charmhelpers.core import hookenv, unitdata
from charms.reactive import clear_flag, get_flags, is_flag_set, set_flag

from charms.layer.vault_kv import backend as vault_kv_backend
from charms.layer.vault_kv import local_copies as vault_kv_local_copies
from charms.layer.vault_kv import names, quiet_hooks
from charms.layer.vault_kv import options as vault_kv_options
from charms.layer.vault_kv import status as vault_kv_status
from charms.layer.vault_kv.credentials import get_vault_config
from charms.layer.vault_kv.errors import (
    VaultAppKVNotLeader,
    VaultMisconfigured,
    VaultNotReady,
    VaultOperatorActionNeeded,
)
from charms.layer.vault_kv.hashing import canonical_json, hashes_digest, value_hash
from charms.layer.vault_kv.session import VaultSession, forget_sessions, session_for

# Juju keeps a unit leader for at least 30 s after is-leader said so (its
# leadership lease); an answer is trusted for less than that, so two units can
# never both believe they may write the application data.
LEADERSHIP_TRUSTED_SECONDS = 20.0
FLAG_PREFIX = names.APP_KV_PREFIX
FLAG_ANY_CHANGED = FLAG_PREFIX + "changed"
_MISSING = object()
_ABSENT = ""  # an undelivered change from "no value" (hashes are never empty)

ChangeHold = Callable[[Any], bool]
_change_holds: Dict[str, List[ChangeHold]] = {}


def hold_changes_while(key: str, hold: ChangeHold) -> None:
    """Register ``hold``: given the app data, True while a change of ``key`` must not raise its changed flags yet.

    The change is not lost: the unit records the new hashes as usual (so
    the leader's digest and Vault's copy stay true) and remembers the hash
    it last delivered; once no hold holds, ``changed.{key}`` is raised in
    that hook.  Secure storage holds ``encryption_key`` during a rotation
    until the unit's turn: kubernetes-control-plane restarts its apiserver on
    that flag, and every unit sees the change at once.  A hold that raises
    does not hold (the change is delivered, as without it).
    """
    holds = _change_holds.setdefault(key, [])
    if hold not in holds:
        holds.append(hold)


def log(message: str, level: str = hookenv.DEBUG) -> None:
    """Log with the layer's prefix.  Callers pass names and paths, never values."""
    hookenv.log("vault-kv: " + message, level=level)


def unit_number() -> str:
    """This unit's number, which names its paths in Vault."""
    return hookenv.local_unit().split("/")[1]


class _Singleton(type):
    """One instance per class per process: every handler of a hook shares it.

    An instance whose construction failed (Vault not ready) is not kept, so
    the next call tries again.
    """

    def __call__(cls, *args, **kwargs):
        instance = cls.__dict__.get("_instance")
        if instance is None:
            instance = super().__call__(*args, **kwargs)
            cls._instance = instance
        return instance

    def loaded(cls) -> Optional[Any]:
        """The instance, if this process already built one; never contacts Vault."""
        return cls.__dict__.get("_instance")

    def forget(cls) -> None:
        """Drop the instance so the next call reads Vault again."""
        cls._instance = None


class _VaultBaseKV(dict, metaclass=_Singleton):
    """A dict whose contents live at one kv v1 path in Vault."""

    _instance = None

    def __init__(self, path: str, session: VaultSession) -> None:
        self._path = path
        self._session = session
        self._fresh_for_write = False
        self._read_back_at_exit = False
        self._written: Set[str] = set()
        self._removed: Set[str] = set()
        data = session.read(path)
        if data is None:
            why = self._data_expected()
            if why:
                raise VaultNotReady(_hidden_data_message(path, why))
        super().__init__(data or {})

    # -- keeping Vault and the dict the same --------------------------------

    def _refresh_before_first_write(self) -> None:
        """Re-read the path once per hook before writing, to keep others' keys."""
        if self._fresh_for_write:
            return
        latest = self._session.read(self._path)
        if latest is None and len(self):
            # only this unit (its own data) or the leader (app data) writes here: a 404
            # after this hook read data is a proxy or a replica, and the write would
            # replace every key with ours
            raise VaultNotReady(_hidden_data_message(self._path, "this hook read data there; nothing written"))
        self._take_in(latest or {})
        self._fresh_for_write = True

    def _take_in(self, latest: Dict[str, Any]) -> None:
        """Make the dict what Vault holds now; every key that differed gets its flags again."""
        for key in sorted(set(self) | set(latest)):
            if self.get(key, _MISSING) != latest.get(key, _MISSING):
                log("{} changed in Vault during this hook: {}".format(self._path, key))
                if key in latest:
                    dict.__setitem__(self, key, latest[key])
                else:
                    dict.__delitem__(self, key)
                self._after_change(key)

    def _store(self, mapping: Dict[str, Any]) -> None:
        """Write the whole mapping (a kv v1 write replaces what is there)."""
        self._before_write()
        try:
            if mapping:
                self._session.write(self._path, mapping)
            else:
                self._session.delete(self._path)
        except VaultOperatorActionNeeded as error:  # e.g. a size limit: shown, not only raised
            vault_kv_status.blocked("{} ({} keys in this store)".format(error, len(mapping)))
            raise

    def _after_change(self, key: str) -> None:
        """Hook for subclasses: ``key``'s value in the dict changed."""

    def _data_expected(self) -> Optional[str]:
        """Hook for subclasses: why the path should hold data although Vault answered 404 (None: believed)."""
        return None

    def _before_write(self) -> None:
        """Hook for subclasses: called before every write of this store's path."""

    def _may_write(self, changed: List[str], deletes: List[str]) -> None:
        """Hook for subclasses: refuse a write that would change ``changed`` and remove ``deletes``."""

    def _others_may_write(self) -> bool:
        """Hook for subclasses: whether another unit may write this path during this hook.

        Unit data is written by its unit only: what this hook read is what is
        there, so a write needs no re-read and no read-back.
        """
        return False

    @staticmethod
    def _check(key: Any, value: Any) -> None:
        if not isinstance(key, str) or not key:
            raise TypeError("vault-kv keys must be non-empty strings")
        try:
            canonical_json(value)
        except (TypeError, ValueError):
            raise TypeError("vault-kv value for key {!r} is not JSON-serialisable".format(key)) from None

    def _apply(self, updates: Dict[str, Any], deletes: Iterable[str] = ()) -> None:
        """Set ``updates`` and remove ``deletes`` with at most one write."""
        for key, value in updates.items():
            self._check(key, value)
        # round-trip through JSON so the dict holds what Vault will hand back
        updates = {key: _json_copy(value) for key, value in updates.items()}
        if self._others_may_write():
            # kv v1 has no check-and-set: read again, and read back at hook exit
            self._refresh_before_first_write()
            self._read_back_at_exit = True
        deletes = [key for key in deletes if key in self]
        changed = [
            key
            for key, value in updates.items()
            if key not in self or canonical_json(self[key]) != canonical_json(value)
        ]
        if not changed and not deletes:
            return
        self._may_write(changed, deletes)
        mapping = dict(self)
        mapping.update(updates)
        for key in deletes:
            mapping.pop(key, None)
        self._store(mapping)
        for key in changed:
            dict.__setitem__(self, key, updates[key])
        for key in deletes:
            dict.__delitem__(self, key)
        self._written.update(changed)
        self._removed.update(deletes)
        self._removed.difference_update(changed)
        for key in list(changed) + list(deletes):
            self._after_change(key)

    # -- the dict interface, every mutation persisted -----------------------

    def log_writes(self) -> None:
        """One log line for all the writes of this hook, naming the keys (never values)."""
        if self._written or self._removed:
            log(
                "wrote {} and removed {} at {}".format(
                    ", ".join(sorted(self._written - self._removed)) or "nothing",
                    ", ".join(sorted(self._removed)) or "nothing",
                    self._path,
                ),
                level=hookenv.INFO,
            )
        self._written.clear()
        self._removed.clear()

    def __setitem__(self, key: str, value: Any) -> None:
        self._apply({key: value})

    def set(self, key: str, value: Any) -> None:
        """Alias of ``kv[key] = value`` for a KV-style interface."""
        self[key] = value

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Set several keys with a single write."""
        self._apply(dict(*args, **kwargs))

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self._apply({}, [key])
        if key in self:  # someone else's write raced ours; be explicit
            raise KeyError(key)

    def delete(self, key: str) -> None:
        """Remove ``key`` from Vault; no error if it is not there."""
        self._apply({}, [key])

    def pop(self, key: str, *default: Any) -> Any:
        if key not in self:
            if default:
                return default[0]
            raise KeyError(key)
        value = self[key]
        self._apply({}, [key])
        return value

    def popitem(self):
        raise NotImplementedError("popitem would delete an arbitrary key; use delete(key)")

    def __ior__(self, other: Any) -> "_VaultBaseKV":
        """``kv |= {...}``: written like ``update`` (dict's own would change only the dict)."""
        self._apply(dict(other))
        return self

    @classmethod
    def fromkeys(cls, keys: Iterable[Any], value: Any = None) -> Dict[Any, Any]:  # type: ignore[override]
        """A plain dict: building a store from keys would write them to this unit's Vault path."""
        return dict.fromkeys(keys, value)

    def clear(self) -> None:
        """Remove every key (explicitly asked for; nothing else ever does this)."""
        self._apply({}, list(self))


def _hidden_data_message(path: str, why: str) -> str:
    return "Vault answered that {} holds nothing, though {} (a proxy or a lagging replica?)".format(path, why)


def _json_copy(value: Any) -> Any:
    """The value as Vault will hand it back (tuples become lists, and so on)."""
    return json.loads(canonical_json(value))


class VaultUnitKV(_VaultBaseKV):
    """Data of this unit only, at ``{backend}/kv/unit/{unit-number}``.

    Keys are strings; values anything JSON can hold.  Every set is written to
    Vault at once.  One instance per process.  ``backend_format`` is accepted
    as the old layer did (another backend name template); other arguments
    are ignored.
    """

    def __init__(self, *_args: Any, backend_format: Optional[str] = None, **_kwds: Any) -> None:
        if backend_format is None and vault_kv_backend.needed():
            raise VaultNotReady("unit data is moving to a new backend")
        config = get_vault_config(backend_format=backend_format)
        path = "{}/kv/unit/{}".format(config["secret_backend"], unit_number())
        super().__init__(path, session_for(config))


class VaultAppKV(_VaultBaseKV):
    """Data shared by every unit of the application, at ``{backend}/kv/app``.

    A secure replacement for leader data: only the leader writes (a
    non-leader's write raises ``VaultAppKVNotLeader``).  Each unit keeps md5 hashes of the values it has seen at
    ``{backend}/kv/app-hashes/{unit-number}``; a value whose hash differs from
    the unit's stored one raises ``layer.vault-kv.app-kv.changed`` and
    ``layer.vault-kv.app-kv.changed.{key}``, and every key with a value has
    ``layer.vault-kv.app-kv.set.{key}``.  Hashes are stored at hook exit.
    ``backend_format`` is accepted as the old layer did.
    """

    # Set by the package (``charms.layer.vault_kv``) to the move's check for a
    # unit with no data of its own: called with the session before the data is
    # read; returns the keys a move could not bring.  The store itself knows
    # nothing of moves.
    settle_before_open: Optional[Callable[[VaultSession], List[str]]] = None

    def _may_write(self, changed: List[str], deletes: List[str]) -> None:
        """Only the leader changes application data, as only it may ``leader-set``.

        Writing a value that is already there is not a change (nothing is
        sent).  A non-leader may fill a key a move could not bring (see
        ``missing_after_move``): restoring what is missing replaces nothing.
        is-leader is a hook tool (charmhelpers does not cache it): its answer
        is reused for LEADERSHIP_TRUSTED_SECONDS, inside Juju's lease.
        """
        if self._is_leader():
            return
        if deletes or not set(changed) <= (self._awaited - set(self)):
            raise VaultAppKVNotLeader("only the leader changes VaultAppKV; this unit is not the leader")

    def _before_write(self) -> None:
        """Until its hook exit records it, the write makes the next hooks ask Vault (see quiet_hooks)."""
        quiet_hooks.note_write_pending()

    def _is_leader(self) -> bool:
        """is-leader, asked at most every LEADERSHIP_TRUSTED_SECONDS (a hook tool call each time)."""
        now = time.monotonic()
        if self._leader is None or now - self._leader_asked_at > LEADERSHIP_TRUSTED_SECONDS:
            self._leader = hookenv.is_leader()
            self._leader_asked_at = now
        return bool(self._leader)

    def _others_may_write(self) -> bool:
        """Whether another unit may write the app data during this hook.

        Only the leader changes it; a non-leader writes only to fill a key a
        move could not bring.  So the leader's writes need no re-read before
        and no read-back after, unless keys are awaited (a non-leader may be
        filling one at the same time); a non-leader's fill needs both.
        """
        return bool(self._awaited) or not self._is_leader()

    def __init__(self, *_args: Any, backend_format: Optional[str] = None, **_kwds: Any) -> None:
        if vault_kv_backend.needed():
            raise VaultNotReady("app data is moving to a new backend")
        config = get_vault_config(backend_format=backend_format)
        backend = config["secret_backend"]
        session = session_for(config)
        settle = type(self).settle_before_open
        missing = settle(session) if settle is not None and backend_format is None else []
        self._hash_path = hash_path(backend)
        # the hashes this unit recorded: its local copy of what it wrote to Vault,
        # else Vault's, else (new to this backend, after a move) what it has seen
        stored = vault_kv_local_copies.recorded_hashes(self._hash_path)
        self._vault_hashes_current = stored is not None and vault_kv_local_copies.hashes_in_vault()
        if stored is None:
            stored = session.read(self._hash_path)
            self._vault_hashes_current = stored is not None
        self._recorded = stored
        super().__init__("{}/kv/app".format(backend), session)
        self._old_hashes: Dict[str, str] = stored if stored is not None else vault_kv_local_copies.seen_hashes()
        self._new_hashes: Dict[str, str] = {key: value_hash(value) for key, value in self.items()}
        self._awaited = set(vault_kv_local_copies.awaited_keys())
        undelivered = unitdata.kv().get(names.UNDELIVERED_CHANGES) if _change_holds else None
        self._undelivered: Dict[str, str] = undelivered if isinstance(undelivered, dict) else {}
        self._any_changed_toggled = False
        self._leader: Optional[bool] = None
        self._leader_asked_at = 0.0
        if (self._awaited & set(self)) or (set(missing) - self._awaited - set(self)):
            self._awaited = (self._awaited | set(missing)) - set(self)
            vault_kv_local_copies.set_awaited_keys(self._awaited)
        self._derive_flags()

    def _derive_flags(self) -> None:
        """Set the app-kv flags for every key we know of, and clear stale ones.

        The flags are read once and only the differences are written: every
        set or clear makes charms.reactive read all flags again, so a hook
        with many keys would otherwise cost the square of their number.
        """
        current = set(get_flags())
        set_prefix = FLAG_PREFIX + "set."
        flagged = {flag[len(set_prefix) :] for flag in current if flag.startswith(set_prefix)}
        any_changed = False
        for key in sorted(set(self) | set(self._old_hashes) | flagged | self._awaited):
            any_changed = self._manage_key_flags(key, current) or any_changed
        if any_changed:
            self._toggle_any_changed(FLAG_ANY_CHANGED in current)

    def _after_change(self, key: str) -> None:
        if key in self:
            self._new_hashes[key] = value_hash(self[key])
            if key in self._awaited:
                self._awaited.discard(key)
                vault_kv_local_copies.set_awaited_keys(self._awaited)
        else:
            self._new_hashes.pop(key, None)
        # A flag *cleared* is what makes charms.reactive test its queued handlers
        # again, so the changed flag is cleared before it is set, as the old layer
        # did: without it a handler queued on "set.{key} is unset" (a second key
        # generator, say) would still run after this write.
        names = (FLAG_PREFIX + "set." + key,)
        current = {name for name in names if is_flag_set(name)} | {FLAG_PREFIX + "changed." + key}
        if self._manage_key_flags(key, current):
            self._toggle_any_changed(is_flag_set(FLAG_ANY_CHANGED))

    def _data_expected(self) -> Optional[str]:
        """Why ``kv/app`` should hold data though Vault answered 404; None when the answer is believed.

        A proxy or a lagging replica can answer 404 for a secret that exists;
        taken for "nothing stored" it would drop every ``set`` flag and invite
        the charm to write a new value over the whole secret.  Believed only
        when nothing this unit knows says there is data, or when the leader
        published the digest of no data (it emptied the store itself).
        """
        digest = hookenv.leader_get(names.LEADER_NONCE)
        if digest == hashes_digest({}):
            return None
        if self._recorded:
            return "this unit recorded values there"
        # a backend a move filled says what it brought (a key it could not bring is awaited, not hidden)
        marker = self._session.read("{}/kv/migration".format(backend_of(self)))
        if isinstance(marker, dict) and marker.get("keys"):
            return "a move filled this backend"
        if isinstance(marker, dict) and marker.get("missing"):
            return None  # the move found nothing to bring: those keys are awaited
        if digest:
            return "the leader published values there"
        return None

    def missing_after_move(self) -> List[str]:
        """Keys a move to this backend could not bring, still awaited (see ``local_copies``)."""
        return sorted(self._awaited)

    def _manage_key_flags(self, key: str, current: Set[str]) -> bool:
        """Bring ``key``'s flags in line, touching only what differs from ``current``; True if it changed."""
        key_changed = FLAG_PREFIX + "changed." + key
        key_set = FLAG_PREFIX + "set." + key
        changed = self.is_changed(key)
        if changed:
            # clear then set, so handlers run again even if the flag was left set
            if key_changed in current:
                clear_flag(key_changed)
            set_flag(key_changed)
        wanted = self.get(key) is not None or key in self._awaited
        if wanted and key_set not in current:
            set_flag(key_set)
        elif not wanted and key_set in current:
            clear_flag(key_set)
        return changed

    def _toggle_any_changed(self, is_set: bool) -> None:
        """Raise ``app-kv.changed`` again, at most once per hook."""
        if self._any_changed_toggled:
            if not is_set:  # a handler cleared it since; a later change raises it again
                set_flag(FLAG_ANY_CHANGED)
            return
        if is_set:
            clear_flag(FLAG_ANY_CHANGED)
        set_flag(FLAG_ANY_CHANGED)
        self._any_changed_toggled = True

    @classmethod
    def _clear_all_flags(cls) -> None:
        """Clear every app-kv flag (the relation is gone)."""
        for flag in get_flags():
            if flag.startswith(FLAG_PREFIX):
                clear_flag(flag)

    def is_changed(self, key: str) -> bool:
        """Whether ``key``'s value differs from what this unit last recorded (or last delivered, see
        ``hold_changes_while``), and no registered hold keeps the change back now.

        A key awaited after a move is not changed until it is written again.
        """
        if key in self._awaited:
            return False
        if self._new_hashes.get(key) == self._delivered_hash(key):
            return False
        return not self._change_held(key)

    def _delivered_hash(self, key: str) -> Optional[str]:
        """The hash of ``key`` as the charm last saw it through the flags: the recorded one unless held back."""
        if key in self._undelivered:
            return self._undelivered[key] or None
        return self._old_hashes.get(key)

    def _change_held(self, key: str) -> bool:
        for hold in _change_holds.get(key, ()):
            try:
                if hold(self):
                    return True
            except Exception as error:  # deliver: the flag as without the hold
                log("a change hold for {} failed: unexpected {}".format(key, type(error).__name__), hookenv.ERROR)
        return False

    def _record_undelivered(self) -> None:
        """At hook exit: keep the hash last delivered for each key whose change a hold still keeps back."""
        undelivered = {}
        for key in set(self._new_hashes) | set(self._undelivered):
            delivered = self._delivered_hash(key)
            if self._new_hashes.get(key) != delivered and self._change_held(key):
                undelivered[key] = delivered or _ABSENT
        if undelivered != self._undelivered:
            if undelivered:
                unitdata.kv().set(names.UNDELIVERED_CHANGES, undelivered)
            else:
                unitdata.kv().unset(names.UNDELIVERED_CHANGES)
            self._undelivered = undelivered

    def any_changed(self) -> bool:
        """Whether any value differs from what this unit last recorded."""
        return any(self.is_changed(key) for key in set(self._new_hashes) | set(self._old_hashes))

    def data_digest(self) -> str:
        """A digest of all value hashes: equal digests mean equal data."""
        return hashes_digest(self._new_hashes)

    def restore_lost_writes(self) -> List[str]:
        """Read the data back once and write again what another writer's write dropped.

        A kv v1 write replaces the whole secret and has no check-and-set: a
        unit that read before this hook's write and wrote after it removes the
        keys this hook added.  Done at hook exit, after this hook's last
        write: keys this hook wrote that are missing are written back once,
        on top of what is there now.  A key another writer gave another value
        keeps that value (it wrote later); keys it added are taken in, with
        their flags.  Returns the keys written back.
        """
        if not self._written or not self._read_back_at_exit:
            return []
        latest = self._session.read(self._path)
        if latest is None and len(self):
            log("{} read back as nothing (a proxy or a lagging replica?); not written again".format(self._path))
            return []
        latest = latest or {}
        lost = sorted(key for key in self._written - self._removed if key in self and key not in latest)
        if lost:
            mapping = dict(latest)
            mapping.update({key: self[key] for key in lost})
            self._store(mapping)
            log("{} lost to another writer at {}; written back".format(", ".join(lost), self._path), hookenv.WARNING)
            latest = mapping
        self._take_in(latest)
        return lost

    def update_hashes(self) -> None:
        """Record the current hashes in Vault, marking every value as seen.

        Done at hook exit.  Costs no request when nothing changed and Vault
        already holds them; Vault's copy is what the old layer and
        kubernetes-control-plane 1.29 read, so it is written whenever it is
        missing or differs.  A change a hold keeps back is remembered apart
        (``hold_changes_while``).
        """
        if _change_holds or self._undelivered:
            self._record_undelivered()
        if self._new_hashes == self._old_hashes and self._vault_hashes_current:
            vault_kv_local_copies.remember_seen_hashes(self._new_hashes, self._hash_path)
            return
        # the local copy first: what this unit has seen is recorded even when
        # Vault refuses the hashes (a size limit the data itself passed)
        vault_kv_local_copies.remember_seen_hashes(self._new_hashes, self._hash_path, in_vault=False)
        self._old_hashes = dict(self._new_hashes)
        try:
            if self._new_hashes:
                self._session.write(self._hash_path, dict(self._new_hashes))
            elif self._vault_hashes_current:
                self._session.delete(self._hash_path)
        except VaultOperatorActionNeeded as error:
            log("hashes kept only in unitdata, the next hook tries Vault again: {}".format(error), hookenv.WARNING)
            return
        self._vault_hashes_current = True
        vault_kv_local_copies.remember_seen_hashes(self._new_hashes, self._hash_path)


def hash_path(backend: str) -> str:
    """Where this unit records the hashes of the app values it has seen, in ``backend``."""
    return "{}/kv/app-hashes/{}".format(backend, unit_number())


def backend_of(store: "_VaultBaseKV") -> str:
    """The backend a loaded store lives in (its path is ``{backend}/kv/...``)."""
    return store._path.split("/kv/", 1)[0]


def _get_secret_backend(backend_format: Optional[str] = None, **_ignored: Any) -> str:
    """The backend name this build of the charm wants (private, kept for the consumers).

    kubernetes-control-plane 1.27 and 1.28 call it on upgrade-charm
    (``maybe_heal_vault_kv``) and compare it with the ``secret_backend`` the
    unit published, to learn whether the backend is changing.  Same meaning
    and signature as in the old layer.  Never raises (an exception here would
    fail the charm's upgrade-charm hook): an unusable format gives the plain
    substitution, and the layer itself shows ``blocked`` with the reason.
    """
    template = backend_format or vault_kv_options.layer_options()["secrets-backend-format"]
    try:
        return vault_kv_options.format_backend_name(template)
    except VaultMisconfigured:
        return vault_kv_options.substitute(template if isinstance(template, str) else "")


def reset_cached_state() -> None:
    """Forget the stores and sessions of this process, and charmhelpers' per-hook cache (tests; a new hook)."""
    cache = getattr(hookenv, "cache", None)
    if isinstance(cache, dict):
        cache.clear()
    VaultAppKV.forget()
    VaultUnitKV.forget()
    forget_sessions()
    quiet_hooks.forget()
