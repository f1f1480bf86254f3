"""interface:vault-kv, both sides, with charms.unit_test's mocked Endpoint."""

import base64
import json
import subprocess

import pytest
from charmhelpers.core import hookenv

from tests.support.loading import load_interface

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
        assert endpoint.vault_ca == PEM.encode()
        assert endpoint.vault_ca_pem == PEM

    def test_vault_ca_in_wrapped_base64_lines_is_read(self, flags, juju):
        # `base64 ca.pem` wraps at 76 characters; operators paste that into the vault charm's ssl-ca.
        long_pem = PEM.replace("MIIBfake", "M" * 200)
        encoded = base64.b64encode(long_pem.encode()).decode()
        wrapped = "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76)) + "\n"
        endpoint = make_requires(dict(GOOD, vault_ca=wrapped))
        assert endpoint.vault_ca == long_pem.encode()
        assert endpoint.vault_ca_pem == long_pem

    def test_no_vault_ca_reads_none(self, flags, juju):
        endpoint = make_requires({k: v for k, v in GOOD.items() if k != "vault_ca"})
        assert endpoint.vault_ca is None and endpoint.vault_ca_pem is None

    def test_endpoint_address_is_the_access_address(self, flags, juju):
        hookenv.network_get_primary_address.side_effect = lambda name: {"vault-kv": "10.2.2.2"}[name]
        endpoint = make_requires(GOOD)
        assert endpoint.endpoint_address == endpoint.access_address == "10.2.2.2"

    def test_request_publishes_every_field(self, flags, juju):
        hookenv.network_get_primary_address.side_effect = lambda name: "10.1.1.1"
        endpoint = make_requires(GOOD)
        endpoint.request_secret_backend(
            "charm-app", isolated=False, unit_name="1b4e28ba-2fa1-11d2-883f-0016d3cca427-app/0"
        )
        published = endpoint.relations[0].to_publish
        assert published["secret_backend"] == "charm-app"
        assert published["isolated"] is False
        assert published["access_address"] == "10.1.1.1"
        assert published["unit_name"] == "1b4e28ba-2fa1-11d2-883f-0016d3cca427-app/0"
        assert published["hostname"]

    def test_new_unit_name_is_read_first_then_the_juju_name(self, flags, juju):
        data = dict(
            GOOD,
            **{
                "1b4e28ba-2fa1-11d2-883f-0016d3cca427-app/0_role_id": "role-new",
                "1b4e28ba-2fa1-11d2-883f-0016d3cca427-app/0_token": "tok-new",
            },
        )
        endpoint = make_requires(data)
        endpoint.request_secret_backend(
            "charm-uuid-app", isolated=False, unit_name="1b4e28ba-2fa1-11d2-883f-0016d3cca427-app/0"
        )
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
            ("vault_url", "http://:8200"),
            ("vault_url", "http://vault:8200\n"),
            ("vault_url", " http://vault:8200"),
            ("vault_url", "http://vault:99999"),
            ("vault_url", "http://user-SECRET@vault:8200"),
            ("vault_url", "file:///etc/passwd"),
            ("app/0_role_id", {"not": "a string"}),
            ("app/0_role_id", ""),
            ("app/0_role_id", "role SECRET"),
            ("app/0_token", ["x"]),
            ("app/0_token", "s.SECRET\r\n"),
            ("app/0_token", " s.SECRET"),
            ("app/0_token", "s.SECRET\tx"),
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
        assert not any("SECRET" in str(c) for c in hookenv.log.call_args_list)

    def test_deeply_nested_json_is_not_available_and_does_not_recurse(self, flags, juju):
        endpoint = make_requires({})
        deep = "[" * 100000 + "]" * 100000
        endpoint.all_joined_units[0].received_raw.update({"vault_url": deep, "app/0_token": deep})
        endpoint.manage_flags()
        assert "vault-kv.available" not in flags
        assert endpoint.vault_url is None and endpoint.unit_token is None

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
        endpoint = make_requires(dict(GOOD, vault_ca=ca))
        assert endpoint.vault_ca is None
        assert endpoint.vault_ca_pem is None

    def test_departed_clears_flags(self, flags, juju):
        endpoint = make_requires(GOOD)
        endpoint.manage_flags()
        endpoint.broken()
        assert not {"vault-kv.connected", "vault-kv.available"} & flags


