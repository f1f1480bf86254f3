"""kubernetes-control-plane 1.28's Vault-related handlers, modelled for the simulator.

Read from the real charm (reactive/kubernetes_control_plane.py, branches
release_1.24 to release_1.28) and written here in our own words: the same
flags, the same conditions, the same Vault value and file format.  What the
charm does with the apiserver is reduced to a record of the restarts it would
make.  layer:leadership's ``leadership.is_leader`` flag comes from the test
base layer (tests/layers/basic-sim), as the real one keeps it.

- ``generate_encryption_key``: leader, ready, key not set -> a 32-character
  token of letters and digits in ``VaultAppKV()["encryption_key"]``.
- ``create_secure_storage``: key set, vaultlocker ready, not created ->
  directory 0700, encrypted loop mount over it, then the file; sets created.
- ``revert_secure_storage``: created but vaultlocker not ready -> clears created.
- ``restart_apiserver_for_encryption_key``: the key changed -> a restart.
- ``configure_apiserver``: ``apiserver.configured`` unset -> the apiserver is
  (re)started with the file as it is, and the flag set again; ``apiserver.running``
  set when the service came up (a test's fault file makes it not), cleared
  with ``configured`` (1.28's trigger); ``check_apiserver`` sets it once the
  service runs.
- ``check_vault_pending`` (``hookenv.atstart``, registered at this module's
  import, after it imported ``charms.layer.vault_kv``, as in the charm): a
  vault-kv relation expected (goal-state) or connected and
  ``layer.vault-kv.ready`` unset at hook start -> ``...vault-kv.pending``, and
  ``report`` (the charm's ``set_final_status``, ``hookenv.atexit``) then shows
  "Waiting for encryption info from Vault to secure secrets" for the whole hook,
  whatever the layer did during it.
- upgrade-charm -> ``maybe_heal_vault_kv``: compares the published backend with
  ``vault_kv._get_secret_backend()``; on a change clears
  ``layer.vault-kv.requested`` and (leader) sets ``...secure-storage.migrate``;
  ``migrate_vault_kv_secrets_backend`` then writes the file's key to Vault.
"""

import base64
import json
import os
import random
import string
from pathlib import Path

import yaml
from charmhelpers.core import hookenv, host, unitdata
from charms.reactive import (
    clear_flag,
    endpoint_from_flag,
    hook,
    is_flag_set,
    register_trigger,
    set_flag,
    when,
    when_not,
)

from charms.layer import vault_kv, vaultlocker
from charms.layer.vault_kv.hashing import fingerprint

ENCRYPTION_CONFIG = Path("/var/snap/kube-apiserver/common/encryption/encryption_config.yaml")
RESTARTS = "kcp-consumer.apiserver-restarts"
APISERVER_RECORD = Path("/var/lib/kcp-consumer/apiserver.json")
GENERATED_LOG = "kcp-consumer: generated a new encryption_key"
APISERVER_FAILS = Path("/var/lib/kcp-consumer/apiserver-fails")  # a test puts it here: the apiserver will not start
# What the etcd relation gives (connection string, client CA, certificate, key) and the charm's own admin
# credentials: the test harness puts them here (tests/support/apiservers.py), the charm writes them where
# 1.28 does: /root/cdk/etcd/client-*.pem, the kube-apiserver snap's args, /root/.kube/config
ENVIRONMENT = Path("/var/lib/kcp-consumer/control-plane-environment.json")
ETCD_CERTS = Path("/root/cdk/etcd")
APISERVER_ARGS = Path("/var/snap/kube-apiserver/current/args")
KUBECONFIG = Path("/root/.kube/config")


def token_generator(length=32):
    """Letters and digits from the system's random source, as the charm's helper does."""
    alphabet = string.ascii_letters + string.digits
    rng = random.SystemRandom()
    return "".join(rng.choice(alphabet) for _ in range(length))


# 1.28: when the apiserver is to be configured again, it is not known to run
register_trigger(
    when_not="kubernetes-control-plane.apiserver.configured",
    clear_flag="kubernetes-control-plane.apiserver.running",
)


@hookenv.atstart
def check_vault_pending():
    """At hook start only, as kubernetes-control-plane 1.28 does: nothing re-checks it later in the hook."""
    try:
        goal_state = hookenv.goal_state()
    except NotImplementedError:
        goal_state = {}
    related = "vault-kv" in goal_state.get("relations", {}) or is_flag_set("vault-kv.connected")
    if related and not is_flag_set("layer.vault-kv.ready"):
        set_flag("kubernetes-control-plane.vault-kv.pending")
    else:
        clear_flag("kubernetes-control-plane.vault-kv.pending")


@hook("upgrade-charm")
def check_for_upgrade_needed():
    maybe_heal_vault_kv()


def maybe_heal_vault_kv():
    if not is_flag_set("kubernetes-control-plane.secure-storage.created"):
        return
    migrate = False
    vault = endpoint_from_flag("vault-kv.connected")
    secret_backend = vault_kv._get_secret_backend()
    for relation in vault.relations:
        if relation.to_publish["secret_backend"] != secret_backend:
            hookenv.log("kcp-consumer: need to migrate to new secrets backend")
            clear_flag("layer.vault-kv.requested")
            migrate = True
    if not is_flag_set("leadership.is_leader"):
        return
    if migrate:
        set_flag("kubernetes-control-plane.secure-storage.migrate")


