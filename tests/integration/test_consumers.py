"""The real consumers' behaviour, built with this layer, hook by hook against a real OpenBao.

The consumer charm (tests/charms/kcp-consumer-core) carries kubernetes-control-plane
1.28's Vault-related handlers and layer:vaultlocker's (simulated device, real
Vault paths); the vault application calls the provider API as the vault charm
does.  Every scenario checks what an operator would: one key, unchanged, in
Vault and in every unit's file; no hook error; no second encrypted mount;
vaultlocker's device keys readable where its configuration says.
"""

import base64
import configparser
import hashlib
import json

import hvac
import pytest
import yaml

from charms.layer.vault_kv.hashing import fingerprint, value_hash
from tests.support.deployment import SnapshotDeployment
from tests.support.vault_provider import EVERY_RUN, NEW_APPROLE

APP = "kubernetes-control-plane"
LEGACY = "charm-" + APP
CONFIG_PATH = "/var/snap/kube-apiserver/common/encryption/encryption_config.yaml"
CREATED = "kubernetes-control-plane.secure-storage.created"
READY = "layer.vault-kv.ready"
GENERATED = "kcp-consumer: generated a new encryption_key"
DONE = "layer.vault-kv.migration.done"
KCP_VAULT_PENDING = "Waiting for encryption info from Vault to secure secrets"  # kcp 1.28's status

# what the old layer (and not this one) leaves in unitdata is only the
# secret_id, the token's data_changed hash, the config's data_changed hash and flags
OURS_ONLY = [
    "layer.vault-kv.active",
    "layer.vault-kv.seen-hashes",
    "layer.vault-kv.token",
    "layer.vault-kv.seen-tokens",
    "layer.vault-kv.secret_id-role",
    "layer.vault-kv.credential-book",
    "layer.vault-kv.status-message",
    "reactive.data_changed.layer.vault-kv.request",
    "layer.vault-kv.seen-hashes-at",
    "layer.vault-kv.joined-empty",
    "layer.vault-kv.awaited-keys",
]


@pytest.fixture
def cluster(cluster_for, make_bao):
    return cluster_for(make_bao())


def generations(cluster, model):
    return sum(cluster.controller.log(model, u).count(GENERATED) for u in cluster.units(model))


def file_digests(cluster, model):
    """sha256 of each unit's file, byte for byte (digests, so a failure prints no key)."""
    return {
        u: hashlib.sha256(cluster.controller.unit_file(model, u, CONFIG_PATH) or b"").hexdigest()
        for u in cluster.units(model)
    }


def key_lists(cluster, model):
    """Each unit's list of (key name, fingerprint of the Vault value it stands for)."""
    lists = {}
    for unit in cluster.units(model):
        data = cluster.controller.unit_file(model, unit, CONFIG_PATH)
        document = yaml.safe_load(data) if data else {}
        providers = (document or {}).get("resources", [{}])[0].get("providers", [])
        keys = providers[0].get("aescbc", {}).get("keys", []) if providers else []
        lists[unit] = [(k["name"], fingerprint(base64.b64decode(k["secret"]).decode())) for k in keys]
    return lists


def mounts(cluster, model, unit):
    data = cluster.controller.unit_file(model, unit, "/var/lib/vaultlocker-sim/mounts.json")
    return json.loads(data) if data else []


def vaultlocker_boot_check(cluster, model, unit):
    """What vaultlocker-decrypt does at boot: each device key read from the configured backend."""
    parser = configparser.ConfigParser()
    parser.read_string(cluster.controller.unit_file(model, unit, "/var/lib/vaultlocker-sim/vaultlocker.conf").decode())
    conf = parser["vault"]
    client = hvac.Client(url=conf["url"])
    client.auth.approle.login(role_id=conf["approle"], secret_id=conf["secret_id"])
    found = {}
    for record in mounts(cluster, model, unit):
        data = client.read("{}/{}/{}".format(conf["backend"], record["hostname"], record["uuid"]))
        found[record["uuid"]] = bool(data and data["data"].get("dmcrypt_key"))
    return conf["backend"], found


def assert_one_key_everywhere(cluster, model, backend, key):
    """``key`` (a fingerprint) in Vault and as the only key of every unit's file, files identical."""
    stored = cluster.bao.read(backend + "/kv/app")["encryption_key"]
    assert fingerprint(stored) == key
    assert len(stored) == 32 and stored.isalnum()  # kubernetes-control-plane's token form
    assert {tuple(v) for v in key_lists(cluster, model).values()} == {(("key1", key),)}
    assert len(set(file_digests(cluster, model).values())) == 1


