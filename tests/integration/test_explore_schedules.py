"""A fixed, derandomized set of lifecycle schedules (tests/explore/lifecycle.py) in `make test`.

``make explore`` draws new schedules for EXPLORE_MINUTES; here hypothesis draws the same few every run
(derandomize), so the suite stays within its time and a failure here is a failure of the code, not of luck.
Every defect the explorer found is also a named test (see the README, "What the explorer found").
"""

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import get_state_machine_test

from tests.explore import lifecycle

#: how many schedules, and how long each may be: what fits the 10 minutes of `make test`
SCHEDULES, STEPS = 4, 12


@pytest.fixture(scope="module", autouse=True)
def one_deployment():
    """The explorer's deployment, made once for this module; its OpenBao and etcd stopped by process id."""
    yield
    lifecycle.close()


def test_a_fixed_set_of_lifecycle_schedules_keeps_every_invariant_and_ends_with_every_unit_ready():
    test = get_state_machine_test(
        lifecycle.Lifecycle,
        settings=settings(
            max_examples=SCHEDULES,
            stateful_step_count=STEPS,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.generate],  # a failure is reported as found: shrinking is make explore's
        ),
    )
    before = dict(lifecycle.TOTALS)
    test()
    assert lifecycle.TOTALS["schedules"] - before["schedules"] >= SCHEDULES - 1  # hypothesis may skip a repeat
    assert lifecycle.TOTALS["hooks"] > before["hooks"]


def test_a_deployment_put_back_has_its_relation_again_after_a_schedule_removed_it():
    """Found by the explorer: a schedule that removed the vault relation left the next one (on the deployment
    put back, relation restored) without it in ``Cluster.relations``; removing it again raised KeyError."""
    made = lifecycle.deployment()
    cluster = made.fresh()
    cluster.unrelate(made.model)
    assert made.model not in cluster.relations
    cluster = made.fresh()
    number = cluster.relations[made.model]
    assert cluster.controller.relation_data(number)  # the controller put back has that relation
    cluster.unrelate(made.model)  # no KeyError: the relation the controller has again is the one removed
