"""The simulator's peer relations, unit removal and refused refresh, as Juju does them (issue 24).

A key rotation's acknowledgements travel on the ``coordinator`` peer
relation, so the simulator must deliver peer hooks as Juju does: one
relation per peer endpoint, made with the application; relation-created,
then joined and changed for each other unit; relation-changed on the other
units (never the writer) when a unit's data changes; departed on every unit
for one that is removed, which is ``dying`` in goal-state until its own
hooks ran.  Juju refuses to add a relation again while the removed one is
still dying (a unit has not run its relation-broken hook).  And Juju refuses a refresh to a charm that lacks an endpoint
the application has a relation on ("would break relation"), peer relations
included: kubernetes-control-plane 1.29+ keeps ``coordinator`` for that.

No Vault here: the consumer charm runs its hooks without a vault-kv relation.
"""

import shutil

import pytest
import yaml
from charmhelpers.core import hookenv

from tests.jujusim.controller import Controller, RelationExists, UpgradeRefused

APP = "kubernetes-control-plane"


@pytest.fixture
def controller(charms, tmp_path):
    controller = Controller(str(tmp_path / "sim"))
    model = controller.add_model("peers")
    controller.deploy(model, APP, str(charms["current"]), 3)
    controller.settle(fail_fast=True)
    return controller, model


def peer_hooks(controller, unit=None):
    return [
        (item["unit"], item["hook"], item.get("remote_unit"))
        for item in controller.hooks_run
        if item["hook"].startswith("coordinator-relation-") and (unit is None or item["unit"] == unit)
    ]


def related(controller, model, unit):
    with controller.in_hook(model, unit):
        rid = hookenv.relation_ids("coordinator")[0]
        return sorted(hookenv.related_units(rid))


def test_a_deployed_application_has_one_peer_relation_every_unit_joined_with_every_other(controller):
    controller, model = controller
    units = controller.units(model, APP)
    for unit in units:
        hooks = peer_hooks(controller, unit)
        assert hooks[0] == (unit, "coordinator-relation-created", None)
        others = [other for other in units if other != unit]
        assert sorted(remote for _, hook, remote in hooks if hook == "coordinator-relation-joined") == others
        assert sorted(remote for _, hook, remote in hooks if hook == "coordinator-relation-changed") == others
        assert related(controller, model, unit) == others
        with controller.in_hook(model, unit):
            assert hookenv.relation_ids("coordinator") == ["coordinator:{}".format(_peer_id(controller, model))]


def _peer_id(controller, model):
    from tests.jujusim.state import locked

    with locked(controller.state_path, write=False) as state:
        return next(number for number, relation in state["relations"].items() if relation.get("peer"))


def test_a_units_data_change_reaches_every_other_unit_and_not_itself(controller):
    controller, model = controller
    writer = controller.units(model, APP)[1]
    del controller.hooks_run[:]
    with controller.in_hook(model, writer):
        hookenv.relation_set("coordinator:{}".format(_peer_id(controller, model)), {"seen": "x"})
    controller.settle(fail_fast=True)
    changed = [(unit, remote) for unit, hook, remote in peer_hooks(controller) if hook.endswith("-changed")]
    assert sorted(changed) == [(unit, writer) for unit in controller.units(model, APP) if unit != writer]
    reader = controller.units(model, APP)[0]
    with controller.in_hook(model, reader):
        assert (
            hookenv.relation_get("seen", unit=writer, rid="coordinator:{}".format(_peer_id(controller, model))) == "x"
        )


def test_a_removed_unit_is_dying_until_its_hooks_ran_every_other_unit_sees_it_depart(controller):
    controller, model = controller
    first, leaving, last = controller.units(model, APP)
    del controller.hooks_run[:]
    controller.remove_unit(model, leaving)
    with controller.in_hook(model, first):
        assert hookenv.goal_state()["units"][leaving]["status"] == "dying"
    assert related(controller, model, first) == [last]  # it left the relation at once
    controller.settle(fail_fast=True)
    assert controller.units(model, APP) == [first, last]
    departed = sorted((unit, remote) for unit, hook, remote in peer_hooks(controller) if hook.endswith("-departed"))
    assert departed == [(first, leaving), (leaving, first), (leaving, last), (last, leaving)]
    assert (leaving, "coordinator-relation-broken", None) in peer_hooks(controller, leaving)
    assert [item["hook"] for item in controller.hooks_run if item["unit"] == leaving][-1] == "stop"
    assert related(controller, model, first) == [last]  # the relation stays for the others

    added = controller.add_unit(model, APP)
    controller.settle(fail_fast=True)
    assert related(controller, model, added) == [first, last]


