"""Moving from charm-{app} to charm-{model-uuid}-{app}, rule by rule (mocked flags, fake Vault)."""

import json

import pytest

from charms.layer import vault_kv
from charms.layer.vault_kv import backend as vault_kv_backend
from charms.layer.vault_kv import local_copies as vault_kv_local_copies
from charms.layer.vault_kv import migration as vault_kv_migration
from charms.layer.vault_kv.hashing import value_hash
from tests.support.loading import load_reactive

handlers = load_reactive("vault_kv")

UUID = "0b5e1b6a-0000-4000-8000-00000000000a"
LEGACY = "charm-app"
NEW = "charm-{}-app".format(UUID)
KEY = "K" * 44


@pytest.fixture
def legacy_unit(vault, flags, juju, unitdata_kv):
    """A unit deployed with charm-{app}, as the old layer left it; then the charm is upgraded."""
    flags.update({"vault-kv.connected", "vault-kv.available"})
    handlers.request_vault_access()  # legacy build: charm-app as app/0
    handlers.update_ready()
    vault_kv.VaultAppKV()["encryption_key"] = KEY
    handlers.record_app_kv_hashes()
    assert vault.data[LEGACY + "/kv/app"] == {"encryption_key": KEY}
    flags.discard("layer.vault-kv.app-kv.changed")
    flags.discard("layer.vault-kv.app-kv.changed.encryption_key")
    vault_kv.reset_cached_state()
    options = {"options": {"vault-kv": {"secrets-backend-format": "charm-{model-uuid}-{app}"}}}
    (juju["charm_dir"] / "layer.yaml").write_text(json.dumps(options))
    vault_kv_local_copies._reset_for_tests()
    yield vault
    vault_kv_local_copies._reset_for_tests()


def upgrade(vault, flags):
    """upgrade-charm: re-request, then Vault answers the new request."""
    handlers.request_again_if_changed()
    assert "layer.vault-kv.requested" not in flags
    handlers.request_vault_access()
    vault.endpoint.grant(UUID + "-app/0", "role-new-0", "secret-new-0", "token-new-0")


def test_the_request_moves_to_the_new_backend_and_name_after_legacy_credentials_are_kept(
    legacy_unit, flags, unitdata_kv
):
    upgrade(legacy_unit, flags)
    assert legacy_unit.endpoint.requests[-1] == {"secret_backend": NEW, "isolated": False, "unit_name": UUID + "-app/0"}
    legacy = unitdata_kv[vault_kv_migration.KV_LEGACY]
    assert (legacy["backend"], legacy["role_id"], legacy["secret_id"]) == (LEGACY, "role-app-0", "secret-app-0")
    assert "layer.vault-kv.migration.in-progress" in flags


def test_while_moving_the_store_is_not_loaded_and_flags_keep_their_values(legacy_unit, flags):
    handlers.request_again_if_changed()
    handlers.request_vault_access()  # Vault has not answered the new request yet
    vault_kv.reset_cached_state()
    flags.add("layer.vault-kv.ready")
    handlers.derive_app_kv_flags()  # the next hook's start: the move cannot finish
    assert "layer.vault-kv.ready" not in flags
    assert "layer.vault-kv.migration.in-progress" in flags
    assert "layer.vault-kv.app-kv.set.encryption_key" in flags
    with pytest.raises(vault_kv.VaultNotReady, match="moving"):
        vault_kv.VaultAppKV()


def test_a_move_vault_answered_finishes_at_hook_start_and_the_unit_is_ready_before_any_handler(
    legacy_unit, flags, unitdata_kv
):
    upgrade(legacy_unit, flags)  # upgrade-charm; then Vault answers the new request
    vault_kv.reset_cached_state()
    flags.discard("layer.vault-kv.ready")  # not ready while moving
    handlers.derive_app_kv_flags()  # the next hook's start, before the charm's own start callbacks
    assert "layer.vault-kv.migration.done" in flags and "layer.vault-kv.migration.in-progress" not in flags
    assert "layer.vault-kv.ready" in flags
    assert "layer.vault-kv.app-kv.changed.encryption_key" not in flags  # the upgrade restarts nothing
    assert legacy_unit.data[NEW + "/kv/app"] == {"encryption_key": KEY}
    assert unitdata_kv[vault_kv_backend.KV_ACTIVE] == {"backend": NEW, "unit_name": UUID + "-app/0"}


