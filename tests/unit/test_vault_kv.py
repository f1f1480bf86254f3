"""The library: stores, sessions, credentials, hashes, options."""

import hashlib
import json
import sys

import hvac.exceptions as hvac_errors
import pytest
import requests
from charmhelpers.core import hookenv

from charms.layer import vault_kv
from charms.layer.vault_kv import VaultAppKV, VaultCredentialsInvalid, VaultNotReady, VaultUnitKV
from charms.layer.vault_kv import hashing as vault_kv_hashing
from charms.layer.vault_kv import options as vault_kv_options
from charms.layer.vault_kv import session as vault_kv_session
from charms.layer.vault_kv import store as vault_kv_store
from tests.unit.conftest import new_unitdata

APP = "charm-app/kv/app"
HASHES = "charm-app/kv/app-hashes/0"


def new_hook():
    """What a new hook process starts with: no cached stores or sessions."""
    vault_kv.reset_cached_state()


def vault_kv_flags():
    from charms.reactive import get_flags

    return set(get_flags())


def others_may_write():
    """A key awaited after a move: a non-leader may fill it during this hook, so the leader's
    writes re-read the path first and read it back at exit (otherwise only the leader writes)."""
    from charms.layer.vault_kv import local_copies

    local_copies.set_awaited_keys(["awaited"])


def logged_text():
    return " ".join(str(call) for call in hookenv.log.call_args_list)


class TestNoWriteDropsAKey:
    def test_three_keys_set_one_after_another_all_stay_in_vault(self, vault):
        vault.data[APP] = {"encryption_key": "EARLIER"}
        kv = VaultAppKV()
        kv["k0"] = 0
        kv["k1"] = 1
        kv.set("k2", 2)
        assert vault.data[APP] == {"encryption_key": "EARLIER", "k0": 0, "k1": 1, "k2": 2}

    def test_keys_another_unit_wrote_during_the_hook_are_kept(self, vault):
        vault.data[APP] = {"a": 1}
        others_may_write()
        kv = VaultAppKV()
        vault.data[APP] = {"a": 1, "from_other_unit": "x"}  # written after our read
        kv["b"] = 2
        assert vault.data[APP] == {"a": 1, "from_other_unit": "x", "b": 2}
        assert kv["from_other_unit"] == "x"

    def test_the_path_is_reread_only_once_per_hook(self, vault):
        others_may_write()
        kv = VaultAppKV()
        for n in range(5):
            kv["k{}".format(n)] = n
        assert [r for r in vault.requests if r == ("read", APP)] == [("read", APP)] * 2

    def test_the_leader_alone_neither_rereads_nor_reads_back(self, vault, flags):
        """Only the leader writes app data (and unit data only its unit): what this hook read is current."""
        vault.data[APP] = {"a": 1}
        kv = VaultAppKV()
        for n in range(3):
            kv["k{}".format(n)] = n
        assert kv.restore_lost_writes() == []
        VaultUnitKV()["u"] = 1
        assert [r for r in vault.requests if r[0] == "read" and "/kv/" in r[1]] == [
            ("read", HASHES),
            ("read", APP),
            ("read", "charm-app/kv/unit/0"),
        ]
        assert vault.data[APP] == {"a": 1, "k0": 0, "k1": 1, "k2": 2}

    def test_update_writes_several_keys_in_one_request(self, vault):
        kv = VaultAppKV()
        kv.update({"x": 1, "y": 2})
        assert vault.count("write") == 1
        assert vault.data[APP] == {"x": 1, "y": 2}

    def test_setting_an_unchanged_value_writes_nothing(self, vault):
        vault.data[APP] = {"a": [1, 2]}
        kv = VaultAppKV()
        kv["a"] = [1, 2]
        assert vault.count("write") == 0

    def test_delete_is_explicit_and_removes_only_that_key(self, vault):
        vault.data[APP] = {"a": 1, "b": 2}
        kv = VaultAppKV()
        kv.delete("a")
        assert vault.data[APP] == {"b": 2}
        del kv["b"]
        assert APP not in vault.data
        with pytest.raises(KeyError):
            del kv["b"]

    def test_pop_and_clear_persist(self, vault):
        vault.data[APP] = {"a": 1, "b": 2}
        kv = VaultAppKV()
        assert kv.pop("a") == 1
        assert vault.data[APP] == {"b": 2}
        assert kv.pop("zz", "dflt") == "dflt"
        kv.clear()
        assert APP not in vault.data and dict(kv) == {}

    def test_setdefault_writes_only_when_missing(self, vault):
        vault.data[APP] = {"a": 1}
        kv = VaultAppKV()
        assert kv.setdefault("a", 5) == 1
        assert kv.setdefault("b", 5) == 5
        assert vault.data[APP] == {"a": 1, "b": 5}

    def test_value_that_is_not_json_is_refused_without_echoing_it(self, vault):
        kv = VaultAppKV()
        with pytest.raises(TypeError) as raised:
            kv["k"] = {"secret-thing": object()}
        assert "secret-thing" not in str(raised.value)
        assert vault.count("write") == 0

    def test_non_string_key_is_refused(self, vault):
        kv = VaultAppKV()
        with pytest.raises(TypeError):
            kv[3] = "x"

    def test_tuples_are_stored_as_vault_returns_them(self, vault):
        kv = VaultAppKV()
        kv["t"] = (1, 2)
        assert kv["t"] == [1, 2]


