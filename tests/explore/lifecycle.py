"""The whole lifecycle under schedules hypothesis chooses (stateful testing) over the simulator, real OpenBao
(a 3-node raft cluster) and a real etcd behind the encrypting apiservers.

One deployment (3 units of the kubernetes-control-plane-shaped consumer built as 1.27 was first released,
backend ``charm-{app}``, related to the vault application) is made once per process and put back before each
schedule (``SnapshotDeployment.fresh``).  A schedule is a sequence of rules, each allowed only where Juju and
the layer's documented procedure allow it:

- units: add one (up to 4), remove one (down to 2), change the leader;
- hooks: run the next few queued hooks; run all; kill the next hook at its k-th Vault request or file write
  (Juju runs it again); an update-status round;
- Vault: seal and unseal it; kill its active node, start it again; ``refresh-secrets`` (a new secret_id for
  every unit), in both of the vault charm's secret_id behaviours (a schedule picks one); remove the relation
  and add it again;
- charm: upgrade to the build with backend ``charm-{model-uuid}-{app}`` and secure storage on; roll back to
  the first build; refresh to kubernetes-control-plane 1.29+ (kcp-ops);
- rotation: rotate (manual or ``rewrite=auto``); the operator's rewrite, complete or missing one Secret;
  ``finish-encryption-key-rotation`` on the leader or on another unit;
- a second model sharing the Vault (one unit of the current build), whose key must never change.

A schedule starts from the 1.27 build, from the build with this layer (upgraded and settled), or in the
middle of a rotation on it (``starting_point``): rotations need many hooks to reach their later phases,
and the rules that matter most are the ones that happen during one.

After every hook: the hook succeeded (or was killed as asked); every running apiserver reads every Secret
in etcd (``ApiServers``, always on); ``RotationInvariant`` (every write key readable everywhere, one name one
key, no key leaves a file before its rewrite is confirmed); the other model's key unchanged.  At the end of
a schedule: Vault unsealed and related, hooks settled, two update-status rounds; then every unit of the
consumer is ready and active, or shows ``blocked`` with a remedy; the remedy (the rotation's rewrite and
``finish-encryption-key-rotation``) is followed, and then every unit is ready.

Vault is a 3-node raft cluster (one vault unit per node, each publishing its node's URL, as vault units
without a VIP do), its storage put back from a copy of its files before each schedule; a rule kills the
active node (the other two elect another) and another starts it again.

What it leaves out: refreshes and rollbacks and relation removal while a rotation runs (the README's
procedure: finish the rotation first), ``force=true``, and removing the last unit that has the keys in
promote or rewrite (a limitation the README states).
"""

import json
import re
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, get_state_machine_test, initialize, precondition, rule

from tests.jujusim.state import locked
from tests.support import rotation
from tests.support.cluster import APP
from tests.support.deployment import SnapshotDeployment
from tests.support.vault_provider import EVERY_RUN, NEW_APPROLE

ENCRYPTION_DIR = "/var/snap/kube-apiserver/common/encryption"
LEGACY, SECURE, OPS = "legacy", "ss", "ops"
#: OpenBao raft nodes (one vault unit each, publishing its node's URL): a rule kills the active one
VAULT_NODES = 3
READY = "layer.vault-kv.ready"

#: what every schedule run in this process adds up to (make explore prints it)
TOTALS = {"schedules": 0, "steps": 0, "hooks": 0}
#: the steps of the schedule run last, in words
LAST: List[str] = []
#: called with the steps at the end of every schedule (make explore's progress line)
ON_SCHEDULE_END: List[Any] = []
#: a signal make explore was sent: no hook runs any more, in whatever schedule hypothesis runs (shrinking too)
STOP: List[int] = []


class Stopped(KeyboardInterrupt):
    """make explore was told to stop (SIGTERM): raised before every hook, so no phase of hypothesis' can go on
    (its replay of a failing schedule catches even a KeyboardInterrupt once; the next hook raises it again)."""


class _Retry(Exception):
    """A hook Juju runs again later (requeued)."""


class _Deployment(SnapshotDeployment):
    """The schedules' starting point; made once per process (see ``deployment``)."""


_made: Dict[str, _Deployment] = {}