def test_leader_copies_verifies_announces_and_no_changed_flag_is_raised(legacy_unit, flags, juju, unitdata_kv):
    upgrade(legacy_unit, flags)
    handlers.continue_migration()
    assert legacy_unit.data[NEW + "/kv/app"] == {"encryption_key": KEY}
    assert juju["leader_data"]["vault-kv-migrated"] == NEW
    assert "layer.vault-kv.migration.done" in flags and "layer.vault-kv.migration.in-progress" not in flags
    assert unitdata_kv[vault_kv_backend.KV_ACTIVE] == {"backend": NEW, "unit_name": UUID + "-app/0"}
    handlers.update_ready()
    assert "layer.vault-kv.ready" in flags
    assert "layer.vault-kv.app-kv.changed.encryption_key" not in flags
    assert legacy_unit.data[LEGACY + "/kv/app"] == {"encryption_key": KEY}  # left for a rollback


def test_a_key_the_new_backend_holds_is_never_overwritten(legacy_unit, flags):
    legacy_unit.data[NEW + "/kv/app"] = {"encryption_key": "ALREADY-THERE"}
    upgrade(legacy_unit, flags)
    handlers.continue_migration()
    assert legacy_unit.data[NEW + "/kv/app"] == {"encryption_key": "ALREADY-THERE"}


def test_the_local_copy_wins_over_the_legacy_backend(legacy_unit, flags):
    vault_kv_local_copies.register_local_copy("encryption_key", lambda: "ON-DISK")
    upgrade(legacy_unit, flags)
    handlers.continue_migration()
    assert legacy_unit.data[NEW + "/kv/app"]["encryption_key"] == "ON-DISK"


def test_unreadable_legacy_backend_restores_from_the_local_copy(legacy_unit, flags):
    vault_kv_local_copies.register_local_copy("encryption_key", lambda: "ON-DISK")
    upgrade(legacy_unit, flags)
    legacy_unit.roles["role-app-0"] = "rotated-elsewhere"  # legacy credentials refused
    handlers.continue_migration()
    assert legacy_unit.data[NEW + "/kv/app"] == {"encryption_key": "ON-DISK"}
    assert "layer.vault-kv.migration.legacy-unreadable" in flags
    assert "layer.vault-kv.migration.done" in flags


def test_a_key_nothing_can_restore_keeps_its_set_flag_so_the_charm_restores_instead_of_generating(
    legacy_unit, flags, juju
):
    upgrade(legacy_unit, flags)
    legacy_unit.roles["role-app-0"] = "rotated-elsewhere"  # legacy unreadable, and no local copy registered
    handlers.continue_migration()
    assert "layer.vault-kv.migration.done" in flags
    assert NEW + "/kv/app" not in legacy_unit.data
    vault_kv.reset_cached_state()
    handlers.update_ready()
    assert "layer.vault-kv.ready" in flags
    # kubernetes-control-plane generates a key exactly when this flag is down: it stays up
    assert "layer.vault-kv.app-kv.set.encryption_key" in flags
    assert "layer.vault-kv.app-kv.changed.encryption_key" not in flags
    assert juju["status"][0] == "blocked" and "encryption_key" in juju["status"][1]
    # the charm's own restore (kubernetes-control-plane: migrate_vault_kv_secrets_backend)
    vault_kv.VaultAppKV()["encryption_key"] = KEY
    assert "layer.vault-kv.app-kv.changed.encryption_key" not in flags  # the value this unit had seen
    vault_kv.reset_cached_state()
    handlers.update_ready()
    assert vault_kv.VaultAppKV().missing_after_move() == []
    assert juju["status"][0] != "blocked"


def test_waits_until_vault_answers_the_new_request(legacy_unit, flags, juju):
    handlers.request_again_if_changed()
    handlers.request_vault_access()  # no answer for the new name yet
    handlers.continue_migration()
    assert "layer.vault-kv.migration.in-progress" in flags
    assert juju["status"][0] == "waiting"
    assert NEW + "/kv/app" not in legacy_unit.data


