"""What charms and tools written against the old layer still find after an upgrade.

kubernetes-control-plane 1.27/1.28 calls the private ``_get_secret_backend``
on upgrade-charm; 1.29 takes the secret_id and the token's ``data_changed``
hash straight from unitdata; vaultlocker reads each device's key from
``{backend}/{hostname}/*``.  Every check reads back the effect: the fake
Vault's data and requests, unitdata, flags.
"""

import hashlib
import json
import socket

import pytest

from charms.layer import vault_kv
from charms.layer.vault_kv import credentials as vault_kv_credentials
from charms.layer.vault_kv import local_copies as vault_kv_local_copies
from tests.support.loading import load_reactive
from tests.unit import fake_vault

handlers = load_reactive("vault_kv")

UUID = "0b5e1b6a-0000-4000-8000-00000000000a"
LEGACY = "charm-app"
NEW = "charm-{}-app".format(UUID)
NEW_NAME = UUID + "-app/0"
MODEL_SCOPED = {"options": {"vault-kv": {"secrets-backend-format": "charm-{model-uuid}-{app}"}}}

# the unitdata keys the old layer wrote and kubernetes-control-plane 1.29 reads (literal on purpose)
OLD_SECRET_ID_KEY = "layer.vault-kv.secret_id"
OLD_TOKEN_HASH_KEY = "reactive.data_changed.layer.vault-kv.token"
OLD_TOKEN_KEY = "layer.vault-kv.token"


def reactive_data_changed_hash(value):
    """The hash charms.reactive's data_changed stores: md5 of the sorted JSON, utf-8."""
    return hashlib.md5(json.dumps(value, sort_keys=True).encode("utf8")).hexdigest()


def write_layer_options(juju, options):
    (juju["charm_dir"] / "layer.yaml").write_text(json.dumps(options))


# -- kubernetes-control-plane 1.27/1.28: maybe_heal_vault_kv --------------------------------


def test_get_secret_backend_follows_the_layer_option_and_backend_format(juju):
    assert vault_kv._get_secret_backend() == "charm-app"
    write_layer_options(juju, MODEL_SCOPED)
    assert vault_kv._get_secret_backend() == "charm-{}-app".format(UUID)
    assert vault_kv._get_secret_backend(backend_format="charm-x-{app}") == "charm-x-app"
    assert vault_kv._get_secret_backend(backend_format="charm-x-{app}", isolated=True, other="ignored") == (
        "charm-x-app"
    )


# -- backend_format, as the old layer accepted it ------------------------------------------


def test_get_vault_config_names_the_backend_of_backend_format(vault):
    config = vault_kv.get_vault_config(backend_format="charm-other-{app}", unknown_keyword=1)
    assert config["secret_backend"] == "charm-other-app"
    assert (config["role_id"], config["secret_id"]) == ("role-app-0", "secret-app-0")


def test_stores_built_with_backend_format_write_under_that_backend(vault):
    vault_kv.VaultAppKV(backend_format="charm-other-{app}")["shared"] = "app-value"
    vault_kv.reset_cached_state()
    vault_kv.VaultUnitKV("positional", backend_format="charm-other-{app}")["own"] = "unit-value"
    assert vault.data["charm-other-app/kv/app"] == {"shared": "app-value"}
    assert vault.data["charm-other-app/kv/unit/0"] == {"own": "unit-value"}
    assert not any(path.startswith(LEGACY + "/") for path in vault.data)


# -- kubernetes-control-plane 1.29 takes over the unwrapped secret_id -------------------


def test_the_unwrapped_secret_id_and_token_hash_are_where_the_old_layer_kept_them(vault, unitdata_kv):
    vault_kv.get_vault_config()
    assert vault.count("unwrap") == 1
    assert unitdata_kv[OLD_SECRET_ID_KEY] == "secret-app-0"
    assert unitdata_kv[OLD_TOKEN_HASH_KEY] == reactive_data_changed_hash("token-app-0")


def test_a_second_hook_does_not_unwrap_again(vault, unitdata_kv):
    vault_kv.get_vault_config()
    unwraps = vault.count("unwrap")
    vault_kv.reset_cached_state()  # a new hook
    config = vault_kv.get_vault_config()
    assert vault.count("unwrap") == unwraps == 1
    assert config["secret_id"] == unitdata_kv[OLD_SECRET_ID_KEY] == "secret-app-0"