class LegacyAsTheOldLayerLeftIt(SnapshotDeployment):
    """A 1.27-shaped deployment (charm-{app}, AppRoles of the Juju unit names), reduced to the old layer's state.

    Made once per module and unit count, put back as made before each test.
    """

    def __init__(self, charms, workdir, units: int) -> None:
        super().__init__(charms, workdir, build="legacy", units=units, name="cluster-a")

    def after_deploy(self) -> None:
        for unit in self.cluster.units(self.model):
            self.cluster.controller.forget_unitdata(self.model, unit, OURS_ONLY)
        # the old layer's only leader setting is its nonce
        self.cluster.controller.forget_leader_settings(self.model, APP, ["vault-kv-backend", "vault-kv-migrated"])


@pytest.fixture(scope="module")
def legacy_deployments(charms, tmp_path_factory):
    made = {}

    def of(units):
        if units not in made:
            made[units] = LegacyAsTheOldLayerLeftIt(charms, tmp_path_factory.mktemp("legacy"), units)
        return made[units]

    yield of
    for deployment in made.values():
        deployment.cleanup()


@pytest.fixture
def legacy3(legacy_deployments):
    """Three units as the old layer left them: (cluster, model)."""
    deployment = legacy_deployments(3)
    return deployment.fresh(), deployment.model


@pytest.fixture
def legacy2(legacy_deployments):
    """Two units as the old layer left them: (cluster, model)."""
    deployment = legacy_deployments(2)
    return deployment.fresh(), deployment.model


def test_fresh_deploy_of_three_units_has_the_charms_key_file_and_one_mount_each(cluster):
    model = cluster.add_model("k8s", units=3)
    cluster.settle(fail_fast=True)
    backend = cluster.new_backend(model)
    key = cluster.vault_fingerprint(backend)
    assert generations(cluster, model) == 1
    assert_one_key_everywhere(cluster, model, backend, key)
    for unit in cluster.units(model):
        assert CREATED in cluster.flags(model, unit)
        assert len(mounts(cluster, model, unit)) == 1
        assert vaultlocker_boot_check(cluster, model, unit)[1] == {mounts(cluster, model, unit)[0]["uuid"]: True}


def test_a_hook_with_vault_sealed_clears_no_charm_flag_mounts_nothing_and_keeps_the_file(cluster):
    model = cluster.add_model("k8s", units=3)
    cluster.settle(fail_fast=True)
    backend = cluster.new_backend(model)
    key = cluster.vault_fingerprint(backend)
    files = file_digests(cluster, model)
    charm_flags = {
        u: [f for f in cluster.flags(model, u) if f.startswith("kubernetes-control-plane.")]
        for u in cluster.units(model)
    }
    cluster.make_next_hooks_ask_vault(model)  # hooks that must ask; while nothing changes: test_vault_api.py (issue 19)
    cluster.bao.seal()
    for unit in cluster.units(model):
        cluster.controller.queue(model, unit, "update-status")
    cluster.settle(fail_fast=True)  # no hook fails on a sealed Vault
    for unit in cluster.units(model):
        # none of the charm's flags was cleared (it raises its own "vault-kv.pending" itself)
        assert set(charm_flags[unit]) <= set(cluster.flags(model, unit))
        assert READY not in cluster.flags(model, unit)
        assert "layer.vault-kv.app-kv.set.encryption_key" in cluster.flags(model, unit)
        assert len(mounts(cluster, model, unit)) == 1
    assert file_digests(cluster, model) == files
    cluster.bao.unseal()
    cluster.update_status(model)
    for unit in cluster.units(model):
        assert READY in cluster.flags(model, unit) and len(mounts(cluster, model, unit)) == 1
    assert file_digests(cluster, model) == files
    assert_one_key_everywhere(cluster, model, backend, key)