class TestOneLoginPerHook:
    def test_reads_and_writes_of_a_hook_share_one_login(self, vault):
        kv = VaultAppKV()
        kv["a"] = 1
        kv["b"] = 2
        VaultUnitKV()["u"] = 3
        kv.update_hashes()
        assert vault.count("login") == 1

    def test_token_expiry_mid_hook_costs_one_relogin(self, vault):
        kv = VaultAppKV()
        vault.expire_tokens()
        kv["a"] = 1
        assert vault.count("login") == 2
        assert vault.data[APP] == {"a": 1}

    def test_a_path_not_granted_is_not_ready_with_the_path_named(self, vault):
        vault.allowed_prefixes = ["charm-other"]
        with pytest.raises(VaultNotReady) as raised:
            VaultAppKV()
        assert "does not grant reading charm-app/kv/app" in str(raised.value)
        assert vault.count("login") == 1  # a fresh token's 403 is the policy's answer

    def test_a_path_still_denied_after_relogin_is_not_ready(self, vault):
        kv = VaultAppKV()
        vault.expire_tokens()
        vault.allowed_prefixes = ["charm-other"]
        with pytest.raises(VaultNotReady, match="does not grant"):
            kv["a"] = 1
        assert APP not in vault.data


class TestTransientFailures:
    @pytest.mark.parametrize(
        "fault, words",
        [("sealed", "sealed"), ("down", "cannot connect"), ("ssl_error", "TLS verification")],
    )
    def test_outages_are_not_ready_with_the_reason(self, vault, fault, words):
        setattr(vault, fault, True)
        with pytest.raises(VaultNotReady) as raised:
            VaultAppKV()
        assert words in str(raised.value)
        assert not isinstance(raised.value, VaultCredentialsInvalid)

    def test_failed_load_is_retried_by_the_next_call(self, vault):
        vault.sealed = True
        with pytest.raises(VaultNotReady):
            VaultAppKV()
        vault.sealed = False
        assert VaultAppKV() is VaultAppKV()

    def test_refused_secret_id_is_credentials_invalid(self, vault):
        vault.roles["role-app-0"] = "another-secret"
        with pytest.raises(VaultCredentialsInvalid, match="refused this unit's credentials"):
            VaultAppKV()

    def test_exception_texts_and_logs_hold_no_secret(self, vault):
        vault.data[APP] = {"encryption_key": "TOP-SECRET-VALUE"}
        kv = VaultAppKV()
        kv["other"] = "ANOTHER-SECRET"
        vault.sealed = True
        new_hook()
        with pytest.raises(VaultNotReady) as raised:
            VaultAppKV()
        text = str(raised.value) + logged_text()
        for secret in ("TOP-SECRET-VALUE", "ANOTHER-SECRET", "secret-app-0", "token-app-0"):
            assert secret not in text