def test_the_leaders_removal_elects_another(controller):
    controller, model = controller
    leader = controller.leader(model, APP)
    controller.remove_unit(model, leader)
    controller.settle(fail_fast=True)
    assert controller.leader(model, APP) == controller.units(model, APP)[0] != leader


def test_a_unit_added_after_every_unit_was_removed_becomes_leader(controller):
    """Found by the explorer: every unit removed, the leader last (no unit alive to hand leadership to); a
    unit added then never became leader, so a rotation it had to finish stood still.  Juju elects a unit once
    the leader is gone: one added before that when it goes, one added after at once."""
    controller, model = controller
    first, second, third = controller.units(model, APP)
    leader = controller.leader(model, APP)
    for unit in [u for u in (first, second, third) if u != leader] + [leader]:
        controller.remove_unit(model, unit)
    early = controller.add_unit(model, APP)  # before the dying leader is gone
    assert controller.leader(model, APP) == leader
    controller.settle(fail_fast=True)
    assert controller.units(model, APP) == [early]
    assert controller.leader(model, APP) == early
    assert "leader-elected" in [item["hook"] for item in controller.hooks_run if item["unit"] == early]
    controller.remove_unit(model, early)
    controller.settle(fail_fast=True)
    assert controller.leader(model, APP) is None  # nobody to lead
    late = controller.add_unit(model, APP)
    controller.settle(fail_fast=True)
    assert controller.leader(model, APP) == late
    assert "leader-elected" in [item["hook"] for item in controller.hooks_run if item["unit"] == late]
    with controller.in_hook(model, late):
        assert hookenv.is_leader()


def test_a_refresh_to_a_charm_without_the_peer_endpoint_is_refused_as_juju_refuses_it(controller, charms, tmp_path):
    controller, model = controller
    stripped = tmp_path / "without-coordinator"
    shutil.copytree(str(charms["ops"]), str(stripped))
    metadata = yaml.safe_load((stripped / "metadata.yaml").read_text())
    del metadata["peers"]["coordinator"]
    (stripped / "metadata.yaml").write_text(yaml.safe_dump(metadata))
    with pytest.raises(UpgradeRefused, match='would break relation "kubernetes-control-plane:coordinator"'):
        controller.upgrade(model, APP, str(stripped))
    controller.upgrade(model, APP, str(charms["ops"]))  # 1.29+ keeps the endpoint: accepted
    queued = []
    while True:
        item = controller.pop_hook()
        if item is None:
            break
        queued.append((item["unit"], item["hook"]))
    units = controller.units(model, APP)
    assert [hook for unit, hook in queued if unit == units[0]][:2] == ["upgrade-charm", "config-changed"]
    # a peer endpoint new in the charm gets its relation, joined by every unit
    assert {unit for unit, hook in queued if hook == "peer-relation-created"} == set(units)
    assert sum(hook == "peer-relation-joined" for _, hook in queued) == len(units) * (len(units) - 1)


def test_a_removed_relation_is_added_again_only_once_every_unit_ran_its_broken_hook(controller, charms):
    """Found by the explorer: the simulator let a schedule relate again while units had not run the old
    relation's hooks, so a unit saw the new relation before the old one broke (Juju refuses that:
    "relation ... is dying, but not yet removed"), and kept the request it had published on the old one."""
    controller, model = controller
    controller.deploy(model, "vault", str(charms["vault"]), 1)
    number = controller.relate(model, APP, "vault-kv", model, "vault", "secrets")
    with pytest.raises(RelationExists, match="already exists"):
        controller.relate(model, "vault", "secrets", model, APP, "vault-kv")
    controller.settle(fail_fast=True)
    controller.remove_relation(number)
    with pytest.raises(RelationExists, match="is dying, but not yet removed"):
        controller.relate(model, APP, "vault-kv", model, "vault", "secrets")
    controller.settle(fail_fast=True)
    assert controller.relate(model, APP, "vault-kv", model, "vault", "secrets") != number
