"""A refresh from the 1.28-shaped consumer (built with this layer) to kubernetes-control-plane 1.29+.

From 1.29 the charm is an ops charm without layer:vault-kv (tests/charms/kcp-ops models
its Vault KV and encryption-at-rest code): it takes over the secret_id and the token's
hash the layer left in unitdata, reads the same Vault paths, and writes a unit's file
itself (key1 = Vault's key) whenever the file's first key is not Vault's key.  Every
hook of every scenario is checked by the encrypting apiserver model Cluster registers
(tests/support/apiservers.py): every running apiserver reads every Secret stored so far.

- From ``legacy`` (charm-{app}) through ``current`` (charm-{model-uuid}-{app}) to 1.29,
  then units added: one key throughout, the credentials taken over (no unwrap of a spent
  token), under both ways the vault charm issues secret_ids.
- After a rotation done with the layer's actions: 1.29 keeps every file, and a unit it
  adds reads every Secret.
- In the middle of a rotation: safe in phase add (Vault still holds the old key, which
  every file lists first as key1); not from promote on: 1.29 rewrites a file whose first
  key is not Vault's to key1 = Vault's key while other files name the old key key1, and a
  unit it adds reads neither the Secrets stored under key2 nor those under the old key1.
  The unsafe cases are shown by catching the apiserver check's failure, then reading the
  stored Secrets with the files in question.
- Without the token hash the layer leaves, 1.29 unwraps the spent token and is blocked
  until refresh-secrets; a sealed Vault only makes it wait.  No hook fails.

The rotation scenarios start from one deployment saved at points of one rotation
(``RotationCheckpoints``), so the rotation is driven once for the whole file.
"""

import base64
import json
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.integration.upgrade_checks import file_bytes
from tests.support import rotation
from tests.support.cluster import APP
from tests.support.deployment import SnapshotDeployment
from tests.support.loading import load_kcp_ops
from tests.support.vault_provider import EVERY_RUN, NEW_APPROLE

OPS = load_kcp_ops()
LEGACY = "charm-" + APP
TOKEN_HASH = "reactive.data_changed.layer.vault-kv.token"
SECRET_ID = "layer.vault-kv.secret_id"
UNWRAP = "sys/wrapping/unwrap"
READY = {"status": "active", "message": OPS.READY}
CANNOT_READ = "apiserver cannot read Secrets"


def ok(answer):
    assert answer["returncode"] == 0, answer["stderr"][-2000:]
    assert answer["failed"] is None, answer["failed"]
    return answer["results"]


def ops_state(cluster, model, unit):
    """The 1.29 model's own stored state on ``unit`` (token hash, secret_id, reconciled)."""
    path = Path(cluster.controller.unit(model, unit)["dir"]) / OPS.STORED_STATE_FILE
    return json.loads(path.read_text())


def log_count(cluster, model, unit, line):
    return cluster.controller.log(model, unit).count(line)


def assert_took_over(cluster, model, left):
    """Each unit of ``left`` ({unit: its unitdata before the refresh}) logs in with the secret_id the layer left.

    It uses it because the token on the relation hashes as the layer recorded: no unwrap of a spent token.
    """
    for unit, unitdata in left.items():
        state = ops_state(cluster, model, unit)
        assert state["secret_id"] == unitdata[SECRET_ID] and state["token_hash"] == unitdata[TOKEN_HASH], unit
        assert log_count(cluster, model, unit, OPS.TOOK_OVER_SECRET_ID) == 1
        assert log_count(cluster, model, unit, OPS.TOOK_OVER_TOKEN_HASH) == 1
        assert log_count(cluster, model, unit, OPS.UNWRAPPING) == 0
        assert cluster.controller.status(model, unit) == READY


def unitdata_of(cluster, model):
    return {unit: cluster.controller.unitdata(model, unit) for unit in cluster.units(model)}


def running_config(cluster, model, unit):
    """The file ``unit``'s apiserver was last started with, as bytes."""
    record = json.loads(cluster.controller.unit_file(model, unit, rotation.APISERVER_RECORD))
    return base64.b64decode(record["config"])


