"""layer:vaultlocker's handlers, as the real layer has them (apt install left out).

- On ``layer.vault-kv.ready`` and ``layer.vault-kv.config.changed`` it writes
  vaultlocker's configuration from ``vault_kv.get_vault_config()`` (URL,
  backend, AppRole), sets ``layer.vaultlocker.configured`` and clears
  ``layer.vault-kv.config.changed``.
- Once configured it sets ``layer.vaultlocker.ready`` (the real layer first
  encrypts storage declared in metadata; the consumer declares none).
"""

from charms.reactive import clear_flag, set_flag, when_all, when_not

from charms.layer import vault_kv, vaultlocker


@when_all("layer.vault-kv.ready", "layer.vault-kv.config.changed")
def configure_vaultlocker():
    vaultlocker.write_vaultlocker_conf(vault_kv.get_vault_config())
    set_flag("layer.vaultlocker.configured")
    clear_flag("layer.vault-kv.config.changed")


@when_all("layer.vaultlocker.configured")
@when_not("layer.vaultlocker.ready")
def auto_encrypt():
    set_flag("layer.vaultlocker.ready")
