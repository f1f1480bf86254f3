"""The built charm driven hook by hook through the Juju simulator, against a real OpenBao."""

import pytest

READY = "layer.vault-kv.ready"
CREATED = "kubernetes-control-plane.secure-storage.created"
GENERATED = "kcp-consumer: generated a new encryption_key"


def generations(cluster, model):
    """How many times any unit of the model generated a key (from their logs)."""
    return sum(cluster.controller.log(model, u).count(GENERATED) for u in cluster.units(model))


@pytest.fixture
def cluster(cluster_for, shared_bao):
    return cluster_for(shared_bao)


def test_three_units_converge_on_one_key_generated_once_by_the_leader(cluster):
    model = cluster.add_model("k8s", units=3)
    cluster.settle()
    key = cluster.vault_fingerprint(cluster.new_backend(model))
    assert key is not None
    assert generations(cluster, model) == 1
    assert GENERATED in cluster.controller.log(model, "kubernetes-control-plane/0")  # the leader
    assert set(cluster.file_fingerprints(model).values()) == {key}
    # every apiserver stored Secrets as it went and read all of them after every hook (tests/support/apiservers.py)
    assert cluster.apiservers.stored(model) >= 3 and cluster.apiservers.checks > 0
    assert cluster.apiservers.etcd[model].stored_under() == {"key1": cluster.apiservers.stored(model)}
    cluster.update_status(model)  # the charm's status reflects the flags it saw at hook start
    for unit in cluster.units(model):
        flags = cluster.flags(model, unit)
        assert READY in flags and CREATED in flags and "layer.vault-kv.app-kv.set.encryption_key" in flags
        assert cluster.controller.status(model, unit) == {
            "status": "active",
            "message": "key {} stored".format(key),
        }
        mode = cluster.controller.unit_file_mode(
            model, unit, "/var/snap/kube-apiserver/common/encryption/encryption_config.yaml"
        )
        assert mode == 0o600


def test_hashes_are_written_at_exit_and_other_units_get_changed_flags(cluster):
    model = cluster.add_model("k8s", units=2)
    cluster.settle()
    backend = cluster.new_backend(model)
    leader, other = "kubernetes-control-plane/0", "kubernetes-control-plane/1"
    with cluster.controller.in_hook(model, leader):
        from charms.layer import vault_kv

        vault_kv.VaultAppKV()["colour"] = "blue"
    cluster.controller.queue(model, leader, "update-status")  # a hook whose exit records and nudges
    cluster.settle()
    assert cluster.bao.read("{}/kv/app-hashes/0".format(backend))["colour"] == vault_kv_hash("blue")
    assert cluster.bao.read("{}/kv/app-hashes/1".format(backend))["colour"] == vault_kv_hash("blue")
    flags = cluster.flags(model, other)
    assert "layer.vault-kv.app-kv.changed.colour" in flags and "layer.vault-kv.app-kv.set.colour" in flags


def vault_kv_hash(value):
    from charms.layer.vault_kv.hashing import value_hash

    return value_hash(value)


def test_leader_change_does_not_generate_a_new_key(cluster):
    model = cluster.add_model("k8s", units=3)
    cluster.settle()
    before = cluster.vault_fingerprint(cluster.new_backend(model))
    cluster.controller.set_leader(model, "kubernetes-control-plane", "kubernetes-control-plane/2")
    cluster.settle()
    assert cluster.vault_fingerprint(cluster.new_backend(model)) == before
    assert generations(cluster, model) == 1
    assert set(cluster.file_fingerprints(model).values()) == {before}


def test_relation_removed_clears_ready_and_added_back_restores_it_without_a_new_key(cluster):
    model = cluster.add_model("k8s", units=2)
    cluster.settle()
    before = cluster.vault_fingerprint(cluster.new_backend(model))
    cluster.unrelate(model)
    cluster.settle()
    for unit in cluster.units(model):
        flags = cluster.flags(model, unit)
        assert READY not in flags
        assert CREATED in flags  # the charm's own flag: the layer (secure storage off) never touches it
        assert not [f for f in flags if f.startswith("layer.vault-kv.app-kv.")]
    cluster.relate(model)
    cluster.settle()
    assert cluster.vault_fingerprint(cluster.new_backend(model)) == before
    assert generations(cluster, model) == 1
    for unit in cluster.units(model):
        assert READY in cluster.flags(model, unit)
        assert CREATED in cluster.flags(model, unit)
    assert set(cluster.file_fingerprints(model).values()) == {before}
