"""Vault HA: a 3-node OpenBao raft cluster, one URL per vault unit, nodes sealed and killed.

The vault application has three units, each publishing its own node's URL,
as vault units without a VIP do.  Standby nodes answer reads from their own
replica (OpenBao's default), so a unit that talks to a standby reads its own
writes only because the layer sends back the ``X-Vault-Index`` of its writes.
"""

APP = "kubernetes-control-plane"
LEGACY = "charm-" + APP
READY = "layer.vault-kv.ready"
FAILED = "layer.vault-kv.migration.failed"
GENERATED = "kcp-consumer: generated a new encryption_key"


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
    raft.make_standby(raft.nodes[0])
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
