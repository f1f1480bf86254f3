"""Secure storage of the kube-apiserver encryption-at-rest key (opt-in).

Enabled by the layer option ``encryption-config-path``.  The flag names are
kubernetes-control-plane's, so that charm can drop its own handlers:

- only the leader provides ``encryption_key``, only when the layer is ready,
  ``layer.vault-kv.app-kv.set.encryption_key`` is unset and no data move is
  under way; it restores the key from this unit's EncryptionConfiguration
  file before it would ever generate one;
- every unit writes the key to the file when ready and the key is set, then
  sets ``kubernetes-control-plane.secure-storage.created``;
- every unit clears that flag when Vault is no longer ready, except while
  the layer itself is moving to a new backend.
"""

from charmhelpers.core import hookenv
from charms.reactive import clear_flag, set_flag, when, when_not

from charms.layer import vault_kv, vault_kv_local_copies, vault_kv_options, vault_kv_status
from charms.layer import vault_kv_encryption_config as encryption_config

KEY = "encryption_key"
FLAG_CREATED = "kubernetes-control-plane.secure-storage.created"
FLAG_FAILED = "kubernetes-control-plane.secure-storage.failed"


def config_path():
    """The EncryptionConfiguration path, or None when secure storage is off."""
    return vault_kv_options.layer_options().get("encryption-config-path") or None


def _read_local_key():
    path = config_path()
    return encryption_config.read_key(path) if path else None


if config_path():
    vault_kv_local_copies.register_local_copy(KEY, _read_local_key)


@when("layer.vault-kv.ready")
@when_not("layer.vault-kv.app-kv.set.encryption_key")
@when_not("layer.vault-kv.migration.in-progress")
def provide_encryption_key():
    """The leader fills in a missing key: from its own file if it has one, else a new one."""
    if not config_path() or not hookenv.is_leader():
        return
    value = vault_kv_local_copies.local_value(KEY)
    source = "this unit's EncryptionConfiguration"
    if value is None:
        value = encryption_config.generate_key()
        source = "a newly generated key"
    try:
        vault_kv.VaultAppKV()[KEY] = value
    except vault_kv.VaultNotReady as error:
        hookenv.log("vault-kv: encryption key not stored yet: {}".format(error), level=hookenv.WARNING)
        return
    hookenv.log("vault-kv: stored encryption_key from {}".format(source), level=hookenv.INFO)


@when("layer.vault-kv.ready", "layer.vault-kv.app-kv.set.encryption_key")
def write_encryption_config():
    """Make the file hold Vault's key (rewritten only when it differs), then flag it."""
    path = config_path()
    if not path:
        return
    try:
        value = vault_kv.VaultAppKV().get(KEY)
    except vault_kv.VaultNotReady:
        return
    if value is None:
        return
    try:
        changed = encryption_config.write_key(path, value)
    except (OSError, ValueError) as error:
        set_flag(FLAG_FAILED)
        vault_kv_status.blocked("cannot write the encryption configuration: {}".format(error))
        return
    clear_flag(FLAG_FAILED)
    if changed:
        hookenv.log("vault-kv: wrote the encryption key to {}".format(path), level=hookenv.INFO)
    set_flag(FLAG_CREATED)


@when("kubernetes-control-plane.secure-storage.created")
@when_not("layer.vault-kv.ready")
@when_not("layer.vault-kv.migration.in-progress")
def vault_no_longer_ready():
    """Without Vault the stored key can no longer be vouched for."""
    clear_flag(FLAG_CREATED)
