"""Driving and checking a coordinated encryption key rotation in the simulator (tests and demo).

Keys are only ever handled here as (name, fingerprint) pairs, so a failing
assertion never prints a key.
"""

import base64
import json
from typing import Callable, Dict, List, Optional, Tuple

import yaml

from charms.layer.vault_kv.hashing import fingerprint
from tests.support.cluster import APP, ENCRYPTION_CONFIG

ROTATION_KEY = "encryption_key_rotation"
RUNNING = "a rotation is running"  # what a refused second rotate-encryption-key says
APISERVER_RECORD = "/var/lib/kcp-consumer/apiserver.json"
RESTARTS = "kcp-consumer.apiserver-restarts"

Pair = Tuple[str, str]


def file_key_list(cluster, model: str, unit: str) -> Optional[List[Pair]]:
    """(name, fingerprint) of each key of the unit's file, the write key first; None without a file."""
    data = cluster.controller.unit_file(model, unit, ENCRYPTION_CONFIG)
    if data is None:
        return None
    document = yaml.safe_load(data) or {}
    providers = document.get("resources", [{}])[0].get("providers", [])
    keys = providers[0].get("aescbc", {}).get("keys", []) if providers else []
    return [(k["name"], fingerprint(base64.b64decode(k["secret"]).decode())) for k in keys]


def file_key_lists(cluster, model: str) -> Dict[str, Optional[List[Pair]]]:
    return {unit: file_key_list(cluster, model, unit) for unit in cluster.units(model)}


def loaded_key_lists(cluster, model: str) -> Dict[str, Optional[List[Pair]]]:
    """What each unit's apiserver was last started with (the test consumer's record)."""
    lists = {}
    for unit in cluster.units(model):
        record = cluster.controller.unit_file(model, unit, APISERVER_RECORD)
        loaded = json.loads(record)["keys"] if record else None
        lists[unit] = [tuple(pair) for pair in loaded] if loaded else None
    return lists


def restarts(cluster, model: str) -> Dict[str, int]:
    """Restarts the charm made on ``app-kv.changed.encryption_key``, per unit."""
    return {unit: cluster.controller.unitdata(model, unit).get(RESTARTS) or 0 for unit in cluster.units(model)}


def state(cluster, backend: str) -> Optional[dict]:
    return (cluster.bao.read("{}/kv/app".format(backend)) or {}).get(ROTATION_KEY)


def phase(cluster, backend: str) -> str:
    return (state(cluster, backend) or {}).get("phase", "none")


def vault_key_fingerprint(cluster, backend: str) -> Optional[str]:
    value = (cluster.bao.read("{}/kv/app".format(backend)) or {}).get("encryption_key")
    return fingerprint(value) if value else None


def leader(cluster, model: str) -> str:
    return cluster.controller.leader(model, APP)


def rewrite_stored_secrets(cluster, model: str) -> None:
    """What the operator does in the rewrite phase: every stored Secret read and stored again, through the leader."""
    cluster.apiservers.rewrite(model, via=leader(cluster, model))


def action(cluster, model: str, unit: str, name: str) -> dict:
    return cluster.controller.run_action(model, unit, name)


class RotationInvariant:
    """Checked after every hook: what makes every Secret readable by every apiserver at every moment.

    - every unit's write key (its first key) is a key, under the same name, of
      every other unit's file, and the same holds for what each apiserver was
      last started with;
    - until the rewrite is confirmed, no key a file held is removed from it;
    - Vault's key is the old or the new key of the rotation, nothing else.
    """

    def __init__(self, cluster, model: str, backend: str) -> None:
        self.cluster, self.model, self.backend = cluster, model, backend
        self.held: Dict[str, set] = {}
        self.vault_keys: set = set()
        self.checks = 0

    def __call__(self, item=None, process=None) -> None:
        if item is not None and item.get("model") != self.model:
            return
        self.check()

    def check(self) -> None:
        self.checks += 1
        files = {u: k for u, k in file_key_lists(self.cluster, self.model).items() if k}
        self._write_keys_readable_everywhere(files, "file")
        loaded = {u: k for u, k in loaded_key_lists(self.cluster, self.model).items() if k}
        self._write_keys_readable_everywhere(loaded, "running apiserver")
        current = state(self.cluster, self.backend) or {}
        confirmed = current.get("confirmed") or current.get("phase") in ("retire", "done")
        for unit, keys in files.items():
            held = self.held.setdefault(unit, set())
            if not confirmed:
                missing = held - set(keys)
                assert not missing, "{} lost {} before the rewrite was confirmed".format(unit, sorted(missing))
            held |= set(keys)
        if current.get("phase") not in (None, "done"):
            self.vault_keys.add(vault_key_fingerprint(self.cluster, self.backend))
            assert len(self.vault_keys) <= 2, "Vault held more than the old and the new key"

    @staticmethod
    def _write_keys_readable_everywhere(lists: Dict[str, List[Pair]], what: str) -> None:
        for unit, keys in lists.items():
            for other, other_keys in lists.items():
                assert keys[0] in other_keys, "{}'s write key {} is not in {}'s {}".format(unit, keys[0], other, what)


def drive(cluster, model: str, backend: str, until: Callable[[], bool], after_hook=None, rounds: int = 12) -> int:
    """update-status on every unit (Juju's periodic hook), round after round, until ``until()``; rounds used."""
    for number in range(1, rounds + 1):
        for unit in cluster.units(model):
            cluster.controller.queue(model, unit, "update-status")
        cluster.settle(after_hook=after_hook, fail_fast=True)
        if until():
            return number
    raise AssertionError("rotation stuck in phase {} after {} rounds".format(phase(cluster, backend), rounds))