def test_refresh_from_127_to_128_with_both_migrations_keeps_key_files_and_device_keys(legacy3):
    cluster, model = legacy3
    key = cluster.vault_fingerprint(LEGACY)
    files = file_digests(cluster, model)
    restarts = {u: cluster.key_changes(model, u) for u in cluster.units(model)}
    moved_in = {}  # unit -> the number of its hook in which the move finished
    hooks_of = {}  # unit -> how many hooks it ran

    def created_stays_set(item, process):
        if item["model"] == model and item["unit"].startswith(APP):
            unit = item["unit"]
            assert CREATED in cluster.flags(model, unit), (item["hook"], unit)
            hooks_of[unit] = hooks_of.get(unit, 0) + 1
            if DONE in cluster.flags(model, unit):
                moved_in.setdefault(unit, hooks_of[unit])

    cluster.upgrade(model)
    cluster.settle(fail_fast=True, after_hook=created_stays_set)
    # no update-status yet: a unit whose move finished in its last hook must not
    # show kubernetes-control-plane's "vault pending" status until the next one
    assert any(moved_in[u] == hooks_of[u] for u in cluster.units(model)), (moved_in, hooks_of)
    for unit in cluster.units(model):
        assert cluster.controller.status(model, unit)["message"] != KCP_VAULT_PENDING, unit
        assert cluster.controller.status(model, unit)["status"] == "active", unit
    backend = cluster.new_backend(model)
    assert cluster.vault_fingerprint(backend) == key
    assert file_digests(cluster, model) == files  # not even rewritten
    assert generations(cluster, model) == 1  # the first deployment's
    # the charm's own migration ran beside ours and found nothing to change
    assert "kubernetes-control-plane.secure-storage.migrate" not in cluster.flags(model, APP + "/0")
    assert "need to migrate" in cluster.controller.log(model, APP + "/0")
    for unit in cluster.units(model):
        assert cluster.key_changes(model, unit) == restarts[unit]  # no apiserver restart
        assert len(mounts(cluster, model, unit)) == 1
        configured, found = vaultlocker_boot_check(cluster, model, unit)
        assert configured == backend and found and all(found.values())  # the device opens at the next boot
    assert cluster.vault_fingerprint(LEGACY) == key  # kept for a rollback


def test_a_129_style_takeover_reads_the_unitdata_and_logs_in_without_unwrapping(legacy2):
    cluster, model = legacy2
    key = cluster.vault_fingerprint(LEGACY)
    cluster.upgrade(model)
    cluster.settle(fail_fast=True)
    backend = cluster.new_backend(model)
    relation = cluster.controller.relation_data(cluster.relations[model])
    vault_side = next(v for k, v in relation.items() if k.endswith(":vault/0"))
    for unit in cluster.units(model):
        data = cluster.controller.unitdata(model, unit)
        name = "{}-{}".format(model, unit)  # 1.29 looks under {model-uuid}-{unit} first
        token = json.loads(vault_side[name + "_token"])
        role_id = json.loads(vault_side[name + "_role_id"])
        # 1.29 uses the stored secret_id only when this hash matches the token on the relation
        assert data["reactive.data_changed.layer.vault-kv.token"] == value_hash(token)
        client = hvac.Client(url=cluster.bao.url)
        client.auth.approle.login(role_id=role_id, secret_id=data["layer.vault-kv.secret_id"])
        assert fingerprint(client.read(backend + "/kv/app")["data"]["encryption_key"]) == key


def test_a_unit_added_during_the_move_and_made_leader_generates_nothing(legacy3):
    cluster, model = legacy3
    key = cluster.vault_fingerprint(LEGACY)
    cluster.upgrade(model)
    cluster.controller.run_hooks(4)  # the move is under way
    new_unit = cluster.controller.add_unit(model, APP)
    cluster.controller.set_leader(model, APP, new_unit)
    cluster.settle(fail_fast=True)
    backend = cluster.new_backend(model)
    assert generations(cluster, model) == 1
    assert cluster.vault_fingerprint(backend) == key
    assert_one_key_everywhere(cluster, model, backend, key)
    cluster.update_status(model)
    for unit in cluster.units(model):
        assert READY in cluster.flags(model, unit), unit
        assert "leader" not in cluster.controller.status(model, unit)["message"]