def test_non_leader_holding_the_data_copies_what_is_missing_and_switches_without_waiting(legacy_unit, flags, juju):
    juju["leader"] = False
    upgrade(legacy_unit, flags)
    handlers.continue_migration()
    assert "layer.vault-kv.migration.done" in flags
    assert legacy_unit.data[NEW + "/kv/app"] == {"encryption_key": KEY}  # copied, not generated
    assert legacy_unit.data[NEW + "/kv/migration"]["from"] == LEGACY
    assert "vault-kv-migrated" not in juju["leader_data"]  # only a leader announces
    vault_kv.reset_cached_state()
    handlers.update_ready()
    assert "layer.vault-kv.ready" in flags
    assert "layer.vault-kv.app-kv.changed.encryption_key" not in flags


def test_a_unit_added_during_the_move_waits_even_as_leader_until_a_moving_unit_filled_the_backend(
    legacy_unit, flags, juju
):
    from tests.unit.conftest import new_unitdata

    # the application had data in charm-app (the old layer's nonce says so); a new unit joins
    juju["leader_data"].clear()
    juju["leader_data"]["vault-kv-nonce"] = "n0"
    new_unitdata()
    flags.clear()
    flags.update({"vault-kv.connected", "vault-kv.available"})
    juju["unit"] = "app/3"
    legacy_unit.endpoint.relations[0].to_publish.clear()  # its own side of the relation is new
    handlers.request_vault_access()
    assert "layer.vault-kv.migration.in-progress" not in flags  # it never had data anywhere
    legacy_unit.endpoint.grant(UUID + "-app/3", "role-new-3", "secret-new-3", "token-new-3")
    handlers.update_ready()
    assert "layer.vault-kv.ready" not in flags  # so kubernetes-control-plane's leader cannot generate a key
    assert juju["status"][0] == "waiting" and "moving" in juju["status"][1]
    assert NEW + "/kv/app" not in legacy_unit.data
    # a unit that holds the data moves it ...
    legacy_unit.data[NEW + "/kv/app"] = {"encryption_key": KEY}
    legacy_unit.data[NEW + "/kv/migration"] = {"from": LEGACY, "keys": ["encryption_key"]}
    vault_kv.reset_cached_state()
    handlers.update_ready()
    # ... and the new leader announces it and is ready with the original key
    assert "layer.vault-kv.ready" in flags
    assert juju["leader_data"]["vault-kv-migrated"] == NEW
    assert juju["leader_data"]["vault-kv-backend"] == NEW
    assert vault_kv.VaultAppKV()["encryption_key"] == KEY


def test_a_copy_that_does_not_read_back_fails_and_is_retried(legacy_unit, flags, juju):
    upgrade(legacy_unit, flags)
    real_write = legacy_unit.client

    def lossy_client(**kw):
        client = real_write(**kw)
        original = client.write_data

        def write_data(path, *, data=None, wrap_ttl=None):
            original(path, data={k: "CORRUPTED" for k in data})

        client.write_data = write_data
        return client

    import hvac

    hvac.Client = lossy_client
    handlers.continue_migration()
    assert "layer.vault-kv.migration.failed" in flags and "layer.vault-kv.migration.in-progress" in flags
    assert juju["status"][0] == "blocked" and "CORRUPTED" not in juju["status"][1]
    hvac.Client = legacy_unit.client
    legacy_unit.data.pop(NEW + "/kv/app")
    vault_kv.reset_cached_state()
    handlers.continue_migration()
    assert legacy_unit.data[NEW + "/kv/app"] == {"encryption_key": KEY}
    assert "layer.vault-kv.migration.failed" not in flags


def test_every_step_can_run_twice(legacy_unit, flags, unitdata_kv):
    upgrade(legacy_unit, flags)
    snapshot = dict(unitdata_kv[vault_kv_migration.KV_LEGACY])
    handlers.request_vault_access()  # a retried hook asks again
    assert unitdata_kv[vault_kv_migration.KV_LEGACY] == snapshot  # the legacy snapshot is never overwritten
    handlers.continue_migration()
    vault_kv.reset_cached_state()
    handlers.continue_migration()
    assert legacy_unit.data[NEW + "/kv/app"] == {"encryption_key": KEY}


def test_seen_hashes_come_from_the_legacy_backend_for_units_of_the_old_layer(legacy_unit, flags, unitdata_kv):
    unitdata_kv.pop(vault_kv_local_copies.KV_SEEN_HASHES, None)  # the old layer kept none locally
    upgrade(legacy_unit, flags)
    handlers.continue_migration()
    assert unitdata_kv[vault_kv_local_copies.KV_SEEN_HASHES] == {"encryption_key": value_hash(KEY)}