def make_provides(requests_by_unit):
    endpoint = provides.VaultKVProvides("secrets", ["secrets:1"])
    relation = add_relation(endpoint, requests_by_unit)
    endpoint.is_joined = True
    return endpoint, relation


def add_relation(endpoint, requests_by_unit):
    """Relate ``endpoint`` to one more application whose units sent ``requests_by_unit``."""
    relation = Relation()
    for unit_name, data in requests_by_unit.items():
        relation.units.append(Unit({k: json.dumps(v) for k, v in data.items()}, unit_name, relation))
    endpoint.relations = list(getattr(endpoint, "relations", None) or []) + [relation]
    return relation


REQUEST = {"secret_backend": "charm-app", "access_address": "10.0.0.5", "hostname": "h0", "isolated": False}


class TestProvides:
    def test_complete_requests_are_listed(self, flags, juju):
        endpoint, _ = make_provides(
            {"app/0": dict(REQUEST, unit_name="1b4e28ba-2fa1-11d2-883f-0016d3cca427-app/0"), "app/1": REQUEST}
        )
        found = endpoint.requests()
        assert [(r["unit_name"], r["secret_backend"], r["isolated"]) for r in found] == [
            ("1b4e28ba-2fa1-11d2-883f-0016d3cca427-app/0", "charm-app", False),
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
        unit.received["unit_name"] = "1b4e28ba-2fa1-11d2-883f-0016d3cca427-app/0"
        endpoint.set_role_id(unit, "role-new", "tok-new")
        assert relation.to_publish.raw_data["app/0_role_id"] == ""
        assert relation.to_publish["1b4e28ba-2fa1-11d2-883f-0016d3cca427-app/0_token"] == "tok-new"

    def test_url_without_binding_goes_to_every_relation(self, flags, juju):
        endpoint, first = make_provides({"app/0": REQUEST})
        second = add_relation(endpoint, {"other/0": REQUEST})
        second.to_publish["vault_url"] = "https://old:8200"
        endpoint.publish_url("https://v:8200")
        assert first.to_publish["vault_url"] == second.to_publish["vault_url"] == "https://v:8200"

    def test_ca_is_published_unchanged(self, flags, juju):
        endpoint, relation = make_provides({"app/0": REQUEST})
        encoded = base64.b64encode(PEM.encode()).decode()
        endpoint.publish_ca(vault_ca=encoded)
        assert relation.to_publish["vault_ca"] == encoded
        assert make_requires({"vault_ca": relation.to_publish["vault_ca"]}).vault_ca == PEM.encode()

    @pytest.mark.parametrize("empty", [None, ""])
    def test_no_ca_removes_it(self, flags, juju, empty):
        endpoint, relation = make_provides({"app/0": REQUEST})
        endpoint.publish_ca(base64.b64encode(PEM.encode()).decode())
        endpoint.publish_ca(empty)
        assert relation.to_publish["vault_ca"] is None
        assert make_requires({"vault_ca": relation.to_publish["vault_ca"]}).vault_ca is None

    def test_ca_that_is_not_base64_is_still_published_as_is(self, flags, juju):
        endpoint, relation = make_provides({"app/0": REQUEST})
        endpoint.publish_ca(PEM)
        assert relation.to_publish["vault_ca"] == PEM

    def test_remote_unit_name_under_both_names(self, flags, juju):
        endpoint, relation = make_provides(
            {"app/0": dict(REQUEST, unit_name="1b4e28ba-2fa1-11d2-883f-0016d3cca427-app/0"), "app/1": REQUEST}
        )
        first, second = relation.units
        assert (
            endpoint.get_remote_unit_name(first)
            == endpoint.remote_unit_name(first)
            == "1b4e28ba-2fa1-11d2-883f-0016d3cca427-app/0"
        )
        assert endpoint.get_remote_unit_name(second) == "app/1"


def network_get_answer(*cidrs):
    """What hookenv.network_get returns for a binding on these networks."""
    return {
        "bind-addresses": [
            {"interface-name": "eth0", "addresses": [{"address": cidr.split("/")[0], "cidr": cidr} for cidr in cidrs]}
        ],
        "ingress-addresses": [cidr.split("/")[0] for cidr in cidrs],
    }


INTERNAL = "https://10.0.0.10:8200"
EXTERNAL = "https://203.0.113.10:8200"
NETWORKS = {"access": network_get_answer("10.0.0.0/24"), "external": network_get_answer("203.0.113.0/24")}


@pytest.fixture
def bindings(monkeypatch):
    """hookenv.network_get answering for the vault unit's 'access' and 'external' bindings."""
    answers = dict(NETWORKS)

    def network_get(binding, relation_id=None):
        answer = answers[binding]
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(hookenv.network_get, "side_effect", network_get)
    return answers


def requester(address_field="ingress-address", address="10.0.0.5"):
    return dict(REQUEST, **{address_field: address})


class TestPublishUrlBinding:
    def test_unset_url_is_set_even_outside_the_binding_network(self, flags, juju, bindings):
        endpoint, relation = make_provides({"app/0": requester(address="192.168.9.9")})
        endpoint.publish_url(vault_url=EXTERNAL, remote_binding="external")
        assert relation.to_publish["vault_url"] == EXTERNAL

    def test_url_is_overridden_for_a_remote_unit_inside_the_network(self, flags, juju, bindings):
        endpoint, relation = make_provides({"app/0": requester(address="203.0.113.77")})
        relation.to_publish["vault_url"] = INTERNAL
        endpoint.publish_url(vault_url=EXTERNAL, remote_binding="external")
        assert relation.to_publish["vault_url"] == EXTERNAL

    def test_url_is_kept_for_a_remote_unit_outside_the_network(self, flags, juju, bindings):
        endpoint, relation = make_provides({"app/0": requester(address="10.0.0.5")})
        relation.to_publish["vault_url"] = INTERNAL
        endpoint.publish_url(vault_url=EXTERNAL, remote_binding="external")
        assert relation.to_publish["vault_url"] == INTERNAL

    def test_access_address_is_used_without_ingress_address(self, flags, juju, bindings):
        endpoint, relation = make_provides({"app/0": REQUEST})  # access_address 10.0.0.5, no ingress-address
        relation.to_publish["vault_url"] = EXTERNAL
        endpoint.publish_url(vault_url=INTERNAL, remote_binding="access")
        assert relation.to_publish["vault_url"] == INTERNAL

    def test_remote_unit_without_an_ip_address_keeps_its_url(self, flags, juju, bindings):
        not_ips = {"ingress-address": "host.example", "access_address": "x"}
        endpoint, relation = make_provides({"app/0": dict(REQUEST, **not_ips)})
        relation.to_publish["vault_url"] = INTERNAL
        endpoint.publish_url(vault_url=EXTERNAL, remote_binding="external")
        assert relation.to_publish["vault_url"] == INTERNAL

    def test_internal_then_external_each_hook_is_stable(self, flags, juju, bindings):
        endpoint, inside = make_provides({"app/0": requester(address="10.0.0.5")})
        outside = add_relation(endpoint, {"remote-app/0": requester(address="203.0.113.77")})
        for _hook in range(3):
            endpoint.publish_url(vault_url=INTERNAL, remote_binding="access")
            endpoint.publish_url(vault_url=EXTERNAL, remote_binding="external")
            assert inside.to_publish["vault_url"] == INTERNAL
            assert outside.to_publish["vault_url"] == EXTERNAL

    @pytest.mark.parametrize(
        "failure",
        [
            NotImplementedError("juju 2.1"),
            subprocess.CalledProcessError(1, ["network-get"]),
            {"bind-addresses": [{"addresses": [{"address": "203.0.113.1"}]}]},
            {"no-bind-addresses": []},
            network_get_answer("not-a-cidr"),
            {"bind-addresses": []},
            None,
        ],
    )
    def test_unknown_network_publishes(self, flags, juju, bindings, failure):
        bindings["external"] = failure
        hookenv.log.reset_mock()
        endpoint, relation = make_provides({"app/0": requester(address="10.0.0.5")})
        relation.to_publish["vault_url"] = INTERNAL
        endpoint.publish_url(vault_url=EXTERNAL, remote_binding="external")
        assert relation.to_publish["vault_url"] == EXTERNAL
        logged = [str(c) for c in hookenv.log.call_args_list]
        assert any("'external'" in line and "DEBUG" in line for line in logged)
        assert not any(EXTERNAL in line or INTERNAL in line for line in logged)

    def test_changed_request_fields_raise_new_request(self, flags, juju):
        endpoint, _ = make_provides({"app/0": REQUEST})
        flags.add("endpoint.secrets.changed.unit_name")
        endpoint.manage_flags()
        assert "endpoint.secrets.new-request" in flags
        assert "endpoint.secrets.changed.unit_name" not in flags


UUID = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"


class TestUnitNameClaims:
    """A requirer may be known to Vault only by its own unit name, optionally model-UUID prefixed."""

    @pytest.mark.parametrize(
        "claimed, juju_name, allowed",
        [
            ("app/0", "app/0", True),
            (UUID + "-app/0", "app/0", True),
            ("other/0", "app/0", False),  # another application's AppRole
            ("app/1", "app/0", False),  # a sibling's
            (UUID + "-app/1", "app/0", False),
            ("uuid-app/0", "app/0", False),  # a prefix that is not a model UUID
            (UUID + "-app/0", "remote-0123abcd/0", True),  # cross-model: the number must match
            ("app/0", "remote-0123abcd/0", True),
            (UUID + "-app/3", "remote-0123abcd/0", False),
            ("../app/0", "remote-0123abcd/0", False),
        ],
    )
    def test_rule(self, claimed, juju_name, allowed):
        assert provides.unit_name_allowed(claimed, juju_name) is allowed

    def test_a_claim_of_another_units_name_is_not_served_and_not_used_for_answers(self, flags, juju):
        endpoint, relation = make_provides(
            {"app/0": dict(REQUEST, unit_name=UUID + "-app/0"), "app/1": dict(REQUEST, unit_name=UUID + "-app/0")}
        )
        assert [r["unit_name"] for r in endpoint.requests()] == [UUID + "-app/0"]
        forger = relation.units[1]
        assert endpoint.get_remote_unit_name(forger) == "app/1"  # never the claimed name
        endpoint.set_role_id(forger, "role-x", "tok-x")
        assert UUID + "-app/0_token" not in relation.to_publish

    def test_one_name_claimed_across_two_relations_is_served_to_neither(self, flags, juju):
        endpoint, _ = make_provides({"remote-aaaa/0": dict(REQUEST, unit_name=UUID + "-app/0")})
        add_relation(endpoint, {"remote-bbbb/0": dict(REQUEST, unit_name=UUID + "-app/0")})
        assert endpoint.requests() == []


class TestVaultUrls:
    def test_every_units_url_in_unit_order_malformed_ones_left_out(self, flags, juju):
        endpoint = make_requires(GOOD)
        endpoint.all_joined_units += [
            Unit({"vault_url": json.dumps("http://:8200")}, "vault/1"),
            Unit({"vault_url": json.dumps("https://10.0.0.3:8200")}, "vault/2"),
            Unit({"vault_url": json.dumps("https://10.0.0.1:8200")}, "vault/3"),
        ]
        assert endpoint.vault_urls == ["https://10.0.0.1:8200", "https://10.0.0.3:8200"]
        assert endpoint.vault_url == "https://10.0.0.1:8200"


def test_the_same_plain_juju_name_in_two_models_is_served_to_both_as_it_always_was(flags, juju):
    endpoint, _ = make_provides({"kubernetes-control-plane/0": REQUEST})
    add_relation(endpoint, {"kubernetes-control-plane/0": REQUEST})
    assert [r["unit_name"] for r in endpoint.requests()] == ["kubernetes-control-plane/0"] * 2
