"""A check that fails if the vault charm's calls or the consumers' calls stop working.

interface:vault-kv replaces the earlier openstack-charmers interface of the same
name, so the charms already written against that one must keep working
unchanged.  These are the names they use:

==================================  =============================================
name (keyword names as called)      called by
==================================  =============================================
provides ``requests()``             vault charm, configure_secrets_backend
provides ``set_role_id(unit=,       vault charm, configure_secrets_backend
role_id=, token=)``
provides ``get_remote_unit_name     vault charm
(unit)``
provides ``publish_url(vault_url=,  vault charm, send_vault_url_and_ca
remote_binding=)``                  ('access', then 'external')
provides ``publish_ca(vault_ca=)``  vault charm, send_vault_url_and_ca (the
                                    ``ssl-ca`` option: base64 already)
flag ``endpoint.secrets             vault charm (raised here, cleared there)
.new-request``
requires ``request_secret_backend   layer:vault-kv (old code), other requirers
(name, isolated=)``
requires ``endpoint_address``       layer:vault-kv (old code), other requirers
requires ``unit_role_id``,          layer:vault-kv (old code), other requirers
``unit_token``,
``all_unit_tokens``, ``vault_url``
requires ``vault_ca`` (PEM bytes)   layer:vault-kv (old code), other requirers
==================================  =============================================

The provider is driven the way the vault charm drives it, with its keyword
arguments, and what a requirer on the other side of the relation reads back
is checked; the requirer is driven the way requiring charms drive it.
"""

import base64
import inspect
import json
import socket

import pytest
from charmhelpers.core import hookenv

from tests.support.loading import load_interface

requires = load_interface("requires")
provides = load_interface("provides")

PEM = "-----BEGIN CERTIFICATE-----\nMIIBconsumer\n-----END CERTIFICATE-----\n"
SSL_CA_OPTION = base64.b64encode(PEM.encode()).decode()  # what `juju config vault ssl-ca` holds
VAULT_URL = "https://10.0.0.10:8200"
VAULT_URL_EXTERNAL = "https://203.0.113.10:8200"
NETWORKS = {"access": "10.0.0.0/24", "external": "203.0.113.0/24"}


# -- a relation between one requirer unit and one vault unit ------------------


def decoded(raw):
    """Read raw relation data as charms.reactive's JSONUnitDataView does."""
    result = {}
    for key, value in raw.items():
        try:
            result[key] = json.loads(value) if value else value
        except ValueError:
            result[key] = value
    return result


class Unit:
    """A remote unit: what it published, seen from the other side."""

    def __init__(self, unit_name, raw, relation=None):
        self.unit_name = unit_name
        self.received_raw = raw
        self.received = decoded(raw)
        self.relation = relation


class Published(dict):
    """to_publish: JSON-encodes into raw_data like charms.reactive."""

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


@pytest.fixture
def network(monkeypatch):
    """The requirer's address on its binding and the vault unit's 'access'/'external' networks."""
    addresses = {"vault-kv": "10.0.0.5"}
    monkeypatch.setattr(hookenv.network_get_primary_address, "side_effect", lambda name: addresses[name])

    def network_get(binding, relation_id=None):
        cidr = NETWORKS[binding]
        return {"bind-addresses": [{"addresses": [{"address": cidr.split("/")[0], "cidr": cidr}]}]}

    monkeypatch.setattr(hookenv.network_get, "side_effect", network_get)
    return addresses


def requirer():
    """A requiring charm's endpoint, related to one vault unit."""
    endpoint = requires.VaultKVRequires("vault-kv", ["vault-kv:3"])
    endpoint.relations = [Relation()]
    endpoint.all_joined_units = []
    endpoint.is_joined = True
    return endpoint


def vault_sees(*requirers):
    """The vault charm's 'secrets' endpoint, related to each requirer (one application each)."""
    endpoint = provides.VaultKVProvides("secrets", ["secrets:3"])
    endpoint.relations = []
    for unit_name, req in requirers:
        relation = Relation()
        raw = dict(req.relations[0].to_publish.raw_data)
        raw["ingress-address"] = raw_address(req)  # Juju's own field: a bare string
        relation.units.append(Unit(unit_name, raw, relation))
        endpoint.relations.append(relation)
    endpoint.is_joined = True
    return endpoint


def raw_address(req):
    return json.loads(req.relations[0].to_publish.raw_data["access_address"])


