"""The reactive handlers, with charms.unit_test's mocked flags."""

import json

import pytest
from charmhelpers.core import hookenv

from charms.layer import vault_kv
from tests.support.loading import load_reactive
from tests.unit.fake_vault import FakeRelation

handlers = load_reactive("vault_kv")

APP = "charm-app/kv/app"
READY = "layer.vault-kv.ready"
SET_KEY = "layer.vault-kv.app-kv.set.encryption_key"


def new_hook():
    vault_kv.reset_cached_state()


@pytest.fixture
def connected(vault, flags):
    flags.update({"vault-kv.connected", "vault-kv.available"})
    return vault


class TestRequest:
    def test_legacy_build_requests_charm_app_as_the_juju_unit(self, connected, flags):
        handlers.request_vault_access()
        assert connected.endpoint.requests == [{"secret_backend": "charm-app", "isolated": False, "unit_name": "app/0"}]
        assert "layer.vault-kv.requested" in flags

    def test_model_scoped_build_requests_its_own_backend_and_unit_name(self, connected, flags, juju):
        options = {"options": {"vault-kv": {"secrets-backend-format": "charm-{model-uuid}-{app}"}}}
        (juju["charm_dir"] / "layer.yaml").write_text(json.dumps(options))
        handlers.request_vault_access()
        request = connected.endpoint.requests[-1]
        assert request["secret_backend"] == "charm-0b5e1b6a-0000-4000-8000-00000000000a-app"
        assert request["unit_name"] == "0b5e1b6a-0000-4000-8000-00000000000a-app/0"

    def test_bad_option_blocks_with_a_clear_message_and_requests_nothing(self, connected, flags, juju):
        (juju["charm_dir"] / "layer.yaml").write_text(
            json.dumps({"options": {"vault-kv": {"secrets-backend-format": "kv-{app}"}}})
        )
        handlers.request_vault_access()
        assert connected.endpoint.requests == []
        assert "layer.vault-kv.requested" not in flags
        assert juju["status"][0] == "blocked" and "charm-" in juju["status"][1]

    @pytest.mark.parametrize("template", ["kv-{app}", "charm-{unit}"])
    def test_bad_option_on_a_fresh_deploy_is_what_the_operator_sees(self, connected, flags, juju, template):
        # Vault has not granted this unit anything yet: the wait for it must not hide the option's fault
        connected.endpoint.unit_role_id = None
        (juju["charm_dir"] / "layer.yaml").write_text(
            json.dumps({"options": {"vault-kv": {"secrets-backend-format": template}}})
        )
        handlers.derive_app_kv_flags()
        handlers.request_vault_access()
        handlers.update_ready()
        handlers.record_app_kv_hashes()
        assert READY not in flags
        assert juju["status"][0] == "blocked" and "secrets-backend-format" in juju["status"][1]

    def test_bad_option_after_an_upgrade_blocks_every_hook_and_starts_no_move(
        self, connected, flags, juju, unitdata_kv
    ):
        handlers.request_vault_access()
        handlers.update_ready()
        assert READY in flags
        (juju["charm_dir"] / "layer.yaml").write_text(
            json.dumps({"options": {"vault-kv": {"secrets-backend-format": "charm-{unit}"}}})
        )
        for _ in range(2):  # every hook, not only the first
            new_hook()
            handlers.derive_app_kv_flags()  # hook start: no exception
            handlers.request_again_if_changed()
            handlers.request_vault_access()
            handlers.update_ready()
            handlers.record_app_kv_hashes()
            assert READY not in flags
            assert juju["status"][0] == "blocked" and "secrets-backend-format" in juju["status"][1]
            assert "layer.vault-kv.migration.in-progress" not in flags
            assert "layer.vault-kv.legacy-credentials" not in unitdata_kv

    def test_a_new_build_with_another_backend_requests_again(self, connected, flags, juju, unitdata_kv):
        handlers.request_vault_access()
        handlers.request_again_if_changed()
        assert "layer.vault-kv.requested" in flags
        options = {"options": {"vault-kv": {"secrets-backend-format": "charm-{model-uuid}-{app}"}}}
        (juju["charm_dir"] / "layer.yaml").write_text(json.dumps(options))
        handlers.request_again_if_changed()
        assert "layer.vault-kv.requested" not in flags

    def test_a_vault_relation_joined_after_the_request_gets_it_too(self, connected, flags):
        """Relating to a second vault application before removing the first: the new relation carries no
        request until the unit asks again, and without it that Vault never answers this unit."""
        handlers.request_vault_access()
        handlers.request_again_if_changed()
        assert "layer.vault-kv.requested" in flags  # nothing new: no request again
        connected.endpoint.relations.append(FakeRelation())
        handlers.request_again_if_changed()
        assert "layer.vault-kv.requested" not in flags
        handlers.request_vault_access()
        assert [r.to_publish.get("secret_backend") for r in connected.endpoint.relations] == ["charm-app"] * 2


