"""Every simulated kubernetes-control-plane unit's apiserver, encrypting into a real etcd, checked after every hook.

Registered by ``Cluster`` with the simulator (``Controller.after_every_hook``),
so every scenario run through the simulator has it.  Each model has its own
etcd 3.5 (``etcd_server``: TLS, client certificates), as each Charmed
Kubernetes cluster has its own; the harness gives every unit what the etcd
relation and the charm's credentials would (a file the test consumer turns
into ``/root/cdk/etcd/client-*.pem``, the snap's args and
``/root/.kube/config``).

After each hook of a kubernetes-control-plane unit whose apiserver runs (the
test consumer's ``configure_apiserver`` keeps a copy of the file it started it
with), that apiserver stores one new Secret at
``/registry/secrets/<namespace>/<name>`` in etcd; then every running apiserver
of the model must read every Secret in etcd (``kube_apiserver``: aescbc as
kube-apiserver does it).  A Secret an apiserver cannot read, or reads as other
bytes than were stored, fails the test there and then, naming the unit, the
hook and the Secrets, never a key.  The harness keeps what each Secret holds
(to tell a corrupted read from a good one); whoever rewrites a Secret (the
operator here, the layer through ``kube_api``) goes through an apiserver that
reads it first.

Reads are remembered per (model, file the apiserver runs with) as an etcd
revision: only Secrets modified since are read again (``min_mod_revision``),
so a scenario of a thousand hooks costs each hook a few decryptions.
"""

import base64
import hashlib
import json
import os
import secrets
import tempfile
from typing import Any, Dict, List, Optional, Tuple

from tests.support import kube_apiserver
from tests.support.etcd_server import Certificates, EtcdServer
from tests.support.kube_api import KubeApi, canonical

APP = "kubernetes-control-plane"
RECORD = "/var/lib/kcp-consumer/apiserver.json"
ENVIRONMENT = "/var/lib/kcp-consumer/control-plane-environment.json"
UNENCRYPTED: kube_apiserver.Providers = [("identity", [])]
PREFIX = b"/registry/secrets/"
NAMESPACES = ("default", "kube-system", "team-a")
CA_IN_UNIT = "/root/cdk/ca.crt"


def stored_key_name(stored: bytes) -> str:
    """The key name a value is stored under, ``identity`` for a plain one."""
    if stored.startswith(b"k8s:enc:aescbc:v1:"):
        return stored.split(b":")[4].decode()
    return "identity"


def secret_name(key: bytes) -> str:
    """``namespace/name`` of an etcd key under ``/registry/secrets/``."""
    return key[len(PREFIX) :].decode()


class ModelEtcd:
    """One model's etcd, and what each Secret in it holds (to tell a corrupted read)."""

    def __init__(self, server: EtcdServer) -> None:
        self.server = server
        self.expected: Dict[bytes, bytes] = {}  # etcd key -> the object as stored

    @property
    def client(self):
        return self.server.client()

    def store(self, providers: kube_apiserver.Providers, by: str) -> bytes:
        """A new Secret written through an apiserver running with ``providers``; its etcd key."""
        number = len(self.expected)
        namespace, name = NAMESPACES[number % len(NAMESPACES)], "secret-{:05d}".format(number)
        obj = {
            "metadata": {"name": name, "namespace": namespace},
            "data": {"n": base64.b64encode(os.urandom(24)).decode(), "by": base64.b64encode(by.encode()).decode()},
        }
        key = PREFIX + "{}/{}".format(namespace, name).encode()
        plain = canonical(obj)
        self.client.put(key, kube_apiserver.encrypt(providers, plain))
        self.expected[key] = plain
        return key

    def count(self) -> int:
        return len(self.expected)

    def stored_under(self) -> Dict[str, int]:
        """How many Secrets etcd holds under each key name ("identity" for plain ones)."""
        counts: Dict[str, int] = {}
        for _, value, _ in self.client.scan(PREFIX):
            name = stored_key_name(value)
            counts[name] = counts.get(name, 0) + 1
        return counts

    def failures(self, providers: kube_apiserver.Providers, since: int = 0) -> Tuple[List[str], List[str]]:
        """(unreadable, corrupted) Secrets (``namespace/name``) modified at or after revision ``since``."""
        unreadable, corrupted = [], []
        for key, value, _ in self.client.scan(PREFIX, min_mod_revision=since):
            plain = kube_apiserver.decrypt(providers, value)
            if plain is None:
                unreadable.append(secret_name(key))
            elif plain != self.expected.get(key):
                corrupted.append(secret_name(key))
        return unreadable, corrupted

    def rewrite(self, providers: kube_apiserver.Providers, by: str, skip=()) -> None:
        """The operator's rewrite (kubectl get | kubectl replace) through one apiserver, but for ``skip``."""
        for key, value, revision in list(self.client.scan(PREFIX)):
            if secret_name(key) in skip:
                continue
            plain = kube_apiserver.decrypt(providers, value)
            if plain is None or plain != self.expected.get(key):
                raise AssertionError(
                    "rewrite through {}: Secret {} is unreadable or corrupted".format(by, secret_name(key))
                )
            self.client.put_if_unchanged(key, kube_apiserver.encrypt(providers, plain), revision)

    def snapshot(self) -> Any:
        return [(key, value) for key, value, _ in self.client.scan(PREFIX)], dict(self.expected)

    def restore(self, saved: Any) -> None:
        values, expected = saved
        self.client.delete_prefix(PREFIX)
        for key, value in values:
            self.client.put(key, value)
        self.expected = dict(expected)


