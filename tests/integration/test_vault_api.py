"""The layer's library against a real OpenBao, reached through real relation data.

Each test deploys the consumer charm next to the simulated vault application
(which does in OpenBao what the vault charm does) and then runs the library
inside a simulated hook of a unit, with the real charmhelpers and
charms.reactive.  What reached Vault is read back with the root token.
"""

import time

import hvac
import pytest

from charms.layer import vault_kv
from tests.support.deployment import SnapshotDeployment

APP = "kubernetes-control-plane"
LEADER, OTHER = APP + "/0", APP + "/1"


def logins_since(bao, mark):
    return sum(1 for e in bao.requests_since(mark) if e["request"]["path"] == "auth/approle/login")


def approle_name(model, unit):
    return "charm-{}-{}".format(model, unit.replace("/", "-"))


@pytest.fixture(scope="module")
def as_deployed(charms, tmp_path_factory):
    """One 2-unit deployment for the module (its own single-node raft OpenBao), stopped at the end."""
    deployment = SnapshotDeployment(charms, tmp_path_factory.mktemp("vault-api"))
    yield deployment
    deployment.cleanup()


@pytest.fixture
def deployed(as_deployed):
    """The deployment as it was made: Vault's storage and the simulated controller put back."""
    return as_deployed.fresh(), as_deployed.model


def test_secret_id_comes_from_the_one_shot_token_which_is_then_spent(deployed):
    cluster, model = deployed
    stored = cluster.controller.unitdata(model, LEADER)
    assert stored["layer.vault-kv.secret_id"]
    token = stored["layer.vault-kv.token"]
    client = hvac.Client(url=cluster.bao.url, token=token)
    with pytest.raises(hvac.exceptions.InvalidRequest):
        client.sys.unwrap()


def test_spent_token_and_no_stored_secret_id_is_credentials_invalid(deployed):
    cluster, model = deployed
    with cluster.controller.in_hook(model, OTHER):
        from charmhelpers.core import unitdata

        unitdata.kv().unset("layer.vault-kv.secret_id")
        unitdata.kv().unset("layer.vault-kv.token")
        unitdata.kv().unset("layer.vault-kv.seen-tokens")
        unitdata.kv().unset("layer.vault-kv.credential-book")
        unitdata.kv().unset("reactive.data_changed.layer.vault-kv.token")
        with pytest.raises(vault_kv.VaultCredentialsInvalid, match="already used"):
            vault_kv.get_vault_config()


def test_app_and_unit_data_round_trip_between_units(deployed):
    cluster, model = deployed
    backend = cluster.new_backend(model)
    with cluster.controller.in_hook(model, LEADER):
        vault_kv.VaultAppKV()["settings"] = {"replicas": 3, "labels": ["a", "b"]}
        vault_kv.VaultUnitKV()["mine"] = "unit-0 only"
    assert cluster.bao.read(backend + "/kv/app")["settings"] == {"replicas": 3, "labels": ["a", "b"]}
    assert cluster.bao.read(backend + "/kv/unit/0") == {"mine": "unit-0 only"}
    with cluster.controller.in_hook(model, OTHER):
        assert vault_kv.VaultAppKV()["settings"] == {"replicas": 3, "labels": ["a", "b"]}
        assert "mine" not in vault_kv.VaultUnitKV()


def test_many_keys_set_one_after_another_are_all_in_vault(deployed):
    cluster, model = deployed
    backend = cluster.new_backend(model)
    key = cluster.vault_fingerprint(backend)
    with cluster.controller.in_hook(model, LEADER):
        kv = vault_kv.VaultAppKV()
        for n in range(20):
            kv["k{}".format(n)] = n
    stored = cluster.bao.read(backend + "/kv/app")
    assert {k: stored[k] for k in stored if k.startswith("k")} == {"k{}".format(n): n for n in range(20)}
    assert cluster.vault_fingerprint(backend) == key


def test_one_login_per_hook(deployed):
    cluster, model = deployed
    mark = cluster.bao.mark()
    with cluster.controller.in_hook(model, LEADER):
        kv = vault_kv.VaultAppKV()
        kv["a"] = 1
        kv["b"] = 2
        vault_kv.VaultUnitKV()["c"] = 3
        kv.update_hashes()
    assert logins_since(cluster.bao, mark) == 1


def test_token_expiry_mid_hook_is_handled_by_one_relogin(deployed):
    cluster, model = deployed
    root = cluster.bao.root_client()
    name = approle_name(model, LEADER)
    root.auth.approle.create_or_update_approle(name, token_ttl="2s", token_max_ttl="2s")
    mark = cluster.bao.mark()
    with cluster.controller.in_hook(model, LEADER):
        kv = vault_kv.VaultAppKV()
        time.sleep(3)  # the token of this hook's login expires
        kv["after-expiry"] = True
    assert logins_since(cluster.bao, mark) == 2
    assert cluster.bao.read(cluster.new_backend(model) + "/kv/app")["after-expiry"] is True