class TestReady:
    def test_ready_comes_with_the_app_kv_flags_already_derived(self, connected, flags):
        connected.data[APP] = {"encryption_key": "K"}
        handlers.update_ready()
        assert READY in flags and SET_KEY in flags

    @pytest.mark.parametrize("fault", ["sealed", "down"])
    def test_outage_at_hook_start_keeps_set_flags_and_clears_ready(self, connected, flags, juju, fault):
        connected.data[APP] = {"encryption_key": "K"}
        handlers.update_ready()
        vault_kv.VaultAppKV().update_hashes()
        assert READY in flags and SET_KEY in flags
        new_hook()
        setattr(connected, fault, True)
        handlers.derive_app_kv_flags()
        handlers.update_ready()
        assert READY not in flags
        assert SET_KEY in flags  # no charm is invited to generate a new key
        assert juju["status"][0] == "waiting"
        assert "K" not in juju["status"][1].replace("vault-kv", "")

    def test_recovery_restores_ready_and_takes_down_only_our_status(self, connected, flags, juju, unitdata_kv):
        connected.sealed = True
        handlers.update_ready()
        assert juju["status"][0] == "waiting"
        connected.sealed = False
        new_hook()
        handlers.update_ready()
        assert READY in flags
        assert juju["status"] == ("active", "vault-kv: ready")

    def test_recovery_leaves_a_status_the_charm_set(self, connected, flags, juju):
        connected.sealed = True
        handlers.update_ready()
        juju["status"] = ("blocked", "charm: needs config")
        connected.sealed = False
        new_hook()
        handlers.update_ready()
        assert juju["status"] == ("blocked", "charm: needs config")

    def test_refused_credentials_block(self, connected, flags, juju):
        connected.roles["role-app-0"] = "rotated"
        handlers.update_ready()
        assert READY not in flags
        assert juju["status"][0] == "blocked"

    def test_relation_data_gone_clears_ready(self, connected, flags, juju):
        flags.add(READY)
        flags.discard("vault-kv.available")
        connected.endpoint.vault_url = None
        new_hook()
        handlers.update_ready()
        assert READY not in flags
        assert juju["status"][0] == "waiting"

    def test_relation_removed_clears_every_layer_flag(self, connected, flags):
        connected.data[APP] = {"encryption_key": "K"}
        handlers.update_ready()
        flags.add("layer.vault-kv.requested")
        handlers.relation_gone()
        assert not [f for f in flags if f.startswith("layer.vault-kv.")]

    def test_config_changed_is_raised_once_per_change(self, connected, flags, unitdata_kv):
        handlers.check_config_changed()
        assert "layer.vault-kv.config.changed" in flags
        flags.discard("layer.vault-kv.config.changed")
        handlers.check_config_changed()
        assert "layer.vault-kv.config.changed" not in flags