class TestSecretId:
    def test_token_is_unwrapped_once_and_the_secret_id_kept(self, vault, unitdata_kv):
        VaultAppKV()
        new_hook()
        VaultAppKV()
        assert vault.count("unwrap") == 1
        assert unitdata_kv["layer.vault-kv.secret_id"] == "secret-app-0"

    def test_a_new_token_is_unwrapped(self, vault, unitdata_kv):
        VaultAppKV()
        vault.roles["role-app-0"] = "secret-2"
        vault.wrapped["token-2"] = "secret-2"
        vault.endpoint.all_unit_tokens = ["token-2"]
        new_hook()
        VaultAppKV()
        assert unitdata_kv["layer.vault-kv.secret_id"] == "secret-2"

    def test_spent_token_without_stored_secret_is_credentials_invalid(self, vault):
        vault.wrapped.clear()
        with pytest.raises(VaultCredentialsInvalid, match="already used.*refresh-secrets"):
            vault_kv.get_vault_config()

    def test_spent_token_stays_blocked_with_the_remedy_in_later_hooks(self, vault):
        vault.wrapped.clear()
        for _ in range(3):  # not "waiting for a token" from the second hook on
            vault_kv.reset_cached_state()
            with pytest.raises(VaultCredentialsInvalid, match="refresh-secrets"):
                vault_kv.get_vault_config()
        assert vault.count("unwrap") == 1  # and the spent token is not tried again

    def test_spent_token_with_stored_secret_uses_it_and_is_not_retried(self, vault, unitdata_kv):
        unitdata_kv["layer.vault-kv.secret_id"] = "secret-app-0"
        vault.wrapped.clear()
        assert vault_kv.get_vault_config()["secret_id"] == "secret-app-0"
        vault_kv.get_vault_config()
        assert vault.count("unwrap") == 1

    def test_outage_while_unwrapping_is_retried_next_hook(self, vault, unitdata_kv):
        vault.down = True
        with pytest.raises(VaultNotReady, match="cannot connect"):
            vault_kv.get_vault_config()
        assert "layer.vault-kv.token" not in unitdata_kv
        vault.down = False
        assert vault_kv.get_vault_config()["secret_id"] == "secret-app-0"

    def test_relation_incomplete_is_not_ready(self, vault):
        vault.endpoint.is_joined = False
        with pytest.raises(VaultNotReady, match="not joined"):
            vault_kv.get_vault_config()
        vault.endpoint.is_joined = True
        vault.endpoint.vault_url = None
        with pytest.raises(VaultNotReady, match="URL"):
            vault_kv.get_vault_config()
        vault.endpoint.vault_url = "http://x"
        vault.endpoint.unit_role_id = None
        with pytest.raises(VaultNotReady, match="granted"):
            vault_kv.get_vault_config()

    def test_config_has_the_documented_keys(self, vault):
        config = vault_kv.get_vault_config()
        assert set(config) == {"vault_url", "vault_urls", "secret_backend", "role_id", "secret_id", "vault_ca"}
        assert config["secret_backend"] == "charm-app"