@when(
    "layer.vault-kv.ready",
    "kubernetes-control-plane.secure-storage.migrate",
    "kubernetes-control-plane.secure-storage.created",
)
def migrate_vault_kv_secrets_backend():
    local_sec = _read_encryption_secret()
    if not local_sec:
        return
    try:
        vault_kv.VaultAppKV()["encryption_key"] = local_sec
        clear_flag("kubernetes-control-plane.secure-storage.migrate")
    except vault_kv.VaultNotReady:
        hookenv.log("kcp-consumer: failed to store encryption_key, will retry", level=hookenv.ERROR)


@when("layer.vault-kv.app-kv.set.encryption_key", "layer.vaultlocker.ready")
@when_not("kubernetes-control-plane.secure-storage.created")
def create_secure_storage():
    directory = ENCRYPTION_CONFIG.parent
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        vaultlocker.create_encrypted_loop_mount(directory)
    except vaultlocker.VaultLockerError:
        hookenv.log("kcp-consumer: unable to create encrypted mount", level=hookenv.ERROR)
        set_flag("kubernetes-control-plane.secure-storage.failed")
        clear_flag("kubernetes-control-plane.secure-storage.created")
        return
    if _write_encryption_config():
        clear_flag("layer.vault-kv.app-kv.changed.encryption_key")
        set_flag("kubernetes-control-plane.secure-storage.created")
        clear_flag("kubernetes-control-plane.secure-storage.failed")
        clear_flag("kubernetes-control-plane.apiserver.configured")
    else:
        set_flag("kubernetes-control-plane.secure-storage.failed")
        clear_flag("kubernetes-control-plane.secure-storage.created")


@when_not("layer.vaultlocker.ready")
@when("kubernetes-control-plane.secure-storage.created")
def revert_secure_storage():
    clear_flag("kubernetes-control-plane.secure-storage.created")
    clear_flag("kubernetes-control-plane.secure-storage.failed")
    clear_flag("kubernetes-control-plane.apiserver.configured")


@when("leadership.is_leader", "layer.vault-kv.ready")
@when_not("layer.vault-kv.app-kv.set.encryption_key")
def generate_encryption_key():
    try:
        vault_kv.VaultAppKV()["encryption_key"] = token_generator(32)
    except vault_kv.VaultNotReady:
        hookenv.log("kcp-consumer: failed to store encryption_key, will retry", level=hookenv.ERROR)
        return
    hookenv.log(GENERATED_LOG)


@when("layer.vault-kv.app-kv.changed.encryption_key", "kubernetes-control-plane.secure-storage.created")
def restart_apiserver_for_encryption_key():
    """The charm restarts the apiserver here; the record lets tests count restarts."""
    clear_flag("kubernetes-control-plane.apiserver.configured")
    clear_flag("layer.vault-kv.app-kv.changed.encryption_key")
    store = unitdata.kv()
    store.set(RESTARTS, (store.get(RESTARTS) or 0) + 1)


@when("kubernetes-control-plane.secure-storage.created")
@when_not("kubernetes-control-plane.apiserver.configured")
def configure_apiserver():
    """The charm (re)starts the apiserver with the encryption configuration as it is now.

    The record (each key's name and fingerprint, the write key first, a count
    of starts, and the file itself as the apiserver read it) is what tests read
    as the keys the running apiserver has: tests/support/apiservers.py stores
    and reads Secrets with that file, as kube-apiserver does.  It is a file,
    not unitdata: a restart is not undone when the hook dies later.
    """
    try:
        starts = json.loads(APISERVER_RECORD.read_text())["starts"]
    except (OSError, ValueError, KeyError):
        starts = 0
    set_flag("kubernetes-control-plane.apiserver.configured")  # 1.28 sets it after the restart, up or not
    _write_apiserver_args()
    if APISERVER_FAILS.exists():
        # a test's fault: the service does not come up with this file; 1.28 leaves apiserver.running unset
        # and its check_apiserver sets it once the service runs (systemd restarts it)
        _record_apiserver({"keys": [], "starts": starts + 1, "config": None, "failed": True})
        hookenv.log("kcp-consumer: kube-apiserver did not start", level=hookenv.ERROR)
        return
    _record_apiserver({"keys": _named_key_fingerprints(), "starts": starts + 1, "config": _running_config()})
    set_flag("kubernetes-control-plane.apiserver.running")


@when("kubernetes-control-plane.apiserver.configured")
@when_not("kubernetes-control-plane.apiserver.running")
def check_apiserver():
    """1.28's check_apiserver: the service came up after all (here: the test's fault was lifted)."""
    if APISERVER_FAILS.exists():
        return
    try:
        starts = json.loads(APISERVER_RECORD.read_text())["starts"]
    except (OSError, ValueError, KeyError):
        starts = 1
    _record_apiserver({"keys": _named_key_fingerprints(), "starts": starts, "config": _running_config()})
    set_flag("kubernetes-control-plane.apiserver.running")