def test_a_build_that_keeps_charm_app_never_migrates(vault, flags, juju, unitdata_kv):
    flags.update({"vault-kv.connected", "vault-kv.available"})
    handlers.request_vault_access()
    handlers.request_again_if_changed()
    assert not vault_kv_backend.needed()
    assert "layer.vault-kv.migration.in-progress" not in flags
    assert vault.endpoint.requests == [{"secret_backend": LEGACY, "isolated": False, "unit_name": "app/0"}]


def test_a_rebuild_that_keeps_the_backend_is_ready_at_once_after_the_old_layer(vault, flags, juju, unitdata_kv):
    """The old layer left only its nonce in leader data; the unit holds the app's data in charm-app."""
    flags.update({"vault-kv.connected", "vault-kv.available"})
    vault.endpoint.relations[0].to_publish.update({"secret_backend": LEGACY, "unit_name": "app/0"})
    vault.data[LEGACY + "/kv/app"] = {"encryption_key": KEY}
    juju["leader_data"]["vault-kv-nonce"] = "from-the-old-layer"
    handlers.request_again_if_changed()
    handlers.request_vault_access()
    handlers.update_ready()
    assert "layer.vault-kv.ready" in flags
    assert juju["leader_data"]["vault-kv-backend"] == LEGACY
    assert vault_kv.VaultAppKV()["encryption_key"] == KEY


def test_a_non_leader_may_write_what_is_there_and_fill_what_is_awaited_but_change_nothing(legacy_unit, flags, juju):
    upgrade(legacy_unit, flags)
    legacy_unit.roles["role-app-0"] = "rotated-elsewhere"
    handlers.continue_migration()  # the key could not be brought
    juju["leader"] = False
    vault_kv.reset_cached_state()
    kv = vault_kv.VaultAppKV()
    with pytest.raises(vault_kv.VaultNotReady):  # a VaultAppKVNotLeader: charms that catch VaultNotReady retry
        kv["other"] = "x"
    kv["encryption_key"] = KEY  # restoring an awaited key (kubernetes-control-plane's migrate handler)
    assert legacy_unit.data[NEW + "/kv/app"] == {"encryption_key": KEY}
    kv["encryption_key"] = KEY  # the same value again: nothing to change, nothing refused
    with pytest.raises(vault_kv.VaultAppKVNotLeader):
        kv["encryption_key"] = "another"
    assert legacy_unit.data[NEW + "/kv/app"] == {"encryption_key": KEY}


def test_unit_data_moves_with_the_unit_and_waits_while_it_moves(legacy_unit, flags, juju):
    legacy_unit.data[LEGACY + "/kv/unit/0"] = {"mine": "m"}
    legacy_unit.data[NEW + "/kv/unit/0"] = {"other": "o"}
    upgrade(legacy_unit, flags)
    vault_kv.reset_cached_state()
    with pytest.raises(vault_kv.VaultNotReady, match="moving"):
        vault_kv.VaultUnitKV()
    handlers.continue_migration()
    assert legacy_unit.data[NEW + "/kv/unit/0"] == {"mine": "m", "other": "o"}
    vault_kv.reset_cached_state()
    assert dict(vault_kv.VaultUnitKV()) == {"mine": "m", "other": "o"}


def test_what_a_move_could_not_bring_is_awaited_by_a_unit_added_during_it(legacy_unit, flags, juju):
    from tests.unit.conftest import new_unitdata

    upgrade(legacy_unit, flags)
    legacy_unit.roles["role-app-0"] = "rotated-elsewhere"
    handlers.continue_migration()
    assert legacy_unit.data[NEW + "/kv/migration"]["missing"] == ["encryption_key"]
    juju["leader_data"].pop("vault-kv-migrated", None)
    juju["leader_data"]["vault-kv-backend"] = LEGACY
    new_unitdata()
    flags.clear()
    flags.update({"vault-kv.connected", "vault-kv.available"})
    juju["unit"] = "app/3"
    legacy_unit.endpoint.relations[0].to_publish.clear()
    handlers.request_vault_access()
    legacy_unit.endpoint.grant(UUID + "-app/3", "role-new-3", "secret-new-3", "token-new-3")
    vault_kv.reset_cached_state()
    handlers.update_ready()  # as the new leader
    assert "layer.vault-kv.ready" in flags
    assert "layer.vault-kv.app-kv.set.encryption_key" in flags  # so the charm does not generate one
    assert juju["status"][0] == "blocked" and "encryption_key" in juju["status"][1]