class TestTls:
    PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

    def test_vault_ca_is_what_requests_verify_against(self, vault, juju, monkeypatch):
        seen = []
        real = vault.client
        monkeypatch.setattr("hvac.Client", lambda **kw: seen.append(kw.get("verify")) or real(**kw))
        vault.endpoint.vault_ca = self.PEM
        vault.endpoint.vault_url = "https://127.0.0.1:8200"
        VaultAppKV()
        path = juju["charm_dir"] / ".vault-kv-ca.pem"
        assert path.read_text() == self.PEM
        assert seen and all(v == str(path) for v in seen)

    def test_without_ca_the_system_trust_is_used(self, vault, monkeypatch):
        seen = []
        real = vault.client
        monkeypatch.setattr("hvac.Client", lambda **kw: seen.append(kw.get("verify")) or real(**kw))
        VaultAppKV()
        assert seen and all(v is True for v in seen)

    def test_http_with_a_ca_is_refused_before_any_request(self, vault, flags, juju):
        vault.endpoint.vault_ca = self.PEM
        with pytest.raises(vault_kv.VaultMisconfigured, match="https"):
            VaultAppKV()
        assert vault.requests == []  # no credential went out in clear

    def test_the_client_takes_nothing_from_the_environment_and_follows_no_redirect(self, vault, monkeypatch):
        monkeypatch.setenv("VAULT_TOKEN", "ambient")
        VaultAppKV()
        options = vault.client_options
        assert options["token"] == "" and options["allow_redirects"] is False
        assert options["session"].trust_env is False


class TestLeaderOnlyAppWrites:
    def test_a_non_leader_write_is_refused_and_nothing_is_written(self, vault, juju):
        juju["leader"] = False
        vault.data["charm-app/kv/app"] = {"encryption_key": "K"}
        kv = VaultAppKV()
        with pytest.raises(vault_kv.VaultAppKVNotLeader):
            kv["encryption_key"] = "REPLACED"
        with pytest.raises(vault_kv.VaultAppKVNotLeader):
            kv.delete("encryption_key")
        assert vault.data["charm-app/kv/app"] == {"encryption_key": "K"}
        assert kv["encryption_key"] == "K"

    def test_leadership_is_asked_again_once_its_answer_is_older_than_juju_guarantees(self, vault, juju, monkeypatch):
        now = [1000.0]
        monkeypatch.setattr(vault_kv_store.time, "monotonic", lambda: now[0])
        kv = VaultAppKV()
        kv["a"] = 1
        juju["leader"] = False  # leadership moved during a long hook
        kv["b"] = 2  # within the lease Juju granted: still ours
        now[0] += vault_kv_store.LEADERSHIP_TRUSTED_SECONDS + 1
        with pytest.raises(vault_kv.VaultAppKVNotLeader):
            kv["c"] = 3
        assert vault.data[APP] == {"a": 1, "b": 2}

    def test_unit_data_stays_writable_by_every_unit(self, vault, juju):
        juju["leader"] = False
        VaultUnitKV()["mine"] = 1
        assert vault.data["charm-app/kv/unit/0"] == {"mine": 1}


class TestLostWrites:
    """kv v1 has no check-and-set: a write made from an older read drops keys; the exit read-back restores them."""

    def test_a_key_dropped_by_another_writer_is_written_back_once(self, vault, juju):
        vault.data[APP] = {"a": 1}
        others_may_write()
        kv = VaultAppKV()
        kv["mine"] = "M"
        vault.data[APP] = {"a": 1, "theirs": "T"}  # another writer, from a read before ours
        assert kv.restore_lost_writes() == ["mine"]
        assert vault.data[APP] == {"a": 1, "theirs": "T", "mine": "M"}
        assert dict(kv) == vault.data[APP]
        assert "layer.vault-kv.app-kv.set.theirs" in vault_kv_flags()

    def test_a_value_another_writer_wrote_later_is_kept(self, vault, juju):
        others_may_write()
        kv = VaultAppKV()
        kv["k"] = "ours"
        vault.data[APP] = {"k": "theirs"}
        assert kv.restore_lost_writes() == []
        assert vault.data[APP] == {"k": "theirs"} and kv["k"] == "theirs"

    def test_nothing_written_nothing_read(self, vault, juju):
        kv = VaultAppKV()
        before = len(vault.requests)
        assert kv.restore_lost_writes() == []
        assert len(vault.requests) == before


