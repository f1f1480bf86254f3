"""kubernetes-control-plane 1.29+ (the ops charm, ``main``), modelled for the simulator: its Vault and encryption parts.

From 1.29 the charm no longer includes layer:vault-kv: it speaks interface:vault-kv
itself (``src/encryption/vault_kv.py``) and keeps the encryption-at-rest file itself
(``src/encryption_at_rest.py``).  This module does what those do, in our own words,
with the same data formats and conditions, so that a refresh from the 1.28-shaped
consumer (built with this layer) can be tested.  No ops library: one script runs for
every hook, with charmhelpers' hook tool wrappers and hvac.

What one hook does, in the order the real charm's observers run:

1. ``vault-kv-relation-joined``: the request, on every vault-kv relation, in this
   unit's data: ``secret_backend`` = ``charm-{model-uuid}-{app}``, ``unit_name`` =
   ``{model-uuid}-{unit}``, ``isolated`` = ``false`` (JSON), ``access_address``
   (the endpoint's bind address) and ``hostname``, as plain strings.  Nothing is
   published on any other hook (not on upgrade-charm either).
2. ``vault-kv-relation-changed``: if the secret_id (after a possible unwrap of a new
   one-shot token) differs from the stored one, the application data is read again;
   any Vault error is swallowed without a status.
3. The reconciler, on every hook (update-status only until a reconcile succeeded):
   ``prepare`` (only with a vault-kv relation) then the apiserver restart.
   ``prepare``: the Vault configuration vaultlocker would be given (so credentials
   are needed before anything else); on the leader, ``encryption_key`` (32 letters
   and digits) written only when Vault's application data lacks it; then the file:
   Vault's key compared with the file's ``resources[0].providers[0].aescbc.keys[0]``
   secret; equal, the file is left whatever else it holds; different or no file, it
   is overwritten with ``EncryptionConfig``/``v1``, one ``aescbc`` key ``key1`` =
   Vault's key, then ``identity`` (``yaml.safe_dump``, then chmod 0600).  Any error
   in ``prepare``: Waiting "Waiting for Vault" (and first Blocked "Can't access Vault
   - try refresh-secrets" for refused credentials or a spent token), nothing
   restarted in that hook.  After a successful ``prepare`` the apiserver is
   (re)started with the file as it is, every time (``configure_apiserver`` in the
   real charm restarts the snap unconditionally); here that is the same record the
   1.28 model writes (tests/charms/kcp-consumer-core, ``configure_apiserver``), so
   tests/support/apiservers.py checks these apiservers unchanged.  Status: active
   "Ready" otherwise.
4. Commit (every hook's end): the stored state is saved, then the application data
   is read (if this hook did not yet) and, when a value's hash differs from the
   unit's hashes in Vault, the hashes are written to ``kv/app-hashes/{n}`` and the
   leader sets ``vault-kv-nonce`` in its data on the ``peer`` relation.  The
   simulator has no peer relations (metadata declares ``peer``; ``relation-ids
   peer`` answers nothing), so the nonce is never set here.  Vault errors are
   swallowed; hvac errors the real charm does not translate are not either.

Credentials: the role id and the one-shot token are read from the vault units' data
(merged, lowest relation id and unit name winning) under ``{model-uuid}-{unit}_`` then
``{unit}_`` (the Juju unit name).  The token's hash is the md5 hexdigest of
``json.dumps(token, sort_keys=True)``, what charms.reactive's ``data_changed`` stores.
A token whose hash equals the stored one is spent: the stored secret_id is used.
Otherwise the token is unwrapped (``sys/wrapping/unwrap``): a refused token (HTTP 400,
a spent one) is refused credentials (blocked), Vault unreachable is retryable.
Every read and write logs in again with the AppRole.

Unit state: the real charm keeps ``token_hash`` and ``secret_id`` in ops'
StoredState, in the ``.unit-state.db`` in the charm directory, the same SQLite file in
which charmhelpers' unitdata (the reactive charm's) keeps its ``kv`` table.  While its
own values are unset it takes them over from that table: ``reactive.data_changed.
layer.vault-kv.token`` and ``layer.vault-kv.secret_id`` (JSON values).  Here unitdata
is the file the simulator names in ``UNIT_STATE_DB`` (``$CHARM_DIR/.unit-state.db`` on
a real unit), read only; this model's own state is a JSON file beside it
(``kcp-ops-stored-state.json``), so the simulator's reader of the ``kv`` table keeps
working for units that never ran the reactive charm.  As in ops, the state is saved
when the commit begins: a change made by the commit handler itself (an unwrap in a hook
whose first Vault access is there) is lost, as it is in the real charm.

Left out: vaultlocker (its package, configuration file and encrypted loop mount), the
snaps, certificates, etcd and everything else the real reconcile does.
"""