class TestHookExit:
    def test_leader_records_hashes_and_nudges_the_others(self, connected, juju):
        kv = vault_kv.VaultAppKV()
        kv["encryption_key"] = "K"
        handlers.record_app_kv_hashes()
        assert "charm-app/kv/app-hashes/0" in connected.data
        assert juju["leader_data"]["vault-kv-nonce"] == kv.data_digest()

    def test_non_leader_records_hashes_without_leader_set(self, connected, juju):
        juju["leader"] = False
        connected.data[APP] = {"encryption_key": "K"}
        vault_kv.VaultAppKV()
        handlers.record_app_kv_hashes()
        assert "charm-app/kv/app-hashes/0" in connected.data
        assert juju["leader_data"] == {}

    def test_unchanged_hook_writes_nothing(self, connected, juju):
        connected.data[APP] = {"encryption_key": "K"}
        vault_kv.VaultAppKV().update_hashes()
        assert juju["leader_data"] == {"vault-kv-backend": "charm-app"}  # recorded once, by the first hook
        new_hook()
        before = list(connected.requests)
        handlers.derive_app_kv_flags()
        handlers.record_app_kv_hashes()
        added = connected.requests[len(before) :]
        assert [kind for kind, _ in added] == ["login", "read"]  # seen hashes come from the local copy
        # the leader publishes the digest of what it recorded once, so that other units need not ask
        assert juju["leader_data"]["vault-kv-nonce"] == vault_kv.VaultAppKV().data_digest()
        calls = hookenv.leader_set.call_count
        new_hook()
        handlers.derive_app_kv_flags()
        handlers.record_app_kv_hashes()
        assert hookenv.leader_set.call_count == calls

    def test_a_hook_reads_vaults_hashes_only_when_its_local_copy_is_missing(self, connected, unitdata_kv):
        connected.data[APP] = {"encryption_key": "K"}
        vault_kv.VaultAppKV().update_hashes()
        unitdata_kv.pop("layer.vault-kv.seen-hashes-at")
        new_hook()
        before = len(connected.requests)
        handlers.derive_app_kv_flags()
        assert [kind for kind, _ in connected.requests[before:]] == ["login", "read", "read"]


class TestRequestCounts:
    """The cost of a hook in Vault requests: only the leader writes app data, so its writes need no
    re-read before and no read-back after (issue 19: 4 / 13, and 4 for 100 keys at once)."""

    def steady(self, connected):
        connected.data[APP] = {"encryption_key": "K"}
        vault_kv.VaultAppKV().update_hashes()
        new_hook()
        return len(connected.requests)

    def hook_cost(self, connected, body, before):
        handlers.derive_app_kv_flags()
        body()
        handlers.record_app_kv_hashes()
        return [kind for kind, _ in connected.requests[before:]]

    def test_steady_hook_costs_a_login_and_one_read(self, connected):
        before = self.steady(connected)
        assert self.hook_cost(connected, lambda: None, before) == ["login", "read"]

    def test_setting_one_key_costs_four(self, connected):
        before = self.steady(connected)
        cost = self.hook_cost(connected, lambda: vault_kv.VaultAppKV().set("k0", 0), before)
        # the data read at hook start, the write, the hashes at exit
        assert cost == ["login", "read", "write", "write"]

    def test_ten_keys_one_after_another_cost_thirteen(self, connected):
        before = self.steady(connected)

        def body():
            for n in range(10):
                vault_kv.VaultAppKV()["k{}".format(n)] = n

        assert len(self.hook_cost(connected, body, before)) == 13
        assert len(connected.data[APP]) == 11  # and no key was lost on the way

    def test_a_hundred_keys_through_update_cost_four(self, connected):
        before = self.steady(connected)
        cost = self.hook_cost(
            connected, lambda: vault_kv.VaultAppKV().update({"k{}".format(n): n for n in range(100)}), before
        )
        assert len(cost) == 4 and len(connected.data[APP]) == 101

    def test_exit_never_loads_the_store_itself(self, connected):
        handlers.record_app_kv_hashes()
        assert connected.requests == []

    def test_outage_at_exit_is_logged_not_raised(self, connected):
        vault_kv.VaultAppKV()["a"] = 1
        connected.down = True
        handlers.record_app_kv_hashes()  # must not raise
        assert any("hashes not recorded" in str(c) for c in hookenv.log.call_args_list)


