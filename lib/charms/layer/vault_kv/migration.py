"""Moving a unit's Vault data to a new backend (``charm-{app}`` to ``charm-{model-uuid}-{app}``).

Why this is delicate: two models with the same application name on one Vault
shared the legacy backend and each unit's AppRole.  kubernetes-control-plane
keeps its encryption-at-rest key there; a leader that sees an empty new
backend and generates a key makes every Secret of its cluster unreadable.

The rules kept here:

- The legacy credentials (role id from the relation or the credentials this
  unit held, secret_id from unitdata) are copied aside *before* access to the
  new backend is requested, and kept for the whole move: the legacy AppRole
  keeps its policy, so they can still read the legacy backend until the move
  is done.  A move in the other direction (a refresh back) takes its own.
- Every unit that is moving copies what the new backend lacks before it
  switches, so no moving unit ever loads an empty store, whoever is leader.
  For each key missing from the new backend the most trusted source wins: the
  unit's own registered local copy (for the encryption key, the
  EncryptionConfiguration file the apiserver uses), then the legacy backend.
  A key already in the new backend is kept, with one exception below, and the
  copy is read back before it counts as done; then a marker (``kv/migration``,
  beside the app data) says the new backend was filled.
- The exception: a backend the application left and now comes back to (a
  rollback, or forward again after one) holds the values of the day it was
  left.  The leader that finishes a move leaves a departure record in the
  backend it left (``kv/departure``: each key's hash as it was left).  The
  first unit to fill a backend again replaces a key whose value is still the
  one the application left there with the trusted value (the local copy, or
  the backend it comes from): a key rotated since, or changed while rolled
  back, is carried over, never the stale one.  A key someone else changed
  since (another model sharing ``charm-{app}``) is kept, as before.  The leader announces the move in
  leader data once it has copied or seen the marker.
- Units that were never in the legacy backend (added during the move) hold no
  legacy credentials: they wait, not ready, until the move is announced, so a
  new unit that becomes leader never takes the empty new backend for a fresh
  deployment.  While a unit waits, the app-kv flags keep their values, so no
  charm regenerates anything.
- Each unit also copies its own ``{legacy}/{hostname}/*`` secrets (vaultlocker
  keeps each encrypted device's key there and reads it at boot from the
  backend in its configuration) before ``layer.vault-kv.config.changed`` can
  announce the new backend.
- A refresh back to the previous build is a move too, in the other direction,
  with the credentials this unit held there (see ``credential_book``).
- Every step can be repeated: a hook that dies anywhere leaves a state from
  which the next hook finishes the move.  The legacy backend's data is only
  read; the only things ever written there are this layer's own records when
  the application moves away from it (the ``kv/migration`` marker removed, the
  ``kv/departure`` record written).
- Unit data (``kv/unit/{n}``, ``VaultUnitKV``) moves with each unit, under
  the same rules.

Log lines and flags name keys, paths and sources, never values.
"""

import socket
import time
from typing import Any, Dict, List, Optional, Tuple

from charmhelpers.core import hookenv, unitdata
from charms.reactive import clear_flag, get_flags, set_flag

from charms.layer.vault_kv import local_copies as vault_kv_local_copies
from charms.layer.vault_kv import names
from charms.layer.vault_kv import options as vault_kv_options
from charms.layer.vault_kv.backend import active, set_active, wanted
from charms.layer.vault_kv.credentials import KV_SECRET_ID, ca_file_for, ca_pem_of, credential_book, vault_endpoint
from charms.layer.vault_kv.errors import VaultCredentialsInvalid, VaultNotReady, VaultOperatorActionNeeded
from charms.layer.vault_kv.hashing import canonical_json, value_hash
from charms.layer.vault_kv.session import VaultSession

FLAG_IN_PROGRESS = names.MIGRATION_IN_PROGRESS
FLAG_DONE = names.MIGRATION_DONE
FLAG_FAILED = names.MIGRATION_FAILED
FLAG_LEGACY_UNREADABLE = names.MIGRATION_LEGACY_UNREADABLE