class TestHashesAndFlags:
    def test_hash_is_md5_of_sorted_json(self):
        value = {"b": 1, "a": [1, "x"]}
        expected = hashlib.md5(json.dumps(value, sort_keys=True).encode("utf8")).hexdigest()
        assert vault_kv_hashing.value_hash(value) == expected

    def test_without_usedforsecurity_python_38_still_hashes(self, monkeypatch):
        real_md5 = hashlib.md5

        def md5_of_python_38(data=b"", **kwargs):
            if kwargs:
                raise TypeError("md5() takes no keyword arguments")
            return real_md5(data)

        monkeypatch.setattr(hashlib, "md5", md5_of_python_38)
        assert vault_kv_hashing.value_hash("x") == real_md5(b'"x"').hexdigest()

    @pytest.mark.skipif(sys.version_info < (3, 9), reason="usedforsecurity exists from Python 3.9")
    def test_md5_is_asked_for_as_not_for_security(self, monkeypatch):
        real_md5 = hashlib.md5

        def fips_md5(data=b"", **kwargs):
            if kwargs.get("usedforsecurity") is not False:
                raise ValueError("[digital envelope routines] unsupported")
            return real_md5(data, **kwargs)

        monkeypatch.setattr(hashlib, "md5", fips_md5)
        assert len(vault_kv_hashing.value_hash("x")) == 32

    def test_hashes_are_written_at_exit_and_only_when_changed(self, vault):
        kv = VaultAppKV()
        kv["a"] = "v"
        kv.update_hashes()
        assert vault.data[HASHES] == {"a": vault_kv_hashing.value_hash("v")}
        writes = vault.count("write")
        kv.update_hashes()
        assert vault.count("write") == writes

    def test_hashes_vault_refuses_for_size_are_kept_locally_and_no_key_reads_as_changed_again(self, vault, flags):
        """The hashes (two strings a key) can exceed a limit the data passed; nothing is lost for it."""

        def refuse_hashes(kind, path):
            if kind == "write" and path == HASHES:
                raise hvac_errors.InvalidRequest("request exceeded maximum complexity")

        vault.on_request = refuse_hashes
        kv = VaultAppKV()
        kv.update({"k{}".format(n): n for n in range(3)})
        kv.update_hashes()  # does not raise
        assert HASHES not in vault.data
        for flag in [f for f in flags if f.startswith("layer.vault-kv.app-kv.changed")]:
            flags.discard(flag)  # the charm handled them
        new_hook()
        VaultAppKV()
        assert not [f for f in flags if f.startswith("layer.vault-kv.app-kv.changed")]
        vault.on_request = None
        new_hook()
        VaultAppKV().update_hashes()  # Vault's copy is written once it accepts it
        assert set(vault.data[HASHES]) == {"k0", "k1", "k2"}

    def test_set_and_changed_flags_follow_the_data(self, vault, flags):
        kv = VaultAppKV()
        kv["a"] = 1
        assert {
            "layer.vault-kv.app-kv.set.a",
            "layer.vault-kv.app-kv.changed.a",
            "layer.vault-kv.app-kv.changed",
        } <= flags
        kv.delete("a")
        assert "layer.vault-kv.app-kv.set.a" not in flags

    def test_second_unit_sees_changed_flags_until_it_records_hashes(self, vault, flags, juju):
        VaultAppKV()["encryption_key"] = "K"
        VaultAppKV().update_hashes()
        # unit 1 of the same application, its first hook after the leader wrote
        juju["unit"], juju["leader"] = "app/1", False
        new_unitdata()
        vault.roles["role-app-1"] = "secret-app-1"
        vault.wrapped["token-app-1"] = "secret-app-1"
        vault.endpoint.unit_role_id, vault.endpoint.all_unit_tokens = "role-app-1", ["token-app-1"]
        flags.clear()
        new_hook()
        kv = VaultAppKV()
        assert kv.is_changed("encryption_key") and kv.any_changed()
        assert {"layer.vault-kv.app-kv.changed.encryption_key", "layer.vault-kv.app-kv.set.encryption_key"} <= flags
        kv.update_hashes()
        flags.clear()
        new_hook()
        kv = VaultAppKV()
        assert not kv.any_changed()
        assert "layer.vault-kv.app-kv.changed.encryption_key" not in flags
        assert "layer.vault-kv.app-kv.set.encryption_key" in flags

    def test_a_key_removed_by_another_unit_clears_its_set_flag(self, vault, flags):
        vault.data[APP] = {"a": 1}
        VaultAppKV().update_hashes()
        assert "layer.vault-kv.app-kv.set.a" in flags
        vault.data[APP] = {"b": 2}
        new_hook()
        kv = VaultAppKV()
        assert "layer.vault-kv.app-kv.set.a" not in flags
        assert kv.is_changed("a")

    def test_a_change_seen_on_the_reread_raises_its_flag(self, vault, flags):
        vault.data[APP] = {"a": 1}
        others_may_write()
        kv = VaultAppKV()
        kv.update_hashes()
        flags.clear()
        vault.data[APP] = {"a": 2}
        kv["b"] = 1
        assert "layer.vault-kv.app-kv.changed.a" in flags

    def test_data_digest_tracks_values(self, vault):
        kv = VaultAppKV()
        before = kv.data_digest()
        kv["a"] = 1
        assert kv.data_digest() != before


