"""Charm upgrade from charm-{app} to charm-{model-uuid}-{app}, against a real OpenBao.

Two models deploy an application of the same name on one Vault with the
legacy build (backend charm-{app}, AppRoles named after the Juju unit), as
clusters do today; then they are upgraded to the current build one at a time.
"""

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.cluster import Cluster
from tests.support.openbao_raft import OpenBaoRaftCluster

APP = "kubernetes-control-plane"
LEGACY = "charm-" + APP
GENERATED = "kcp-consumer: generated a new encryption_key"
DONE = "layer.vault-kv.migration.done"


def generations(cluster, model):
    return sum(cluster.controller.log(model, u).count(GENERATED) for u in cluster.units(model))


def file_bytes(cluster, model):
    """A digest of each unit's EncryptionConfiguration, byte for byte (digests: failures print no key)."""
    path = "/var/snap/kube-apiserver/common/encryption/encryption_config.yaml"
    return {
        u: hashlib.sha256(cluster.controller.unit_file(model, u, path) or b"").hexdigest() for u in cluster.units(model)
    }


def model_snapshot(cluster, model):
    """Everything of a model that an upgrade of another model must not touch."""
    state = {}
    for unit in cluster.units(model):
        data = cluster.controller.unitdata(model, unit)
        state[unit] = {
            "file": file_bytes(cluster, model)[unit],
            "flags": cluster.flags(model, unit),
            "status": cluster.controller.status(model, unit),
            "unitdata": hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest(),
        }
    return state


def vault_snapshot(bao, backend, units):
    """The legacy backend's data and the legacy AppRoles and policies, as root sees them."""
    root = bao.root_client()
    snapshot = {"app": bao.read(backend + "/kv/app")}
    for n in range(units):
        name = "charm-{}-{}".format(APP, n)
        snapshot[name] = {
            "hashes": bao.read("{}/kv/app-hashes/{}".format(backend, n)),
            "policy": root.sys.read_policy(name)["data"]["rules"],
            "role": root.read("auth/approle/role/" + name)["data"],
            "role_id": root.auth.approle.read_role_id(name)["data"]["role_id"],
        }
    return snapshot


def assert_upgraded(cluster, model, key, files_before, changes_before):
    """The upgraded model holds the original key (``key``: its fingerprint) everywhere, and was told of no change."""
    assert cluster.vault_fingerprint(cluster.new_backend(model)) == key
    assert file_bytes(cluster, model) == files_before  # not even rewritten: no apiserver restart
    for unit in cluster.units(model):
        flags = cluster.flags(model, unit)
        assert DONE in flags and "layer.vault-kv.ready" in flags, (unit, flags)
        assert "layer.vault-kv.migration.in-progress" not in flags
        assert "layer.vault-kv.app-kv.changed.encryption_key" not in flags
        assert cluster.key_changes(model, unit) == changes_before[unit]
        active = cluster.controller.unitdata(model, unit)["layer.vault-kv.active"]
        assert active == {"backend": cluster.new_backend(model), "unit_name": "{}-{}".format(model, unit)}
    assert generations(cluster, model) <= 1  # only the first deployment's


@pytest.fixture
def cluster(cluster_for, make_bao):
    return cluster_for(make_bao())


def test_upgrading_one_model_moves_its_key_and_leaves_the_other_untouched(cluster):
    a = cluster.add_model("cluster-a", build="legacy", units=3)
    cluster.settle()
    b = cluster.add_model("cluster-b", build="legacy", units=3)
    cluster.settle()
    # the vault charm answers a unit name once (a new AppRole): model b's units, named as
    # model a's, get a secret_id only when an operator runs refresh-secrets, as they did
    cluster.refresh_secrets()
    cluster.settle()
    key = cluster.vault_fingerprint(LEGACY)
    assert set(cluster.file_fingerprints(a).values()) == {key}
    assert set(cluster.file_fingerprints(b).values()) == {key}  # today's sharing
    files_a, files_b = file_bytes(cluster, a), file_bytes(cluster, b)
    changes = {m: {u: cluster.key_changes(m, u) for u in cluster.units(m)} for m in (a, b)}
    b_before, vault_before = model_snapshot(cluster, b), vault_snapshot(cluster.bao, LEGACY, 3)

    cluster.upgrade(a)
    cluster.settle()
    assert_upgraded(cluster, a, key, files_a, changes[a])
    assert model_snapshot(cluster, b) == b_before
    assert vault_snapshot(cluster.bao, LEGACY, 3) == vault_before  # legacy data and AppRoles intact

    cluster.upgrade(b)
    cluster.settle()
    assert_upgraded(cluster, b, key, files_b, changes[b])
    assert cluster.vault_fingerprint(LEGACY) == key  # kept for a rollback

    root = cluster.bao.root_client()
    for model, other in ((a, b), (b, a)):
        for unit in cluster.units(model):
            name = "charm-{}-{}".format(model, unit.replace("/", "-"))
            rules = root.sys.read_policy(name)["data"]["rules"]
            assert cluster.new_backend(model) in rules and other not in rules and LEGACY + "/" not in rules
    assert cluster.new_backend(a) != cluster.new_backend(b)