def test_device_keys_a_move_could_not_copy_block_a_vaultlocker_charm_until_they_are_in_the_new_backend(
    legacy_unit, flags, juju
):
    import socket

    lib = juju["charm_dir"] / "lib" / "charms" / "layer"
    lib.mkdir(parents=True)
    (lib / "vaultlocker.py").write_text("# the charm includes layer:vaultlocker\n")
    vault_kv_local_copies.register_local_copy("encryption_key", lambda: KEY)
    upgrade(legacy_unit, flags)
    legacy_unit.roles["role-app-0"] = "rotated-elsewhere"  # legacy credentials refused
    handlers.continue_migration()
    vault_kv.reset_cached_state()
    handlers.update_ready()
    host = socket.gethostname()
    assert juju["status"][0] == "blocked"
    assert "charm-app/{}/".format(host) in juju["status"][1] and "vaultlocker" in juju["status"][1]
    legacy_unit.data["{}/{}/device-uuid".format(NEW, host)] = {"dmcrypt_key": "copied by the operator"}
    vault_kv.reset_cached_state()
    handlers.update_ready()
    assert juju["status"][0] != "blocked"


def test_forward_again_after_a_refresh_secrets_while_rolled_back_completes_with_the_credentials_held(
    legacy_unit, flags, juju, unitdata_kv
):
    """The vault charm as its code intends: no answer for a name whose AppRole exists, save on refresh-secrets."""
    model_scoped = (juju["charm_dir"] / "layer.yaml").read_text()
    upgrade(legacy_unit, flags)
    handlers.continue_migration()
    assert "layer.vault-kv.migration.done" in flags
    endpoint = legacy_unit.endpoint
    endpoint.unit_role_id, endpoint.all_unit_tokens = None, []  # set_role_id blanked the old name's answers
    (juju["charm_dir"] / "layer.yaml").write_text(json.dumps({}))  # rollback: charm-{app} as app/0
    vault_kv.reset_cached_state()
    handlers.request_again_if_changed()
    handlers.request_vault_access()
    handlers.continue_migration()
    assert unitdata_kv[vault_kv_backend.KV_ACTIVE] == {"backend": LEGACY, "unit_name": "app/0"}
    # refresh-secrets while rolled back: a new token for app/0; the new name's answers are blanked
    endpoint.grants.pop(UUID + "-app/0")
    legacy_unit.wrapped["token-app-refreshed"] = legacy_unit.roles["role-app-0"] = "secret-app-refreshed"
    endpoint.unit_role_id, endpoint.all_unit_tokens = "role-app-0", ["token-app-refreshed"]
    vault_kv.reset_cached_state()
    handlers.update_ready()
    assert "layer.vault-kv.ready" in flags and unitdata_kv["layer.vault-kv.secret_id"] == "secret-app-refreshed"
    (juju["charm_dir"] / "layer.yaml").write_text(model_scoped)  # forward again: the AppRole exists, no answer
    vault_kv.reset_cached_state()
    handlers.request_again_if_changed()
    handlers.request_vault_access()
    handlers.continue_migration()
    assert "layer.vault-kv.migration.in-progress" not in flags, juju["status"]
    assert unitdata_kv[vault_kv_backend.KV_ACTIVE] == {"backend": NEW, "unit_name": UUID + "-app/0"}
    vault_kv.reset_cached_state()
    handlers.update_ready()
    assert "layer.vault-kv.ready" in flags and juju["status"][0] not in ("waiting", "blocked")
    config = vault_kv.get_vault_config()
    assert (config["role_id"], config["secret_id"]) == ("role-new-0", "secret-new-0")
    assert legacy_unit.data[NEW + "/kv/app"] == {"encryption_key": KEY}


def test_a_move_whose_new_name_vault_never_answers_blocks_naming_refresh_secrets_after_a_while(
    legacy_unit, flags, juju, unitdata_kv, monkeypatch
):
    """Issue 18.1: a unit that never held its new name's secret_id, blanked by a refresh-secrets while rolled
    back, gets no answer from a vault charm that answers only new AppRoles: not waiting forever, blocked."""
    handlers.request_again_if_changed()
    handlers.request_vault_access()  # Vault does not answer the new name (only the legacy one is published)
    for _ in range(2):
        vault_kv.reset_cached_state()
        handlers.continue_migration()
        assert juju["status"][0] == "waiting" and "layer.vault-kv.migration.in-progress" in flags
    later = vault_kv_migration.time.time() + vault_kv_migration.ANSWER_WAIT_SECONDS + 1
    monkeypatch.setattr(vault_kv_migration.time, "time", lambda: later)
    vault_kv.reset_cached_state()
    handlers.continue_migration()
    assert juju["status"][0] == "blocked" and "run the vault charm's refresh-secrets action" in juju["status"][1]
    assert "layer.vault-kv.migration.in-progress" in flags  # nothing given up: the answer still completes it
    assert legacy_unit.data.get(NEW + "/kv/app") is None


