"""Secure storage of the encryption key: who provides it, where it is written, when the flag clears."""

import json
import os
import stat

import pytest

from charms.layer import vault_kv
from charms.layer.vault_kv import local_copies as vault_kv_local_copies
from charms.layer.vault_kv.secure_storage import encryption_config as vault_kv_encryption_config
from tests.support.loading import load_reactive

APP = "charm-app/kv/app"
CREATED = "kubernetes-control-plane.secure-storage.created"


def load_handlers():
    """A fresh load: the module registers its handlers only when the layer option is set."""
    return load_reactive("vault_kv_secure_storage", fresh=True)


@pytest.fixture
def storage(vault, flags, juju):
    """Secure storage on, with the EncryptionConfiguration under the test's folder."""
    path = juju["charm_dir"] / "encryption" / "encryption_config.yaml"
    options = {"options": {"vault-kv": {"encryption-config-path": str(path)}}}
    (juju["charm_dir"] / "layer.yaml").write_text(json.dumps(options))
    vault_kv_local_copies._reset_for_tests()
    module = load_handlers()  # registers the file as the local copy of encryption_key
    flags.add("layer.vault-kv.ready")
    module.path = path
    yield module
    vault_kv_local_copies._reset_for_tests()


def test_off_without_the_option_registers_no_handler_and_no_local_copy(vault, flags, juju):
    vault_kv_local_copies._reset_for_tests()
    module = load_handlers()
    for name in ("provide_encryption_key", "write_encryption_config", "vault_relation_gone"):
        assert not hasattr(module, name)
    assert vault_kv_local_copies.registered_keys() == []


def test_leader_generates_a_valid_key_when_no_source_has_one(storage, vault, flags):
    storage.provide_encryption_key()
    key = vault.data[APP]["encryption_key"]
    assert vault_kv_encryption_config.valid_key(key)
    assert "layer.vault-kv.app-kv.set.encryption_key" in flags


def test_leader_restores_the_key_from_its_file_instead_of_generating(storage, vault):
    on_disk = vault_kv_encryption_config.generate_key()
    vault_kv_encryption_config.write_key(str(storage.path), on_disk)
    storage.provide_encryption_key()
    assert vault.data[APP]["encryption_key"] == on_disk


def test_non_leader_never_provides_a_key(storage, vault, juju):
    juju["leader"] = False
    storage.provide_encryption_key()
    assert APP not in vault.data


def test_every_unit_writes_vaults_key_0600_then_sets_created(storage, vault, flags):
    key = vault_kv_encryption_config.generate_key()
    vault.data[APP] = {"encryption_key": key}
    storage.write_encryption_config()
    assert vault_kv_encryption_config.read_key(str(storage.path)) == key
    assert stat.S_IMODE(os.stat(storage.path).st_mode) == 0o600
    assert CREATED in flags


def test_a_file_holding_another_key_is_brought_in_line(storage, vault, flags):
    old, new = vault_kv_encryption_config.generate_key(), vault_kv_encryption_config.generate_key()
    vault_kv_encryption_config.write_key(str(storage.path), old)
    vault.data[APP] = {"encryption_key": new}
    storage.write_encryption_config()
    assert vault_kv_encryption_config.read_key(str(storage.path)) == new


def test_unwritable_path_blocks_with_failed_flag_and_no_key_in_status(storage, vault, flags, juju):
    storage.path.parent.parent.joinpath("encryption").write_text("a file where a folder should be")
    key = vault_kv_encryption_config.generate_key()
    vault.data[APP] = {"encryption_key": key}
    storage.write_encryption_config()
    assert "kubernetes-control-plane.secure-storage.failed" in flags and CREATED not in flags
    assert juju["status"][0] == "blocked" and key not in juju["status"][1]


def test_the_layer_never_clears_created(storage, flags):
    """A cleared flag makes kubernetes-control-plane mount its encrypted storage a second time."""
    assert not hasattr(storage, "vault_relation_gone") and not hasattr(storage, "vault_no_longer_ready")
    flags.add(CREATED)
    flags.discard("layer.vault-kv.ready")
    flags.discard("vault-kv.connected")
    storage.provide_encryption_key()
    storage.write_encryption_config()
    assert CREATED in flags