FLAG_APP_SET = names.APP_KV_PREFIX + "set."

KV_ACTIVE = names.ACTIVE
KV_LEGACY = names.LEGACY_CREDENTIALS
KV_STATUS = names.MIGRATION_STATUS
KV_JOINED_EMPTY = names.JOINED_EMPTY
KV_UNIT_SECRETS_PENDING = names.UNIT_SECRETS_NOT_COPIED
LEADER_MIGRATED = names.LEADER_MIGRATED
LEADER_BACKEND = names.LEADER_BACKEND
LEADER_NONCE = names.LEADER_NONCE
KV_ANSWER_AWAITED_SINCE = names.ANSWER_AWAITED_SINCE
# The vault charm answers a new request in its next hook (as deployed it answers every request each
# time).  A move that has waited this long for the answer to its new name will not get it by itself.
ANSWER_WAIT_SECONDS = 15 * 60
MARKER = "kv/migration"
DEPARTURE = "kv/departure"


class MigrationFailed(Exception):
    """The move could not be verified; it is retried in the next hook."""


def log(message: str, level: str = hookenv.INFO) -> None:
    hookenv.log("vault-kv migration: " + message, level=level)


def record(state: str) -> None:
    """Keep the latest migration state where an operator (and tests) can read it."""
    unitdata.kv().set(KV_STATUS, state)
    log(state)


# -- starting ---------------------------------------------------------------


def begin() -> None:
    """Put the source backend's credentials aside and mark the move as started.

    Called before access to the new backend is requested.  Idempotent within
    one move: a snapshot taken by an earlier (perhaps failed) hook of the same
    move is kept as it was.  A move in another direction (a refresh back to the
    previous build) takes a new snapshot, from the credentials this unit held
    for its current backend.
    """
    store = unitdata.kv()
    source = active() or {"backend": vault_kv_options.legacy_backend_name(), "unit_name": hookenv.local_unit()}
    snapshot = store.get(KV_LEGACY) or {}
    if snapshot.get("backend") != source["backend"] or not snapshot.get("secret_id"):
        endpoint = vault_endpoint()
        held = credential_book().get(source["unit_name"]) or {}
        role_id = held.get("role_id")
        secret_id = held.get("secret_id")
        if not role_id and endpoint is not None:
            role_id = endpoint.role_id_for(source["unit_name"])
            if role_id is None and source["unit_name"] != hookenv.local_unit():
                role_id = endpoint.role_id_for(hookenv.local_unit())
        if not secret_id:
            secret_id = store.get(KV_SECRET_ID)
        store.set(
            KV_LEGACY,
            {
                "backend": source["backend"],
                "unit_name": source["unit_name"],
                "role_id": role_id,
                "secret_id": secret_id,
                "vault_url": endpoint.vault_url if endpoint is not None else None,
            },
        )
        store.flush()
    set_flag(FLAG_IN_PROGRESS)
    clear_flag(FLAG_DONE)
    target = wanted()
    record("started: {} -> {}".format(source["backend"], target["backend"]))


# -- reading the legacy backend ----------------------------------------------------


def legacy_session() -> Tuple[Optional[VaultSession], Optional[Dict[str, Any]]]:
    """A session with the legacy credentials, or (None, snapshot) when they are incomplete."""
    legacy = unitdata.kv().get(KV_LEGACY) or {}
    endpoint = vault_endpoint()
    urls = list(getattr(endpoint, "vault_urls", None) or []) if endpoint is not None else []
    urls = urls or list(filter(None, [legacy.get("vault_url")]))
    if not (urls and legacy.get("role_id") and legacy.get("secret_id")):
        return None, legacy
    verify = ca_file_for(ca_pem_of(endpoint))
    config = {
        "vault_url": urls[0],
        "vault_urls": urls,
        "role_id": legacy["role_id"],
        "secret_id": legacy["secret_id"],
        "vault_ca": verify,
    }
    return VaultSession(config), legacy


