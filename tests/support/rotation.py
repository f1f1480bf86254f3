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


#: what each backend's app data held when last read (a test that seals Vault still checks the files)
_last_read: Dict[Tuple[int, str], dict] = {}


def _app_data(cluster, backend: str) -> dict:
    """The backend's app data; while Vault is sealed, what it held when last read (nothing changes it then)."""
    import hvac

    key = (id(cluster), backend)
    try:
        _last_read[key] = cluster.bao.read("{}/kv/app".format(backend)) or {}
    except hvac.exceptions.VaultDown:
        pass
    return _last_read.get(key, {})


def state(cluster, backend: str) -> Optional[dict]:
    return _app_data(cluster, backend).get(ROTATION_KEY)


def phase(cluster, backend: str) -> str:
    return (state(cluster, backend) or {}).get("phase", "none")


def vault_key_fingerprint(cluster, backend: str) -> Optional[str]:
    value = _app_data(cluster, backend).get("encryption_key")
    return fingerprint(value) if value else None


def leader(cluster, model: str) -> str:
    return cluster.controller.leader(model, APP)


def rewrite_stored_secrets(cluster, model: str) -> None:
    """What the operator does in the rewrite phase: every stored Secret read and stored again, through the leader."""
    cluster.apiservers.rewrite(model, via=leader(cluster, model))


def assert_a_charm_written_file_reads_everything(cluster, model: str, backend: str) -> None:
    """The file kubernetes-control-plane writes itself on a unit it adds (1.28 and 1.29+ alike: key1 =
    Vault's key, then identity) reads every Secret stored so far, none as other bytes."""
    vault_value = (cluster.bao.read("{}/kv/app".format(backend)) or {}).get("encryption_key")
    assert vault_value, "Vault holds no encryption key"
    unreadable, corrupted = cluster.apiservers.readable_with(model, cluster.apiservers.charm_file_for(vault_value))
    assert (unreadable, corrupted) == ([], []), "a charm-written file cannot read Secrets {} and misreads {}".format(
        unreadable, corrupted
    )
    assert cluster.apiservers.stored(model) > 0


def action(cluster, model: str, unit: str, name: str, **params) -> dict:
    return cluster.controller.run_action(model, unit, name, params or None)


#: the phases after the first rewrite was confirmed (the old key may leave the files)
AFTER_FIRST_REWRITE = ("retire", "rename-add", "rename-promote", "rename-rewrite", "rename-retire", "done")
#: the phases after the second rewrite was confirmed (the new key's first name may leave the files)
AFTER_SECOND_REWRITE = ("rename-retire", "done")
#: what a rewrite phase's status asks for, in a test
REWRITE_PHASES = ("rewrite", "rename-rewrite")


class RotationInvariant:
    """Checked after every hook: what makes every Secret readable by every apiserver at every moment.

    - every unit's write key (its first key) is a key, under the same name, of
      every other unit's file, and the same holds for what each apiserver was
      last started with;
    - one name stands for one key across every file and every running apiserver
      (AES-CBC cannot tell a wrong key from the right one under a name);
    - a key leaves a file only after the rewrite that moved the Secrets off it
      was confirmed (the old key after the first, the new key's first name after
      the second);
    - Vault's key is the old or the new key of the rotation, nothing else.
    """

    def __init__(self, cluster, model: str, backend: str) -> None:
        self.cluster, self.model, self.backend = cluster, model, backend
        self.held: Dict[str, set] = {}
        self.vault_keys: set = set()
        self.pairs: Dict[str, Pair] = {}  # the rotation's old and new key as first named
        self.rotation_id: Optional[str] = None
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
        self._one_key_per_name(list(files.values()) + list(loaded.values()))
        current = state(self.cluster, self.backend) or {}
        if current.get("id") != self.rotation_id:  # another rotation: what a file held before it is not its business
            self.rotation_id = current.get("id")
            self.held, self.vault_keys, self.pairs = {}, set(), {}
        for which in ("old", "new"):
            if isinstance(current.get(which), dict):
                self.pairs[which] = (current[which]["name"], fingerprint(current[which]["value"]))
        droppable = set()
        if current.get("phase") in AFTER_FIRST_REWRITE and "old" in self.pairs:
            droppable.add(self.pairs["old"])
        if current.get("phase") in AFTER_SECOND_REWRITE and "new" in self.pairs:
            droppable.add(self.pairs["new"])
        for unit, keys in files.items():
            held = self.held.setdefault(unit, set())
            missing = held - set(keys) - droppable
            assert not missing, "{} lost {} before the rewrite that allows it was confirmed".format(
                unit, sorted(missing)
            )
            held |= set(keys)
        if current.get("phase") not in (None, "done"):
            self.vault_keys.add(vault_key_fingerprint(self.cluster, self.backend))
            assert len(self.vault_keys) <= 2, "Vault held more than the old and the new key"

    @staticmethod
    def _write_keys_readable_everywhere(lists: Dict[str, List[Pair]], what: str) -> None:
        for unit, keys in lists.items():
            for other, other_keys in lists.items():
                assert keys[0] in other_keys, "{}'s write key {} is not in {}'s {}".format(unit, keys[0], other, what)

    @staticmethod
    def _one_key_per_name(lists: List[List[Pair]]) -> None:
        names: Dict[str, str] = {}
        for keys in lists:
            for name, key in keys:
                assert names.setdefault(name, key) == key, "the name {} stands for two keys in use".format(name)


