"""Charm upgrade from charm-{app} to charm-{model-uuid}-{app}, against a real OpenBao.

Two models deploy an application of the same name on one Vault with the
legacy build (backend charm-{app}, AppRoles named after the Juju unit), as
clusters do today; then they are upgraded to the current build one at a time.
"""

import hashlib
import json

import pytest

from tests.integration.upgrade_checks import APP, LEGACY, assert_upgraded, file_bytes


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