def read_legacy(path_suffix: str) -> Tuple[Optional[Dict[str, Any]], str]:
    """Read ``{legacy backend}/{path_suffix}``: (data or None, why it is None).

    Raises VaultNotReady for a transient failure (try again later); a refusal
    of the legacy credentials or policy is returned as unreadable.
    """
    session, legacy = legacy_session()
    if session is None:
        return None, "no legacy credentials were kept"
    path = "{}/{}".format(legacy["backend"], path_suffix)
    try:
        return session.read(path) or {}, ""
    except VaultCredentialsInvalid:
        return None, "the legacy credentials are refused"
    except VaultNotReady as error:
        if "does not grant" in str(error):
            return None, "the legacy AppRole no longer grants {}".format(path)
        raise


def unit_number() -> str:
    return hookenv.local_unit().split("/")[1]


def keep_seen_hashes() -> None:
    """Make sure this unit knows which values it has seen, before it switches.

    Units upgraded from the old layer kept their hashes only in the legacy
    backend; a copy in unitdata lets the new backend start from them.
    """
    if unitdata.kv().get(vault_kv_local_copies.KV_SEEN_HASHES) is not None:
        return
    hashes, why = read_legacy("kv/app-hashes/{}".format(unit_number()))
    if hashes is None:
        log("legacy hashes not read ({}); registered local copies stand in".format(why), hookenv.WARNING)
        return
    vault_kv_local_copies.remember_seen_hashes(hashes)


# -- the leader's copy ------------------------------------------------------------


def copy_app_data(new_session: VaultSession, backend: str, current: Dict[str, Any]) -> List[str]:
    """Fill the new backend's app data from the trusted sources; returns the keys written.

    ``current`` is what the new backend holds now.  Never overwrites a key it
    holds; verifies by reading back.
    """
    path = "{}/kv/app".format(backend)
    legacy, why = read_legacy("kv/app")
    if legacy is None:
        set_flag(FLAG_LEGACY_UNREADABLE)
        log("legacy backend unreadable ({}); restoring from local copies only".format(why), hookenv.WARNING)
    else:
        clear_flag(FLAG_LEGACY_UNREADABLE)
    updates: Dict[str, Any] = {}
    marker = "{}/{}".format(backend, MARKER)
    first = new_session.read(marker) is None  # no unit filled the backend in this move yet
    left_behind = _left_behind(new_session, backend, current) if first else []
    for key in sorted(set(legacy or {}) | set(vault_kv_local_copies.registered_keys())):
        local = vault_kv_local_copies.local_value(key)
        if key in current:
            trusted = local if local is not None else (legacy or {}).get(key)
            if key in left_behind and trusted is not None and canonical_json(trusted) != canonical_json(current[key]):
                updates[key] = trusted
                log("replacing {}: {} held it as the application left it".format(key, backend), hookenv.WARNING)
            continue
        if local is not None:
            if legacy is not None and key in legacy and canonical_json(legacy[key]) != canonical_json(local):
                log("legacy backend holds another value of {}; this unit's local copy wins".format(key), "WARNING")
            updates[key] = local
            log("restoring {} from this unit's local copy".format(key))
        elif legacy is not None and key in legacy:
            updates[key] = legacy[key]
            log("copying {} from the legacy backend".format(key))
    if legacy is None:
        known = set(vault_kv_local_copies.seen_hashes()) | {
            flag[len(FLAG_APP_SET) :] for flag in get_flags() if flag.startswith(FLAG_APP_SET)
        }
        awaited = sorted(known - set(current) - set(updates))
        if awaited:
            log("not found anywhere, awaiting the charm's restore: {}".format(", ".join(awaited)), hookenv.WARNING)
        vault_kv_local_copies.set_awaited_keys(awaited)
    if updates:
        merged = dict(current)
        merged.update(updates)
        new_session.write(path, merged)
        back = new_session.read(path) or {}
        wrong = sorted(k for k in merged if canonical_json(back.get(k)) != canonical_json(merged[k]))
        if wrong:
            raise MigrationFailed("read-back of {} differs for {}".format(path, ", ".join(wrong)))
    if first and updates:
        first = new_session.read(marker) is None  # another unit may have filled it while this one wrote
    if first:
        source = (unitdata.kv().get(KV_LEGACY) or {}).get("backend")
        new_session.write(
            marker,
            {
                "from": source or "",
                "keys": sorted(set(current) | set(updates)),
                "missing": vault_kv_local_copies.awaited_keys(),
            },
        )
    return sorted(updates)