import base64
import hashlib
import json
import os
import random
import socket
import sqlite3
import string
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml
from charmhelpers.core import hookenv

ENDPOINT = "vault-kv"
PEER = "peer"
SECRETS_BACKEND_FORMAT = "charm-{model-uuid}-{app}"
ENCRYPTION_KEY = "encryption_key"
ENCRYPTION_CONFIG = Path("/var/snap/kube-apiserver/common/encryption/encryption_config.yaml")
# the same record as the 1.28 model's configure_apiserver: what tests read as the running apiserver
APISERVER_RECORD = Path("/var/lib/kcp-consumer/apiserver.json")
REACTIVE_TOKEN_HASH = "reactive.data_changed.layer.vault-kv.token"
REACTIVE_SECRET_ID = "layer.vault-kv.secret_id"
STORED_STATE_FILE = "kcp-ops-stored-state.json"

WAITING_FOR_VAULT = "Waiting for Vault"
CANT_ACCESS_VAULT = "Can't access Vault - try refresh-secrets"
READY = "Ready"

# log lines the tests look for (never with a value)
TOOK_OVER_TOKEN_HASH = "kcp-ops: took over the token hash from the reactive unit state"
TOOK_OVER_SECRET_ID = "kcp-ops: took over the secret_id from the reactive unit state"
UNWRAPPING = "kcp-ops: unwrapping a new one-shot token"
WROTE_CONFIG = "kcp-ops: wrote the encryption config: key1 = Vault's encryption_key"
CONFIG_UNCHANGED = "kcp-ops: encryption config holds Vault's key first; left as it is"
GENERATED = "kcp-ops: stored a new encryption_key in Vault"


class VaultNotReady(Exception):
    """Vault cannot be used now; ``can_retry``: a later hook may succeed by itself."""

    can_retry = True


class VaultInvalidAccess(VaultNotReady):
    """Vault refused these credentials (or the one-shot token was spent): an operator must act."""

    can_retry = False


class ReconcileFailed(Exception):
    """A step of the reconcile failed with a status already added."""


def try_json(value: Any) -> Any:
    try:
        return json.loads(value)
    except (ValueError, TypeError):
        return value


def value_hash(value: Any) -> str:
    """md5 hexdigest of the value's JSON with sorted keys: the hashes in ``kv/app-hashes`` and the token's hash."""
    return hashlib.md5(json.dumps(value, sort_keys=True).encode("utf8")).hexdigest()


def fingerprint(value: Any) -> str:
    """The tests' short fingerprint of a key (the layer's ``hashing.fingerprint``; a unit test keeps them equal)."""
    data = b"vault-kv-fingerprint:" + json.dumps(value, sort_keys=True).encode("utf-8")
    return hashlib.sha256(data).hexdigest()[:12]


def token_generator(length: int = 32) -> str:
    rng = random.SystemRandom()
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(length))


def _vault_errors():
    """hvac and requests errors the real charm turns into a retryable VaultNotReady."""
    import hvac
    import requests

    return (
        requests.exceptions.ConnectionError,
        hvac.exceptions.VaultDown,
        hvac.exceptions.VaultNotInitialized,
        hvac.exceptions.BadGateway,
        hvac.exceptions.InternalServerError,
    )