def vault_value(cluster, backend):
    return cluster.bao.read("{}/kv/app".format(backend))["encryption_key"]


@contextmanager
def after_every_hook(cluster, check):
    cluster.controller.after_every_hook.append(check)
    try:
        yield check
    finally:
        cluster.controller.after_every_hook.remove(check)


class OneKeyNoBlockedUnit:
    """After every hook of ``model``: no hook failed, Vault holds ``key`` in each backend with one, no unit blocked."""

    def __init__(self, cluster, model, key, backends) -> None:
        self.cluster, self.model, self.key, self.backends = cluster, model, key, backends
        self.checks = 0

    def __call__(self, item, process=None) -> None:
        if item["model"] != self.model:
            return
        assert process is None or process.returncode == 0, (item, process.stderr[-2000:])
        for backend in self.backends:
            assert self.cluster.vault_fingerprint(backend) in (None, self.key), (item, backend)
        status = self.cluster.controller.status(self.model, item["unit"])
        assert status["status"] != "blocked", (item, status)
        self.checks += 1


# -- from charm-{app} through charm-{model-uuid}-{app} to 1.29 ----------------------------------------


def starts(cluster, model):
    """How often each unit's apiserver was (re)started."""
    records = {u: cluster.controller.unit_file(model, u, rotation.APISERVER_RECORD) for u in cluster.units(model)}
    return {unit: json.loads(record)["starts"] for unit, record in records.items()}


def test_a_refresh_to_129_after_the_move_takes_over_the_credentials_and_new_units_read_every_secret(
    cluster_for, make_bao
):
    cluster = cluster_for(make_bao())
    cluster.vault_issues_secret_ids(EVERY_RUN)  # first the vault charm as deployed, whatever this run's default
    model = cluster.add_model("k8s", build="legacy", units=2)
    cluster.settle(fail_fast=True)
    key, backend = cluster.vault_fingerprint(LEGACY), cluster.new_backend(model)
    watch = OneKeyNoBlockedUnit(cluster, model, key, [LEGACY, backend])
    with after_every_hook(cluster, watch):
        cluster.upgrade(model, "current")  # 1.28: the move to charm-{model-uuid}-{app}
        cluster.settle(fail_fast=True)
        assert cluster.vault_fingerprint(backend) == key
        old_units = cluster.units(model)
        left = unitdata_of(cluster, model)
        files, started = file_bytes(cluster, model), starts(cluster, model)

        mark = cluster.bao.mark()
        cluster.upgrade(model, "ops")
        cluster.settle(fail_fast=True)
        during_refresh = [entry["request"]["path"] for entry in cluster.bao.requests_since(mark)]
        assert_took_over(cluster, model, left)
        assert all(log_count(cluster, model, unit, OPS.WROTE_CONFIG) == 0 for unit in old_units)
        assert UNWRAP not in during_refresh and "auth/approle/login" in during_refresh
        assert file_bytes(cluster, model) == files  # 1.29 found Vault's key first in every file
        assert all(starts(cluster, model)[unit] > started[unit] for unit in old_units)  # restarted with it

        # the vault charm as deployed answers every request again when one is new: each unit unwraps a new token
        first = cluster.controller.add_unit(model, APP)
        cluster.settle(fail_fast=True)
        unwraps = {unit: log_count(cluster, model, unit, OPS.UNWRAPPING) for unit in cluster.units(model)}
        assert unwraps == {unit: 1 for unit in cluster.units(model)}
        # as its code intends, it answers only the new unit
        cluster.vault_issues_secret_ids(NEW_APPROLE)
        second = cluster.controller.add_unit(model, APP)
        cluster.settle(fail_fast=True)
        unwraps[second] = 1
        assert {unit: log_count(cluster, model, unit, OPS.UNWRAPPING) for unit in cluster.units(model)} == unwraps

    for unit in first, second:
        assert rotation.file_key_list(cluster, model, unit) == [("key1", key)]
        assert log_count(cluster, model, unit, OPS.WROTE_CONFIG) == 1
        assert cluster.controller.unit_file_mode(model, unit, rotation.ENCRYPTION_CONFIG) == 0o600
    assert {unit: cluster.controller.status(model, unit) for unit in cluster.units(model)} == {
        unit: READY for unit in cluster.units(model)
    }
    assert set(cluster.apiservers.running(model)) == set(cluster.units(model))
    cluster.apiservers.check(model, when="at the end")
    assert cluster.apiservers.stored(model) > 10 and watch.checks > 20
    assert cluster.vault_fingerprint(backend) == cluster.vault_fingerprint(LEGACY) == key


