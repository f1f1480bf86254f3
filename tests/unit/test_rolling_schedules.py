"""The turn protocol under every order of hooks hypothesis can find (issue 24).

The simulator runs hooks in one order, its queue's; Juju runs different
units' hooks in parallel, so their order is any.  Here a model of the units
(each unit's file, its acknowledgement and relay on the peer relation, the
turn in leader data, one pending-hook mark per unit as Juju coalesces them)
runs the layer's own decisions (``rolling.decide``, ``rolling.may_apply``,
``rotation_state.next_state``) with hooks, leader changes and the operator's
confirmations in orders hypothesis chooses, and checks after every step:

- between two consecutive hooks of the leader at most one apiserver restarts
  (the leader's own included; a restart in a leader hook counts in both windows);
- no unit changes its file outside its turn;
- once every pending hook ran (the operator confirming each rewrite), the
  rotation is done and every unit holds the final file.

The model's hook is what ``write_encryption_config`` and
``coordination.at_hook_exit`` do, reduced to the turn: the leader decides
with the turn as the hook found it, a unit changes its file only when
``may_apply`` says so, and acknowledges at exit when its file holds the plan.
"""

from typing import Any, Dict, List, Optional

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from charms.layer.vault_kv.secure_storage import rolling
from charms.layer.vault_kv.secure_storage import rotation_state as rs

OLD, NEW = "A" * 32, "B" * 32
BEFORE = [("key1", OLD)]


class TurnProtocol(RuleBasedStateMachine):
    @initialize(size=st.integers(min_value=2, max_value=5), leader=st.integers(min_value=0, max_value=4))
    def deploy_and_rotate(self, size: int, leader: int) -> None:
        self.units = ["app/{}".format(n) for n in range(size)]
        self.leader = self.units[leader % size]
        self.files: Dict[str, List] = {unit: list(BEFORE) for unit in self.units}
        self.acks: Dict[str, Any] = {}
        self.seen: Dict[str, str] = {}
        self.turn: Optional[Dict[str, Any]] = None
        self.pending = set()
        self.window: set = set()
        self.most = 0
        self.state = rs.start(OLD, "key1", ["key1"], NEW)
        self._advance(self.leader)  # the action: its first turn

    # -- what Juju delivers ---------------------------------------------------------

    def _others(self, unit: str) -> None:
        self.pending |= {other for other in self.units if other != unit}

    def _publish_turn(self, turn: Optional[Dict[str, Any]], by: str) -> None:
        if turn != self.turn:
            self.turn = turn
            self._others(by)  # leader-settings-changed

    def _advance(self, me: str) -> None:
        """``coordination.advance``: decide, hand out turns, enter phases (app data: every unit told)."""
        for _ in range(2):
            decision = rolling.decide(self.state, self.units, self.acks, self.turn, me, 0.0)
            if decision.turn is not None:
                self._publish_turn(decision.turn, me)
            if not decision.enter_next:
                return
            try:
                _, following = rs.next_state(self.state)
            except rs.RotationRefused:
                return
            self.state = following
            self._others(me)  # the leader's digest changed: leader-settings-changed
            if not rs.is_running(self.state):
                self._publish_turn(None, me)
                return

    def _plan(self) -> Optional[List]:
        planned = rs.file_plan(self.state, rs.vault_key_in(self.state) if rs.is_running(self.state) else NEW)
        return planned[0] if planned else None

    def _hook(self, unit: str) -> None:
        self.pending.discard(unit)
        leader = unit == self.leader
        at_start = self.turn
        running = rs.is_running(self.state)
        may = running and rolling.may_apply(self.state, at_start, unit, leader, alone=len(self.units) == 1)
        if leader and running:
            before = self.state
            self._advance(unit)
            if self.state is not before:
                may = rs.is_running(self.state) and rolling.may_apply(self.state, at_start, unit, True, False)
        plan = self._plan()
        restarted = False
        if plan is not None and self.files[unit] != plan:
            if running and not may:
                pass  # not its turn: the file keeps what it has
            else:
                assert running, "a file changed with no rotation running"
                holder = (rolling.turn_of(self.state, at_start) or {}).get("unit")
                assert holder == unit or len(self.units) == 1, "{} changed its file in {}'s turn".format(unit, holder)
                self.files[unit] = list(plan)
                restarted = True
        if rs.is_running(self.state) and plan is not None and self.files[unit] == plan:
            ack = rs.acknowledgement(self.state, unit, self.files[unit])
            if self.acks.get(unit) != ack:
                self.acks[unit] = ack
                self._others(unit)  # relation-changed on the peer relation
        turn = self.turn
        if turn and turn.get("witness") == unit and not leader:
            theirs = self.acks.get(turn["unit"]) or {}
            relayed = rolling.token(turn) + (
                ":acknowledged"
                if (theirs.get("id"), theirs.get("phase"), theirs.get("unit"))
                == (turn["id"], turn["phase"], turn["unit"])
                else ""
            )
            if self.seen.get(unit) != relayed:
                self.seen[unit] = relayed
                self._others(unit)
        # the restart windows: a restart in a hook of the leader counts in both windows it bounds
        if restarted:
            self.window.add(unit)
        self.most = max(self.most, len(self.window))
        if leader:
            self.window = {unit} if restarted else set()

    # -- rules ------------------------------------------------------------------------------

    @precondition(lambda self: bool(self.pending))
    @rule(pick=st.integers(min_value=0, max_value=10**6))
    def run_a_pending_hook(self, pick: int) -> None:
        """Any unit with a pending hook runs it next: Juju orders different units' hooks in no way."""
        pending = sorted(self.pending)
        self._hook(pending[pick % len(pending)])

    @rule(pick=st.integers(min_value=0, max_value=10**6))
    def change_the_leader(self, pick: int) -> None:
        following = self.units[pick % len(self.units)]
        if following != self.leader:
            self.leader = following
            self.pending |= set(self.units)  # leader-elected and leader-settings-changed

    @precondition(lambda self: rs.is_running(self.state) and self.state["phase"] in rs.REWRITES)
    @rule()
    def the_operator_confirms_the_rewrite(self) -> None:
        if all(rs.acknowledged(self.state, self.acks.get(unit)) for unit in self.units):
            self.state = rs.confirm(self.state)
            self._advance(self.leader)  # finish-encryption-key-rotation moves on at once

    @invariant()
    def one_apiserver_restarts_between_two_leader_hooks(self) -> None:
        assert self.most <= 1, "{} restarted between two hooks of the leader".format(sorted(self.window))

    def teardown(self) -> None:
        """Every hook Juju owes runs (in unit order), the operator confirms each rewrite: the rotation ends."""
        for _ in range(100 * len(self.units) ** 2):  # far more than a rotation needs (about 12 n^2 hooks)
            if self.pending:
                self._hook(sorted(self.pending)[0])
            elif rs.is_running(self.state) and self.state["phase"] in rs.REWRITES:
                before = self.state
                self.the_operator_confirms_the_rewrite()
                assert self.state is not before, "a rewrite phase not every unit acknowledged, with no hook pending"
            else:
                break
        assert not rs.is_running(self.state), "stuck in phase {} with no hook pending".format(self.state["phase"])
        assert all(keys == [("key1", NEW)] for keys in self.files.values()), self.files
        assert self.most <= 1


TestTurnProtocol = TurnProtocol.TestCase
TestTurnProtocol.settings = settings(max_examples=60, stateful_step_count=80, deadline=None, derandomize=True)
