"""A 3-node OpenBao cluster on integrated storage (raft), on loopback, for the Vault HA tests.

Unlike the dev server, this is what a production vault application runs: one
active node and standbys that answer reads from their own replica of the raft
log (OpenBao's default), so a read served by a standby right after a write can
be stale.  Every node writes to one audit file, so requests are counted as for
a single server.

The nodes are started with ``retry_join`` to each other, the first is
initialised with one key share, and every node is unsealed with it.  Each
process is stopped by its process id in ``cleanup()``; ``kill(n)`` ends one
node at once (SIGKILL), as a lost machine would.
"""

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import hvac
import requests

from tests.support.openbao import AuditCounting, _free_port_pair, bao_binary, stop_process

_NODE_CONFIG = """storage "raft" {{
  path = "{data}"
  node_id = "node{number}"
  performance_multiplier = 1
{joins}}}
listener "tcp" {{
  address = "127.0.0.1:{port}"
  cluster_address = "127.0.0.1:{cluster_port}"
  tls_disable = true
}}
api_addr = "http://127.0.0.1:{port}"
cluster_addr = "https://127.0.0.1:{cluster_port}"
disable_mlock = true
audit "file" "counter" {{
  options {{
    file_path = "{audit}"
  }}
}}
"""


class RaftNode:
    """One OpenBao server process of the cluster."""

    def __init__(self, number: int, workdir: Path, port: int) -> None:
        self.number = number
        self.workdir = workdir
        self.port = port
        self.url = "http://127.0.0.1:{}".format(port)
        self.process: Optional[subprocess.Popen] = None
        self._output = None

    def start(self, config: str) -> None:
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        (self.workdir / "node.hcl").write_text(config)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        env["HOME"] = str(self.workdir)
        self._output = open(self.workdir / "server.log", "w")
        self.process = subprocess.Popen(
            [bao_binary(), "server", "-config=" + str(self.workdir / "node.hcl")],
            stdout=self._output,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def health(self) -> Optional[int]:
        """The status code of sys/health: 200 active, 429 standby, 503 sealed; None if down."""
        try:
            return requests.get(self.url + "/v1/sys/health", timeout=2).status_code
        except requests.exceptions.RequestException:
            return None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.process, sig)
        self.process = None
        if self._output:
            self._output.close()
            self._output = None


