"""A fixed, derandomized set of lifecycle schedules (tests/explore/lifecycle.py) in `make test`.

``make explore`` draws new schedules for EXPLORE_MINUTES; here hypothesis draws the same few every run
(derandomize), so the suite stays within its time and a failure here is a failure of the code, not of luck.
The explorer's findings that could be pinned are named tests in tests/integration/test_explore_regressions.py
and tests/unit/test_explorer_regressions.py (and the one below); the README lists them all ("What the explorer
found").
"""

import pytest

from tests.explore import lifecycle

#: how many schedules, and how long each may be: what fits the 10 minutes of `make test`
SCHEDULES, STEPS = 3, 8


pytestmark = pytest.mark.usefixtures("explorer_deployment")  # one deployment for the module (conftest)


def test_a_fixed_set_of_lifecycle_schedules_keeps_every_invariant_and_ends_with_every_unit_ready():
    test = lifecycle.schedules(STEPS, SCHEDULES, fixed=True)  # a failure reported as found: make explore shrinks
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