def requirer_sees(req, vault, index=0):
    """Hand the vault unit's published data of relation ``index`` to the requirer."""
    req.all_joined_units = [Unit("vault/0", dict(vault.relations[index].to_publish.raw_data))]


# -- the vault charm, reduced to its calls on the endpoint ------------------------


def configure_secrets_backend(secrets):
    """The calls of the vault charm's configure_secrets_backend, with its keywords."""
    served = {}
    for request in secrets.requests():
        unit = request["unit"]
        unit_name = request.get("unit_name", unit.unit_name).replace("/", "-")
        approle_name = "charm-{}".format(unit_name)
        role_id = "role-id-of-" + approle_name
        wrapped_secret = "wrapping-token-of-" + approle_name
        secrets.set_role_id(unit=unit, role_id=role_id, token=wrapped_secret)
        served[secrets.get_remote_unit_name(unit)] = (approle_name, request)
    return served


def send_vault_url_and_ca(secrets, external=True):
    """The calls of the vault charm's send_vault_url_and_ca, with its keywords."""
    secrets.publish_url(vault_url=VAULT_URL, remote_binding="access")
    if external:
        secrets.publish_url(vault_url=VAULT_URL_EXTERNAL, remote_binding="external")
    secrets.publish_ca(vault_ca=SSL_CA_OPTION)


class TestVaultCharmCalls:
    def test_vault_charm_serves_a_requirer(self, flags, juju, network):
        req = requirer()
        req.request_secret_backend("charm-app", isolated=False)
        secrets = vault_sees(("app/0", req))

        served = configure_secrets_backend(secrets)
        send_vault_url_and_ca(secrets)

        approle_name, request = served["app/0"]
        assert approle_name == "charm-app-0"
        assert (request["secret_backend"], request["isolated"], request["hostname"]) == (
            "charm-app",
            False,
            socket.gethostname(),
        )
        assert request["access_address"] == request["ingress_address"] == "10.0.0.5"

        requirer_sees(req, secrets)
        req.manage_flags()
        assert "vault-kv.available" in flags
        assert req.unit_role_id == "role-id-of-charm-app-0"
        assert req.unit_token == "wrapping-token-of-charm-app-0"
        assert req.all_unit_tokens == ["wrapping-token-of-charm-app-0"]
        assert req.vault_url == VAULT_URL  # 10.0.0.5 is on the access network, not the external one
        assert req.vault_ca == PEM.encode()
        assert isinstance(req.vault_ca, bytes)
        assert req.vault_ca_pem == PEM
        assert secrets.relations[0].to_publish["vault_ca"] == SSL_CA_OPTION  # not encoded twice

    def test_unit_name_chosen_by_the_requirer_keys_the_answers(self, flags, juju, network):
        req = requirer()
        req.request_secret_backend("charm-app", isolated=True, unit_name="1b4e28ba-2fa1-11d2-883f-0016d3cca427-app/0")
        secrets = vault_sees(("app/0", req))

        served = configure_secrets_backend(secrets)
        send_vault_url_and_ca(secrets)

        assert (
            served["1b4e28ba-2fa1-11d2-883f-0016d3cca427-app/0"][0]
            == "charm-1b4e28ba-2fa1-11d2-883f-0016d3cca427-app-0"
        )
        assert (
            secrets.get_remote_unit_name(secrets.relations[0].units[0]) == "1b4e28ba-2fa1-11d2-883f-0016d3cca427-app/0"
        )
        requirer_sees(req, secrets)
        assert req.unit_role_id == "role-id-of-charm-1b4e28ba-2fa1-11d2-883f-0016d3cca427-app-0"
        assert req.unit_token == "wrapping-token-of-charm-1b4e28ba-2fa1-11d2-883f-0016d3cca427-app-0"

    def test_requirer_on_the_external_network_gets_the_external_url(self, flags, juju, network):
        local, remote = requirer(), requirer()
        local.request_secret_backend("charm-app", isolated=False)
        network["vault-kv"] = "203.0.113.50"  # a cross-model requirer reaching vault from outside
        remote.request_secret_backend("charm-remote", isolated=False)
        secrets = vault_sees(("app/0", local), ("remote/0", remote))

        for _hook in range(2):  # a second hook must not flip the URLs back
            configure_secrets_backend(secrets)
            send_vault_url_and_ca(secrets)
            requirer_sees(local, secrets, 0)
            requirer_sees(remote, secrets, 1)
            assert local.vault_url == VAULT_URL
            assert remote.vault_url == VAULT_URL_EXTERNAL

    def test_no_external_url_leaves_the_internal_one(self, flags, juju, network):
        network["vault-kv"] = "203.0.113.50"
        req = requirer()
        req.request_secret_backend("charm-app", isolated=False)
        secrets = vault_sees(("app/0", req))
        send_vault_url_and_ca(secrets, external=False)
        requirer_sees(req, secrets)
        assert req.vault_url == VAULT_URL

    def test_changed_request_raises_the_flag_the_vault_charm_waits_for(self, flags, juju, network):
        req = requirer()
        req.request_secret_backend("charm-app", isolated=False)
        secrets = vault_sees(("app/0", req))
        flags.add("endpoint.secrets.changed.secret_backend")
        secrets.manage_flags()
        assert "endpoint.secrets.new-request" in flags
        assert "secrets.connected" in flags


