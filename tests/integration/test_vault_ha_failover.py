"""Vault HA failover: a sealed node and a killed active node (a file of its own so it runs beside the move).

The vault application has three units, each publishing its own node's URL,
as vault units without a VIP do (fixtures ``raft`` and ``ha_cluster`` in
conftest.py).  Every consumer unit's first URL is vault/0's, node 0.
"""

APP = "kubernetes-control-plane"
READY = "layer.vault-kv.ready"
GENERATED = "kcp-consumer: generated a new encryption_key"


def generations(cluster, model):
    return sum(cluster.controller.log(model, u).count(GENERATED) for u in cluster.units(model))


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
    raft.make_standby(node0)
    raft.seal(node0)
    assert node0.health() == 503 and raft.active() is not None  # node 0 alone is sealed
    cluster.make_next_hooks_ask_vault(model)  # hooks that ask (one in which nothing changed asks nothing)
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

    for _ in range(3):  # three rounds (the queue holds one update-status per unit), each asking Vault
        cluster.make_next_hooks_ask_vault(model)
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