# -- with the layer's secure storage on: after a rotation, and in the middle of one ------------------------


def run_hooks_until(cluster, model, until, after_hook, rounds=12):
    """update-status rounds, hook by hook, stopping right after the hook after which ``until()`` holds.

    The rest of that round stays queued: it runs after a refresh, with the new charm, as Juju would.
    """
    for _ in range(rounds):
        for unit in cluster.units(model):
            cluster.controller.queue(model, unit, "update-status")
        while True:
            item = cluster.controller.pop_hook()
            if item is None:
                break
            process = cluster.controller.run_hook(item)
            assert process.returncode == 0, process.stderr[-2000:]
            after_hook(item, process)
            if until():
                return
    raise AssertionError("not reached after {} rounds".format(rounds))


class RotationCheckpoints(SnapshotDeployment):
    """2 units of ``ss``; one rotation with the layer's actions, saved at each point a refresh is tried from.

    - ``add``: every unit's apiserver runs with [key1:old, key2:new]; Vault holds the old key
    - ``promote-began``: right after the hook in which the leader entered promote (Vault: the new key)
    - ``promoted``: phase rewrite: every unit runs with [key2:new, key1:old], Secrets stored under both
    - ``done``: the rotation finished, both rewrites confirmed: every unit runs with [key1:new]
    """

    def __init__(self, charms, workdir) -> None:
        self.workdir = workdir
        self.points = {}
        self.live = None
        super().__init__(charms, workdir, build="ss", units=2, name="k8s-ss")

    def after_deploy(self) -> None:
        cluster, model = self.cluster, self.model
        backend = cluster.new_backend(model)
        invariant = rotation.RotationInvariant(cluster, model, backend)
        started = ok(rotation.action(cluster, model, rotation.leader(cluster, model), "rotate-encryption-key"))
        self.old, self.new = started["old-key"], started["new-key"]
        adding = self.everywhere([("key1", self.old), ("key2", self.new)])
        run_hooks_until(cluster, model, lambda: rotation.loaded_key_lists(cluster, model) == adding, invariant)
        assert rotation.phase(cluster, backend) == "add"
        self.save("add")
        run_hooks_until(cluster, model, lambda: rotation.phase(cluster, backend) == "promote", invariant)
        self.save("promote-began")
        rotation.drive(cluster, model, backend, lambda: rotation.phase(cluster, backend) == "rewrite", invariant)
        assert rotation.loaded_key_lists(cluster, model) == self.everywhere([("key2", self.new), ("key1", self.old)])
        self.save("promoted")
        for phase in rotation.REWRITE_PHASES:
            rotation.drive(
                cluster, model, backend, lambda phase=phase: rotation.phase(cluster, backend) == phase, invariant
            )
            rotation.rewrite_stored_secrets(cluster, model)
            ok(rotation.action(cluster, model, rotation.leader(cluster, model), "finish-encryption-key-rotation"))
        rotation.drive(cluster, model, backend, lambda: rotation.phase(cluster, backend) == "done", invariant)
        assert rotation.loaded_key_lists(cluster, model) == self.everywhere([("key1", self.new)])
        self.save("done")

    def everywhere(self, keys):
        return {unit: keys for unit in self.cluster.units(self.model)}

    def save(self, point: str) -> None:
        directory = str(self.workdir / "sim-at-{}".format(point))
        self.cluster.controller.snapshot(directory)
        self.points[point] = (directory, self.cluster.apiservers.snapshot(), self.bao.save_storage())
        self.live = point  # what the cluster is now, until a test uses it

    def at(self, point: str):
        """The cluster as it was at ``point``: (cluster, model, backend).

        Putting the storage back restarts OpenBao (under a second), so the first test of the last
        point takes the cluster as it is.
        """
        if self.live != point:
            directory, secrets, storage = self.points[point]
            self.bao.load_storage(storage)
            self.cluster.controller.restore(directory)
            self.cluster.apiservers.restore(secrets)
        self.live = None
        return self.cluster, self.model, self.cluster.new_backend(self.model)