class TestRequirerCalls:
    @pytest.mark.parametrize("isolated", [True, False])
    def test_request_secret_backend_as_old_callers_call_it(self, flags, juju, network, isolated):
        req = requirer()
        req.request_secret_backend("charm-app", isolated=isolated)
        published = req.relations[0].to_publish
        assert published["secret_backend"] == "charm-app"
        assert published["isolated"] is isolated
        assert published["unit_name"] == "app/0"  # the Juju unit name by default
        assert published["hostname"] == socket.gethostname()
        assert published["access_address"] == req.endpoint_address == "10.0.0.5"

    def test_request_secret_backend_positionally_and_with_default(self, flags, juju, network):
        req = requirer()
        req.request_secret_backend("charm-app", False)
        assert req.relations[0].to_publish["isolated"] is False
        req.request_secret_backend("charm-app")
        assert req.relations[0].to_publish["isolated"] is True

    def test_endpoint_address_falls_back_to_the_private_address(self, flags, juju, monkeypatch):
        def no_network_get(name):
            raise NotImplementedError

        monkeypatch.setattr(hookenv.network_get_primary_address, "side_effect", no_network_get)
        monkeypatch.setattr(hookenv.unit_private_ip, "side_effect", lambda: "172.16.0.4")
        assert requirer().endpoint_address == "172.16.0.4"

    def test_nothing_published_yet_reads_as_none(self, flags, juju, network):
        req = requirer()
        req.all_joined_units = [Unit("vault/0", {})]
        req.manage_flags()
        assert "vault-kv.connected" in flags and "vault-kv.available" not in flags
        assert (req.unit_role_id, req.unit_token, req.vault_url, req.vault_ca, req.vault_ca_pem) == (
            None,
            None,
            None,
            None,
            None,
        )
        assert req.all_unit_tokens == []


def call_with(method, *args, **kwargs):
    """Bind a call to ``method``'s signature: TypeError if a caller's call would fail."""
    inspect.signature(method).bind(*args, **kwargs)
    return list(inspect.signature(method).parameters)


class TestSignatures:
    def test_provider_methods_take_the_vault_charm_keywords(self):
        secrets = provides.VaultKVProvides("secrets", ["secrets:3"])
        assert call_with(secrets.publish_url, vault_url="u", remote_binding="access")[:2] == [
            "vault_url",
            "remote_binding",
        ]
        assert call_with(secrets.publish_url, vault_url="u") == ["vault_url", "remote_binding"]
        assert call_with(secrets.publish_ca, vault_ca="Y2E=") == ["vault_ca"]
        assert call_with(secrets.set_role_id, unit=None, role_id="r", token="t") == ["unit", "role_id", "token"]
        assert call_with(secrets.get_remote_unit_name, None) == ["unit"]
        assert call_with(secrets.remote_unit_name, None) == ["unit"]
        assert call_with(secrets.requests) == []

    def test_requirer_names_old_callers_use(self):
        req = requires.VaultKVRequires("vault-kv", ["vault-kv:3"])
        params = call_with(req.request_secret_backend, name="charm-app", isolated=True)
        assert params[:2] == ["name", "isolated"]
        call_with(req.request_secret_backend, "charm-app", False)
        call_with(req.request_secret_backend, "charm-app")
        for name in ("endpoint_address", "unit_role_id", "unit_token", "all_unit_tokens", "vault_url", "vault_ca"):
            assert isinstance(inspect.getattr_static(requires.VaultKVRequires, name), property), name