def _move_to(juju, flags, layer_yaml: str) -> None:
    """upgrade-charm to a build whose layer.yaml is ``layer_yaml``: request again, then the move."""
    (juju["charm_dir"] / "layer.yaml").write_text(layer_yaml)
    vault_kv.reset_cached_state()
    handlers.request_again_if_changed()
    handlers.request_vault_access()
    handlers.continue_migration()
    assert "layer.vault-kv.migration.done" in flags, juju["status"]
    vault_kv.reset_cached_state()


def _write_as_the_charm(key: str, value: str) -> None:
    handlers.update_ready()
    vault_kv.VaultAppKV()[key] = value
    handlers.record_app_kv_hashes()
    vault_kv.reset_cached_state()


def test_a_rollback_carries_a_value_changed_since_the_move_and_forward_again_carries_one_changed_meanwhile(
    legacy_unit, flags, juju
):
    """Found by the explorer: a key rotated on charm-{model-uuid}-{app}, then a rollback to charm-{app},
    whose value was still the pre-rotation key: a unit added then was given the old key under key1."""
    model_scoped = (juju["charm_dir"] / "layer.yaml").read_text()
    upgrade(legacy_unit, flags)
    handlers.continue_migration()
    departure = legacy_unit.data[LEGACY + "/kv/departure"]
    assert departure == {"to": NEW, "hashes": {"encryption_key": value_hash(KEY)}}  # hashes, never values
    assert LEGACY + "/kv/migration" not in legacy_unit.data
    vault_kv.reset_cached_state()
    _write_as_the_charm("encryption_key", "ROTATED")
    _move_to(juju, flags, json.dumps({}))  # the rollback
    assert legacy_unit.data[LEGACY + "/kv/app"]["encryption_key"] == "ROTATED"
    _write_as_the_charm("encryption_key", "CHANGED-WHILE-ROLLED-BACK")
    _move_to(juju, flags, model_scoped)  # forward again
    assert legacy_unit.data[NEW + "/kv/app"]["encryption_key"] == "CHANGED-WHILE-ROLLED-BACK"


def test_a_rollback_keeps_a_value_someone_else_changed_since_the_application_left(legacy_unit, flags, juju):
    """charm-{app} is shared by every model with the same application name: a value another model wrote
    after this one left is that model's, and a rollback here does not replace it."""
    upgrade(legacy_unit, flags)
    handlers.continue_migration()
    vault_kv.reset_cached_state()
    legacy_unit.data[LEGACY + "/kv/app"] = {"encryption_key": "THE-OTHER-MODELS"}
    _write_as_the_charm("encryption_key", "ROTATED")
    _move_to(juju, flags, json.dumps({}))
    assert legacy_unit.data[LEGACY + "/kv/app"]["encryption_key"] == "THE-OTHER-MODELS"


def test_a_second_unit_moving_back_does_not_replace_what_the_first_filled(legacy_unit, flags, juju):
    """Only the unit that fills the backend in this move replaces stale values; after its marker, a value the
    leader wrote since is never taken back, even one equal to the value left there."""
    upgrade(legacy_unit, flags)
    handlers.continue_migration()
    vault_kv.reset_cached_state()
    _write_as_the_charm("encryption_key", "ROTATED")
    legacy_unit.data[LEGACY + "/kv/migration"] = {"from": NEW, "keys": ["encryption_key"], "missing": []}
    legacy_unit.requests.clear()
    _move_to(juju, flags, json.dumps({}))
    assert legacy_unit.data[LEGACY + "/kv/app"]["encryption_key"] == KEY
    marker_reads = [r for r in legacy_unit.requests if r[0] == "read" and r[1].endswith(LEGACY + "/kv/migration")]
    assert len(marker_reads) == 1  # a unit with nothing to write reads the marker once (it was twice)