@pytest.fixture(scope="module")
def rotated(charms, tmp_path_factory):
    deployment = RotationCheckpoints(charms, tmp_path_factory.mktemp("rotation"))
    yield deployment
    deployment.cleanup()


def test_a_refresh_to_129_after_a_finished_rotation_keeps_every_file_and_a_new_unit_reads_every_secret(rotated):
    cluster, model, backend = rotated.at("done")
    files, left = file_bytes(cluster, model), unitdata_of(cluster, model)

    with after_every_hook(cluster, OneKeyNoBlockedUnit(cluster, model, rotated.new, [backend])):
        cluster.upgrade(model, "ops")
        cluster.settle(fail_fast=True)
        assert_took_over(cluster, model, left)  # the layer's secure storage on, no move: the same unit state
        assert file_bytes(cluster, model) == files  # its first key is Vault's: 1.29 leaves it
        added = cluster.controller.add_unit(model, APP)
        cluster.settle(fail_fast=True)

    for unit in cluster.units(model):
        assert log_count(cluster, model, unit, OPS.WROTE_CONFIG) == (1 if unit == added else 0), unit
        assert cluster.controller.status(model, unit) == READY
    assert rotation.file_key_lists(cluster, model) == rotated.everywhere([("key1", rotated.new)])
    assert rotation.loaded_key_lists(cluster, model) == rotated.everywhere([("key1", rotated.new)])
    assert set(cluster.apiservers.running(model)) == set(cluster.units(model))
    cluster.apiservers.check(model, when="at the end")
    assert set(cluster.apiservers.etcd[model].stored_under()) == {"key1"}
    assert cluster.vault_fingerprint(backend) == rotated.new
    assert rotation.phase(cluster, backend) == "done"  # 1.29 never writes the layer's keys


def test_a_refresh_to_129_in_phase_add_leaves_every_secret_readable_by_every_unit_and_a_new_one(rotated):
    cluster, model, backend = rotated.at("add")
    old, new = rotated.old, rotated.new
    files, left = file_bytes(cluster, model), unitdata_of(cluster, model)

    with after_every_hook(cluster, OneKeyNoBlockedUnit(cluster, model, old, [backend])):
        cluster.upgrade(model, "ops")
        cluster.settle(fail_fast=True)
        assert_took_over(cluster, model, left)
        added = cluster.controller.add_unit(model, APP)
        cluster.settle(fail_fast=True)

    assert {u: digest for u, digest in file_bytes(cluster, model).items() if u != added} == files  # left as they were
    assert rotation.file_key_list(cluster, model, added) == [("key1", old)]  # key1 is the old key in every file
    assert rotation.loaded_key_lists(cluster, model) == dict(
        rotated.everywhere([("key1", old), ("key2", new)]), **{added: [("key1", old)]}
    )
    cluster.apiservers.check(model, when="at the end")
    assert set(cluster.apiservers.etcd[model].stored_under()) == {"key1"}
    assert {u: cluster.controller.status(model, u) for u in cluster.units(model)} == {
        u: READY for u in cluster.units(model)
    }
    assert rotation.phase(cluster, backend) == "add"  # the rotation stays where it stood: nothing runs it now


