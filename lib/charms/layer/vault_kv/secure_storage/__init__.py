"""Secure storage of kubernetes-control-plane's encryption-at-rest key (opt-in).

The kube-apiserver EncryptionConfiguration file, written from
``VaultAppKV()["encryption_key"]`` when the layer option
``encryption-config-path`` is set (see reactive/vault_kv_secure_storage.py).
Nothing in the generic layer depends on this subpackage.
"""

import hashlib
from typing import Optional, Set

from charmhelpers.core import unitdata

from charms.layer.vault_kv import names
from charms.layer.vault_kv import options as vault_kv_options
from charms.layer.vault_kv.secure_storage import encryption_config

KEY = "encryption_key"


def config_path() -> Optional[str]:
    """The EncryptionConfiguration path, or None when secure storage is off."""
    return vault_kv_options.layer_options().get("encryption-config-path") or None


def apiserver_args_path() -> str:
    """Where kube-apiserver's arguments are (how it reaches etcd): the layer option ``apiserver-args-path``."""
    return str(vault_kv_options.layer_options().get("apiserver-args-path") or "")


def kubeconfig_path() -> str:
    """The charm's own kubeconfig (the unattended rewrite's credentials): the layer option ``kubeconfig-path``."""
    return str(vault_kv_options.layer_options().get("kubeconfig-path") or "")


def read_local_key() -> Optional[str]:
    """The key in this unit's EncryptionConfiguration file, None without a file.

    Raises ``encryption_config.EncryptionConfigError`` for a file that exists
    but cannot be read (the caller decides: the handler blocks, a local-copy
    lookup treats it as no copy).
    """
    path = config_path()
    return encryption_config.read_key(path) if path else None


def register_the_file_as_local_copy() -> None:
    """With secure storage on, the unit's file is its own copy of ``encryption_key``.

    Registered through the layer's public registration, as any charm would:
    the generic key-value layer knows nothing of secure storage.
    """
    from charms.layer.vault_kv import register_local_copy

    if config_path():
        register_local_copy(KEY, read_local_copy)


def read_local_copy() -> Optional[str]:
    """The file's key as this unit's copy of ``encryption_key``; None when the file holds several keys.

    Several different keys mean a rotation is under way (or was done by hand):
    which one is Vault's depends on the phase, and a unit one phase behind
    holds the old key first.  A move that trusted it would put the old key
    back in the new backend under a rotation state that speaks of the new
    one, so then the move takes Vault's value from the old backend instead.
    """
    path = config_path()
    if not path:
        return None
    keys = encryption_config.read_named_keys(path)
    if not keys:
        return None
    if len({value for _, value in keys}) > 1:
        return None
    return read_local_key()


def _file_digest() -> Optional[str]:
    """sha256 of the file's bytes (a digest, never the key), None without a file."""
    path = config_path()
    try:
        with open(path, "rb") as handle:  # type: ignore[arg-type]
            return hashlib.sha256(handle.read()).hexdigest()
    except (OSError, TypeError):
        return None


def remember_synced() -> None:
    """The file is now in line with Vault (and the rotation's phase): later hooks compare against it."""
    unitdata.kv().set(names.ENCRYPTION_CONFIG_SYNCED, _file_digest())


def file_as_last_synced() -> bool:
    """Whether the file is byte for byte what it was when last brought in line with Vault."""
    synced = unitdata.kv().get(names.ENCRYPTION_CONFIG_SYNCED)
    return synced is not None and synced == _file_digest()


def why_ask_vault(flags: Set[str]) -> Optional[str]:
    """Registered with the layer's ``ask_vault_when``: secure storage's reasons for a hook to ask Vault.

    During a rotation the leader asks in every hook (it hands out the
    turns); another unit asks when the rotation concerns it (its turn, a
    new turn or phase, its apiserver configured since), not in the many
    relation-changed hooks other units' acknowledgements give it.  A file
    that changed since it was last brought in line (the charm wrote it, an
    operator removed it) is checked against Vault.
    """
    if names.SECURE_STORAGE_CREATED in flags and not file_as_last_synced():
        return "the encryption configuration changed"
    if names.ROTATING in flags:
        from charms.layer.vault_kv.secure_storage import rolling, rotation

        if rolling.is_leader():
            return "a key rotation is running (the leader coordinates it)"
        return rotation.news_for_this_unit(flags)
    return None