def _left_behind(new_session: VaultSession, backend: str, current: Dict[str, Any]) -> List[str]:
    """The keys of ``current`` whose values are still those the application left in ``backend``.

    Asked only by the first unit that fills the backend in this move (no
    marker yet), and only where a departure record says what was left: a
    value that changed since someone else wrote it, and it stays.
    """
    departure = new_session.read("{}/{}".format(backend, DEPARTURE)) or {}
    hashes = departure.get("hashes") if isinstance(departure, dict) else None
    if not isinstance(hashes, dict):
        return []
    return sorted(key for key, value in current.items() if hashes.get(key) == value_hash(value))


def copy_unit_data(new_session: VaultSession, backend: str) -> bool:
    """Copy this unit's ``{legacy}/kv/unit/{n}`` (VaultUnitKV) keys the new backend lacks; True if written."""
    legacy, _why = read_legacy("kv/unit/{}".format(unit_number()))
    if not legacy:
        return False
    path = "{}/kv/unit/{}".format(backend, unit_number())
    current = new_session.read(path) or {}
    missing = {k: v for k, v in legacy.items() if k not in current}
    if not missing:
        return False
    merged = dict(current)
    merged.update(missing)
    new_session.write(path, merged)
    back = new_session.read(path) or {}
    if any(canonical_json(back.get(k)) != canonical_json(v) for k, v in merged.items()):
        raise MigrationFailed("read-back of {} differs".format(path))
    log("copied this unit's data keys {} to {}".format(", ".join(sorted(missing)), path))
    return True


def copy_unit_secrets(new_session: VaultSession, backend: str) -> List[str]:
    """Copy this unit's ``{legacy}/{hostname}/*`` secrets to the new backend; returns the paths written.

    vaultlocker keeps each encrypted device's dm-crypt key there, and reads it
    at boot from the backend its configuration names.  Never overwrites;
    every copy is read back.  Nothing to copy, or no legacy access, is not an
    error: the unit's own devices are then simply not in the legacy backend.
    """
    session, legacy = legacy_session()
    if session is None:
        return []
    unitdata.kv().unset(KV_UNIT_SECRETS_PENDING)
    hostname = socket.gethostname()
    written: List[str] = []
    pending = [hostname + "/"]
    while pending:
        folder = pending.pop()
        try:
            names = session.list("{}/{}".format(legacy["backend"], folder.rstrip("/")))
        except VaultCredentialsInvalid:
            log("legacy credentials refused while listing this unit's secrets; none copied", hookenv.WARNING)
            unitdata.kv().set(KV_UNIT_SECRETS_PENDING, legacy["backend"])
            return written
        except VaultNotReady as error:
            if "does not grant" in str(error):
                log("legacy AppRole does not grant this unit's secrets; none copied", hookenv.WARNING)
                unitdata.kv().set(KV_UNIT_SECRETS_PENDING, legacy["backend"])
                return written
            raise
        for name in names:
            relative = folder + name
            if name.endswith("/"):
                pending.append(relative)
                continue
            target = "{}/{}".format(backend, relative)
            if new_session.read(target) is not None:
                continue
            value = session.read("{}/{}".format(legacy["backend"], relative))
            if value is None:
                continue
            new_session.write(target, value)
            if canonical_json(new_session.read(target)) != canonical_json(value):
                raise MigrationFailed("read-back of {} differs".format(target))
            written.append(relative)
    if written:
        log("copied this unit's secrets {} to {}".format(", ".join(written), backend))
    return written