def test_a_refresh_to_129_once_promote_began_gives_key1_a_second_key(rotated):
    """The leader made the new key Vault's; a unit whose file still writes with the old key gets 1.29's file."""
    cluster, model, backend = rotated.at("promote-began")
    old, new = rotated.old, rotated.new
    lagging = sorted(u for u, keys in rotation.file_key_lists(cluster, model).items() if keys[0] != ("key2", new))
    # no unit changed its file yet (the first turn is handed out, not taken): every unit lags
    assert lagging == cluster.units(model) and cluster.vault_fingerprint(backend) == new

    cluster.upgrade(model, "ops")
    with pytest.raises(AssertionError, match=CANNOT_READ):
        cluster.settle(fail_fast=True)

    # 1.29 rewrote a lagging unit's file (its first key was not Vault's) while another still reads key1 as the
    # old key: key1 stands for two keys now
    lists = rotation.file_key_lists(cluster, model)
    rewritten = [unit for unit in lagging if lists[unit] == [("key1", new)]]
    behind = [unit for unit in lagging if ("key1", old) in lists[unit]]
    assert rewritten and behind
    unreadable, corrupted = cluster.apiservers.readable_with(model, running_config(cluster, model, rewritten[0]))
    assert unreadable or corrupted  # what was stored under key1 with the old key
    unreadable, corrupted = cluster.apiservers.readable_with(model, running_config(cluster, model, behind[0]))
    assert unreadable or corrupted  # what the rewritten unit's apiserver stored under key1 with the new key


def test_a_refresh_to_129_after_promote_keeps_the_units_but_a_new_unit_reads_none_of_the_older_secrets(rotated):
    """Every file [key2:new, key1:old]: 1.29 leaves them (first key = Vault's); the unit it adds has [key1:new]."""
    cluster, model, backend = rotated.at("promoted")
    old, new = rotated.old, rotated.new
    promoted, left = rotated.everywhere([("key2", new), ("key1", old)]), unitdata_of(cluster, model)

    cluster.upgrade(model, "ops")
    cluster.settle(fail_fast=True)  # every apiserver still reads every Secret
    assert_took_over(cluster, model, left)
    assert rotation.file_key_lists(cluster, model) == promoted
    stored_before = dict(cluster.apiservers.etcd[model].stored_under())
    names_before = cluster.apiservers.secret_names(model)
    added = cluster.controller.add_unit(model, APP)
    with pytest.raises(AssertionError, match=CANNOT_READ):
        cluster.settle(fail_fast=True)

    assert rotation.file_key_list(cluster, model, added) == [("key1", new)]  # key1 is the old key elsewhere
    assert stored_before.get("key2") and stored_before.get("key1")
    charm_file = cluster.apiservers.charm_file_for(vault_value(cluster, backend))
    unreadable, corrupted = cluster.apiservers.readable_with(model, charm_file)
    # none of the Secrets stored before it came: under key2 (not in its file) or under key1 (another key there)
    assert len(names_before) == sum(stored_before.values())
    assert names_before <= set(unreadable) | set(corrupted)


def test_129_without_the_token_hash_unwraps_a_spent_token_and_blocks_and_a_sealed_vault_only_waits(rotated):
    """What the unit state the layer leaves is for, and 1.29's statuses; no hook fails."""
    cluster, model, _backend = rotated.at("done")
    first, second = cluster.units(model)
    cluster.controller.forget_unitdata(model, second, [TOKEN_HASH])  # as if the layer had not left it
    cluster.upgrade(model, "ops")
    cluster.settle(fail_fast=True)
    assert cluster.controller.status(model, first) == READY
    assert cluster.controller.status(model, second) == {"status": "blocked", "message": OPS.CANT_ACCESS_VAULT}
    assert log_count(cluster, model, second, OPS.UNWRAPPING) >= 1  # the token the layer had unwrapped: spent
    cluster.refresh_secrets()  # the remedy the status names: a new token for every unit
    cluster.settle(fail_fast=True)
    assert cluster.controller.status(model, second) == READY

    node = cluster.bao.nodes[0]
    cluster.bao.seal(node)
    try:
        cluster.controller.queue(model, first, "config-changed")  # a hook that reconciles
        cluster.settle(fail_fast=True)
        assert cluster.controller.status(model, first) == {"status": "waiting", "message": OPS.WAITING_FOR_VAULT}
    finally:
        cluster.bao.unseal(node.number)
        cluster.bao.wait_for_active()
    cluster.update_status(model)  # not reconciled since: update-status reconciles again
    assert {u: cluster.controller.status(model, u) for u in cluster.units(model)} == rotated.everywhere(READY)
