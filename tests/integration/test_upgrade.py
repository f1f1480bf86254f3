"""Charm upgrade from charm-{app} to charm-{model-uuid}-{app}, against a real OpenBao.

Two models deploy an application of the same name on one Vault with the
legacy build (backend charm-{app}, AppRoles named after the Juju unit), as
clusters do today; then they are upgraded to the current build one at a time.
"""

import hashlib
import json

import hvac
import pytest

from charms.layer.vault_kv.hashing import fingerprint
from tests.integration.upgrade_checks import APP, LEGACY, assert_upgraded, file_bytes
from tests.support.vault_provider import EVERY_RUN, NEW_APPROLE

# What the vault charm as deployed changes in every related unit whenever its handler runs
# (a new one-shot token for every request): the unit unwraps it and records the new secret_id.
CREDENTIAL_RECORDS = {
    "layer.vault-kv.credential-book",
    "layer.vault-kv.secret_id",
    "layer.vault-kv.seen-tokens",
    "layer.vault-kv.token",
    "reactive.data_changed.layer.vault-kv.token",
    "reactive.data_changed.layer.vault-kv.config",
    "layer.vault-kv.last-asked",  # when the unit last had an answer from Vault, and a digest of the relation then
}


def credential_record(key):
    return key in CREDENTIAL_RECORDS or (key.startswith("reactive.data_changed.endpoint.") and key.endswith("_token"))


def model_snapshot(cluster, model, ignore=lambda key: False):
    """Everything of a model that an upgrade of another model must not touch (unitdata keys ``ignore``d aside)."""
    state = {}
    for unit in cluster.units(model):
        data = {k: v for k, v in cluster.controller.unitdata(model, unit).items() if not ignore(k)}
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


def published_tokens(cluster, model):
    """The one-shot tokens the vault application published on ``model``'s relation."""
    relation = cluster.controller.relation_data(cluster.relations[model])
    vault_side = next(v for k, v in relation.items() if k.endswith(":vault/0"))
    return {k: v for k, v in vault_side.items() if k.endswith("_token")}


def logs_in_and_reads(cluster, model, backend, key):
    """Each unit's current credentials (as unitdata holds them) log in and read ``key`` (a fingerprint)."""
    for unit in cluster.units(model):
        data = cluster.controller.unitdata(model, unit)
        client = hvac.Client(url=cluster.bao.url)
        client.auth.approle.login(
            role_id=data["layer.vault-kv.secret_id-role"], secret_id=data["layer.vault-kv.secret_id"]
        )
        assert fingerprint(client.read(backend + "/kv/app")["data"]["encryption_key"]) == key, unit


# the intended behaviour on 2 units: what matters is who is answered, not how many
@pytest.mark.parametrize("issue, units", [(EVERY_RUN, 3), (NEW_APPROLE, 2)])
def test_upgrading_one_model_moves_its_key_and_leaves_the_other_untouched(cluster, issue, units):
    cluster.vault_issues_secret_ids(issue)
    a = cluster.add_model("cluster-a", build="legacy", units=units)
    cluster.settle()
    b = cluster.add_model("cluster-b", build="legacy", units=units)
    cluster.settle()
    # the vault charm's code answers a unit name once (a new AppRole): model b's units, named as model a's, then get
    # a secret_id only when an operator runs refresh-secrets, as they did (as deployed, it answers them anyway)
    cluster.refresh_secrets()
    cluster.settle()
    key = cluster.vault_fingerprint(LEGACY)
    assert set(cluster.file_fingerprints(a).values()) == {key}
    assert set(cluster.file_fingerprints(b).values()) == {key}  # today's sharing
    files_a, files_b = file_bytes(cluster, a), file_bytes(cluster, b)
    changes = {m: {u: cluster.key_changes(m, u) for u in cluster.units(m)} for m in (a, b)}
    # as deployed, the vault charm gives model b's units new tokens when model a's requests change
    ignore = credential_record if issue == EVERY_RUN else (lambda key: False)
    b_before, vault_before = model_snapshot(cluster, b, ignore), vault_snapshot(cluster.bao, LEGACY, units)
    b_tokens = published_tokens(cluster, b)

    cluster.upgrade(a)
    cluster.settle()
    assert_upgraded(cluster, a, key, files_a, changes[a])
    assert model_snapshot(cluster, b, ignore) == b_before
    assert (published_tokens(cluster, b) != b_tokens) == (issue == EVERY_RUN)  # the vault application's way
    logs_in_and_reads(cluster, b, LEGACY, key)
    assert vault_snapshot(cluster.bao, LEGACY, units) == vault_before  # legacy data and AppRoles intact

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