# -- unit state -------------------------------------------------------------------------------


def unit_state_db() -> Path:
    """charmhelpers' unitdata: UNIT_STATE_DB, else ``.unit-state.db`` in the charm dir (where ops keeps its own)."""
    return Path(os.environ.get("UNIT_STATE_DB") or os.path.join(hookenv.charm_dir(), ".unit-state.db"))


def read_reactive_unitdata(key: str) -> Any:
    """A value the reactive charm left in unitdata's ``kv`` table; None without the file, the table or the key."""
    path = unit_state_db()
    if not path.exists():
        return None
    db = sqlite3.connect("file:{}?mode=ro".format(path), uri=True)
    try:
        tables = db.execute("SELECT count(name) FROM sqlite_master WHERE type='table' AND name='kv'").fetchone()[0]
        row = db.execute("SELECT data FROM kv WHERE key=?", [key]).fetchone() if tables else None
    finally:
        db.close()
    return try_json(row[0]) if row else None


class StoredState:
    """What ops' StoredState keeps for this charm: the reconciler's flag and vault-kv's token hash and secret_id."""

    DEFAULTS = {"reconciled": False, "token_hash": None, "secret_id": None}

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            saved = {}
        self.data: Dict[str, Any] = dict(self.DEFAULTS, **saved)

    def save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(self.data, sort_keys=True))
        os.replace(str(tmp), str(self.path))


# -- the relation -------------------------------------------------------------------------------


class VaultRelation:
    """The requires side of interface:vault-kv, as 1.29 implements it."""

    def __init__(self) -> None:
        self.unit = hookenv.local_unit()
        self.model_uuid = os.environ["JUJU_MODEL_UUID"]
        self.ids: List[str] = hookenv.relation_ids(ENDPOINT) or []
        self._received: Optional[Dict[str, Any]] = None

    @property
    def unit_name(self) -> str:
        return "{}-{}".format(self.model_uuid, self.unit)

    @property
    def received(self) -> Dict[str, Any]:
        """Every vault unit's data merged: the lowest relation id and unit name (as strings) win."""
        if self._received is None:
            merged: Dict[str, Any] = {}
            for rid in sorted(self.ids, key=lambda r: int(r.split(":")[-1]), reverse=True):
                for unit in sorted(hookenv.related_units(rid) or [], reverse=True):
                    merged.update(hookenv.relation_get(rid=rid, unit=unit) or {})
            self._received = merged
        return self._received

    def _answer(self, suffix: str) -> Any:
        for name in (self.unit_name, self.unit):
            value = try_json(self.received.get("{}_{}".format(name, suffix)))
            if value:
                return value
        hookenv.log("kcp-ops: vault-kv: unit {} not yet available".format(suffix), level=hookenv.WARNING)
        return None

    @property
    def role_id(self) -> Any:
        return self._answer("role_id")

    @property
    def token(self) -> Any:
        return self._answer("token")

    @property
    def vault_url(self) -> Any:
        return try_json(self.received.get("vault_url"))

    def request_secret_backend(self, name: str) -> None:
        for rid in self.ids:
            hookenv.relation_set(
                relation_id=rid,
                relation_settings={
                    "secret_backend": name,
                    "access_address": self._bind_address(rid),
                    "hostname": socket.gethostname(),
                    "isolated": json.dumps(False),
                    "unit_name": self.unit_name,
                },
            )

    @staticmethod
    def _bind_address(rid: str) -> str:
        """The endpoint's bind address (network-get), "" when there is none."""
        try:
            answer = subprocess.run(
                ["network-get", ENDPOINT, "-r", rid, "--format=json"], capture_output=True, text=True, check=True
            ).stdout
            return str(json.loads(answer)["bind-addresses"][0]["addresses"][0]["value"])
        except (OSError, subprocess.CalledProcessError, ValueError, KeyError, IndexError, TypeError):
            return ""


# -- Vault's application data -----------------------------------------------------------------------


