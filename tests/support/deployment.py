"""One deployment, put back as deployed before each use: the cost of deploying paid once.

A model of the consumer on its own raft OpenBao (one node unless told).  ``fresh()``
puts the OpenBao storage back from a copy of its files (same URL, so nothing in
the units' data changes: tokens, AppRoles, secrets and audit settings are as
they were) and the simulated controller from a copy of its directory, so
every use starts from the same deployment as if it had just been made.
"""

from pathlib import Path

from tests.support.cluster import Cluster
from tests.support.openbao_raft import OpenBaoRaftCluster


class SnapshotDeployment:
    """``units`` units of ``build`` in model ``name``, related to the vault application and settled."""

    def __init__(
        self, charms, workdir: Path, build: str = "current", units: int = 2, name: str = "k8s", vault_nodes: int = 1
    ) -> None:
        """``vault_nodes``: OpenBao raft nodes, one vault unit publishing each node's URL."""
        self.bao = OpenBaoRaftCluster(size=vault_nodes)
        self.bao.start()
        try:
            self.cluster = Cluster(self.bao, charms, workdir=str(workdir / "sim"), vault_units=vault_nodes)
            self.model = self.cluster.add_model(name, build=build, units=units)
            self.cluster.settle()
            self.after_deploy()
            self.saved_controller = str(workdir / "sim-as-deployed")
            self.cluster.controller.snapshot(self.saved_controller)
            self.saved_secrets = self.cluster.apiservers.snapshot()
            self.saved_relations = dict(self.cluster.relations)
            self.saved_storage = self.bao.save_storage()
        except BaseException:
            self.cleanup()
            raise

    def after_deploy(self) -> None:
        """What a subclass records of the deployment before the snapshot."""

    def fresh(self) -> Cluster:
        """The cluster as deployed: no hook run, no fault, no Vault change since."""
        self.bao.load_storage(self.saved_storage)  # a node an earlier use killed or sealed serves again too
        self.cluster.controller.restore(self.saved_controller)
        self.cluster.apiservers.restore(self.saved_secrets)
        self.cluster.relations = dict(self.saved_relations)
        return self.cluster

    def cleanup(self) -> None:
        cluster = getattr(self, "cluster", None)
        if cluster is not None:
            cluster.close()
        self.bao.cleanup()
