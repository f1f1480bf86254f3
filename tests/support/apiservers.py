"""Every simulated kubernetes-control-plane unit's apiserver, encrypting for real, checked after every hook.

Registered by ``Cluster`` with the simulator (``Controller.after_every_hook``),
so every scenario run through the simulator has it.  After each hook of a
kubernetes-control-plane unit whose apiserver runs (the test consumer's
``configure_apiserver`` keeps a copy of the file it started it with), that
apiserver stores one new Secret; then every running apiserver of the model
must read every Secret stored so far (``kube_apiserver``: aescbc as
kube-apiserver does it).  A Secret an apiserver cannot read, or reads as other
bytes than were stored, fails the test there and then, naming the unit, the
hook and the Secret numbers, never a key.

Reads are remembered per (model, file the apiserver runs with): only Secrets
stored since, or rewritten since, are read again, so a scenario of a
thousand hooks costs each hook a few decryptions, not all of them.
"""

import base64
import copy
import hashlib
import json
from typing import Any, Dict, List, Optional, Tuple

from tests.support import kube_apiserver

APP = "kubernetes-control-plane"
RECORD = "/var/lib/kcp-consumer/apiserver.json"
UNENCRYPTED: kube_apiserver.Providers = [("identity", [])]


class ApiServers:
    """The Secrets each model stored, and the checks after each hook."""

    def __init__(self, controller) -> None:
        self.controller = controller
        self.etcd: Dict[str, kube_apiserver.Etcd] = {}
        self._verified: Dict[Tuple[str, str], int] = {}  # (model, config digest) -> Secrets read fine
        self._parsed: Dict[str, Tuple[str, kube_apiserver.Providers]] = {}  # record's file -> (digest, providers)
        self.checks = 0

    # -- snapshots: a deployment put back puts its Secrets back too ---------------------

    def snapshot(self) -> Any:
        return copy.deepcopy((self.etcd, self._verified))

    def restore(self, saved: Any) -> None:
        self.etcd, self._verified = copy.deepcopy(saved)

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
        running = self.running(model)
        etcd = self.etcd.setdefault(model, kube_apiserver.Etcd())
        if unit in running:
            etcd.store(running[unit][1], unit)
        self.check(model, running, "after {} on {}".format(item["hook"], unit))

    def check(self, model: str, running=None, when: str = "now") -> None:
        """Every running apiserver of ``model`` reads every Secret stored so far, as stored."""
        running = self.running(model) if running is None else running
        etcd = self.etcd.get(model)
        if etcd is None:
            return
        self.checks += 1
        for unit, (digest, providers) in sorted(running.items()):
            done = self._verified.get((model, digest), 0)
            unreadable, corrupted = etcd.failures(providers, start=done)
            if unreadable or corrupted:
                raise AssertionError(
                    "{}: {}'s apiserver cannot read Secrets {} and reads Secrets {} as other bytes"
                    " (of {} stored; stored under {})".format(
                        when, unit, unreadable, corrupted, len(etcd.entries), etcd.stored_under()
                    )
                )
            self._verified[(model, digest)] = len(etcd.entries)

    # -- what an operator does ----------------------------------------------------------

    def rewrite(self, model: str, via: str) -> None:
        """The operator's rewrite (kubectl replace, a StorageVersionMigration) through ``via``'s apiserver."""
        running = self.running(model)
        if via not in running:
            raise AssertionError("{}'s apiserver is not running; it cannot rewrite the Secrets".format(via))
        self.etcd.setdefault(model, kube_apiserver.Etcd()).rewrite(running[via][1], via)
        self._verified = {key: count for key, count in self._verified.items() if key[0] != model}
        self.check(model, running, "after the rewrite through {}".format(via))

    def stored(self, model: str) -> int:
        etcd = self.etcd.get(model)
        return len(etcd.entries) if etcd else 0

    def readable_with(self, model: str, config_bytes: bytes) -> Tuple[List[int], List[int]]:
        """(unreadable, corrupted) Secrets for an apiserver started with ``config_bytes`` (a charm-written file)."""
        etcd = self.etcd.get(model) or kube_apiserver.Etcd()
        return etcd.failures(kube_apiserver.parse(config_bytes))

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
