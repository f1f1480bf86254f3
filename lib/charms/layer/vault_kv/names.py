"""Every flag, unitdata key and leader-data key layer:vault-kv owns, each with what it means.

These names outlive a hook, and most outlive a charm upgrade: a unit
upgraded from the old layer, or refreshed to kubernetes-control-plane 1.29,
reads what is stored under them.  Renaming one is a data migration, not a
refactoring.  Code and reactive decorators use the constants here;
README.md's flag table is checked against ``FLAGS`` by a unit test.

``{key}`` in a flag stands for an application data key (see ``app_kv_flag``).
"""

from typing import Dict

FLAGS: Dict[str, str] = {}
UNITDATA: Dict[str, str] = {}
LEADER_DATA: Dict[str, str] = {}


def _flag(name: str, meaning: str) -> str:
    FLAGS[name] = meaning
    return name


def _unitdata(name: str, meaning: str) -> str:
    UNITDATA[name] = meaning
    return name


def _leader(name: str, meaning: str) -> str:
    LEADER_DATA[name] = meaning
    return name


# -- flags -------------------------------------------------------------------------

CONNECTED = _flag("vault-kv.connected", "(interface) a Vault application is related")
AVAILABLE = _flag("vault-kv.available", "(interface) Vault published its URL and this unit's role id and token")
REQUESTED = _flag("layer.vault-kv.requested", "access was requested for the current backend and unit name")
READY = _flag(
    "layer.vault-kv.ready",
    "Vault answered this unit with its credentials, within the last hour and since the last change it was"
    " told of (leader data, relation), and the app-kv flags are as of that answer; cleared when a change"
    " cannot be read (Vault unreachable), while data moves to a new backend, and when the relation goes."
    " Not cleared when only the hourly freshness check went unanswered. Kept down while a registered hold"
    " says so (`hold_ready_while`; secure storage holds a new unit during most of a key rotation)."
    " kubernetes-control-plane gates its apiserver on it at hook start and vaultlocker configures on it:"
    " both see it set through quiet hooks, as before",
)
CONFIG_CHANGED = _flag("layer.vault-kv.config.changed", "the URL or credentials changed (the charm clears it)")
APP_KV_PREFIX = "layer.vault-kv.app-kv."
APP_KV_CHANGED = _flag(
    "layer.vault-kv.app-kv.changed", "some app value differs from what this unit last recorded (the charm clears it)"
)
APP_KV_CHANGED_KEY = _flag("layer.vault-kv.app-kv.changed.{key}", "that value differs (the charm clears it)")
APP_KV_SET_KEY = _flag(
    "layer.vault-kv.app-kv.set.{key}",
    "the key has a value, or is awaited after a move; kept at its last known state while Vault is unreachable,"
    " so nothing is regenerated",
)
MIGRATION_IN_PROGRESS = _flag("layer.vault-kv.migration.in-progress", "this unit's data is moving to a new backend")
MIGRATION_DONE = _flag("layer.vault-kv.migration.done", "the move finished on this unit")
MIGRATION_FAILED = _flag(
    "layer.vault-kv.migration.failed", "a copy did not read back as written; retried in the next hook"
)
MIGRATION_LEGACY_UNREADABLE = _flag(
    "layer.vault-kv.migration.legacy-unreadable",
    "a moving unit could not read the old backend and restored from local copies",
)
SECURE_STORAGE_CREATED = _flag(
    "kubernetes-control-plane.secure-storage.created",
    "(secure storage on) this unit's file holds Vault's key; the layer never clears it",
)
SECURE_STORAGE_FAILED = _flag(
    "kubernetes-control-plane.secure-storage.failed", "(secure storage on) the file could not be written"
)

APISERVER_CONFIGURED = _flag(
    "kubernetes-control-plane.apiserver.configured",
    "(secure storage on) the charm's: cleared by the layer when the file changed, so the apiserver restarts;"
    " set again by the charm once it did",
)
APISERVER_RUNNING = _flag(
    "kubernetes-control-plane.apiserver.running",
    "(secure storage on) the charm's: its kube-apiserver service is up (1.28 sets it after a restart once the"
    " service runs, clears it with configured); once a unit saw it, a rotation's acknowledgement needs it",
)
ROTATING = _flag(
    "layer.vault-kv.encryption-key.rotating", "(secure storage on) a rotation of the encryption key is running"
)
REWRITTEN = _flag(
    "layer.vault-kv.encryption-key.rewritten",
    "(secure storage on) set by a charm that rewrote the stored Secrets itself: confirms the rewrite phase",
)


def app_kv_flag(template: str, key: str) -> str:
    """``APP_KV_CHANGED_KEY`` or ``APP_KV_SET_KEY`` for one application data key."""
    return template.format(key=key)


# -- unitdata (charmhelpers.core.unitdata) ------------------------------------------