def drive(cluster, model: str, backend: str, until: Callable[[], bool], after_hook=None, rounds: int = 12) -> int:
    """update-status on every unit (Juju's periodic hook), round after round, until ``until()``; rounds used."""
    for number in range(1, rounds + 1):
        for unit in cluster.units(model):
            cluster.controller.queue(model, unit, "update-status")
        cluster.settle(after_hook=after_hook, fail_fast=True)
        if until():
            return number
    raise AssertionError("rotation stuck in phase {} after {} rounds".format(phase(cluster, backend), rounds))


def apiserver_starts(cluster, model: str) -> Dict[str, Tuple[int, bool]]:
    """(times started, whether it is up) of each unit's apiserver (the test consumer's record); units without one
    left out."""
    starts = {}
    for unit in cluster.units(model):
        record = cluster.controller.unit_file(model, unit, APISERVER_RECORD)
        if record:
            data = json.loads(record)
            starts[unit] = (data.get("starts") or 0, bool(data.get("config")) and not data.get("failed"))
    return starts


class RestartWindows:
    """After every hook: how many kube-apiservers restarted between two consecutive hooks of the leader.

    Juju runs different units' hooks in parallel, so units that restart
    between two hooks of the leader may restart at the same moment; the
    simulator runs them one by one, and this counts what would overlap.
    A restart in a hook of the leader counts in both windows that hook
    bounds (the one it closes and the one it opens).  A unit's first start
    is not a restart (no apiserver of it was serving), nor is another start
    of one that is down (a failing service tried again takes nothing
    away).  ``most`` is the largest window; ``per_unit`` the restarts of
    each unit.
    """

    def __init__(self, cluster, model: str) -> None:
        self.cluster, self.model = cluster, model
        self.starts = apiserver_starts(cluster, model)
        self.window: set = set()
        self.most = 0
        self.per_unit: Dict[str, int] = {}
        self.hooks = 0
        self.update_status_hooks = 0
        self.violations: List[str] = []

    def __call__(self, item=None, process=None) -> None:
        if item is None or item.get("model") != self.model:
            return
        self.hooks += 1
        if item.get("hook") == "update-status":
            self.update_status_hooks += 1
        now = apiserver_starts(self.cluster, self.model)
        restarted = {
            unit
            for unit, (count, _up) in now.items()
            if unit in self.starts and count > self.starts[unit][0] and self.starts[unit][1]
        }
        for unit in restarted:
            self.per_unit[unit] = self.per_unit.get(unit, 0) + 1
        self.starts = now
        self.window |= restarted
        self._measure(item)
        if item["unit"] == leader(self.cluster, self.model):
            self.window = set(restarted)
            self._measure(item)

    def _measure(self, item) -> None:
        if len(self.window) > 1:
            self.violations.append(
                "{} restarted together (up to {} on {})".format(sorted(self.window), item["hook"], item["unit"])
            )
        self.most = max(self.most, len(self.window))


class Stop(Exception):
    """Raised by a check to end a settle where it stands (the rest of the queue is kept)."""


def settle_until(cluster, until: Callable[[], bool], after_hook=None, max_hooks: int = 3000) -> bool:
    """Run queued hooks one by one until ``until()`` holds (checked before each); True if it did.

    The rest of the queue stays, as Juju would run it later: a test acts in between.
    """
    controller = cluster.controller
    for _ in range(max_hooks):
        if until():
            return True
        item = controller.pop_hook()
        if item is None:
            return until()
        process = controller.run_hook(item)
        if after_hook is not None:
            after_hook(item, process)
        assert process.returncode == 0, "{} on {} failed:\n{}".format(
            item["hook"], item["unit"], process.stderr[-3000:]
        )
    raise AssertionError("still not there after {} hooks".format(max_hooks))


class PhaseLists:
    """After every hook: each unit's key list, and what its apiserver runs with, as each phase last left them
    (a phase's end state, once the rotation moved on: no file changes in the hook that enters a phase)."""

    def __init__(self, cluster, model: str, backend: str) -> None:
        self.cluster, self.model, self.backend = cluster, model, backend
        self.lists: Dict[str, Dict[str, Optional[List[Pair]]]] = {}
        self.loaded: Dict[str, Dict[str, Optional[List[Pair]]]] = {}
        self.order: List[str] = []

    def __call__(self, item=None, process=None) -> None:
        if item is not None and item.get("model") != self.model:
            return
        now = phase(self.cluster, self.backend)
        if not self.order or self.order[-1] != now:
            self.order.append(now)
        self.lists[now] = file_key_lists(self.cluster, self.model)
        self.loaded[now] = loaded_key_lists(self.cluster, self.model)


class RotationWatch:
    """The checks of a rotation scenario in one callable for after every hook: ``invariant``
    (RotationInvariant), ``phases`` (PhaseLists) and ``windows`` (RestartWindows), then ``also`` if given."""

    def __init__(self, cluster, model: str, backend: str, also: Optional[Callable] = None) -> None:
        self.invariant = RotationInvariant(cluster, model, backend)
        self.phases = PhaseLists(cluster, model, backend)
        self.windows = RestartWindows(cluster, model)
        self.also = also

    def __call__(self, item=None, process=None) -> None:
        self.invariant(item, process)
        self.phases(item, process)
        self.windows(item, process)
        if self.also is not None:
            self.also(item, process)