class TestUnitKV:
    def test_unit_data_lives_under_the_unit_number(self, vault):
        VaultUnitKV()["x"] = {"y": 1}
        assert vault.data["charm-app/kv/unit/0"] == {"x": {"y": 1}}
        new_hook()
        assert VaultUnitKV()["x"] == {"y": 1}


class TestOptions:
    def write_layer_yaml(self, juju, options):
        (juju["charm_dir"] / "layer.yaml").write_text(json.dumps({"options": {"vault-kv": options}}))

    def test_default_is_the_legacy_name_and_unit_name(self, juju):
        assert vault_kv_options.secret_backend_name() == "charm-app"
        assert vault_kv_options.vault_unit_name() == "app/0"

    def test_model_scoped_format(self, juju):
        self.write_layer_yaml(juju, {"secrets-backend-format": "charm-{model-uuid}-{app}"})
        assert vault_kv_options.secret_backend_name() == "charm-0b5e1b6a-0000-4000-8000-00000000000a-app"
        assert vault_kv_options.vault_unit_name() == "0b5e1b6a-0000-4000-8000-00000000000a-app/0"
        assert vault_kv_options.legacy_backend_name() == "charm-app"

    @pytest.mark.parametrize(
        "template",
        [
            "charm-{unit}",
            "vault-{app}",
            "kv-{app}",
            "",
            42,
            "charm-{model-uuid}",  # every application of the model would share one backend
            "charm-{app}/x",
            "charm-../{app}",
            "charm-{app}#x",
            "charm-{app}?x",
            "charm {app}",
            "Charm-{app}",
        ],
    )
    def test_bad_format_is_a_clear_error(self, juju, template):
        self.write_layer_yaml(juju, {"secrets-backend-format": template})
        with pytest.raises(vault_kv.VaultMisconfigured, match="secrets-backend-format"):
            vault_kv_options.secret_backend_name()
        vault_kv._get_secret_backend()  # what kubernetes-control-plane calls on upgrade-charm never raises

    @pytest.mark.parametrize("uuid", [None, "", "not-a-uuid"])
    def test_a_missing_or_invalid_model_uuid_is_a_clear_error_not_charm__app(self, juju, uuid):
        self.write_layer_yaml(juju, {"secrets-backend-format": "charm-{model-uuid}-{app}"})
        hookenv.model_uuid.side_effect = lambda: uuid
        with pytest.raises(vault_kv.VaultMisconfigured, match="model UUID"):
            vault_kv_options.secret_backend_name()