class OpenBaoRaftCluster(AuditCounting):
    """Three raft nodes; ``url`` is node 0's, ``urls`` all of them."""

    ca_file: Optional[str] = None
    tls = False

    #: a start that did not come up is tried again from nothing, with new ports, this often
    START_ATTEMPTS = 3

    def __init__(self, size: int = 3) -> None:
        self.size = size
        self.workdir = Path(tempfile.mkdtemp(prefix="openbao-raft-"))
        self.audit_log = self.workdir / "audit.log"
        self.nodes: List[RaftNode] = []
        self._choose_ports()
        self.root_token = ""
        self.unseal_key = ""

    def _choose_ports(self) -> None:
        """Fresh loopback ports for every node (another test's server may have taken the last ones)."""
        self.nodes = []
        for number in range(self.size):
            port = _free_port_pair()
            while any(port in (n.port - 1, n.port, n.port + 1) for n in self.nodes):
                port = _free_port_pair()
            self.nodes.append(RaftNode(number, self.workdir / "node{}".format(number), port))

    @property
    def url(self) -> str:
        return self.nodes[0].url

    @property
    def urls(self) -> List[str]:
        return [node.url for node in self.nodes]

    # -- life cycle ------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> "OpenBaoRaftCluster":
        """Start, initialise and unseal every node; a cluster that did not form is started again.

        On a loaded 2-core machine (the other test worker busy) a node has once failed to join
        within the timeout; a cluster formed from nothing on new ports is what every test needs,
        so the fixture tries again rather than failing the test it serves.
        """
        for attempt in range(1, self.START_ATTEMPTS + 1):
            try:
                self._start(timeout)
                return self
            except RuntimeError as failure:
                report = "{} (attempt {}):\n{}".format(failure, attempt, self._log_tails())
                self.stop()
                if attempt == self.START_ATTEMPTS:
                    raise RuntimeError(report) from None
                print("OpenBao raft cluster did not form, starting again: " + report)
                shutil.rmtree(self.workdir, ignore_errors=True)
                self.workdir.mkdir(parents=True)
                self._choose_ports()
            except BaseException:
                self.stop()
                raise
        return self

    def _log_tails(self, lines: int = 12) -> str:
        """The last lines of each node's server log (they hold no token or key)."""
        parts = []
        for node in self.nodes:
            log = node.workdir / "server.log"
            tail = log.read_text(errors="replace").splitlines()[-lines:] if log.exists() else ["(no log)"]
            parts.append("node {} alive={}:\n  {}".format(node.number, node.alive, "\n  ".join(tail)))
        return "\n".join(parts)

    def _start(self, timeout: float) -> None:
        for node in self.nodes:
            joins = "".join(
                '  retry_join {{\n    leader_api_addr = "{}"\n  }}\n'.format(other.url)
                for other in self.nodes
                if other is not node
            )
            node.start(
                _NODE_CONFIG.format(
                    data=node.workdir / "data",
                    number=node.number,
                    joins=joins,
                    port=node.port,
                    cluster_port=node.port + 1,
                    audit=self.audit_log,
                )
            )
        first = self.nodes[0]
        self._wait(lambda: first.health() is not None, timeout, "node 0 to listen")
        answer = requests.put(
            first.url + "/v1/sys/init", json={"secret_shares": 1, "secret_threshold": 1}, timeout=30
        ).json()
        self.unseal_key, self.root_token = answer["keys_base64"][0], answer["root_token"]
        self.unseal(0)
        self._wait(lambda: first.health() == 200, timeout, "node 0 to become active")
        # standbys become voters once stable for this long (default 10 s)
        self._wait(lambda: self._quick_autopilot(), timeout, "the autopilot settings")
        for node in self.nodes[1:]:
            # a joining node is unsealed with the cluster's key once retry_join reached the leader
            self._wait(
                lambda node=node: self._try_unseal(node), timeout, "node {} to join".format(node.number), every=1.0
            )
        self._wait(lambda: all(n.health() in (200, 429) for n in self.nodes), timeout, "every node to serve")
        self._wait(lambda: len(self._peers()) == len(self.nodes), timeout, "every node to be a raft voter")

    def _quick_autopilot(self) -> bool:
        try:
            self.root_client().write_data(
                "sys/storage/raft/autopilot/configuration", data={"server_stabilization_time": "1s"}
            )
        except (requests.exceptions.RequestException, hvac.exceptions.VaultError):
            return False
        return True

    def _try_unseal(self, node: RaftNode) -> bool:
        if node.health() in (200, 429):  # unsealed already: another key would restart nothing useful
            return True
        try:
            answer = requests.put(node.url + "/v1/sys/unseal", json={"key": self.unseal_key}, timeout=5).json()
        except (requests.exceptions.RequestException, ValueError):
            return False
        return answer.get("sealed") is False

    def _peers(self) -> List[Dict]:
        try:
            answer = self.root_client().read("sys/storage/raft/configuration")
        except (requests.exceptions.RequestException, hvac.exceptions.VaultError):
            return []
        return [s for s in ((answer or {}).get("data") or {}).get("config", {}).get("servers", []) if s.get("voter")]

    @staticmethod
    def _wait(condition, timeout: float, what: str, every: float = 0.1) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(every)
        raise RuntimeError("OpenBao raft cluster: timed out waiting for " + what)

    def unseal(self, number: int) -> None:
        requests.put(self.nodes[number].url + "/v1/sys/unseal", json={"key": self.unseal_key}, timeout=10)

    def active(self) -> Optional[RaftNode]:
        """The node that is active now, if any."""
        return next((n for n in self.nodes if n.alive and n.health() == 200), None)

    def wait_for_active(self, timeout: float = 30.0) -> RaftNode:
        self._wait(lambda: self.active() is not None, timeout, "an active node")
        return self.active()

    def make_standby(self, node: RaftNode) -> None:
        """Step ``node`` down until another node is active (raft may elect it again)."""
        for _ in range(10):
            if self.wait_for_active() is not node:
                return
            self.root_client().sys.step_down()
            self._wait(lambda: node.health() != 200, 30, "the step-down")
        raise RuntimeError("node {} stayed active".format(node.number))

    def seal(self, node: RaftNode, timeout: float = 30.0) -> None:
        """Seal ``node`` (a node just stepped down may answer 500 for a moment: asked again)."""

        def sealed() -> bool:
            if node.health() == 503:
                return True
            try:
                hvac.Client(url=node.url, token=self.root_token, timeout=10).sys.seal()
            except (requests.exceptions.RequestException, hvac.exceptions.VaultError):
                time.sleep(0.5)
            return node.health() == 503

        self._wait(sealed, timeout, "node {} to seal".format(node.number))

    def standbys(self) -> List[RaftNode]:
        return [n for n in self.nodes if n.alive and n.health() == 429]

    def kill(self, node: RaftNode) -> None:
        """End ``node`` at once (SIGKILL), as a machine that lost power."""
        node.stop(signal.SIGKILL)

    def restart(self, node: RaftNode, unseal: bool = True, timeout: float = 60.0) -> None:
        """Start a stopped (killed) node again with its own configuration and data, and unseal it unless told
        not to: it rejoins the cluster as a standby, as a vault unit's machine that came back."""
        if not node.alive:
            node.start((node.workdir / "node.hcl").read_text())
        self._wait(lambda: node.health() is not None, timeout, "node {} to listen".format(node.number))
        if unseal:
            self._wait(lambda: self._try_unseal(node), timeout, "node {} to serve again".format(node.number), every=0.5)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- saved storage (one deployment, many runs) ------------------------------

    def save_storage(self) -> Path:
        """A copy of every node's storage (tokens, AppRoles, secrets, audit settings), taken with the nodes
        stopped so that it is consistent; then the nodes serve again.  Returns where the copy is."""
        saved = self.workdir / "saved-{}".format(len(list(self.workdir.glob("saved-*"))))
        for node in self.nodes:
            node.stop()
        for node in self.nodes:
            shutil.copytree(str(node.workdir / "data"), str(saved / "node{}".format(node.number)))
        self._serve_again()
        return saved

    def load_storage(self, saved: Path) -> None:
        """Every node's storage put back as ``save_storage`` copied it, at the same URLs, serving again.

        Files, not a raft snapshot restore: OpenBao takes about 5 s to serve again after one, a node
        started from its files a third of a second.  Nodes killed or sealed since are started and
        unsealed too.
        """
        for node in self.nodes:
            node.stop(signal.SIGKILL)  # its storage is replaced: nothing to flush
        for node in self.nodes:
            data = node.workdir / "data"
            shutil.rmtree(str(data), ignore_errors=True)
            shutil.copytree(str(saved / "node{}".format(node.number)), str(data))
        self._serve_again()

    def _serve_again(self, timeout: float = 60.0) -> None:
        for node in self.nodes:
            self.restart(node, timeout=timeout)
        self.wait_for_active(timeout)
        self._wait(lambda: all(n.health() in (200, 429) for n in self.nodes), timeout, "every node to serve")

    # -- clients and state -----------------------------------------------------

    def root_client(self) -> hvac.Client:
        """A root client at the active node (reads there are never stale)."""
        node = self.active() or next(n for n in self.nodes if n.alive)
        return hvac.Client(url=node.url, token=self.root_token, timeout=10)

    def read(self, path: str) -> Optional[Dict]:
        """Read a kv v1 secret at the active node (the tests' ground truth)."""
        response = self.root_client().read(path)
        return response["data"] if response else None

    def server_log(self) -> str:
        return "\n".join(
            (n.workdir / "server.log").read_text() for n in self.nodes if (n.workdir / "server.log").exists()
        )