def test_a_unit_of_the_old_layer_keeps_its_secret_id_without_unwrapping(vault, unitdata_kv):
    # what the old layer left in unitdata: the secret_id and data_changed's hash of the token
    unitdata_kv[OLD_SECRET_ID_KEY] = "secret-app-0"
    unitdata_kv[OLD_TOKEN_HASH_KEY] = reactive_data_changed_hash("token-app-0")
    vault.wrapped.pop("token-app-0")  # the old layer spent it
    assert OLD_TOKEN_KEY not in unitdata_kv and vault_kv_credentials.KV_BOOK not in unitdata_kv

    config = vault_kv.get_vault_config()

    assert config["secret_id"] == "secret-app-0"
    assert vault.count("unwrap") == 0
    assert unitdata_kv[OLD_SECRET_ID_KEY] == "secret-app-0"
    vault_kv.VaultUnitKV()["after-upgrade"] = "works"  # the kept secret_id still logs in
    assert vault.data[LEGACY + "/kv/unit/0"] == {"after-upgrade": "works"}


def test_a_unit_of_the_old_layer_unwraps_a_token_vault_refreshed_since(vault, unitdata_kv):
    unitdata_kv[OLD_SECRET_ID_KEY] = "secret-stale"
    unitdata_kv[OLD_TOKEN_HASH_KEY] = reactive_data_changed_hash("token-spent-long-ago")
    vault.roles["role-app-0"] = "secret-refreshed"  # refresh-secrets: a new secret_id, wrapped in the token
    vault.wrapped["token-app-0"] = "secret-refreshed"

    config = vault_kv.get_vault_config()

    assert config["secret_id"] == "secret-refreshed"
    assert vault.count("unwrap") == 1
    assert unitdata_kv[OLD_SECRET_ID_KEY] == "secret-refreshed"
    assert unitdata_kv[OLD_TOKEN_HASH_KEY] == reactive_data_changed_hash("token-app-0")


# -- a refresh back to the previous build ---------------------------------------------------


@pytest.fixture
def rolled_back(vault, unitdata_kv):
    """app/0 held credentials under both names, and now asks as app/0 again; Vault answers nothing."""
    vault.roles["role-new-0"] = "secret-new-0"
    vault.wrapped.pop("token-app-0")  # unwrapped long ago
    endpoint = vault.endpoint
    endpoint.unit_role_id = None  # the vault charm blanked the old name's answers
    endpoint.all_unit_tokens = []
    endpoint.request_secret_backend(LEGACY, isolated=False, unit_name="app/0")
    assert endpoint.role_id_for("app/0") is None and endpoint.tokens_for("app/0") == []
    return vault


def test_a_unit_going_back_to_its_previous_name_logs_in_with_the_credentials_it_held(rolled_back, unitdata_kv):
    vault_kv_credentials.remember_credentials("app/0", "role-app-0", "secret-app-0", "token-app-0")
    vault_kv_credentials.remember_credentials(NEW_NAME, "role-new-0", "secret-new-0", "token-new-0")
    assert unitdata_kv[OLD_SECRET_ID_KEY] == "secret-new-0"

    name, role_id, tokens = vault_kv_credentials.granted_credentials(rolled_back.endpoint)
    config = vault_kv.get_vault_config()

    assert (name, role_id, tokens) == ("app/0", "role-app-0", [])
    assert (config["role_id"], config["secret_id"]) == ("role-app-0", "secret-app-0")
    assert unitdata_kv[OLD_SECRET_ID_KEY] == "secret-app-0"  # the current credentials are the old name's again
    assert rolled_back.count("unwrap") == 0
    vault_kv.VaultUnitKV()["back"] = "again"
    assert rolled_back.data[LEGACY + "/kv/unit/0"] == {"back": "again"}


def test_a_unit_with_nothing_in_the_book_for_its_name_waits(rolled_back, unitdata_kv):
    vault_kv_credentials.remember_credentials(NEW_NAME, "role-new-0", "secret-new-0", "token-new-0")

    assert vault_kv_credentials.granted_credentials(rolled_back.endpoint) == (None, None, [])
    with pytest.raises(vault_kv.VaultNotReady):
        vault_kv.get_vault_config()
    assert rolled_back.count("unwrap") == 0 and rolled_back.count("login") == 0


# -- vaultlocker's per-host secrets move with the unit ----------------------------------------

HOST = socket.gethostname()
POLICIES = {"role-app-0": [LEGACY + "/"], "role-new-0": [NEW + "/"]}


@pytest.fixture
def per_role_policies(vault, monkeypatch):
    """Each AppRole's token grants only its own backend, as the vault charm's policies do."""
    login = fake_vault._Auth.login

    def scoped_login(self, role_id, secret_id, **kw):
        response = login(self, role_id, secret_id, **kw)
        self._client._server.tokens[response["auth"]["client_token"]] = list(POLICIES[role_id])
        return response

    monkeypatch.setattr(fake_vault._Auth, "login", scoped_login)
    return vault


