"""The kubernetes-control-plane 1.29+ model (tests/charms/kcp-ops) speaks the formats the layer and the tests use."""

import json
import sqlite3

import charms.reactive as reactive  # the mock, with charms.reactive's data_changed kept in unitdata (conftest)

from charms.layer.vault_kv.hashing import fingerprint, value_hash
from charms.layer.vault_kv.secure_storage import encryption_config
from tests.support.apiservers import ApiServers
from tests.support.loading import load_kcp_ops
from tests.unit.conftest import new_unitdata

OPS = load_kcp_ops()


def test_the_token_hash_is_what_charms_reactive_data_changed_stored_for_the_layer():
    store = new_unitdata()
    token = "s.Zm9vYmFy-one-shot"
    reactive.data_changed("layer.vault-kv.token", token)
    assert store[OPS.REACTIVE_TOKEN_HASH] == OPS.value_hash(token) == value_hash(token)
    # the real charm's own unit test expects this hash of this token (md5 of the token's JSON, quotes included)
    assert OPS.value_hash("some-secret-token-value") == "502d4af9f5d1e89c42c20de9d3916db9"


def test_its_fingerprints_are_the_layers():
    for value in ("a" * 32, "k3Y" * 10 + "xy", {"nested": [1, 2]}):
        assert OPS.fingerprint(value) == fingerprint(value)


def test_the_file_it_writes_is_the_charms_file_the_apiserver_model_expects(tmp_path):
    key = "0123456789abcdefghijABCDEFGHIJxy"
    text = OPS.render_encryption_config(key)
    assert text.encode() == ApiServers(controller=None).charm_file_for(key)
    path = tmp_path / "encryption_config.yaml"
    path.write_text(text)
    assert encryption_config.read_key(str(path)) == key  # the layer reads it back as Vault's value


def test_it_reads_the_reactive_unit_state_without_creating_anything(tmp_path, monkeypatch):
    db = tmp_path / ".unit-state.db"
    monkeypatch.setenv("UNIT_STATE_DB", str(db))
    assert OPS.read_reactive_unitdata(OPS.REACTIVE_SECRET_ID) is None and not db.exists()
    with sqlite3.connect(str(db)) as connection:  # an ops-only unit: its database holds no kv table
        connection.execute("CREATE TABLE snapshot (handle TEXT PRIMARY KEY, data BLOB)")
    assert OPS.read_reactive_unitdata(OPS.REACTIVE_SECRET_ID) is None
    with sqlite3.connect(str(db)) as connection:  # charmhelpers' unitdata table, values as JSON
        connection.execute("CREATE TABLE kv (key text, data text, primary key (key))")
        connection.execute("INSERT INTO kv VALUES (?, ?)", (OPS.REACTIVE_SECRET_ID, json.dumps("the-secret-id")))
    assert OPS.read_reactive_unitdata(OPS.REACTIVE_SECRET_ID) == "the-secret-id"
    assert OPS.read_reactive_unitdata(OPS.REACTIVE_TOKEN_HASH) is None
