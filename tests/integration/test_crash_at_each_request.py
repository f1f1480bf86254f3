"""The upgrade killed right after each Vault request in turn (power lost mid-hook), then resumed.

A file of its own, collected first (it is the longest test; see conftest.py), so the other
worker runs everything else beside it.  Each run starts from the same
deployment (see ``DeployedLegacyModel``) and kills the leader's hook right
after its N-th Vault request during the upgrade, for every N the upgrade makes.
"""

from concurrent.futures import ThreadPoolExecutor

from tests.integration.upgrade_checks import APP, LEGACY, assert_upgraded, file_bytes
from tests.support.deployment import SnapshotDeployment


def blocked_on_spent_token(cluster, model):
    statuses = [cluster.controller.status(model, u) for u in cluster.units(model)]
    return any(s["status"] == "blocked" and "refresh-secrets" in s["message"] for s in statuses)


class DeployedLegacyModel(SnapshotDeployment):
    """A 2-unit legacy deployment on its own single-node raft OpenBao, put back as deployed before each run.

    Deploying is most of a run's cost; a kill run needs only the upgrade.
    """

    def __init__(self, charms, workdir) -> None:
        super().__init__(charms, workdir, build="legacy", units=2, name="cluster-a")

    def after_deploy(self) -> None:
        self.key = self.cluster.vault_fingerprint(LEGACY)
        self.files = file_bytes(self.cluster, self.model)
        self.changes = {u: self.cluster.key_changes(self.model, u) for u in self.cluster.units(self.model)}


def count_leader_requests_during_upgrade(deployed: DeployedLegacyModel) -> int:
    cluster = deployed.fresh()
    cluster.controller.kill_at_vault_request(deployed.model, APP + "/0", 10**6)  # counts, never kills
    counter = cluster.controller.unit_env[(deployed.model, APP + "/0")]["JUJUSIM_KILL_COUNTER"]
    cluster.upgrade(deployed.model)
    cluster.settle()
    with open(counter) as handle:
        return int(handle.read())


def kill_and_resume(deployed: DeployedLegacyModel, number: int, total: int) -> None:
    """Upgrade with the leader's hooks dying right after its ``number``-th Vault request."""
    cluster, a = deployed.fresh(), deployed.model
    assert cluster.vault_fingerprint(LEGACY) == deployed.key and not cluster.controller.hooks_run
    cluster.controller.kill_at_vault_request(a, APP + "/0", number)
    cluster.upgrade(a)
    cluster.settle()
    assert cluster.controller.kills, "request {} of {} was never reached".format(number, total)
    assert cluster.file_fingerprints(a) == {u: deployed.key for u in cluster.units(a)}
    if blocked_on_spent_token(cluster, a):
        # died between unwrapping the one-shot token and storing the secret_id:
        # the unit says so, and the operator's refresh-secrets lets it finish
        cluster.refresh_secrets()
        cluster.settle()
    assert_upgraded(cluster, a, deployed.key, deployed.files, deployed.changes)


def test_killing_the_upgrade_at_each_vault_request_still_ends_with_the_original_key(charms, tmp_path):
    # two lanes side by side, each its own OpenBao and simulated controller, deployed once
    with ThreadPoolExecutor(max_workers=2) as pool:
        starting = [pool.submit(DeployedLegacyModel, charms, tmp_path / "lane{}".format(n)) for n in range(2)]
    lanes = [f.result() for f in starting if f.exception() is None]
    try:
        for future in starting:
            future.result()  # a lane that failed to deploy fails the test (the others are cleaned up below)
        total = count_leader_requests_during_upgrade(lanes[0])
        assert total >= 4

        def run_lane(index: int) -> None:
            for number in range(1 + index, total + 1, len(lanes)):
                kill_and_resume(lanes[index], number, total)

        with ThreadPoolExecutor(max_workers=len(lanes)) as pool:
            for run in [pool.submit(run_lane, i) for i in range(len(lanes))]:
                run.result()
    finally:
        for lane in lanes:
            lane.cleanup()