def unit_secrets_not_copied(session: VaultSession, backend: str) -> Optional[str]:
    """The legacy backend whose ``{hostname}/`` secrets a move could not copy, while still missing.

    Shown as ``blocked``: vaultlocker reads a device's key at boot from the
    backend its configuration names, now the new one.  Once the operator has
    copied them (anything under ``{backend}/{hostname}/``), it is over.
    """
    store = unitdata.kv()
    legacy = store.get(KV_UNIT_SECRETS_PENDING)
    if not legacy or not vault_kv_options.charm_includes_vaultlocker():
        return None  # only vaultlocker keeps secrets there
    if session.list("{}/{}".format(backend, socket.gethostname())):
        store.unset(KV_UNIT_SECRETS_PENDING)
        return None
    return legacy


# -- finishing ----------------------------------------------------------------------


def announce(backend: str) -> None:
    """Leader only: the application's data now lives in ``backend``."""
    settings = {LEADER_MIGRATED: backend, LEADER_BACKEND: backend}
    current = hookenv.leader_get() or {}
    if any(current.get(key) != value for key, value in settings.items()):
        hookenv.leader_set(settings)


def app_data_elsewhere(backend: str) -> bool:
    """Whether, as the leader data tells, the application's data is not in ``backend`` yet.

    True when the leader recorded another backend, or when the application
    has had data (the old layer's nonce) and no backend is recorded: a unit
    that was never in the legacy backend must then not read the new one as
    the application's data.  False for a fresh application.
    """
    settings = hookenv.leader_get() or {}
    recorded = settings.get(LEADER_BACKEND) or settings.get(LEADER_MIGRATED)
    if recorded:
        return recorded != backend
    return bool(settings.get(LEADER_NONCE))


def marker_present(session: VaultSession, backend: str) -> bool:
    """Whether a moving unit finished filling ``backend`` (its marker is there)."""
    return session.read("{}/{}".format(backend, MARKER)) is not None