class AppKV(dict):
    """``{backend}/kv/app`` as a dict, its hashes at ``{backend}/kv/app-hashes/{n}``; a new login per request."""

    def __init__(self, config: Dict[str, Any], unit_number: str) -> None:
        super().__init__()
        self.config: Dict[str, Any] = {}
        self.path = "{}/kv/app".format(config["secret_backend"])
        self.hash_path = "{}/kv/app-hashes/{}".format(config["secret_backend"], unit_number)
        self.update_config(config)
        self.old_hashes = self._read(self.hash_path)
        self.new_hashes = {key: value_hash(value) for key, value in self.items()}

    def update_config(self, config: Dict[str, Any]) -> None:
        """Read the data again under new credentials; keys are only ever added to this copy."""
        if config != self.config:
            self.config = config
            self.update(self._read(self.path))

    def _client(self):
        import hvac

        url = self.config["vault_url"]
        try:
            client = hvac.Client(url=url)
            client.auth.approle.login(self.config["role_id"], secret_id=self.config["secret_id"])
            return client
        except _vault_errors() as error:
            raise VaultNotReady("failed to log in to {}".format(url)) from error
        except hvac.exceptions.InvalidRequest as error:
            raise VaultInvalidAccess("invalid role-id or secret-id") from error

    def _read(self, path: str) -> Dict[str, Any]:
        import hvac

        try:
            response = self._client().read(path)
        except hvac.exceptions.Forbidden as error:
            raise VaultNotReady("failed to read path={}".format(path)) from error
        return (response or {}).get("data") or {}

    def __setitem__(self, key: str, value: Any) -> None:
        """Writes this one key: a kv v1 write replaces the secret, so every other key there is dropped."""
        hookenv.log("kcp-ops: writing key={} to Vault".format(key))
        self._client().write_data(self.path, data={key: value})
        super().__setitem__(key, value)
        self.new_hashes[key] = value_hash(value)

    def any_changed(self) -> bool:
        keys = set(self.new_hashes) | set(self.old_hashes)
        return any(self.new_hashes.get(key) != self.old_hashes.get(key) for key in keys)

    def update_hashes(self) -> None:
        self._client().write_data(self.hash_path, data=dict(self.new_hashes))
        self.old_hashes = dict(self.new_hashes)

    def sum_hashes(self) -> str:
        return str(sum(int(digest, 16) for digest in self.new_hashes.values()))