def test_refresh_back_to_the_previous_build_and_forward_again_needs_no_operator(legacy2):
    cluster, model = legacy2
    key = cluster.vault_fingerprint(LEGACY)
    files = file_digests(cluster, model)
    cluster.upgrade(model)
    cluster.settle(fail_fast=True)
    cluster.upgrade(model, build="legacy")  # rollback
    cluster.settle(fail_fast=True)
    cluster.update_status(model)
    for unit in cluster.units(model):
        assert READY in cluster.flags(model, unit), cluster.controller.status(model, unit)
        active = cluster.controller.unitdata(model, unit)["layer.vault-kv.active"]
        assert active["backend"] == LEGACY
        assert vaultlocker_boot_check(cluster, model, unit)[0] == LEGACY
    assert cluster.vault_fingerprint(LEGACY) == key
    cluster.upgrade(model)  # forward again
    cluster.settle(fail_fast=True)
    cluster.update_status(model)
    backend = cluster.new_backend(model)
    assert cluster.vault_fingerprint(backend) == key
    assert file_digests(cluster, model) == files
    assert generations(cluster, model) == 1
    for unit in cluster.units(model):
        assert READY in cluster.flags(model, unit)
        configured, found = vaultlocker_boot_check(cluster, model, unit)
        assert configured == backend and all(found.values())


def blocked_watch(cluster, model):
    """(list, after_hook check): the list gathers every blocked status a consumer unit shows after a hook."""
    seen = []

    def check(item, process):
        if item["model"] == model and item["unit"].startswith(APP):
            status = cluster.controller.status(model, item["unit"])
            if status["status"] == "blocked":
                seen.append((item["hook"], item["unit"], status["message"]))

    return seen, check


@pytest.mark.parametrize("issue", [NEW_APPROLE, EVERY_RUN])
def test_refresh_secrets_while_rolled_back_then_forward_again_completes_the_move(legacy2, issue):
    cluster, model = legacy2
    cluster.vault_issues_secret_ids(issue)
    key = cluster.vault_fingerprint(LEGACY)
    files = file_digests(cluster, model)
    blocked, check = blocked_watch(cluster, model)
    cluster.upgrade(model)
    cluster.settle(fail_fast=True, after_hook=check)
    cluster.upgrade(model, build="legacy")  # rollback
    cluster.settle(fail_fast=True, after_hook=check)
    cluster.refresh_secrets()  # the vault charm's refresh-secrets while rolled back
    cluster.settle(fail_fast=True, after_hook=check)
    cluster.update_status(model)
    for unit in cluster.units(model):
        assert READY in cluster.flags(model, unit), cluster.controller.status(model, unit)
    cluster.upgrade(model)  # forward again
    cluster.settle(fail_fast=True, after_hook=check)
    cluster.update_status(model)
    backend = cluster.new_backend(model)
    for unit in cluster.units(model):
        flags = cluster.flags(model, unit)
        status = cluster.controller.status(model, unit)
        assert READY in flags and "layer.vault-kv.migration.in-progress" not in flags, status
        assert status["status"] == "active", status
        assert cluster.controller.unitdata(model, unit)["layer.vault-kv.active"]["backend"] == backend
        configured, found = vaultlocker_boot_check(cluster, model, unit)
        assert configured == backend and found and all(found.values())
    assert cluster.vault_fingerprint(backend) == key
    assert file_digests(cluster, model) == files
    assert generations(cluster, model) == 1
    assert blocked == []


def test_the_layers_secure_storage_beside_the_charms_leaves_one_identical_key_list(cluster):
    model = cluster.add_model("k8s", build="ss", units=3)
    cluster.settle(fail_fast=True)
    backend = cluster.new_backend(model)
    key = cluster.vault_fingerprint(backend)
    ours = sum(
        cluster.controller.log(model, u).count("stored encryption_key from a newly generated key")
        for u in cluster.units(model)
    )
    assert generations(cluster, model) + ours == 1
    assert {tuple(v) for v in key_lists(cluster, model).values()} == {(("key1", key),)}
    assert len(set(file_digests(cluster, model).values())) == 1


def test_a_rebuild_with_this_layer_that_keeps_charm_app_is_ready_with_the_same_key(legacy2):
    cluster, model = legacy2
    key = cluster.vault_fingerprint(LEGACY)
    files = file_digests(cluster, model)
    restarts = {u: cluster.key_changes(model, u) for u in cluster.units(model)}
    cluster.upgrade(model, build="legacy")  # the same backend, now built with this layer
    cluster.settle(fail_fast=True)
    cluster.update_status(model)
    assert cluster.vault_fingerprint(LEGACY) == key
    assert file_digests(cluster, model) == files
    assert generations(cluster, model) == 1
    for unit in cluster.units(model):
        assert READY in cluster.flags(model, unit), cluster.controller.status(model, unit)
        assert cluster.key_changes(model, unit) == restarts[unit]
        assert "layer.vault-kv.migration.in-progress" not in cluster.flags(model, unit)