def _wait_for_answer(target: Dict[str, str]) -> None:
    """Vault has not answered the request for the new name yet: wait, or after a while, say who can help.

    Vault may never answer: a unit that never held the new name's secret_id
    (rolled back before it unwrapped it), whose name's answers were blanked
    by a refresh-secrets while rolled back, gets none from a vault charm
    that answers only new AppRoles.  The requirer cannot tell that from a
    slow answer, so it waits ANSWER_WAIT_SECONDS, then blocks on the action
    that issues one.
    """
    store = unitdata.kv()
    since = store.get(KV_ANSWER_AWAITED_SINCE)
    now = time.time()
    if not isinstance(since, (int, float)) or since > now:
        store.set(KV_ANSWER_AWAITED_SINCE, now)
        since = now
    waited = now - since
    if waited >= ANSWER_WAIT_SECONDS:
        raise VaultOperatorActionNeeded(
            "Vault has not answered the request for {} as {} for {} minutes: run the vault charm's"
            " refresh-secrets action".format(target["backend"], target["unit_name"], int(waited // 60))
        )
    raise VaultNotReady("waiting for Vault to answer the request for {}".format(target["backend"]))


def finish() -> None:
    """The unit now uses the new backend; the legacy snapshot stays for a rollback."""
    target = wanted()
    set_active(target)
    unitdata.kv().set(KV_JOINED_EMPTY, False)
    clear_flag(FLAG_IN_PROGRESS)
    clear_flag(FLAG_FAILED)
    set_flag(FLAG_DONE)
    record("done: now using {}".format(target["backend"]))


def fail(reason: str) -> None:
    set_flag(FLAG_FAILED)
    record("failed, will retry: " + reason)


def advance() -> List[str]:
    """Take the move as far as it can go in this hook; returns the keys this unit wrote.

    Raises VaultNotReady while waiting (for Vault to grant the new backend),
    MigrationFailed when a copy does not verify.
    """
    from charms.layer.vault_kv.credentials import get_vault_config
    from charms.layer.vault_kv.session import session_for

    target = wanted()
    legacy = unitdata.kv().get(KV_LEGACY) or {}
    config = get_vault_config()
    if target["unit_name"] != legacy.get("unit_name") and config["role_id"] == legacy.get("role_id"):
        _wait_for_answer(target)
    unitdata.kv().unset(KV_ANSWER_AWAITED_SINCE)
    session = session_for(config)
    current = session.read("{}/kv/app".format(target["backend"])) or {}  # also proves the new AppRole may
    keep_seen_hashes()
    written = copy_app_data(session, target["backend"], current)
    copy_unit_data(session, target["backend"])
    copy_unit_secrets(session, target["backend"])
    if hookenv.is_leader():
        announce(target["backend"])
        record_departure(target["backend"])
    finish()
    return written


def record_departure(target: str) -> None:
    """In the backend the application left: what it left there, and no marker.

    A later move back into that backend is judged by its own marker, not by
    this stale one, and replaces the values still as they were left (see
    ``_left_behind``): by then the application may have changed them (a key
    rotation).  Only hashes are written, as the layer's ``kv/app-hashes``.
    """
    session, legacy = legacy_session()
    if session is None:
        return
    source = legacy["backend"]
    try:
        left = session.read("{}/kv/app".format(source)) or {}
        departure = {"to": target, "hashes": {key: value_hash(value) for key, value in left.items()}}
        if session.read("{}/{}".format(source, DEPARTURE)) != departure:
            session.write("{}/{}".format(source, DEPARTURE), departure)
        session.delete("{}/{}".format(source, MARKER))
    except VaultNotReady:
        pass  # best effort: without the record a move back keeps the values it finds, as before


def mark_joined_empty() -> None:
    """This unit asked Vault for the first time while holding no data anywhere (a new unit)."""
    unitdata.kv().set(KV_JOINED_EMPTY, True)


def settle_without_legacy(session: VaultSession) -> List[str]:
    """For a unit that is not moving: may it use the wanted backend now?  Returns keys still missing.

    Raises VaultNotReady while the application's data is on its way there
    (a unit added during a move, even as leader, waits for a unit that holds
    the data).  A unit that already held the application's data in this
    backend (a rebuild that keeps the backend) vouches for it.  The leader
    announces the move once the backend is marked as filled, and records the
    backend of a fresh application.  The keys returned are those the move
    could not bring: they are awaited, not absent (see ``VaultAppKV``).
    """
    target = wanted()["backend"]
    settings = hookenv.leader_get() or {}
    recorded = settings.get(LEADER_BACKEND) or settings.get(LEADER_MIGRATED)
    if recorded == target:
        return []
    if recorded is None and not settings.get(LEADER_NONCE):  # a fresh application
        if hookenv.is_leader():
            hookenv.leader_set({LEADER_BACKEND: target})
        return []
    path = "{}/{}".format(target, MARKER)
    marker = session.read(path)
    if marker is not None and recorded and marker.get("from") not in ("", recorded, target):
        marker = None  # the marker of an earlier move, not of this one
    if marker is None:
        holds_data = not unitdata.kv().get(KV_JOINED_EMPTY) and active() == wanted()
        if not (holds_data and recorded is None):
            raise VaultNotReady(
                "the application's data is moving to {}; waiting for a unit that holds it".format(target)
            )
        marker = {"from": target, "keys": [], "missing": []}
        session.write(path, marker)
    if hookenv.is_leader():
        announce(target)
    missing = marker.get("missing") if isinstance(marker, dict) else None
    return [k for k in missing if isinstance(k, str)] if isinstance(missing, list) else []