def _write_apiserver_args():
    """1.28's configure_apiserver: etcd's certificates, the snap's args (``snap set``), the admin kubeconfig."""
    try:
        environment = json.loads(ENVIRONMENT.read_text())
    except (OSError, ValueError):
        return  # no etcd relation yet: 1.28 would wait for etcd.available; the tests' apiserver does not
    etcd = environment["etcd"]
    ETCD_CERTS.mkdir(parents=True, exist_ok=True)
    for name in ("client-ca", "client-cert", "client-key"):
        host.write_file(path=str(ETCD_CERTS / (name + ".pem")), perms=0o600, content=etcd[name])
    args = {
        "encryption-provider-config": str(ENCRYPTION_CONFIG),
        "etcd-servers": etcd["connection_string"],
        "etcd-cafile": str(ETCD_CERTS / "client-ca.pem"),
        "etcd-certfile": str(ETCD_CERTS / "client-cert.pem"),
        "etcd-keyfile": str(ETCD_CERTS / "client-key.pem"),
        "storage-backend": "etcd3",
    }
    APISERVER_ARGS.parent.mkdir(parents=True, exist_ok=True)
    text = "".join('--{}="{}"\n'.format(key, value) for key, value in sorted(args.items()))
    host.write_file(path=str(APISERVER_ARGS), perms=0o644, content=text)
    KUBECONFIG.parent.mkdir(parents=True, exist_ok=True)
    host.write_file(path=str(KUBECONFIG), perms=0o600, content=environment["kubeconfig"])


def _running_config():
    try:
        return base64.b64encode(ENCRYPTION_CONFIG.read_bytes()).decode("ascii")
    except OSError:
        return None


def _record_apiserver(record):
    """What the apiserver runs with; it holds keys: 0600, as the file itself."""
    APISERVER_RECORD.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(APISERVER_RECORD), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(record))


def _named_key_fingerprints():
    try:
        config = yaml.safe_load(ENCRYPTION_CONFIG.read_text())
        keys = config["resources"][0]["providers"][0]["aescbc"]["keys"]
        return [[k["name"], fingerprint(base64.b64decode(k["secret"]).decode("utf8"))] for k in keys]
    except (OSError, KeyError, IndexError, ValueError, TypeError):
        return []


def _read_encryption_secret():
    if not ENCRYPTION_CONFIG.exists():
        return None
    try:
        config = yaml.safe_load(ENCRYPTION_CONFIG.read_text())
        b64_secret = config["resources"][0]["providers"][0]["aescbc"]["keys"][0]["secret"]
        return base64.b64decode(b64_secret).decode("utf8")
    except (KeyError, IndexError, ValueError, TypeError):
        hookenv.log("kcp-consumer: failed to read the encryption key file", level=hookenv.ERROR)
        return None


def _write_encryption_config():
    try:
        secret = vault_kv.VaultAppKV()["encryption_key"]
    except vault_kv.VaultNotReady:
        return False
    secret = base64.b64encode(secret.encode("utf8")).decode("utf8")
    ENCRYPTION_CONFIG.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "kind": "EncryptionConfig",
        "apiVersion": "v1",
        "resources": [
            {
                "resources": ["secrets"],
                "providers": [{"aescbc": {"keys": [{"name": "key1", "secret": secret}]}}, {"identity": {}}],
            }
        ],
    }
    host.write_file(path=str(ENCRYPTION_CONFIG), perms=0o600, content=yaml.safe_dump(document))
    return True


@hookenv.atexit
def report():
    """Final status, in the charm's order for the Vault-related cases, plus the key's fingerprint.

    One difference from the charm, for the tests' sake: a ``blocked`` status
    the layer set in this hook (an operator's remedy) is left as it is.
    """
    try:
        shown = hookenv.status_get()
    except Exception:
        shown = ("", "")
    if shown[0] == "blocked" and str(shown[1]).startswith("vault-kv:"):
        return
    if is_flag_set("kubernetes-control-plane.secure-storage.failed"):
        hookenv.status_set("blocked", "Failed to configure encryption; secrets are unencrypted or inaccessible")
        return
    if is_flag_set("kubernetes-control-plane.secure-storage.created") and not ENCRYPTION_CONFIG.exists():
        hookenv.status_set("blocked", "VaultLocker containing encryption config unavailable")
        return
    if is_flag_set("kubernetes-control-plane.vault-kv.pending"):
        hookenv.status_set("waiting", "Waiting for encryption info from Vault to secure secrets")
        return
    if not is_flag_set("vault-kv.connected"):
        hookenv.status_set("blocked", "missing vault-kv relation")
        return
    secret = _read_encryption_secret()
    if not secret:
        hookenv.status_set("waiting", "no encryption key on disk yet")
        return
    stored = "stored" if is_flag_set("kubernetes-control-plane.secure-storage.created") else "not stored"
    hookenv.status_set("active", "key {} {}".format(fingerprint(secret), stored))