class VaultKV:
    """Credentials (with the takeover of the reactive unit state) and the application data."""

    def __init__(self, stored: StoredState, relation: VaultRelation) -> None:
        self.stored = stored
        self.relation = relation
        self._app_kv: Optional[AppKV] = None

    def secret_backend(self) -> str:
        app = hookenv.local_unit().split("/")[0]
        return SECRETS_BACKEND_FORMAT.replace("{model-uuid}", self.relation.model_uuid).replace("{app}", app)

    def _stored(self, field: str, reactive_key: str, took_over: str) -> Optional[str]:
        """The stored ``field``, taken over from the reactive unit state while it is unset."""
        if self.stored.data[field] is None:
            taken = read_reactive_unitdata(reactive_key)
            if taken:
                hookenv.log(took_over)
                self.stored.data[field] = taken
        return self.stored.data[field]

    def stored_token_hash(self) -> Optional[str]:
        return self._stored("token_hash", REACTIVE_TOKEN_HASH, TOOK_OVER_TOKEN_HASH)

    def stored_secret_id(self) -> Optional[str]:
        return self._stored("secret_id", REACTIVE_SECRET_ID, TOOK_OVER_SECRET_ID)

    def new_token(self) -> str:
        """The relation's token if it was never used, else ""."""
        token = self.relation.token
        if not token or self.stored_token_hash() == value_hash(token):
            return ""
        return token

    def secret_id(self) -> Optional[str]:
        token = self.new_token()
        if not token:
            return self.stored_secret_id()
        import hvac

        hookenv.log(UNWRAPPING)
        url = self.relation.vault_url
        try:
            answer = hvac.Client(url=url, token=token).sys.unwrap()
        except _vault_errors() as error:
            raise VaultNotReady("failed to retrieve a secret_id at {}".format(url)) from error
        except hvac.exceptions.InvalidRequest as error:
            raise VaultInvalidAccess("invalid one-shot token") from error
        secret_id = answer["data"]["secret_id"]
        self.stored.data["token_hash"] = value_hash(token)
        self.stored.data["secret_id"] = secret_id
        return secret_id

    def config(self) -> Dict[str, Any]:
        relation = self.relation
        if not (relation.vault_url and relation.role_id and relation.token):
            raise VaultNotReady("vault-kv relation is missing attributes")
        return {
            "vault_url": relation.vault_url,
            "secret_backend": self.secret_backend(),
            "role_id": relation.role_id,
            "secret_id": self.secret_id(),
        }

    @property
    def app_kv(self) -> AppKV:
        if self._app_kv is None:
            self._app_kv = AppKV(self.config(), hookenv.local_unit().split("/")[1])
        return self._app_kv

    # -- its observers --------------------------------------------------------------------------

    def on_relation_joined(self) -> None:
        self.relation.request_secret_backend(self.secret_backend())

    def on_relation_changed(self) -> None:
        current = self.stored_secret_id()
        try:
            if self.secret_id() == current:
                return
            hookenv.log("kcp-ops: updating the Vault configuration")
            self.app_kv.update_config(self.config())
        except VaultNotReady:
            return

    def on_commit(self) -> None:
        try:
            app_kv = self.app_kv
            if not app_kv.any_changed():
                return
            peers = hookenv.relation_ids(PEER) or []
            if peers and hookenv.is_leader():  # never in the simulator: it has no peer relations
                hookenv.relation_set(relation_id=peers[0], relation_settings={"vault-kv-nonce": app_kv.sum_hashes()})
            app_kv.update_hashes()
        except VaultNotReady:
            return


# -- encryption at rest and the apiserver ------------------------------------------------------------


def render_encryption_config(vault_key: str) -> str:
    """The file the charm writes: EncryptionConfig/v1, secrets: aescbc [key1 = Vault's key], identity."""
    document = {
        "kind": "EncryptionConfig",
        "apiVersion": "v1",
        "resources": [
            {
                "resources": ["secrets"],
                "providers": [
                    {"aescbc": {"keys": [{"name": "key1", "secret": base64.b64encode(vault_key.encode()).decode()}]}},
                    {"identity": {}},
                ],
            }
        ],
    }
    return yaml.safe_dump(document)


def read_encryption_secret() -> Optional[str]:
    """The first provider's first key, decoded back to Vault's form; None without a file or such a key."""
    config = yaml.safe_load(ENCRYPTION_CONFIG.read_text()) if ENCRYPTION_CONFIG.exists() else None
    if not config:
        hookenv.log("kcp-ops: no encryption config to read")
        return None
    try:
        return base64.b64decode(config["resources"][0]["providers"][0]["aescbc"]["keys"][0]["secret"]).decode("utf8")
    except (KeyError, IndexError, ValueError):
        hookenv.log("kcp-ops: the encryption config's first key cannot be read", level=hookenv.ERROR)
        return None