SECRET_ID = _unitdata(
    "layer.vault-kv.secret_id", "the secret_id in use (the old layer's key; kubernetes-control-plane 1.29 reads it)"
)
TOKEN_HASH = _unitdata(
    "reactive.data_changed.layer.vault-kv.token",
    "md5 of the JSON of the last one-shot token unwrapped (the old layer's; 1.29 compares it)",
)
TOKEN = _unitdata("layer.vault-kv.token", "the one-shot token the secret_id came from")
SECRET_ROLE = _unitdata("layer.vault-kv.secret_id-role", "the role id the secret_id belongs to")
SEEN_TOKENS = _unitdata("layer.vault-kv.seen-tokens", "tokens already unwrapped or found spent (never tried again)")
CREDENTIAL_BOOK = _unitdata(
    "layer.vault-kv.credential-book", "every unit name's role id and secret_id this unit has held (rollbacks)"
)
SEEN_HASHES = _unitdata("layer.vault-kv.seen-hashes", "local copy of the hashes this unit recorded")
SEEN_HASHES_AT = _unitdata("layer.vault-kv.seen-hashes-at", "the Vault path those hashes were recorded at")
SEEN_HASHES_NOT_IN_VAULT = _unitdata(
    "layer.vault-kv.seen-hashes-not-in-vault", "Vault refused or missed the last hashes; written again next hook"
)
AWAITED_KEYS = _unitdata(
    "layer.vault-kv.awaited-keys", "keys a move could not bring; their set flag stays up until written again"
)
ACTIVE = _unitdata("layer.vault-kv.active", "the backend and unit name this unit's data is in")
LEGACY_CREDENTIALS = _unitdata("layer.vault-kv.legacy-credentials", "the credentials of the backend a move comes from")
MIGRATION_STATUS = _unitdata("layer.vault-kv.migration.status", "the last state of a move, for operators and tests")
JOINED_EMPTY = _unitdata(
    "layer.vault-kv.joined-empty", "this unit joined with no data of its own: it waits for the move's marker"
)
UNIT_SECRETS_NOT_COPIED = _unitdata(
    "layer.vault-kv.unit-secrets-not-copied", "the old backend whose {hostname}/ secrets a move could not copy"
)
LAST_ASKED = _unitdata(
    "layer.vault-kv.last-asked", "when this unit last had an answer from Vault, and a digest of the relation then"
)
WRITE_PENDING = _unitdata(
    "layer.vault-kv.write-pending", "an app-data write of this unit not yet recorded at a hook exit: ask Vault"
)
ENCRYPTION_CONFIG_SYNCED = _unitdata(
    "layer.vault-kv.encryption-config-synced",
    "(secure storage on) sha256 of the file as last brought in line with Vault",
)
UNDELIVERED_CHANGES = _unitdata(
    "layer.vault-kv.undelivered-changes",
    "app keys whose change a registered hold keeps from the changed flags yet, with the hash last delivered",
)
APISERVER_RUNNING_KNOWN = _unitdata(
    "layer.vault-kv.apiserver-running-known",
    "(secure storage on) this charm sets kubernetes-control-plane.apiserver.running: acknowledgements wait for it",
)
ROTATION_SEEN = _unitdata(
    "layer.vault-kv.rotation-seen",
    "(secure storage on) the rotation's turn this unit last acted on with Vault, and what it then reported",
)
ANSWER_AWAITED_SINCE = _unitdata(
    "layer.vault-kv.answer-awaited-since", "when a move started waiting for Vault's answer to its new name (wall clock)"
)
STATUS_MESSAGE = _unitdata("layer.vault-kv.status-message", "the status message the layer set last (never the charm's)")
REQUEST_CHANGED = _unitdata(
    "reactive.data_changed.layer.vault-kv.request", "hash of the last backend and unit name requested"
)
CONFIG_HASH = _unitdata(
    "reactive.data_changed.layer.vault-kv.config", "hash of the config charms use, for layer.vault-kv.config.changed"
)

# data_changed() names (charms.reactive prefixes them with "reactive.data_changed.")
REQUEST_DATA = REQUEST_CHANGED[len("reactive.data_changed.") :]
CONFIG_DATA = CONFIG_HASH[len("reactive.data_changed.") :]

# -- leader data ----------------------------------------------------------------------

LEADER_NONCE = _leader(
    "vault-kv-nonce", "digest of the app data hashes; changed by the leader so other units get a hook"
)
LEADER_MIGRATED = _leader("vault-kv-migrated", "the backend the application's data was moved to")
LEADER_BACKEND = _leader("vault-kv-backend", "the backend the application's data lives in")
LEADER_ROTATION_TURN = _leader(
    "vault-kv-rotation-turn",
    "(secure storage on) which unit may change its encryption configuration in the rotation's phase now,"
    " and which unit relays the leader's own turn (JSON, no key)",
)

# -- peer relation data (this unit's data on the peer relation) -----------------------

PEER_RELATION = "coordinator"
PEER_DATA: Dict[str, str] = {}


def _peer(name: str, meaning: str) -> str:
    PEER_DATA[name] = meaning
    return name


PEER_ROTATION_ACK = _peer(
    "vault-kv-rotation-ack",
    "(secure storage on) this unit's acknowledgement of the rotation's phase: key names and fingerprints its"
    " file holds and its apiserver runs with (JSON, never a key)",
)
PEER_REWRITE_VERIFIED = _peer(
    "vault-kv-rewrite-verified",
    "(secure storage on) finish-encryption-key-rotation run on this unit (not the leader): its census found every"
    " Secret under the phase's write key; the leader confirms with it unless its own census disagrees"
    " (JSON: rotation id, phase, write key name, counts; never a key)",
)
PEER_ROTATION_SEEN = _peer(
    "vault-kv-rotation-seen", "(secure storage on) the leader's turn this unit relays back, so the leader gets a hook"
)
