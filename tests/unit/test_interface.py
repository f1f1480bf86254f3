"""interface:vault-kv, both sides, with charms.unit_test's mocked Endpoint."""

import base64
import json

import pytest
from charmhelpers.core import hookenv
from conftest import load_interface

requires = load_interface("requires")
provides = load_interface("provides")

PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"


class Unit:
    def __init__(self, raw, unit_name="vault/0", relation=None):
        self.received_raw = raw
        self.received = {k: json.loads(v) if v else v for k, v in raw.items()}
        self.unit_name = unit_name
        self.relation = relation


class Published(dict):
    """to_publish: JSON-encodes like charms.reactive's JSONUnitDataView."""

    def __init__(self):
        super().__init__()
        self.raw_data = {}

    def __setitem__(self, key, value):
        self.raw_data[key] = json.dumps(value, sort_keys=True)
        super().__setitem__(key, value)

    def keys(self):
        return self.raw_data.keys()


class Relation:
    def __init__(self):
        self.to_publish = Published()
        self.units = []


def make_requires(raw, juju_unit="app/0"):
    endpoint = requires.VaultKVRequires("vault-kv", ["vault-kv:1"])
    endpoint.is_joined = True
    endpoint.relations = [Relation()]
    endpoint.all_joined_units = [Unit({k: json.dumps(v) for k, v in raw.items()})]
    return endpoint


GOOD = {
    "vault_url": "https://10.0.0.1:8200",
    "app/0_role_id": "role-0",
    "app/0_token": "tok-0",
    "vault_ca": base64.b64encode(PEM.encode()).decode(),
}


class TestRequires:
    def test_good_data_is_available(self, flags, juju):
        endpoint = make_requires(GOOD)
        endpoint.manage_flags()
        assert {"vault-kv.connected", "vault-kv.available"} <= flags
        assert endpoint.unit_role_id == "role-0"
        assert endpoint.unit_token == "tok-0"
        assert endpoint.all_unit_tokens == ["tok-0"]
        assert endpoint.vault_ca == PEM

    def test_request_publishes_every_field(self, flags, juju):
        hookenv.network_get_primary_address.side_effect = lambda name: "10.1.1.1"
        endpoint = make_requires(GOOD)
        endpoint.request_secret_backend("charm-app", isolated=False, unit_name="uuid-app/0")
        published = endpoint.relations[0].to_publish
        assert published["secret_backend"] == "charm-app"
        assert published["isolated"] is False
        assert published["access_address"] == "10.1.1.1"
        assert published["unit_name"] == "uuid-app/0"
        assert published["hostname"]

    def test_new_unit_name_is_read_first_then_the_juju_name(self, flags, juju):
        data = dict(GOOD, **{"uuid-app/0_role_id": "role-new", "uuid-app/0_token": "tok-new"})
        endpoint = make_requires(data)
        endpoint.request_secret_backend("charm-uuid-app", isolated=False, unit_name="uuid-app/0")
        assert endpoint.unit_role_id == "role-new"
        assert endpoint.all_unit_tokens == ["tok-new", "tok-0"]
        assert endpoint.role_id_for("app/0") == "role-0"

    def test_backend_outside_charm_namespace_is_refused(self, flags, juju):
        with pytest.raises(ValueError, match="charm-"):
            make_requires(GOOD).request_secret_backend("secret")

    @pytest.mark.parametrize(
        "field, bad",
        [
            ("vault_url", 12),
            ("vault_url", "ftp://x"),
            ("app/0_role_id", {"not": "a string"}),
            ("app/0_role_id", ""),
            ("app/0_token", ["x"]),
        ],
    )
    def test_malformed_data_is_not_available_and_logged_without_value(self, flags, juju, field, bad):
        hookenv.log.reset_mock()
        endpoint = make_requires(dict(GOOD, **{field: bad}))
        endpoint.manage_flags()
        assert "vault-kv.connected" in flags
        assert "vault-kv.available" not in flags
        if bad not in ("",):
            assert any(field in str(c) for c in hookenv.log.call_args_list)

    def test_non_json_raw_values_are_read_as_strings(self, flags, juju):
        endpoint = make_requires({})
        endpoint.all_joined_units[0].received_raw = {
            "vault_url": "http://v:8200",
            "app/0_role_id": "r",
            "app/0_token": "t",
        }
        assert endpoint.vault_url == "http://v:8200" and endpoint.unit_role_id == "r"

    @pytest.mark.parametrize("ca", ["%%%not-base64", base64.b64encode(b"just text").decode()])
    def test_bad_ca_is_dropped(self, flags, juju, ca):
        assert make_requires(dict(GOOD, vault_ca=ca)).vault_ca is None

    def test_departed_clears_flags(self, flags, juju):
        endpoint = make_requires(GOOD)
        endpoint.manage_flags()
        endpoint.broken()
        assert not {"vault-kv.connected", "vault-kv.available"} & flags


def make_provides(requests_by_unit):
    endpoint = provides.VaultKVProvides("secrets", ["secrets:1"])
    relation = Relation()
    for unit_name, data in requests_by_unit.items():
        relation.units.append(Unit({k: json.dumps(v) for k, v in data.items()}, unit_name, relation))
    endpoint.relations = [relation]
    endpoint.is_joined = True
    return endpoint, relation


REQUEST = {"secret_backend": "charm-app", "access_address": "10.0.0.5", "hostname": "h0", "isolated": False}


class TestProvides:
    def test_complete_requests_are_listed(self, flags, juju):
        endpoint, _ = make_provides({"app/0": dict(REQUEST, unit_name="uuid-app/0"), "app/1": REQUEST})
        found = endpoint.requests()
        assert [(r["unit_name"], r["secret_backend"], r["isolated"]) for r in found] == [
            ("uuid-app/0", "charm-app", False),
            ("app/1", "charm-app", False),
        ]

    @pytest.mark.parametrize(
        "broken",
        [
            {"isolated": "no"},
            {"secret_backend": None},
            {"secret_backend": "other-backend"},
            {"access_address": 7},
        ],
    )
    def test_malformed_requests_are_skipped(self, flags, juju, broken):
        endpoint, _ = make_provides({"app/0": dict(REQUEST, **broken)})
        assert endpoint.requests() == []

    def test_answers_are_published_per_unit_name_and_stale_ones_blanked(self, flags, juju):
        endpoint, relation = make_provides({"app/0": REQUEST})
        unit = relation.units[0]
        endpoint.set_role_id(unit, "role-legacy", "tok-legacy")
        assert relation.to_publish["app/0_role_id"] == "role-legacy"
        unit.received["unit_name"] = "uuid-app/0"
        endpoint.set_role_id(unit, "role-new", "tok-new")
        assert relation.to_publish.raw_data["app/0_role_id"] == ""
        assert relation.to_publish["uuid-app/0_token"] == "tok-new"

    def test_url_and_ca_are_published(self, flags, juju):
        endpoint, relation = make_provides({"app/0": REQUEST})
        endpoint.publish_url("https://v:8200")
        endpoint.publish_ca(PEM)
        assert base64.b64decode(relation.to_publish["vault_ca"]).decode() == PEM
        assert relation.to_publish["vault_url"] == "https://v:8200"

    def test_changed_request_fields_raise_new_request(self, flags, juju):
        endpoint, _ = make_provides({"app/0": REQUEST})
        flags.add("endpoint.secrets.changed.unit_name")
        endpoint.manage_flags()
        assert "endpoint.secrets.new-request" in flags
        assert "endpoint.secrets.changed.unit_name" not in flags