def test_in_a_charm_with_vaultlocker_the_charm_mounts_and_writes_first(storage, vault, flags, juju):
    lib = juju["charm_dir"] / "lib" / "charms" / "layer"
    lib.mkdir(parents=True)
    (lib / "vaultlocker.py").write_text("# layer:vaultlocker is part of this charm\n")
    vault.data[APP] = {"encryption_key": "A" * 32}
    flags.add("layer.vault-kv.app-kv.set.encryption_key")
    storage.write_encryption_config()
    assert not storage.path.exists() and CREATED not in flags  # vaultlocker not ready: nothing on plain disk
    flags.add("layer.vaultlocker.ready")
    storage.write_encryption_config()
    assert not storage.path.exists() and CREATED not in flags  # the charm's create_secure_storage goes first
    flags.add(CREATED)  # it mounted, wrote and flagged
    storage.write_encryption_config()
    assert storage.path.exists()  # from then on the layer keeps the file in line with Vault


def test_vault_outage_while_providing_does_not_raise(storage, vault):
    vault.sealed = True
    vault_kv.reset_cached_state()
    storage.provide_encryption_key()  # logged, retried next hook
    assert APP not in vault.data


def test_a_file_that_exists_but_cannot_be_read_blocks_and_generates_nothing(storage, vault, flags, juju):
    storage.path.parent.mkdir(parents=True, exist_ok=True)
    storage.path.write_text("kind: EncryptionConfig\napiVersion: v1\nresources: [unclosed\n")
    before = storage.path.read_bytes()
    storage.provide_encryption_key()
    assert APP not in vault.data  # no key was generated in place of the one the apiserver may use
    assert juju["status"][0] == "blocked" and "no key was generated" in juju["status"][1]
    vault.data[APP] = {"encryption_key": "B" * 32}
    flags.add("layer.vault-kv.app-kv.set.encryption_key")
    vault_kv.reset_cached_state()
    storage.write_encryption_config()
    assert storage.path.read_bytes() == before  # and the file is not replaced either
    assert CREATED not in flags and juju["status"][0] == "blocked"


def test_the_generic_layer_does_not_know_secure_storage():
    """Secure storage registers its file through the public registration; nothing generic imports it."""
    import ast

    from tests.unit.conftest import ROOT

    generic = [p for p in (ROOT / "lib/charms/layer/vault_kv").glob("*.py")] + [ROOT / "reactive/vault_kv.py"]
    for path in generic:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + ["{}.{}".format(node.module, a.name) for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            assert not any("secure_storage" in name for name in names), path.name


def test_the_file_is_registered_as_the_local_copy_only_when_on(storage, vault, juju):
    on_disk = vault_kv_encryption_config.generate_key()
    vault_kv_encryption_config.write_key(str(storage.path), on_disk)
    assert vault_kv_local_copies.registered_keys() == ["encryption_key"]
    assert vault_kv_local_copies.local_value("encryption_key") == on_disk


def test_a_file_holding_several_keys_mid_rotation_is_no_local_copy_for_a_move(storage, vault, juju):
    """One phase behind, a unit's file starts with the old key: a move trusting it would put it back in Vault."""
    old, new = vault_kv_encryption_config.generate_key(), vault_kv_encryption_config.generate_key()
    vault_kv_encryption_config.write_named_keys(str(storage.path), [("key1", old), ("key2", new)])
    assert vault_kv_local_copies.local_value("encryption_key") is None
    vault_kv_encryption_config.write_named_keys(str(storage.path), [("key1", new)], drop=[old])
    assert vault_kv_local_copies.local_value("encryption_key") == new
    vault_kv_encryption_config.write_named_keys(str(storage.path), [("key2", new), ("key1", new)])
    assert vault_kv_local_copies.local_value("encryption_key") == new  # one key under two names: still a copy