class TestA404ThatHidesData:
    """A proxy or a lagging replica answers 404 for kv/app while it holds data: no flag moves, nothing is lost."""

    STORED = {"encryption_key": "K", "other": "O"}

    def steady(self, connected, flags):
        connected.data[APP] = dict(self.STORED)
        handlers.derive_app_kv_flags()
        handlers.update_ready()
        handlers.record_app_kv_hashes()
        for flag in [f for f in flags if ".changed" in f]:
            flags.discard(flag)
        new_hook()

    def generate_if_unset(self, flags):
        """What kubernetes-control-plane's generate_encryption_key does, on the leader."""
        if READY in flags and SET_KEY not in flags:
            try:
                vault_kv.VaultAppKV()["encryption_key"] = "NEW"
            except vault_kv.VaultNotReady:
                pass

    def test_a_404_at_hook_start_is_waiting_and_moves_no_flag(self, connected, flags, juju):
        self.steady(connected, flags)
        before = set(flags)
        connected.hidden.append(APP)
        handlers.derive_app_kv_flags()
        handlers.update_ready()
        self.generate_if_unset(flags)
        handlers.record_app_kv_hashes()
        assert connected.data[APP] == self.STORED  # nothing written over it
        assert flags == before - {READY}
        assert juju["status"][0] == "waiting" and "K" not in juju["status"][1].replace("vault-kv", "")
        connected.hidden.clear()  # the proxy recovers: the next hook is as before, nothing changed
        new_hook()
        handlers.derive_app_kv_flags()
        handlers.update_ready()
        assert flags == before and not any(".changed" in f for f in flags)

    def test_a_404_on_a_unit_that_never_recorded_but_the_leader_published_data(
        self, connected, flags, juju, unitdata_kv
    ):
        self.steady(connected, flags)
        assert juju["leader_data"].get("vault-kv-nonce")  # the leader told the others that there is data
        # a unit that has recorded nothing yet (it joined after the data was written)
        for key in [k for k in unitdata_kv if "seen-hashes" in k]:
            unitdata_kv.unset(key)
        connected.data.pop("charm-app/kv/app-hashes/0")
        flags.clear()
        flags.update({"vault-kv.connected", "vault-kv.available"})
        connected.hidden.append(APP)
        handlers.update_ready()
        assert READY not in flags and SET_KEY not in flags
        assert juju["status"][0] == "waiting"

    def test_a_404_when_rereading_before_a_write_writes_nothing(self, connected, flags):
        self.steady(connected, flags)
        from charms.layer.vault_kv import local_copies

        local_copies.set_awaited_keys(["awaited"])  # a non-leader may fill it: the leader reads again first
        kv = vault_kv.VaultAppKV()
        connected.hidden.append(APP)
        with pytest.raises(vault_kv.VaultNotReady):
            kv["third"] = "T"
        assert connected.data[APP] == self.STORED

    def test_a_404_when_reading_back_at_hook_exit_writes_nothing_back(self, connected, flags):
        self.steady(connected, flags)
        from charms.layer.vault_kv import local_copies

        local_copies.set_awaited_keys(["awaited"])  # a non-leader may fill it: the leader reads back at exit
        vault_kv.VaultAppKV()["third"] = "T"
        connected.hidden.append(APP)
        handlers.record_app_kv_hashes()
        assert connected.data[APP] == dict(self.STORED, third="T")

    def test_data_the_leader_emptied_is_believed_empty(self, connected, flags, juju):
        self.steady(connected, flags)
        vault_kv.VaultAppKV().clear()
        handlers.record_app_kv_hashes()
        assert APP not in connected.data
        new_hook()
        handlers.update_ready()
        assert READY in flags and SET_KEY not in flags