def test_a_policy_that_does_not_grant_the_path_is_not_ready(deployed):
    cluster, model = deployed
    root = cluster.bao.root_client()
    name = approle_name(model, OTHER)
    root.sys.create_or_update_policy(name, 'path "charm-elsewhere/*" { capabilities = ["read"] }')
    with cluster.controller.in_hook(model, OTHER):
        with pytest.raises(vault_kv.VaultNotReady, match="does not grant reading"):
            vault_kv.VaultAppKV()
    cluster.make_next_hooks_ask_vault(model)  # a hook that must ask (a quiet one asks nothing)
    cluster.controller.queue(model, OTHER, "update-status")
    cluster.settle()
    assert "layer.vault-kv.ready" not in cluster.flags(model, OTHER)
    assert "layer.vault-kv.app-kv.set.encryption_key" in cluster.flags(model, OTHER)
    assert cluster.controller.status(model, OTHER)["status"] == "waiting"


@pytest.mark.parametrize("outage", ["sealed", "stopped"])
def test_outage_gives_not_ready_without_flag_flapping_or_a_new_key(cluster_for, make_bao, outage):
    bao = make_bao()
    cluster = cluster_for(bao)
    model = cluster.add_model("k8s", units=2)
    cluster.settle()
    key = cluster.vault_fingerprint(cluster.new_backend(model))
    restarts = {unit: cluster.key_changes(model, unit) for unit in cluster.units(model)}
    cluster.make_next_hooks_ask_vault(model)  # hooks that must ask; while nothing changes: test_vault_api.py (issue 19)
    bao.seal() if outage == "sealed" else bao.stop()
    for unit in cluster.units(model):
        cluster.controller.queue(model, unit, "update-status")
    cluster.settle()  # hooks must not fail
    for unit in cluster.units(model):
        flags = cluster.flags(model, unit)
        assert "layer.vault-kv.ready" not in flags
        assert "layer.vault-kv.app-kv.set.encryption_key" in flags  # nothing invites a new key
        # the charm's own final status (waiting for Vault) is shown; the layer logs why
        assert cluster.controller.status(model, unit)["status"] == "waiting"
        reason = "sealed" if outage == "sealed" else "cannot connect"
        assert "app data not read at hook start: " in cluster.controller.log(model, unit)
        assert reason in cluster.controller.log(model, unit).split("app data not read at hook start: ")[-1]
    assert set(cluster.file_fingerprints(model).values()) == {key}
    if outage == "sealed":
        bao.unseal()
        for unit in cluster.units(model):
            cluster.controller.queue(model, unit, "update-status")
        cluster.settle()
        assert cluster.vault_fingerprint(cluster.new_backend(model)) == key
        leaked = cluster.key_leaked(model, cluster.new_backend(model))
        assert not leaked, "the key appears in a unit's log or status"
        for unit in cluster.units(model):
            assert "layer.vault-kv.ready" in cluster.flags(model, unit)
            assert cluster.key_changes(model, unit) == restarts[unit]  # no apiserver restart for an outage


def test_tls_with_vault_ca_works(cluster_for, make_bao):
    bao = make_bao(tls=True)
    cluster = cluster_for(bao)
    model = cluster.add_model("k8s", units=1)
    cluster.settle()
    assert "layer.vault-kv.ready" in cluster.flags(model, LEADER)
    assert cluster.vault_fingerprint(cluster.new_backend(model))


def test_tls_without_vault_ca_is_refused(cluster_for, make_bao):
    bao = make_bao(tls=True)
    cluster = cluster_for(bao)
    model = cluster.add_model("k8s", units=1)
    cluster.settle()
    with cluster.controller.in_hook(model, LEADER):
        from charms.layer.vault_kv.session import VaultSession

        config = vault_kv.get_vault_config()
        assert config["vault_ca"]
        config["vault_ca"] = None  # what a layer that ignores vault_ca would do
        with pytest.raises(vault_kv.VaultNotReady, match="TLS verification"):
            VaultSession(config).read(config["secret_backend"] + "/kv/app")


