"""The lifecycle explorer's findings (tests/explore/lifecycle.py), each replayed as hypothesis shrunk it.

A file of their own beside tests/integration/test_explore_schedules.py (the fixed set of schedules), so that
make test's two workers share them.  Each replays the steps of a schedule that broke an invariant, on the
explorer's deployment (a single-node Vault here, as in the fixed set); the explorer's checks after every hook
and at the end of the schedule are the assertions, with a few more of the test's own.  The README lists them
all ("What the explorer found").
"""

import pytest

from tests.explore import lifecycle
from tests.support.vault_provider import EVERY_RUN

pytestmark = pytest.mark.usefixtures("explorer_deployment")  # one deployment for the module (conftest)


def test_a_unit_added_after_a_relation_readded_and_a_rollback_past_a_finished_rotation_reads_every_secret():
    """Found by the explorer (seed 1389652055, shrunk by hypothesis to these steps): a rotation (rewrite=auto)
    finished on the build with backend charm-{model-uuid}-{app}; the vault relation removed and added again
    (Vault sealed in between); a rollback to the charm-{app} build; a unit added.  The move back kept the key
    charm-{app} held from before the rotation (a move never replaced a key its target held), and the added unit
    was given it under key1: an apiserver could not read a Secret.  Now the move back replaces a value still as
    the application left it (``migration._left_behind``), and every apiserver reads every Secret."""
    machine = lifecycle.Lifecycle()
    machine.starting_point(mode=EVERY_RUN, start="rotating", auto=True, hooks=0)
    machine.second_model()  # settles: the unattended rotation runs to its end
    assert machine._phase() == "done"
    machine.remove_relation()
    machine.settle()  # every unit runs its relation-broken: Juju adds the relation again only then
    machine.seal_vault()
    machine.add_relation()
    machine.roll_back()
    machine.change_leader(index=1)
    machine.add_unit()
    machine.change_leader(index=0)
    machine.refresh_secrets()
    machine.teardown()  # settles; the apiservers' check after every hook raises if a Secret is unreadable
    legacy = "charm-" + lifecycle.APP
    assert machine.cluster.vault_fingerprint(legacy) == machine.cluster.vault_fingerprint(
        machine.cluster.new_backend(machine.model)
    )
    assert len(set(machine.cluster.file_fingerprints(machine.model).values())) == 1


def test_a_rotation_started_while_units_are_dying_waits_for_them_before_its_next_phase():
    """Found by the explorer (shrunk by hypothesis): units removed while their hooks were killed, then an
    unattended rotation started.  A dying unit is asked no acknowledgement, and the leader went on to promote
    while the dying unit's apiserver (running until its stop hook) still had only the old key: it could not
    read a Secret stored under key2.  Now no phase starts while a unit is dying (``coordination._waiting_for``);
    the apiservers' check after every hook raises if one cannot read a Secret."""
    machine = lifecycle.Lifecycle()
    machine.starting_point(mode=EVERY_RUN, start="1.28", auto=False, hooks=16)
    machine.refresh_secrets()
    machine.remove_unit(index=2)
    machine.kill_the_next_hook(k=3)
    machine.remove_unit(index=0)
    machine.refresh_secrets()
    machine.kill_the_next_hook(k=3)
    machine.remove_unit(index=3)
    machine.kill_the_next_hook(k=1)
    machine.kill_the_next_hook(k=1)
    machine.rotate(auto=True)
    machine.second_model()  # settles, the rotation with it
    machine.teardown()
    assert machine._phase() == "done"


def test_an_unattended_rotation_does_not_retire_the_old_key_while_a_dying_unit_writes_with_it():
    """Found by the explorer (shrunk by hypothesis): an unattended rotation in promote, Vault sealed, units
    added and removed while hooks were killed.  The leader went through rewrite to retire while a dying unit
    (its hooks queued behind, its apiserver running) still wrote with key1, the old key, which retire took out
    of the other files.  Now the leader waits for a dying unit to be gone before any phase starts;
    ``RotationInvariant`` (every write key in every other file) raises after the hook that would break it."""
    machine = lifecycle.Lifecycle()
    machine.starting_point(mode=EVERY_RUN, start="rotating", auto=True, hooks=15)
    machine.kill_the_next_hook(k=2)
    machine.seal_vault()
    machine.add_unit()
    machine.remove_unit(index=2)
    machine.remove_unit(index=3)
    machine.kill_the_next_hook(k=1)
    machine.kill_the_next_hook(k=1)
    machine.refresh_secrets()
    machine.settle()
    machine.remove_unit(index=1)
    machine.settle()
    machine.remove_unit(index=3)
    machine.settle()
    machine.finish()
    machine.kill_the_next_hook(k=1)
    machine.refresh_secrets()
    machine.run_some_hooks(count=2)
    machine.settle()
    machine.teardown()
    assert machine._phase() == "done"


def test_a_unit_added_during_a_rotation_that_becomes_leader_confirms_the_rewrite_with_another_units_census():
    """Found by the explorer (shrunk by hypothesis): a unit added during a manual rotation is held without a
    file, so its kube-apiserver is never configured; it became leader in the rewrite phase and could not read
    etcd: finish-encryption-key-rotation was refused after a full rewrite, force=true the only way it named.
    Now its status names the units to run it on instead; there the census is taken and handed to the leader on
    the peer relation (``rewrite_check.verified_elsewhere``), which confirms with it.  The end of the schedule
    follows that remedy, for both rewrites of the rotation, and asserts every unit ready."""
    machine = lifecycle.Lifecycle()
    machine.starting_point(mode=EVERY_RUN, start="rotating", auto=False, hooks=9)
    machine.run_some_hooks(count=6)
    machine.remove_unit(index=2)
    machine.second_model()
    machine.add_unit()
    machine.change_leader(index=2)
    machine.add_unit()
    machine.finish()
    machine.settle()
    machine.finish()
    machine.teardown()
    assert machine._phase() == "done"
    logs = "".join(machine.controller.log(machine.model, unit) for unit in machine._units())
    assert "census found every Secret under key2" in logs  # confirmed with another unit's census


def test_a_unit_added_after_every_unit_with_the_keys_was_removed_during_a_rotation_finishes_it():
    """Found by the explorer (a 30-minute run, shrunk by hypothesis): an unattended rotation, Vault sealed and
    unsealed, every unit that had the keys removed; the unit left was added during the rotation and held
    without a file, and no unit led (the simulator kept the removed leader).  Now Juju's election is modelled,
    and a unit with nobody else's apiserver to keep in step gets its file where the charm's fits the phase."""
    machine = lifecycle.Lifecycle()
    machine.starting_point(start="rotating", mode=EVERY_RUN, hooks=55, auto=True)
    machine.seal_vault()
    machine.remove_unit(index=2)
    machine.add_unit()
    machine.finish(elsewhere=False)
    machine.kill_the_next_hook(k=5)
    machine.unseal_vault()
    machine.kill_the_next_hook(k=5)
    machine.remove_unit(index=1)
    machine.remove_unit(index=3)
    machine.remove_unit(index=1)
    machine.update_status_round()
    machine.seal_vault()
    machine.remove_unit(index=0)
    machine.remove_unit(index=0)
    machine.settle()
    machine.run_some_hooks(count=6)
    machine.add_unit()
    machine.kill_the_next_hook(k=1)
    machine.settle()
    machine.teardown()
    assert machine._phase() == "done"
    assert len(machine._units()) == 1  # every unit that had the keys is gone
