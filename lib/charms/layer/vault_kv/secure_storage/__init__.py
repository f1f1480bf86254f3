"""Secure storage of kubernetes-control-plane's encryption-at-rest key (opt-in).

The kube-apiserver EncryptionConfiguration file, written from
``VaultAppKV()["encryption_key"]`` when the layer option
``encryption-config-path`` is set (see reactive/vault_kv_secure_storage.py).
Nothing in the generic layer depends on this subpackage.
"""