def test_legacy_backend_unreadable_and_key_only_on_disk_is_restored_not_replaced(cluster):
    a = cluster.add_model("cluster-a", build="legacy", units=2)
    cluster.settle()
    key = cluster.vault_fingerprint(LEGACY)
    files = file_bytes(cluster, a)
    changes = {u: cluster.key_changes(a, u) for u in cluster.units(a)}
    root = cluster.bao.root_client()
    root.delete(LEGACY + "/kv/app")  # the key now exists only on disk
    for n in range(2):  # and the legacy AppRoles were re-pointed elsewhere
        root.sys.create_or_update_policy(
            "charm-{}-{}".format(APP, n), 'path "charm-other/*" { capabilities = ["read"] }'
        )

    cluster.upgrade(a)
    cluster.settle()
    assert_upgraded(cluster, a, key, files, changes)
    assert "layer.vault-kv.migration.legacy-unreadable" in cluster.flags(a, APP + "/0")
    leaked = cluster.key_leaked(a, cluster.new_backend(a))
    assert not leaked, "the key appears in a unit's log or status"


def blocked_on_spent_token(cluster, model):
    statuses = [cluster.controller.status(model, u) for u in cluster.units(model)]
    return any(s["status"] == "blocked" and "refresh-secrets" in s["message"] for s in statuses)


class DeployedLegacyModel:
    """A 2-unit legacy deployment on its own single-node raft OpenBao, put back as deployed before each run.

    Deploying is most of a run's cost; a kill run needs only the upgrade.  The
    OpenBao storage is restored from a raft snapshot (same URL, so nothing in
    the units' data changes) and the simulated controller from a copy of its
    directory, so every run starts from the same deployment as if it were new.
    """

    def __init__(self, charms, workdir) -> None:
        self.bao = OpenBaoRaftCluster(size=1)
        self.bao.start()
        try:
            self.cluster = Cluster(self.bao, charms, workdir=str(workdir / "sim"))
            self.model = self.cluster.add_model("cluster-a", build="legacy", units=2)
            self.cluster.settle()
            self.key = self.cluster.vault_fingerprint(LEGACY)
            self.files = file_bytes(self.cluster, self.model)
            self.changes = {u: self.cluster.key_changes(self.model, u) for u in self.cluster.units(self.model)}
            self.saved_controller = str(workdir / "sim-as-deployed")
            self.cluster.controller.snapshot(self.saved_controller)
            self.saved_storage = self.bao.snapshot()
        except BaseException:
            self.bao.cleanup()
            raise

    def fresh(self):
        """The cluster as deployed: no upgrade, no kill, no hook run since."""
        self.bao.restore(self.saved_storage)
        self.cluster.controller.restore(self.saved_controller)
        return self.cluster

    def cleanup(self) -> None:
        self.bao.cleanup()


def count_leader_requests_during_upgrade(deployed: DeployedLegacyModel) -> int:
    cluster = deployed.fresh()
    cluster.controller.kill_at_vault_request(deployed.model, APP + "/0", 10**6)  # counts, never kills
    counter = cluster.controller.unit_env[(deployed.model, APP + "/0")]["JUJUSIM_KILL_COUNTER"]
    cluster.upgrade(deployed.model)
    cluster.settle()
    with open(counter) as handle:
        return int(handle.read())


def kill_and_resume(deployed: DeployedLegacyModel, number: int, total: int) -> None:
    """Upgrade with the leader's hooks dying right after its ``number``-th Vault request."""
    cluster, a = deployed.fresh(), deployed.model
    assert cluster.vault_fingerprint(LEGACY) == deployed.key and not cluster.controller.hooks_run
    cluster.controller.kill_at_vault_request(a, APP + "/0", number)
    cluster.upgrade(a)
    cluster.settle()
    assert cluster.controller.kills, "request {} of {} was never reached".format(number, total)
    assert cluster.file_fingerprints(a) == {u: deployed.key for u in cluster.units(a)}
    if blocked_on_spent_token(cluster, a):
        # died between unwrapping the one-shot token and storing the secret_id:
        # the unit says so, and the operator's refresh-secrets lets it finish
        cluster.refresh_secrets()
        cluster.settle()
    assert_upgraded(cluster, a, deployed.key, deployed.files, deployed.changes)


def test_killing_the_upgrade_at_each_vault_request_still_ends_with_the_original_key(charms, tmp_path):
    # two lanes side by side, each its own OpenBao and simulated controller, deployed once
    with ThreadPoolExecutor(max_workers=2) as pool:
        starting = [pool.submit(DeployedLegacyModel, charms, tmp_path / "lane{}".format(n)) for n in range(2)]
    lanes = [f.result() for f in starting if f.exception() is None]
    try:
        for future in starting:
            future.result()  # a lane that failed to deploy fails the test (the others are cleaned up below)
        total = count_leader_requests_during_upgrade(lanes[0])
        assert total >= 4

        def run_lane(index: int) -> None:
            for number in range(1 + index, total + 1, len(lanes)):
                kill_and_resume(lanes[index], number, total)

        with ThreadPoolExecutor(max_workers=len(lanes)) as pool:
            for run in [pool.submit(run_lane, i) for i in range(len(lanes))]:
                run.result()
    finally:
        for lane in lanes:
            lane.cleanup()