class TestQuietHooks:
    """Issue 19: a hook in which nothing changed costs Vault nothing; the leader's digest says what changed."""

    def hook(self, connected, body=lambda: None):
        """One hook of this unit: the layer's start, its handlers, the charm's ``body``, its exit."""
        new_hook()
        before = len(connected.requests)
        handlers.derive_app_kv_flags()
        handlers.update_ready()
        handlers.check_config_changed()
        body()
        handlers.record_app_kv_hashes()
        return [kind for kind, _ in connected.requests[before:]]

    def settled(self, connected, flags, juju):
        connected.data[APP] = {"encryption_key": "K"}
        handlers.request_vault_access()
        self.hook(connected)
        self.hook(connected)  # the leader's digest published, this unit's record matches it
        for flag in [f for f in flags if ".changed" in f]:
            flags.discard(flag)
        juju["status"] = ("active", "charm: ready")
        return set(flags)

    @pytest.mark.parametrize("leader", [True, False])
    def test_a_hook_in_which_nothing_changed_asks_vault_nothing(self, connected, flags, juju, leader):
        if not leader:
            juju["leader_data"]["vault-kv-nonce"] = None
        before = self.settled(connected, flags, juju)
        juju["leader"] = leader
        if not leader:  # the leader published the digest of the same data
            juju["leader_data"]["vault-kv-nonce"] = vault_kv.VaultAppKV().data_digest()
        for _ in range(3):
            assert self.hook(connected) == []
        assert flags == before and READY in flags
        assert juju["status"] == ("active", "charm: ready")

    def test_a_non_leader_told_of_a_change_asks_once_and_raises_the_changed_flags(self, connected, flags, juju):
        self.settled(connected, flags, juju)
        juju["leader"] = False
        connected.data[APP] = {"encryption_key": "K2"}  # the leader changed it ...
        juju["leader_data"]["vault-kv-nonce"] = "another-digest"  # ... and said so in leader data
        cost = self.hook(connected)
        assert cost == ["login", "read", "write"]  # the data, and this unit's hashes at exit
        assert "layer.vault-kv.app-kv.changed.encryption_key" in flags

    def test_the_hourly_freshness_check_asks_and_finds_a_change_made_behind_the_leaders_back(
        self, connected, flags, juju, monkeypatch
    ):
        from charms.layer.vault_kv import quiet_hooks

        self.settled(connected, flags, juju)
        connected.data[APP] = {"encryption_key": "K", "by-an-operator": "x"}
        assert self.hook(connected) == []
        later = quiet_hooks.time.time() + quiet_hooks.CHECK_EVERY_SECONDS + 1
        monkeypatch.setattr(quiet_hooks.time, "time", lambda: later)
        assert self.hook(connected)[:2] == ["login", "read"]
        assert "layer.vault-kv.app-kv.set.by-an-operator" in flags
        assert self.hook(connected) == []  # and quiet again for the next hour

    @pytest.mark.parametrize("fault", ["sealed", "down"])
    def test_a_freshness_check_vault_cannot_answer_moves_nothing(self, connected, flags, juju, monkeypatch, fault):
        from charms.layer.vault_kv import quiet_hooks

        before = self.settled(connected, flags, juju)
        later = quiet_hooks.time.time() + quiet_hooks.CHECK_EVERY_SECONDS + 1
        monkeypatch.setattr(quiet_hooks.time, "time", lambda: later)
        setattr(connected, fault, True)
        self.hook(connected)
        assert flags == before and juju["status"] == ("active", "charm: ready")
        setattr(connected, fault, False)
        assert self.hook(connected)[:2] == ["login", "read"]  # asked again, since it was not answered

    def test_a_change_vault_cannot_answer_is_waiting_and_keeps_the_set_flags(self, connected, flags, juju):
        self.settled(connected, flags, juju)
        juju["leader_data"]["vault-kv-nonce"] = "another-digest"
        connected.sealed = True
        self.hook(connected)
        assert READY not in flags and SET_KEY in flags
        assert juju["status"][0] == "waiting"

    def test_a_hook_that_died_after_writing_asks_vault_in_the_next(self, connected, flags, juju, unitdata_kv):
        self.settled(connected, flags, juju)
        new_hook()
        handlers.derive_app_kv_flags()
        saved = set(flags)
        vault_kv.VaultAppKV()["new"] = "N"  # the write reached Vault ...
        flags.clear()
        flags.update(saved)  # ... then the hook died: its flags were rolled back, not the pending mark
        assert unitdata_kv.get("layer.vault-kv.write-pending")
        assert self.hook(connected)[:2] == ["login", "read"]
        assert "layer.vault-kv.app-kv.set.new" in flags

    def test_new_credentials_on_the_relation_are_tried_at_once(self, connected, flags, juju):
        self.settled(connected, flags, juju)
        connected.endpoint.vault_url = "http://10.0.0.2:8200"
        assert self.hook(connected)[:2] == ["login", "read"]

    def test_a_charm_that_reads_a_value_in_a_quiet_hook_gets_it_from_vault(self, connected, flags, juju):
        self.settled(connected, flags, juju)
        seen = []
        cost = self.hook(connected, lambda: seen.append(vault_kv.VaultAppKV()["encryption_key"]))
        assert seen == ["K"] and cost[:2] == ["login", "read"]
