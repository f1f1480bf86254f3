"""Secure storage of kubernetes-control-plane's encryption-at-rest key (opt-in).

The kube-apiserver EncryptionConfiguration file, written from
``VaultAppKV()["encryption_key"]`` when the layer option
``encryption-config-path`` is set (see reactive/vault_kv_secure_storage.py).
Nothing in the generic layer depends on this subpackage.
"""

from typing import Optional

from charms.layer.vault_kv import options as vault_kv_options
from charms.layer.vault_kv.secure_storage import encryption_config

KEY = "encryption_key"


def config_path() -> Optional[str]:
    """The EncryptionConfiguration path, or None when secure storage is off."""
    return vault_kv_options.layer_options().get("encryption-config-path") or None


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
        register_local_copy(KEY, read_local_key)