class TestErrorTranslation:
    """Every failure the session can meet becomes a layer exception that says which."""

    @pytest.mark.parametrize(
        "raised, words",
        [
            (hvac_errors.VaultNotInitialized("x"), "not initialised"),
            (hvac_errors.InternalServerError("x"), "internal error"),
            (hvac_errors.BadGateway("x"), "502"),
            (hvac_errors.UnexpectedError("x"), "unexpected"),
            (hvac_errors.RateLimitExceeded("x"), "rate-limiting"),
            (requests.exceptions.Timeout("x"), "cannot connect"),
            (hvac_errors.InvalidPath("x"), "no such path"),
            (hvac_errors.InvalidRequest("x"), "rejected the request"),
        ],
    )
    def test_transient_failures_are_not_ready(self, raised, words):
        with pytest.raises(VaultNotReady) as caught:
            with vault_kv_session.translate_errors("reading charm-app/kv/app"):
                raise raised
        assert words in str(caught.value) and "charm-app/kv/app" in str(caught.value)
        assert not isinstance(caught.value, VaultCredentialsInvalid)

    @pytest.mark.parametrize("raised", [hvac_errors.InvalidRequest("x"), hvac_errors.Forbidden("x")])
    def test_refusals_at_login_are_credentials_invalid(self, raised):
        with pytest.raises(VaultCredentialsInvalid):
            with vault_kv_session.translate_errors("logging in", login=True):
                raise raised

    def test_a_403_outside_login_is_left_to_the_session(self):
        with pytest.raises(hvac_errors.Forbidden):
            with vault_kv_session.translate_errors("reading x"):
                raise hvac_errors.Forbidden("x")


class TestEveryDictMutator:
    """Every way Python's dict can change a mapping either reaches Vault or raises."""

    MUTATIONS = {
        "__setitem__": lambda kv: kv.__setitem__("n", 1),
        "__delitem__": lambda kv: kv.__delitem__("a"),
        "update": lambda kv: kv.update(n=1),
        "setdefault": lambda kv: kv.setdefault("n", 1),
        "pop": lambda kv: kv.pop("a"),
        "clear": lambda kv: kv.clear(),
        "__ior__": lambda kv: kv.__ior__({"n": 1}),
        "set": lambda kv: kv.set("n", 1),
        "delete": lambda kv: kv.delete("a"),
    }
    REFUSED = {"popitem": lambda kv: kv.popitem()}

    def test_the_list_covers_every_mutating_method_of_dict(self):
        mutating = {"__setitem__", "__delitem__", "update", "setdefault", "pop", "popitem", "clear", "__ior__"}
        assert mutating <= set(self.MUTATIONS) | set(self.REFUSED)
        assert mutating <= set(dir(dict)) | {"__ior__"}

    @pytest.mark.parametrize("name", sorted(MUTATIONS))
    def test_each_persists(self, vault, name):
        vault.data[APP] = {"a": 0, "b": 2}
        kv = VaultAppKV()
        self.MUTATIONS[name](kv)
        assert vault.data.get(APP, {}) == dict(kv)
        assert dict(kv) != {"a": 0, "b": 2}

    def test_in_place_or_persists(self, vault):
        kv = VaultAppKV()
        kv |= {"x": 1}
        assert vault.data[APP] == {"x": 1} and isinstance(kv, VaultAppKV)

    def test_popitem_raises_and_fromkeys_builds_no_store(self, vault):
        vault.data[APP] = {"a": 0}
        kv = VaultAppKV()
        with pytest.raises(NotImplementedError):
            kv.popitem()
        made = VaultAppKV.fromkeys(["z"], 1)
        assert type(made) is dict and vault.data[APP] == {"a": 0}