def test_a_write_over_vaults_size_limit_blocks_naming_the_limit_and_loses_nothing(deployed):
    cluster, model = deployed
    backend = cluster.new_backend(model)
    before = cluster.bao.read(backend + "/kv/app")
    with cluster.controller.in_hook(model, LEADER):
        from charmhelpers.core import hookenv

        kv = vault_kv.VaultAppKV()
        with pytest.raises(vault_kv.VaultOperatorActionNeeded, match="max_request_json_strings"):
            kv.update({"bulk-{}".format(n): "value {}".format(n) for n in range(600)})  # 1200 strings
        state, message = hookenv.status_get()
    assert cluster.bao.read(backend + "/kv/app") == before  # the store as it was: nothing half-written
    assert state == "blocked" and "max_request_json_strings" in message


def test_a_write_over_rafts_entry_limit_blocks_naming_the_limit_and_loses_nothing(deployed):
    """Raft refuses an entry over 1 MiB with a 500: not a transient "internal error", an operator's limit."""
    cluster, model = deployed
    backend = cluster.new_backend(model)
    before = cluster.bao.read(backend + "/kv/app")
    with cluster.controller.in_hook(model, LEADER):
        from charmhelpers.core import hookenv

        kv = vault_kv.VaultAppKV()
        with pytest.raises(vault_kv.VaultOperatorActionNeeded, match="max_entry_size"):
            kv["bulk"] = "x" * (1100 * 1024)
        state, message = hookenv.status_get()
    assert cluster.bao.read(backend + "/kv/app") == before
    assert state == "blocked" and "max_entry_size" in message and "internal error" not in message


# -- issue 19: Vault's load follows change, not time ----------------------------------------------
# A settled deployment's hooks in which nothing changed (update-status, every five minutes on every
# unit, forever) make no Vault request and import no hvac; a change the leader makes reaches every
# other unit in the first hook it runs after the leader-data change; a sealed Vault while nothing
# changes moves no flag and no status.  Requests are counted from OpenBao's audit log.


def observed(cluster, model):
    return {u: (set(cluster.flags(model, u)), cluster.controller.status(model, u)) for u in cluster.units(model)}


def hooks_log(cluster, model, unit):
    return cluster.controller.hooks_output(model, unit)


def test_hooks_in_which_nothing_changed_cost_vault_nothing_and_import_no_hvac(deployed):
    cluster, model = deployed
    cluster.update_status(model)  # the leader's digest published and recorded by every unit
    before = observed(cluster, model)
    mark = cluster.bao.mark()
    cluster.controller.hook_env["PYTHONPROFILEIMPORTTIME"] = "1"  # each hook lists its imports on stderr
    try:
        logs = {u: len(hooks_log(cluster, model, u)) for u in cluster.units(model)}
        for _ in range(3):
            cluster.update_status(model)
    finally:
        del cluster.controller.hook_env["PYTHONPROFILEIMPORTTIME"]
    assert cluster.bao.requests_since(mark) == []
    assert observed(cluster, model) == before
    for unit, offset in logs.items():
        imports = hooks_log(cluster, model, unit)[offset:]
        assert "charms.reactive" in imports  # the import list was recorded ...
        assert "| hvac" not in imports and "| requests" not in imports  # ... and Vault's client was not needed


def test_a_change_reaches_the_other_unit_in_its_first_hook_for_at_most_three_requests(deployed):
    cluster, model = deployed
    cluster.update_status(model)  # the leader's digest published and recorded by every unit
    with cluster.controller.in_hook(model, LEADER):
        from charms.layer import vault_kv

        vault_kv.VaultAppKV()["colour"] = "blue"
    # the write is not recorded yet (in_hook runs no layer exit): the leader's next hook asks Vault,
    # records it and publishes the new digest in leader data, which gives the other unit a hook
    cluster.controller.queue(model, LEADER, "update-status")
    costs = []
    mark = [cluster.bao.mark()]

    def cost(item, process):
        costs.append((item["unit"], item["hook"], len(cluster.bao.requests_since(mark[0]))))
        mark[0] = cluster.bao.mark()

    cluster.controller.settle(after_hook=cost, fail_fast=True)
    first = [c for c in costs if c[0] == OTHER][0]
    assert first[1] == "leader-settings-changed" and first[2] <= 3, costs
    flags = cluster.flags(model, OTHER)
    assert "layer.vault-kv.app-kv.changed.colour" in flags and "layer.vault-kv.app-kv.set.colour" in flags


def test_a_sealed_vault_while_nothing_changes_moves_no_flag_and_no_status(deployed):
    cluster, model = deployed
    cluster.update_status(model)  # the leader's digest published and recorded by every unit
    before = observed(cluster, model)
    node = cluster.bao.nodes[0]
    cluster.bao.seal(node)
    try:
        cluster.update_status(model)
        assert observed(cluster, model) == before
    finally:
        cluster.bao.unseal(node.number)
        cluster.bao.wait_for_active()
