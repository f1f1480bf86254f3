"""Unit-test setup: charms.unit_test's mocked charmhelpers and reactive flags.

charms.unit_test replaces ``charms.reactive`` and ``charmhelpers`` in this
process with mocks that keep flags in a set, as the ecosystem's layers test.
hvac is real; only ``hvac.Client`` is swapped for the in-memory fake in
``fake_vault`` so tests read back what was written to "Vault".
"""

import hashlib
import json
from pathlib import Path

import pytest
from charms.unit_test import MockKV, patch_module, patch_reactive

ROOT = Path(__file__).resolve().parents[2]

patch_reactive()
# The real charmhelpers may be installed (the integration suite needs it);
# make sure the submodules the layer imports are the mocks all the same.
for _name in ("charmhelpers.core", "charmhelpers.core.hookenv", "charmhelpers.core.unitdata"):
    patch_module(_name)

import charms.reactive as reactive  # noqa: E402  (the mock)
from charmhelpers.core import hookenv, unitdata  # noqa: E402  (mocks)


@pytest.fixture
def flags():
    """The mocked flag set, emptied before each test."""
    from charms.unit_test import flags as flag_set

    flag_set.clear()
    yield flag_set
    flag_set.clear()


def new_unitdata() -> MockKV:
    """Give the mocked unitdata a new, empty store (another unit's machine)."""
    store = MockKV()
    unitdata.kv.return_value = store
    store.flush = lambda *a, **k: None

    def data_changed(key, value):
        """charms.reactive's data_changed, kept in this mocked unitdata as it keeps it: an md5 hexdigest."""
        digest = hashlib.md5(json.dumps(value, sort_keys=True).encode("utf8")).hexdigest()
        changed = store.get("reactive.data_changed." + key) != digest
        store["reactive.data_changed." + key] = digest
        return changed

    reactive.data_changed.side_effect = data_changed
    return store


@pytest.fixture
def unitdata_kv():
    """A fresh mocked unitdata store."""
    return new_unitdata()


@pytest.fixture
def juju(tmp_path, monkeypatch):
    """The hookenv answers of unit app/0 in a model, with a charm dir on disk."""
    state = {"leader": True, "unit": "app/0", "status": ("unknown", ""), "leader_data": {}}
    hookenv.reset_mock()
    hookenv.local_unit.side_effect = lambda: state["unit"]
    hookenv.application_name.side_effect = lambda: state["unit"].split("/")[0]
    hookenv.model_uuid.side_effect = lambda: "0b5e1b6a-0000-4000-8000-00000000000a"
    hookenv.charm_dir.side_effect = lambda: str(tmp_path)
    hookenv.is_leader.side_effect = lambda: state["leader"]
    hookenv.status_set.side_effect = lambda s, m: state.__setitem__("status", (s, m))
    hookenv.status_get.side_effect = lambda: state["status"]
    hookenv.leader_set.side_effect = lambda data=None, **kw: state["leader_data"].update(data or {}, **kw)
    hookenv.leader_get.side_effect = lambda key=None: (
        dict(state["leader_data"]) if key is None else state["leader_data"].get(key)
    )
    hookenv.DEBUG, hookenv.INFO, hookenv.WARNING, hookenv.ERROR = "DEBUG", "INFO", "WARNING", "ERROR"
    hookenv.cache = {}  # charmhelpers' per-hook cache
    # the peer relation "coordinator": each unit's data on it, by unit name
    state["peer"] = {}
    hookenv.relation_ids.side_effect = lambda name=None: ["coordinator:7"] if name == "coordinator" else []
    hookenv.related_units.side_effect = lambda rid=None: sorted(u for u in state["peer"] if u != state["unit"])

    def relation_get(attribute=None, unit=None, rid=None):
        data = state["peer"].get(unit or state["unit"]) or {}
        return dict(data) if attribute is None else data.get(attribute)

    def relation_set(relation_id=None, relation_settings=None, **kwargs):
        own = state["peer"].setdefault(state["unit"], {})
        for key, value in dict(relation_settings or {}, **kwargs).items():
            if value in (None, ""):
                own.pop(key, None)
            else:
                own[key] = value

    hookenv.relation_get.side_effect = relation_get
    hookenv.relation_set.side_effect = relation_set
    state["charm_dir"] = tmp_path
    return state


@pytest.fixture
def vault(monkeypatch, flags, unitdata_kv, juju):
    """An in-memory Vault, a relation that grants app/0 access, and fresh layer state."""
    import hvac

    from charms.layer import vault_kv
    from tests.unit.fake_vault import FakeEndpoint, FakeVault

    server = FakeVault()
    monkeypatch.setattr(hvac, "Client", server.client)
    endpoint = FakeEndpoint(server, juju)
    reactive.endpoint_from_name.side_effect = lambda name: endpoint if name == "vault-kv" else None
    reactive.endpoint_from_flag.side_effect = lambda flag: endpoint
    vault_kv.reset_cached_state()
    server.endpoint = endpoint
    yield server
    vault_kv.reset_cached_state()
