"""Issue 19: Vault's load follows change, not time, against a real OpenBao through the simulator.

A settled deployment's hooks in which nothing changed (update-status, every
five minutes on every unit, forever) make no Vault request and import no
hvac; a change the leader makes reaches every other unit in the first hook
it runs after the leader-data change; a sealed Vault while nothing changes
moves no flag and no status.  Requests are counted from OpenBao's audit log.
"""

import pytest

from tests.support.deployment import SnapshotDeployment

APP = "kubernetes-control-plane"
LEADER, OTHER = APP + "/0", APP + "/1"
ENCRYPTION_CONFIG = "/var/snap/kube-apiserver/common/encryption/encryption_config.yaml"


@pytest.fixture(scope="module")
def as_deployed(charms, tmp_path_factory):
    deployment = SnapshotDeployment(charms, tmp_path_factory.mktemp("quiet"))
    yield deployment
    deployment.cleanup()


@pytest.fixture
def deployed(as_deployed):
    cluster = as_deployed.fresh()
    cluster.update_status(as_deployed.model)  # the digest published and recorded by every unit
    return cluster, as_deployed.model


def observed(cluster, model):
    return {u: (set(cluster.flags(model, u)), cluster.controller.status(model, u)) for u in cluster.units(model)}


def hooks_log(cluster, model, unit):
    return cluster.controller.hooks_output(model, unit)


def test_hooks_in_which_nothing_changed_cost_vault_nothing_and_import_no_hvac(deployed):
    cluster, model = deployed
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
    before = observed(cluster, model)
    node = cluster.bao.nodes[0]
    cluster.bao.seal(node)
    try:
        cluster.update_status(model)
        assert observed(cluster, model) == before
    finally:
        cluster.bao.unseal(node.number)
        cluster.bao.wait_for_active()


def test_with_secure_storage_on_a_hook_in_which_nothing_changed_costs_vault_nothing(secure_storage_deployed):
    cluster, model, _backend = secure_storage_deployed
    cluster.update_status(model)
    before = observed(cluster, model)
    files = {u: cluster.controller.unit_file(model, u, ENCRYPTION_CONFIG) for u in cluster.units(model)}
    mark = cluster.bao.mark()
    for _ in range(2):
        cluster.update_status(model)
    assert cluster.bao.requests_since(mark) == []
    assert observed(cluster, model) == before
    assert {u: cluster.controller.unit_file(model, u, ENCRYPTION_CONFIG) for u in cluster.units(model)} == files
