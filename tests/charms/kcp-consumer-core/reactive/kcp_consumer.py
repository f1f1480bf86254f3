"""What the test consumer does with the key: report it (by fingerprint) and its changes."""

from charmhelpers.core import hookenv, unitdata
from charms.reactive import clear_flag, is_flag_set, when

from charms.layer import vault_kv
from charms.layer.vault_kv_hashing import fingerprint

KEY_CHANGES = "kcp-consumer.key-changes"


@when("layer.vault-kv.app-kv.changed.encryption_key")
def key_changed():
    """Count every change a unit is told about: each would cost an apiserver restart."""
    try:
        value = vault_kv.VaultAppKV().get("encryption_key")
    except vault_kv.VaultNotReady:
        return
    changes = unitdata.kv().get(KEY_CHANGES) or []
    changes.append(fingerprint(value) if value else None)
    unitdata.kv().set(KEY_CHANGES, changes)
    clear_flag("layer.vault-kv.app-kv.changed.encryption_key")


def report():
    """At hook exit, like kubernetes-control-plane's final status: what this unit holds now."""
    if not is_flag_set("layer.vault-kv.ready"):
        if not is_flag_set("vault-kv.connected"):
            hookenv.status_set("blocked", "missing vault-kv relation")
        return
    try:
        value = vault_kv.VaultAppKV().get("encryption_key")
    except vault_kv.VaultNotReady as error:
        hookenv.status_set("waiting", str(error))
        return
    if not value:
        hookenv.status_set("waiting", "no encryption key yet")
        return
    stored = "stored" if is_flag_set("kubernetes-control-plane.secure-storage.created") else "not on disk"
    hookenv.status_set("active", "key {} {}".format(fingerprint(value), stored))


hookenv.atexit(report)