class EncryptionAtRest:
    def __init__(self, vault_kv: VaultKV) -> None:
        self.vault_kv = vault_kv

    def prepare(self, statuses: Dict[str, List[str]]) -> None:
        if not self.vault_kv.relation.ids:
            return
        try:
            try:
                self.vault_kv.config()  # vaultlocker's configuration is written from it first (not modelled)
                if hookenv.is_leader():
                    self.generate_encryption_key()
                self.write_encryption_config()
            except VaultNotReady as error:
                if not error.can_retry:
                    statuses["blocked"].append(CANT_ACCESS_VAULT)
                raise
        except Exception as error:  # any error of prepare is "Waiting for Vault", as main's on_error makes it
            statuses["waiting"].append(WAITING_FOR_VAULT)
            raise ReconcileFailed("{}: {}".format(type(error).__name__, error)) from error

    def generate_encryption_key(self) -> None:
        app_kv = self.vault_kv.app_kv
        if ENCRYPTION_KEY not in app_kv:
            app_kv[ENCRYPTION_KEY] = token_generator(32)
            hookenv.log(GENERATED)

    def write_encryption_config(self) -> None:
        if not ENCRYPTION_CONFIG.exists():
            # the real charm makes an encrypted loop mount over the directory here (vaultlocker): not modelled
            ENCRYPTION_CONFIG.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        secret = self.vault_kv.app_kv.get(ENCRYPTION_KEY)
        if secret == read_encryption_secret():
            hookenv.log(CONFIG_UNCHANGED)
            return
        text = render_encryption_config(secret)  # no key in Vault but a file: AttributeError, as in the charm
        ENCRYPTION_CONFIG.parent.mkdir(parents=True, exist_ok=True)
        ENCRYPTION_CONFIG.write_text(text)
        ENCRYPTION_CONFIG.chmod(0o600)
        hookenv.log(WROTE_CONFIG)


def named_key_fingerprints() -> List[List[str]]:
    try:
        config = yaml.safe_load(ENCRYPTION_CONFIG.read_text())
        keys = config["resources"][0]["providers"][0]["aescbc"]["keys"]
        return [[k["name"], fingerprint(base64.b64decode(k["secret"]).decode("utf8"))] for k in keys]
    except (OSError, yaml.YAMLError, KeyError, IndexError, ValueError, TypeError):
        return []


def restart_apiserver() -> None:
    """The apiserver (re)started with the file as it is (or without one): the 1.28 model's record, one more start."""
    try:
        starts = json.loads(APISERVER_RECORD.read_text())["starts"]
    except (OSError, ValueError, KeyError):
        starts = 0
    try:
        config = base64.b64encode(ENCRYPTION_CONFIG.read_bytes()).decode("ascii")
    except OSError:
        config = None
    # without a file the charm leaves --encryption-provider-config out: the apiserver runs, encrypting nothing
    record = {"keys": named_key_fingerprints(), "starts": starts + 1, "config": config, "unencrypted": config is None}
    APISERVER_RECORD.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(APISERVER_RECORD), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(record))


# -- one hook ------------------------------------------------------------------------------------------


def reconcile(hook: str, stored: StoredState, encryption: EncryptionAtRest) -> None:
    if hook == "update-status" and stored.data["reconciled"]:
        return
    stored.data["reconciled"] = False
    statuses: Dict[str, List[str]] = {"blocked": [], "waiting": []}
    try:
        encryption.prepare(statuses)
        restart_apiserver()
        stored.data["reconciled"] = True
    except ReconcileFailed as error:
        hookenv.log("kcp-ops: reconcile failed: {}".format(error), level=hookenv.WARNING)
    finally:
        if statuses["blocked"]:
            hookenv.status_set("blocked", statuses["blocked"][0])
        elif statuses["waiting"]:
            hookenv.status_set("waiting", statuses["waiting"][0])
        else:
            hookenv.status_set("active", READY)


def main() -> None:
    hook = os.environ.get("JUJU_HOOK_NAME") or os.path.basename(sys.argv[0])
    stored = StoredState(unit_state_db().with_name(STORED_STATE_FILE))
    relation = VaultRelation()
    vault_kv = VaultKV(stored, relation)
    encryption = EncryptionAtRest(vault_kv)
    if hook == ENDPOINT + "-relation-joined":
        vault_kv.on_relation_joined()
    elif hook == ENDPOINT + "-relation-changed":
        vault_kv.on_relation_changed()
    reconcile(hook, stored, encryption)
    if hook == "update-status" and stored.data["reconciled"]:
        hookenv.status_set("active", READY)  # the charm's service checks, all passing here
    stored.save()  # ops saves stored state as the commit begins, before the handlers of the commit run
    vault_kv.on_commit()