@pytest.fixture
def legacy_unit(per_role_policies, flags, juju, unitdata_kv):
    """A unit of a charm-{app} build with vaultlocker secrets; the charm is then upgraded."""
    vault = per_role_policies
    flags.update({"vault-kv.connected", "vault-kv.available"})
    handlers.request_vault_access()
    handlers.update_ready()
    vault_kv.VaultAppKV()["encryption_key"] = "K" * 44
    handlers.record_app_kv_hashes()
    assert "otherhost" != HOST
    vault.data["{}/{}/dev-uuid-1".format(LEGACY, HOST)] = {"dmcrypt_key": "dummy"}
    vault.data[LEGACY + "/otherhost/dev-uuid-2"] = {"dmcrypt_key": "dummy-other-host"}
    flags.discard("layer.vault-kv.app-kv.changed")
    flags.discard("layer.vault-kv.app-kv.changed.encryption_key")
    vault_kv.reset_cached_state()
    write_layer_options(juju, MODEL_SCOPED)
    vault_kv_local_copies._reset_for_tests()
    yield vault
    vault_kv_local_copies._reset_for_tests()


def upgrade_and_move(vault, flags):
    """upgrade-charm: ask again under the new name, Vault answers, the move runs."""
    handlers.request_again_if_changed()
    handlers.request_vault_access()
    vault.endpoint.grant(NEW_NAME, "role-new-0", "secret-new-0", "token-new-0")
    handlers.continue_migration()
    assert "layer.vault-kv.migration.done" in flags


def test_this_hosts_vaultlocker_secrets_are_copied_to_the_new_backend(legacy_unit, flags):
    upgrade_and_move(legacy_unit, flags)
    assert legacy_unit.data["{}/{}/dev-uuid-1".format(NEW, HOST)] == {"dmcrypt_key": "dummy"}
    assert legacy_unit.data["{}/{}/dev-uuid-1".format(LEGACY, HOST)] == {"dmcrypt_key": "dummy"}  # kept
    # each AppRole's token was confined to its own backend while copying
    assert {tuple(prefixes) for prefixes in legacy_unit.tokens.values()} == {(LEGACY + "/",), (NEW + "/",)}


def test_other_hosts_vaultlocker_secrets_are_not_copied(legacy_unit, flags):
    upgrade_and_move(legacy_unit, flags)
    assert NEW + "/otherhost/dev-uuid-2" not in legacy_unit.data
    assert not any(path.startswith(NEW + "/otherhost") for path in legacy_unit.data)
    assert legacy_unit.data[LEGACY + "/otherhost/dev-uuid-2"] == {"dmcrypt_key": "dummy-other-host"}


def test_a_vaultlocker_secret_already_in_the_new_backend_is_never_overwritten(legacy_unit, flags):
    target = "{}/{}/dev-uuid-1".format(NEW, HOST)
    legacy_unit.data[target] = {"dmcrypt_key": "already-in-new"}
    upgrade_and_move(legacy_unit, flags)
    assert legacy_unit.data[target] == {"dmcrypt_key": "already-in-new"}
    assert ("write", target) not in legacy_unit.requests


def test_after_the_move_the_old_layers_keys_hold_the_new_names_credentials(legacy_unit, flags, unitdata_kv):
    # kubernetes-control-plane 1.29 takes these over and logs in with the {model-uuid}-{unit} role
    upgrade_and_move(legacy_unit, flags)
    assert unitdata_kv[OLD_SECRET_ID_KEY] == "secret-new-0"
    assert unitdata_kv[OLD_TOKEN_HASH_KEY] == reactive_data_changed_hash("token-new-0")


def test_a_refresh_back_to_the_charm_app_build_uses_the_legacy_backend_again(legacy_unit, flags, juju, unitdata_kv):
    upgrade_and_move(legacy_unit, flags)
    # the previous build again: it asks as app/0 for charm-app, and Vault publishes nothing for app/0
    write_layer_options(juju, {"options": {"vault-kv": {}}})
    vault_kv.reset_cached_state()
    legacy_unit.endpoint.unit_role_id = None
    legacy_unit.endpoint.all_unit_tokens = []
    handlers.request_again_if_changed()
    handlers.request_vault_access()
    assert legacy_unit.endpoint.requests[-1] == {"secret_backend": LEGACY, "isolated": False, "unit_name": "app/0"}
    handlers.continue_migration()
    assert "layer.vault-kv.migration.done" in flags and "layer.vault-kv.migration.in-progress" not in flags
    vault_kv.reset_cached_state()
    handlers.update_ready()
    assert "layer.vault-kv.ready" in flags
    assert "layer.vault-kv.app-kv.changed.encryption_key" not in flags
    assert vault_kv.VaultAppKV()["encryption_key"] == "K" * 44
    assert unitdata_kv[OLD_SECRET_ID_KEY] == "secret-app-0"
    vault_kv.VaultUnitKV()["rolled-back"] = "yes"
    assert legacy_unit.data[LEGACY + "/kv/unit/0"] == {"rolled-back": "yes"}