def deployment() -> _Deployment:
    """The one deployment of this process, built the first time it is asked for."""
    if "one" not in _made:
        from tests.support import build_charms

        workdir = Path(tempfile.mkdtemp(prefix="explore-"))
        _made["one"] = _Deployment(build_charms.build(), workdir, build=LEGACY, units=3, vault_nodes=VAULT_NODES)
    return _made["one"]


def schedules(steps: int, examples: int, fixed: bool = False):
    """The test that runs ``examples`` schedules of up to ``steps`` rules (hypothesis' first is its simplest).

    ``fixed`` (make test): the same schedules every run (derandomized), a failure reported as found;
    otherwise (make explore) drawn from the seed given with ``hypothesis.seed``, a failure shrunk and
    printed with its ``@reproduce_failure`` blob.  Nothing is kept between runs.
    """
    return get_state_machine_test(
        Lifecycle,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            derandomize=fixed,
            print_blob=not fixed,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.generate] if fixed else [Phase.generate, Phase.shrink],
        ),
    )


def close() -> None:
    """Stop the deployment's OpenBao and etcd (by their process ids)."""
    made = _made.pop("one", None)
    if made is not None:
        made.cleanup()


class Lifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        made = deployment()
        self.cluster = made.fresh()
        self.model = made.model
        for model in list(self.cluster.apiservers.etcd):  # a model an earlier schedule added (its etcd stopped)
            if model != self.model:
                self.cluster.apiservers.forget(model)
        self.backend = self.cluster.new_backend(self.model)
        self.controller = self.cluster.controller
        self.build = LEGACY
        self.sealed = False
        self.killed: Optional[int] = None  # the Vault node a rule killed, until restarted
        self.related = True
        self.other: Optional[Dict[str, Any]] = None
        self.watch = rotation.RotationWatch(self.cluster, self.model, self.backend)
        self.steps: List[str] = []
        LAST[:] = []
        TOTALS["schedules"] += 1

    # -- running hooks, with the checks after every one --------------------------------

    def _after(self, item, process) -> None:
        TOTALS["hooks"] += 1
        if process.returncode not in (0, 137) and self.sealed and not item["unit"].startswith(APP + "/"):
            # the tests' vault application (vault-sim) fails its hooks while Vault is sealed, where the vault
            # charm would wait: Juju runs them again; only the consumer's hooks are judged here
            self.controller.requeue_front(item)
            raise _Retry()
        if process.returncode not in (0, 137):
            raise AssertionError(
                "{} on {} failed (exit {}):\n{}".format(
                    item["hook"], item["unit"], process.returncode, process.stderr[-3000:]
                )
            )
        self.watch(item, process)
        if self.other is not None and self.other["key"] is not None and not self.sealed:
            now = self.cluster.vault_fingerprint(self.other["backend"])
            assert now == self.other["key"], "the other model's key changed ({} -> {})".format(self.other["key"], now)

    def _run(self, limit: int) -> int:
        ran = 0
        while ran < limit:
            if STOP:
                raise Stopped()
            item = self.controller.pop_hook()
            if item is None:
                break
            process = self.controller.run_hook(item)
            ran += 1
            try:
                self._after(item, process)
            except _Retry:
                if ran % 50 == 0:  # a sealed Vault: let the consumer's queued hooks run meanwhile
                    break
                continue
            if process.returncode == 137:
                self.controller.requeue_front(item)  # Juju runs a hook that died again
        return ran

    def _settle(self) -> None:
        if self._run(3000) >= 3000:
            raise AssertionError("the model did not settle in 3000 hooks")

    def _step(self, text: str) -> None:
        self.steps.append(text)
        LAST.append(text)
        TOTALS["steps"] += 1

    def _units(self) -> List[str]:
        return self.cluster.units(self.model)

    def _phase(self) -> str:
        return rotation.phase(self.cluster, self.backend) if self.build == SECURE else "none"

    def _settled(self) -> bool:
        with locked(self.controller.state_path, write=False) as state:
            return not state["queue"]

    def _relation_dying(self) -> bool:
        """Whether the removed vault relation is still dying (a unit has not run its relation-broken yet):
        Juju refuses to add it again until it is gone."""
        with locked(self.controller.state_path, write=False) as state:
            return any(
                relation.get("dying") and any(end["model"] == self.model for end in relation["ends"])
                for relation in state["relations"].values()
                if not relation.get("peer")
            )

    def _rotating(self) -> bool:
        return self._phase() not in ("none", "done")

    # -- rules ---------------------------------------------------------------------------

    @initialize(
        mode=st.sampled_from([EVERY_RUN, NEW_APPROLE]),
        start=st.sampled_from(["1.27", "1.28", "rotating"]),
        auto=st.booleans(),
        hooks=st.integers(0, 60),
    )
    def starting_point(self, mode: str, start: str, auto: bool, hooks: int) -> None:
        """The vault charm's secret_id behaviour (as deployed: a new one on every request; or what its code
        intends), and where the schedule starts: the 1.27 build; upgraded to the build with this layer and
        settled; or, from there, a rotation started and ``hooks`` of its hooks run (the rest of the
        schedule then happens in the middle of it)."""
        if mode != EVERY_RUN:
            self.cluster.vault_issues_secret_ids(mode)
        self._step("secret_ids {}, start {}".format(mode, start))
        if start in ("1.28", "rotating"):
            self.upgrade()
            self._settle()
        if start == "rotating":
            self.rotate(auto)
            self._step("run {} hooks".format(hooks))
            self._run(hooks)

    @rule(count=st.integers(1, 6))
    def run_some_hooks(self, count: int) -> None:
        self._step("run {} hooks".format(count))
        self._run(count)

    @rule()
    def settle(self) -> None:
        self._step("settle")
        self._settle()

    @rule(k=st.integers(1, 6))
    def kill_the_next_hook(self, k: int) -> None:
        """The next queued hook dies at its k-th Vault request or file write; Juju runs it again later."""
        if STOP:
            raise Stopped()
        item = self.controller.pop_hook()
        if item is None:
            return
        self._step("kill {} on {} at step {}".format(item["hook"], item["unit"], k))
        self.controller.kill_at_vault_request(item["model"], item["unit"], k, files_under=ENCRYPTION_DIR)
        process = self.controller.run_hook(item)
        self.controller.stop_killing(item["model"], item["unit"])
        try:
            self._after(item, process)
        except _Retry:
            return  # the vault application's hook failed while Vault is sealed: requeued, Juju runs it again
        if process.returncode == 137:
            self.controller.requeue_front(item)

    @rule()
    def update_status_round(self) -> None:
        self._step("update-status round")
        for unit in self._units():
            self.controller.queue(self.model, unit, "update-status")

    @precondition(lambda self: len(self.cluster.units(self.model)) < 4)
    @rule()
    def add_unit(self) -> None:
        self._step("add-unit")
        self.controller.add_unit(self.model, APP)

    @precondition(lambda self: len(self.cluster.units(self.model)) > 2)
    @rule(index=st.integers(0, 3))
    def remove_unit(self, index: int) -> None:
        """Any unit, but not the last one that has the keys in promote or rewrite (README: units added since
        are held without a file there, and the charm's own first file would give key1 a second key)."""
        units = self._units()
        unit = units[index % len(units)]
        if self._phase() in ("promote", "rewrite") and not [
            other
            for other in units
            if other != unit
            and not self.controller.unit(self.model, other).get("dying")
            and rotation.file_key_list(self.cluster, self.model, other)
        ]:
            return
        self._step("remove-unit {}".format(unit))
        self.controller.remove_unit(self.model, unit)

    @rule(index=st.integers(0, 3))
    def change_leader(self, index: int) -> None:
        units = self._units()
        unit = units[index % len(units)]
        self._step("leader -> {}".format(unit))
        self.controller.set_leader(self.model, APP, unit)

    @precondition(lambda self: not self.sealed)
    @rule()
    def seal_vault(self) -> None:
        """Every running node sealed (Vault restarted and not unsealed yet): nothing answers."""
        self._step("seal Vault")
        for node in self.cluster.bao.nodes:
            if node.alive:
                self.cluster.bao.seal(node)
        self.sealed = True

    @precondition(lambda self: self.sealed)
    @rule()
    def unseal_vault(self) -> None:
        self._step("unseal Vault")
        for node in self.cluster.bao.nodes:
            if node.alive:
                self.cluster.bao.restart(node)
        self.cluster.bao.wait_for_active()
        self.sealed = False

    @precondition(lambda self: not self.sealed and self.killed is None and len(self.cluster.bao.nodes) > 1)
    @rule()
    def kill_the_active_vault_node(self) -> None:
        """SIGKILL the node that is active (its machine lost power); the other two elect a new one.  Hooks go
        on, each unit reaching Vault through the next vault unit's URL."""
        node = self.cluster.bao.wait_for_active()
        self._step("kill the active Vault node ({})".format(node.number))
        self.cluster.bao.kill(node)
        self.cluster.bao.wait_for_active()
        self.killed = node.number

    @precondition(lambda self: self.killed is not None)
    @rule()
    def restart_the_killed_vault_node(self) -> None:
        """It rejoins as a standby (and stays sealed while Vault is)."""
        self._step("restart Vault node {}".format(self.killed))
        self.cluster.bao.restart(self.cluster.bao.nodes[self.killed], unseal=not self.sealed)
        self.killed = None

    @rule()
    def refresh_secrets(self) -> None:
        self._step("refresh-secrets")
        self.cluster.refresh_secrets()

    @precondition(lambda self: self.related and self.build != OPS and not self._rotating() and self._settled())
    @rule()
    def remove_relation(self) -> None:
        """On a settled model: the simulator drops the relation from every unit's relation-list at once,
        where Juju keeps a remote unit listed until the local unit's departed hook for it; a hook queued
        before the removal would see what no Juju unit sees (kubernetes-control-plane 1.28's upgrade-charm
        then fails, LP-worthy in the charm, not here)."""
        self._step("remove-relation")
        self.cluster.unrelate(self.model)
        self.related = False

    @precondition(lambda self: not self.related and not self._relation_dying())
    @rule()
    def add_relation(self) -> None:
        self._step("relate")
        self.cluster.relate(self.model)
        self.related = True

    @precondition(lambda self: self.build == LEGACY and self.related)
    @rule()
    def upgrade(self) -> None:
        """To backend charm-{model-uuid}-{app} with the layer's secure storage on (both migrations run)."""
        self._step("upgrade to charm-{model-uuid}-{app}")
        self.cluster.upgrade(self.model, SECURE)
        self.build = SECURE

    @precondition(lambda self: self.build == SECURE and self.related and not self._rotating())
    @rule()
    def roll_back(self) -> None:
        self._step("roll back to charm-{app}")
        self.cluster.upgrade(self.model, LEGACY)
        self.build = LEGACY

    @precondition(lambda self: self.build == SECURE and self.related and not self._rotating() and self._settled())
    @rule()
    def refresh_to_129(self) -> None:
        """From the build with this layer (1.28), on a settled model: 1.29 takes over the state the layer left.

        Not from the first build (1.27, ``charm-{app}``): the layer never ran there, so there is nothing of
        its to take over (kubernetes-control-plane is refreshed one release at a time).  Not while a unit
        is still being added: the 1.29 model starts its apiserver in any hook, even before its relations'
        hooks (the real charm waits for etcd and its certificates), which is 1.29's to answer for.
        """
        self._step("refresh to 1.29+")
        self.cluster.upgrade(self.model, OPS)
        self.build = OPS

    @precondition(lambda self: self.build == SECURE and not self._rotating())
    @rule(auto=st.booleans())
    def rotate(self, auto: bool) -> None:
        leader = rotation.leader(self.cluster, self.model)
        self._step("rotate-encryption-key{}".format(" rewrite=auto" if auto else ""))
        rotation.action(self.cluster, self.model, leader, "rotate-encryption-key", rewrite="auto" if auto else "manual")

    @precondition(lambda self: self.build == SECURE and self._phase() in rotation.REWRITE_PHASES)
    @rule(partial=st.booleans())
    def operator_rewrites(self, partial: bool) -> None:
        """kubectl replace through the leader's apiserver, or another one's if the leader runs none (a unit
        added during the rotation, held without a file, became leader)."""
        leader = rotation.leader(self.cluster, self.model)
        running = self.cluster.apiservers.running(self.model)
        via = leader if leader in running else next(iter(sorted(running)), None)
        if via is None:
            return
        self._step("rewrite the Secrets{}".format(", missing one" if partial else ""))
        names = sorted(self.cluster.apiservers.secret_names(self.model))
        self.cluster.apiservers.rewrite(self.model, via=via, skip=set(names[:1]) if partial else set())

    @precondition(lambda self: self.build == SECURE and self._rotating())
    @rule(elsewhere=st.booleans())
    def finish(self, elsewhere: bool = False) -> None:
        """On the leader; or (``elsewhere``) on the first other unit, which verifies and hands the census on."""
        leader = rotation.leader(self.cluster, self.model)
        unit = leader
        if elsewhere:
            unit = next((other for other in self._units() if other != leader), leader)
        self._step("finish-encryption-key-rotation{}".format("" if unit == leader else " on " + unit))
        answer = rotation.action(self.cluster, self.model, unit, "finish-encryption-key-rotation")
        assert answer["returncode"] == 0, answer["stderr"][-2000:]
        if answer["failed"] is None and self._phase() not in rotation.REWRITE_PHASES:
            # accepted: etcd showed every Secret under the new write key at that moment
            census = self.cluster.apiservers.stored_under(self.model)
            assert len(census) == 1, "finish accepted while Secrets are under {}".format(sorted(census))

    @precondition(lambda self: self.other is None and not self.sealed)
    @rule()
    def second_model(self) -> None:
        """Another model sharing the Vault, settled at once; its key must never change afterwards."""
        self._step("a second model")
        other = self.cluster.add_model("other", build="current", units=1)
        backend = self.cluster.new_backend(other)
        self.other = {"model": other, "backend": backend, "key": None}
        self._settle()
        self.other["key"] = self.cluster.vault_fingerprint(backend)
        assert self.other["key"], "the second model got no key"

    # -- the end of every schedule -----------------------------------------------------

    def teardown(self) -> None:
        outcome = "violation"
        try:
            self._settle_at_the_end()
            outcome = "ok"
        finally:
            if self.other is not None:
                self.cluster.apiservers.forget(self.other["model"])
            for report in ON_SCHEDULE_END:
                report(outcome, self.steps)

    def _settle_at_the_end(self) -> None:
        if self.killed is not None:
            self.restart_the_killed_vault_node()
        if self.sealed:
            self.unseal_vault()
        if not self.related:
            self._settle()  # the removed relation's departed and broken hooks first: Juju refuses it until then
            self.add_relation()
        self._settle()
        self._update_status_until_quiet()
        for _ in range(4):  # the remedies a unit shows, followed
            remedy = self._remedy()
            if remedy is None:
                break
            remedy()
            self._settle()
            self._update_status_until_quiet()
        for unit in self._units():
            status = self.controller.status(self.model, unit)
            if self.build != OPS:
                assert READY in self.cluster.flags(self.model, unit), "{} is not ready: {}".format(unit, status)
            assert status["status"] == "active", "{} ends {}: {}".format(unit, status["status"], status["message"])

    def _update_status_until_quiet(self) -> None:
        """Two update-status rounds; more while a rotation goes on by itself (a single unit has no peer to
        give its leader a hook, so its rotation moves one step an update-status: the README says so)."""
        for number in range(24):
            self.update_status_round()
            self._settle()
            blocked = any(self.controller.status(self.model, u)["status"] == "blocked" for u in self._units())
            if number >= 1 and (blocked or not self._rotating()):
                return

    def _remedy(self):
        """What a blocked unit asks the operator to do, as a callable; None when nothing is asked."""
        blocked = {
            unit: self.controller.status(self.model, unit)
            for unit in self._units()
            if self.controller.status(self.model, unit)["status"] == "blocked"
        }
        if not blocked:
            return None
        leader = rotation.leader(self.cluster, self.model)
        message = " ".join(status["message"] for status in blocked.values())
        if "finish-encryption-key-rotation" in message and self._phase() in rotation.REWRITE_PHASES:
            named = re.search(r"run finish-encryption-key-rotation on ([^ ,;]+)", message)
            where = named.group(1) if named else leader  # a leader that cannot read etcd names another unit

            def rewrite_and_finish() -> None:
                self.operator_rewrites(False)
                answer = rotation.action(self.cluster, self.model, where, "finish-encryption-key-rotation")
                assert answer["failed"] is None, "finish refused after a full rewrite: {}".format(answer["failed"])

            return rewrite_and_finish
        raise AssertionError("blocked with no remedy the explorer knows: {}".format(json.dumps(blocked)))