class ApiServers:
    """Each model's etcd, the Kubernetes API of every unit, and the checks after each hook."""

    def __init__(self, controller, workdir: Optional[str] = None) -> None:
        self.controller = controller
        self._workdir = workdir
        self.etcd: Dict[str, ModelEtcd] = {}
        self._verified: Dict[Tuple[str, str], int] = {}  # (model, config digest) -> etcd revision read up to
        self._parsed: Dict[str, Tuple[str, kube_apiserver.Providers]] = {}  # record's file -> (digest, providers)
        self._certificates: Optional[Certificates] = None
        self._api: Optional[KubeApi] = None
        self._given: set = set()  # (model, unit) that have their environment file
        self._ready: set = set()  # models whose etcd answered
        self.checks = 0

    # -- servers: started when a model is added, stopped by close() ------------------

    @property
    def workdir(self) -> str:
        if self._workdir is None:
            self._workdir = tempfile.mkdtemp(prefix="apiservers-")
        return self._workdir

    @property
    def certificates(self) -> Certificates:
        if self._certificates is None:
            self._certificates = Certificates(os.path.join(self.workdir, "pki"))
        return self._certificates

    def prepare(self, model: str) -> None:
        """Start the model's etcd now, in the background (it is waited for at first use)."""
        if model not in self.etcd:
            server = EtcdServer(os.path.join(self.workdir, "etcd-" + model), certificates=self.certificates)
            self.etcd[model] = ModelEtcd(server.launch())

    def etcd_of(self, model: str) -> ModelEtcd:
        self.prepare(model)
        if model not in self._ready:
            self.etcd[model].server.wait_ready()
            self._ready.add(model)
        return self.etcd[model]

    @property
    def api(self) -> KubeApi:
        if self._api is None:
            certs = self.certificates
            self._api = KubeApi(self, str(certs.path("server-cert")), str(certs.path("server-key")))
        return self._api

    def forget(self, model: str) -> None:
        """Stop ``model``'s etcd and forget it (a model the controller no longer has)."""
        found = self.etcd.pop(model, None)
        if found is not None:
            found.server.stop()
        self._ready.discard(model)
        self._verified = {key: value for key, value in self._verified.items() if key[0] != model}
        self._given = {given for given in self._given if given[0] != model}

    def close(self) -> None:
        """Stop every etcd (by its process id) and the Kubernetes API server."""
        for model_etcd in self.etcd.values():
            model_etcd.server.stop()
        if self._api is not None:
            self._api.stop()
            self._api = None

    # -- what each unit is given: the etcd relation's data, the charm's kubeconfig ------

    def give_environment(self, model: str, unit: str) -> None:
        if (model, unit) in self._given:
            return
        path = self.controller.unit_path(model, unit, ENVIRONMENT)
        if path.exists():
            self._given.add((model, unit))
            return
        server = self.etcd_of(model).server
        certs = self.certificates
        token = self.api.tokens.setdefault(model, secrets.token_hex(16))
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "juju-cluster",
                    "cluster": {"server": self.api.url_for(model, unit), "certificate-authority": CA_IN_UNIT},
                }
            ],
            "users": [{"name": "admin", "user": {"token": token}}],
            "contexts": [{"name": "juju-context", "context": {"cluster": "juju-cluster", "user": "admin"}}],
            "current-context": "juju-context",
        }
        environment = {
            "etcd": {
                "connection_string": server.url,
                "client-ca": certs.pem("ca").decode(),
                "client-cert": certs.pem("client-cert").decode(),
                "client-key": certs.pem("client-key").decode(),
            },
            "kubeconfig": json.dumps(kubeconfig),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(environment))
        os.chmod(str(path), 0o600)
        ca = self.controller.unit_path(model, unit, CA_IN_UNIT)
        ca.parent.mkdir(parents=True, exist_ok=True)
        ca.write_bytes(certs.pem("ca"))
        self._given.add((model, unit))

    # -- snapshots: a deployment put back puts its Secrets back too ---------------------

    def snapshot(self) -> Any:
        return {model: etcd.snapshot() for model, etcd in self.etcd.items()}

    def restore(self, saved: Any) -> None:
        for model, data in saved.items():
            self.etcd_of(model).restore(data)
        self._verified = {}
        self._given = set()

    # -- what each apiserver runs with --------------------------------------------------

    def running(self, model: str) -> Dict[str, Tuple[str, kube_apiserver.Providers]]:
        """{unit: (digest of its file, providers)} for every unit whose apiserver was started."""
        found = {}
        for unit in self.controller.units(model, APP):
            raw = self.controller.unit_file(model, unit, RECORD)
            if raw is None:
                continue
            record = json.loads(raw)
            config = record.get("config")
            if not config and record.get("unencrypted"):
                # started without --encryption-provider-config (1.29+ when it has no file): it stores Secrets
                # as they are and cannot read an encrypted one
                found[unit] = ("unencrypted", UNENCRYPTED)
                continue
            if not config:  # 1.28 passes the flag with a missing file: kube-apiserver does not start
                continue
            if config not in self._parsed:  # a file is parsed once, however many hooks it runs through
                data = base64.b64decode(config)
                try:
                    providers = kube_apiserver.parse(data)
                except kube_apiserver.UnreadableConfig as error:
                    raise AssertionError("{}'s apiserver runs with an unusable file: {}".format(unit, error)) from None
                self._parsed[config] = (hashlib.sha256(data).hexdigest(), providers)
            found[unit] = self._parsed[config]
        return found

    # -- after every hook ---------------------------------------------------------------

    def __call__(self, item: Dict[str, Any], process=None) -> None:
        model, unit = item["model"], item["unit"]
        if not unit.startswith(APP + "/"):
            return
        for each in self.controller.units(model, APP):
            self.give_environment(model, each)
        if not self.etcd_of(model).server.running():
            return  # a test stopped etcd: no apiserver stores or reads anything until it is back
        running = self.running(model)
        if unit in running:
            self.etcd_of(model).store(running[unit][1], unit)
        self.check(model, running, "after {} on {}".format(item["hook"], unit))

    def check(self, model: str, running=None, when: str = "now") -> None:
        """Every running apiserver of ``model`` reads every Secret in its etcd, as stored."""
        running = self.running(model) if running is None else running
        if model not in self.etcd:
            return
        etcd = self.etcd_of(model)
        self.checks += 1
        revision = None
        for unit, (digest, providers) in sorted(running.items()):
            if revision is None:
                revision = etcd.client.revision()
            done = self._verified.get((model, digest), 0)
            unreadable, corrupted = etcd.failures(providers, since=done + 1 if done else 0)
            if unreadable or corrupted:
                raise AssertionError(
                    "{}: {}'s apiserver cannot read Secrets {} and reads Secrets {} as other bytes"
                    " (of {} stored; stored under {})".format(
                        when, unit, unreadable, corrupted, etcd.count(), etcd.stored_under()
                    )
                )
            self._verified[(model, digest)] = revision

    # -- the Kubernetes API (kube_api), as one unit's apiserver serves it ------------------

    def read_secret(self, model: str, unit: str, namespace: str, name: str):
        """The Secret as ``unit``'s apiserver returns it; None when absent, "unreadable" when its keys cannot."""
        running = self.running(model)
        if unit not in running:
            return "unreadable"
        found = self.etcd_of(model).client.get(PREFIX + "{}/{}".format(namespace, name).encode())
        if found is None:
            return None
        value, revision = found
        plain = kube_apiserver.decrypt(running[unit][1], value)
        if plain is None:
            return "unreadable"
        obj = json.loads(plain)
        obj["metadata"]["resourceVersion"] = str(revision)
        return obj

    def touch_secret(self, model: str, namespace: str, name: str) -> None:
        """Another writer replaces the Secret as it is (same content, a new revision), through the same keys."""
        etcd = self.etcd_of(model)
        key = PREFIX + "{}/{}".format(namespace, name).encode()
        found = etcd.client.get(key)
        if found is not None:
            etcd.client.put(key, found[0])

    def replace_secret(self, model: str, unit: str, obj: Dict[str, Any], revision: str):
        """``unit``'s apiserver stores ``obj`` if etcd still holds ``revision``: the object, "conflict" or None."""
        running = self.running(model)
        etcd = self.etcd_of(model)
        key = PREFIX + "{}/{}".format(obj["metadata"]["namespace"], obj["metadata"]["name"]).encode()
        found = etcd.client.get(key)
        if found is None:
            return None
        if str(found[1]) != revision:
            return "conflict"
        plain = canonical(obj)
        if not etcd.client.put_if_unchanged(key, kube_apiserver.encrypt(running[unit][1], plain), found[1]):
            return "conflict"
        etcd.expected[key] = plain
        answer = json.loads(plain)
        answer["metadata"]["resourceVersion"] = str(etcd.client.get(key)[1])
        return answer

    # -- what an operator does ----------------------------------------------------------

    def rewrite(self, model: str, via: str, skip=()) -> None:
        """The operator's rewrite (kubectl replace, a StorageVersionMigration) through ``via``'s apiserver.

        ``skip``: ``namespace/name`` of Secrets the rewrite missed (a webhook refused them, kubectl
        stopped at a conflict).
        """
        running = self.running(model)
        if via not in running:
            raise AssertionError("{}'s apiserver is not running; it cannot rewrite the Secrets".format(via))
        self.etcd_of(model).rewrite(running[via][1], via, skip=skip)
        self.check(model, running, "after the rewrite through {}".format(via))

    def store_through(self, model: str, config_bytes: bytes, by: str) -> str:
        """A Secret written by an apiserver running with ``config_bytes`` (one still on an old write key)."""
        key = self.etcd_of(model).store(kube_apiserver.parse(config_bytes), by)
        return secret_name(key)

    def stored(self, model: str) -> int:
        return self.etcd[model].count() if model in self.etcd else 0

    def secret_names(self, model: str) -> set:
        """``namespace/name`` of every Secret in the model's etcd."""
        if model not in self.etcd:
            return set()
        return {secret_name(key) for key, _, _ in self.etcd_of(model).client.scan(PREFIX)}

    def stored_under(self, model: str) -> Dict[str, int]:
        return self.etcd_of(model).stored_under() if model in self.etcd else {}

    def readable_with(self, model: str, config_bytes: bytes) -> Tuple[List[str], List[str]]:
        """(unreadable, corrupted) Secrets for an apiserver started with ``config_bytes`` (a charm-written file)."""
        if model not in self.etcd:
            return [], []
        return self.etcd_of(model).failures(kube_apiserver.parse(config_bytes))

    def charm_file_for(self, vault_key: Optional[str]) -> bytes:
        """The file kubernetes-control-plane writes itself: one aescbc key named key1 (Vault's), then identity."""
        import yaml

        body = {
            "kind": "EncryptionConfig",
            "apiVersion": "v1",
            "resources": [
                {
                    "resources": ["secrets"],
                    "providers": [
                        {
                            "aescbc": {
                                "keys": [{"name": "key1", "secret": base64.b64encode(vault_key.encode()).decode()}]
                            }
                        },
                        {"identity": {}},
                    ],
                }
            ],
        }
        return yaml.safe_dump(body).encode()
