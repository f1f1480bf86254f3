"""Vault HA: a 3-node OpenBao raft cluster, one URL per vault unit, nodes sealed and killed.

The vault application has three units, each publishing its own node's URL,
as vault units without a VIP do.  Standby nodes answer reads from their own
replica (OpenBao's default), so a unit that talks to a standby reads its own
writes only because the layer sends back the ``X-Vault-Index`` of its writes.
"""

import hvac
import pytest

from tests.support.cluster import Cluster
from tests.support.openbao_raft import OpenBaoRaftCluster

APP = "kubernetes-control-plane"
LEGACY = "charm-" + APP
READY = "layer.vault-kv.ready"
FAILED = "layer.vault-kv.migration.failed"
GENERATED = "kcp-consumer: generated a new encryption_key"


@pytest.fixture
def raft():
    cluster = OpenBaoRaftCluster()
    try:
        yield cluster.start()
    finally:
        cluster.cleanup()  # every node stopped by its process id


@pytest.fixture
def ha_cluster(raft, charms, tmp_path):
    return Cluster(raft, charms, workdir=str(tmp_path / "sim"), vault_units=3)


def make_node_standby(raft, node):
    """Step ``node`` down until another node is active (raft may elect it again)."""
    for _ in range(10):
        active = raft.wait_for_active()
        if active is not node:
            return
        raft.root_client().sys.step_down()
        raft._wait(lambda: node.health() != 200, 30, "the step-down")
    raise AssertionError("node {} stayed active".format(node.number))


def no_hook_failed_and_no_move_failed(cluster, model):
    def check(item, process):
        assert process.returncode == 0, (item, process.stderr[-2000:])
        if item["model"] == model and item["unit"].startswith(APP):
            assert FAILED not in cluster.flags(model, item["unit"]), item

    return check


def generations(cluster, model):
    return sum(cluster.controller.log(model, u).count(GENERATED) for u in cluster.units(model))


def test_a_move_through_a_standby_reads_back_its_own_writes_on_the_first_try(raft, ha_cluster):
    cluster = ha_cluster
    model = cluster.add_model("cluster-a", build="legacy", units=3)
    cluster.settle(fail_fast=True)
    key = cluster.vault_fingerprint(LEGACY)
    files = cluster.file_fingerprints(model)
    assert key and set(files.values()) == {key}
    # every consumer unit's first URL is vault/0's, node 0: make it a standby
    make_node_standby(raft, raft.nodes[0])
    assert raft.nodes[0].health() == 429

    cluster.upgrade(model)
    cluster.settle(fail_fast=True, after_hook=no_hook_failed_and_no_move_failed(cluster, model))

    backend = cluster.new_backend(model)
    assert cluster.vault_fingerprint(backend) == key
    assert cluster.file_fingerprints(model) == files
    assert generations(cluster, model) == 1
    for unit in cluster.units(model):
        log = cluster.controller.log(model, unit)
        assert "read-back" not in log  # no copy was found stale, not even once
        assert "cannot serve" not in log  # node 0 served every request, as a standby
        assert READY in cluster.flags(model, unit)
    assert raft.nodes[0].health() == 429  # still a standby at the end


def test_a_sealed_node_then_a_killed_active_node_fail_no_hook_and_lose_no_key(raft, ha_cluster):
    cluster = ha_cluster
    model = cluster.add_model("k8s", units=3)
    cluster.settle(fail_fast=True)
    backend = cluster.new_backend(model)
    key = cluster.vault_fingerprint(backend)
    files = cluster.file_fingerprints(model)
    assert key and set(files.values()) == {key}
    units = cluster.units(model)

    # 1. node 0 (every consumer's first URL) sealed: the next vault unit's URL serves
    node0 = raft.nodes[0]
    make_node_standby(raft, node0)
    hvac.Client(url=node0.url, token=raft.root_token).sys.seal()
    assert node0.health() == 503
    cluster.update_status(model)
    for unit in units:
        assert READY in cluster.flags(model, unit), cluster.controller.status(model, unit)
        assert "cannot serve" in cluster.controller.log(model, unit)
    raft.unseal(0)
    raft._wait(lambda: node0.health() in (200, 429), 30, "node 0 to serve again")

    # 2. a run of hooks on every unit, with the active node killed after the second
    active = raft.wait_for_active()
    hooks_run = []

    def kill_after_second_hook(item, process):
        assert process.returncode == 0, (item, process.stderr[-2000:])
        hooks_run.append(item["unit"])
        if len(hooks_run) == 2:
            raft.kill(active)

    for _ in range(3):  # three rounds (the queue holds one update-status per unit)
        for unit in units:
            cluster.controller.queue(model, unit, "update-status")
        cluster.settle(fail_fast=True, after_hook=kill_after_second_hook)
    assert len(hooks_run) == 9 and not active.alive
    raft.wait_for_active()
    cluster.update_status(model)  # after the election every unit is ready again, one node short

    assert cluster.vault_fingerprint(backend) == key
    assert cluster.file_fingerprints(model) == files
    assert generations(cluster, model) == 1
    for unit in units:
        assert READY in cluster.flags(model, unit), cluster.controller.status(model, unit)
        assert cluster.controller.status(model, unit)["status"] != "blocked"
