"""Integration fixtures: a real OpenBao server, the built test charms, the Juju simulator.

Every OpenBao process a test starts is stopped by its process id in the
fixture's teardown.
"""

import itertools

# charmhelpers.osplatform refuses hosts whose os-release says Debian; charms run on Ubuntu
import charmhelpers.osplatform  # noqa: E402
import pytest

charmhelpers.osplatform.get_platform = lambda: "ubuntu"

from tests.support import build_charms  # noqa: E402
from tests.support.cluster import Cluster  # noqa: E402
from tests.support.deployment import SnapshotDeployment  # noqa: E402
from tests.support.openbao import OpenBaoServer  # noqa: E402
from tests.support.openbao_raft import OpenBaoRaftCluster  # noqa: E402


@pytest.fixture(scope="session")
def charms():
    """The test charms, built by charm build (rebuilt only when sources changed)."""
    return build_charms.build()


@pytest.fixture(scope="session")
def shared_bao():
    """One dev OpenBao for the tests that do not stop, seal or reconfigure it."""
    server = OpenBaoServer()
    try:
        yield server.start()
    finally:
        server.cleanup()


@pytest.fixture
def make_bao():
    """Start OpenBao servers of one's own (TLS, to seal or to stop); all stopped at teardown."""
    servers = []

    def start(**kwargs):
        server = OpenBaoServer(**kwargs)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.cleanup()


@pytest.fixture
def cluster_for(charms, tmp_path):
    """Build a Cluster on a given OpenBao server, in the test's temporary folder."""
    numbers = itertools.count()  # next() on it is atomic: runs may start from several threads
    made = []

    def make(bao):
        cluster = Cluster(bao, charms, workdir=str(tmp_path / "sim{}".format(next(numbers))))
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:  # each model's etcd, stopped by its process id
        cluster.close()


@pytest.fixture(scope="module")
def explorer_deployment():
    """The lifecycle explorer's deployment (tests/explore), made once per module that asks for it; its OpenBao
    and etcd stopped by process id at the module's end.

    On a single-node Vault here (the rule that kills the active node needs three, and is then not drawn):
    a 3-node cluster costs a file about 55 s of make test's 10 minutes, and test_vault_ha_failover.py
    kills an active node in make test already; make explore runs every schedule on three nodes.
    """
    from tests.explore import lifecycle

    lifecycle.VAULT_NODES = 1
    yield
    lifecycle.close()
    lifecycle.VAULT_NODES = 3


@pytest.fixture
def raft():
    """A 3-node raft OpenBao (Vault HA); every node stopped by its process id at teardown."""
    cluster = OpenBaoRaftCluster()
    try:
        yield cluster.start()
    finally:
        cluster.cleanup()


@pytest.fixture
def ha_cluster(raft, charms, tmp_path):
    """Three vault units, each publishing its own node's URL, as vault units without a VIP do."""
    with Cluster(raft, charms, workdir=str(tmp_path / "sim"), vault_units=3) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def secure_storage_deployment(charms, tmp_path_factory):
    """3 units with the layer's secure storage on, deployed once per module (single-node raft OpenBao)."""
    deployment = SnapshotDeployment(charms, tmp_path_factory.mktemp("secure-storage"), build="ss", units=3)
    yield deployment
    deployment.cleanup()


@pytest.fixture(scope="module")
def five_unit_deployment(charms, tmp_path_factory):
    """5 units with the layer's secure storage on, deployed once per module."""
    deployment = SnapshotDeployment(charms, tmp_path_factory.mktemp("five-units"), build="ss", units=5)
    yield deployment
    deployment.cleanup()


@pytest.fixture
def five_units(five_unit_deployment):
    """That deployment as it was made: (cluster, model, backend)."""
    cluster = five_unit_deployment.fresh()
    model = five_unit_deployment.model
    return cluster, model, cluster.new_backend(model)


@pytest.fixture
def secure_storage_deployed(secure_storage_deployment):
    """That deployment as it was made: (cluster, model, backend)."""
    cluster = secure_storage_deployment.fresh()
    model = secure_storage_deployment.model
    return cluster, model, cluster.new_backend(model)


# The longest files first: with two workers taking files in collection order, a
# long file started last would leave the other worker idle at the end.
LONGEST_FIRST = [
    "test_explore_regressions.py",
    "test_rolling_rotation.py",
    "test_key_rotation.py",
    "test_crash_at_each_request.py",
    "test_key_rotation_kills.py",
    "test_vault_ha_failover.py",
    "test_vault_ha.py",
    "test_upgrade.py",
    "test_refresh_to_ops.py",
    "test_explore_schedules.py",
]


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a file and among the others is kept
