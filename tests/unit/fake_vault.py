"""An in-memory stand-in for Vault's HTTP API, at the level of hvac.Client.

Only for unit tests: it models what the layer relies on (kv v1 replace-on-
write, AppRole login, one-shot wrapped secret_ids, token expiry, policies,
sealing, outages) and records every request, so tests can read back exactly
what reached "Vault".  The integration suite checks the same against OpenBao.
"""

import itertools
from typing import Any, Dict, List, Optional

import hvac.exceptions as errors
import requests


class FakeVault:
    """State of one fake Vault server."""

    def __init__(self) -> None:
        self.data: Dict[str, Dict[str, Any]] = {}
        self.requests: List[tuple] = []
        self.roles = {"role-app-0": "secret-app-0"}
        self.wrapped = {"token-app-0": "secret-app-0"}
        self.tokens: Dict[str, List[str]] = {}  # token -> allowed path prefixes
        self.allowed_prefixes = ["charm-"]
        self.sealed = False
        self.down = False
        self.ssl_error = False
        self._ids = itertools.count(1)
        self.on_request = None  # callable(kind, path) run before each request
        self.unmounted: List[str] = []  # backends whose paths answer "no handler for route"
        self.hidden: List[str] = []  # paths answered with a bare 404 though they hold data (a proxy, a lagging replica)

    # -- fault injection -----------------------------------------------------

    def expire_tokens(self) -> None:
        """Every issued client token stops working (they live 60 s in the vault charm)."""
        self.tokens.clear()

    def client(self, url=None, token=None, verify=None, timeout=None, **kw):
        self.client_options = dict(kw, token=token)  # what the layer built its last client with
        return FakeClient(self, url, token, verify)

    def count(self, kind: str) -> int:
        return sum(1 for req in self.requests if req[0] == kind)


class _Auth:
    def __init__(self, client):
        self.approle = self
        self._client = client

    def login(self, role_id, secret_id, **_kw):
        server = self._client._server
        self._client._request("login", "auth/approle/login")
        if server.roles.get(role_id) != secret_id:
            raise errors.InvalidRequest("invalid role or secret ID")
        token = "s.{}".format(next(server._ids))
        server.tokens[token] = list(server.allowed_prefixes)
        self._client.token = token
        return {"auth": {"client_token": token}}


class _Sys:
    def __init__(self, client):
        self._client = client

    def unwrap(self, token=None):
        server = self._client._server
        self._client._request("unwrap", "sys/wrapping/unwrap")
        secret_id = server.wrapped.pop(self._client.token, None)
        if secret_id is None:
            raise errors.InvalidRequest("wrapping token is not valid or does not exist")
        return {"data": {"secret_id": secret_id, "secret_id_accessor": "acc"}}


class FakeClient:
    """What the layer calls on hvac.Client."""

    def __init__(self, server: FakeVault, url, token, verify) -> None:
        self._server = server
        self.url = url
        self.token = token
        self.verify = verify
        self.auth = _Auth(self)
        self.sys = _Sys(self)

    def _request(self, kind: str, path: str) -> None:
        server = self._server
        if server.on_request:
            server.on_request(kind, path)
        if server.down:
            raise requests.exceptions.ConnectionError("connection refused")
        if server.ssl_error:
            raise requests.exceptions.SSLError("certificate verify failed")
        if server.sealed:
            raise errors.VaultDown("Vault is sealed")
        server.requests.append((kind, path))

    def _authorise(self, path: str) -> None:
        prefixes = self._server.tokens.get(self.token)
        if prefixes is None or not any(path.startswith(p) for p in prefixes):
            raise errors.Forbidden("permission denied")

    @property
    def adapter(self):
        return self

    def get(self, url: str):
        """hvac's adapter.get("/v1/{path}"): 404 raises InvalidPath, with errors only for an unmounted backend."""
        path = url[len("/v1/") :]
        self._request("read", path)
        self._authorise(path)
        if path not in self._server.data or path in self._server.hidden:
            mounted = any(path.startswith(m + "/") for m in self._server.unmounted) is False
            raise errors.InvalidPath(errors=None if mounted else ["no handler for route"])
        return {"data": dict(self._server.data[path])}

    def read(self, path: str) -> Optional[dict]:
        self._request("read", path)
        self._authorise(path)
        if path not in self._server.data or path in self._server.hidden:
            return None
        return {"data": dict(self._server.data[path])}

    def write_data(self, path: str, *, data=None, wrap_ttl=None):
        self._request("write", path)
        self._authorise(path)
        if not data:
            raise errors.InvalidRequest("no data provided")
        self._server.data[path] = dict(data)  # kv v1: the whole secret is replaced

    def list(self, path: str) -> Optional[dict]:
        """kv v1 list: the names one level below ``path`` (folders end with "/"), None if none."""
        self._request("list", path)
        self._authorise(path)
        prefix = path.rstrip("/") + "/"
        names = sorted(
            {
                p[len(prefix) :].split("/", 1)[0] + ("/" if "/" in p[len(prefix) :] else "")
                for p in self._server.data
                if p.startswith(prefix)
            }
        )
        return {"data": {"keys": names}} if names else None

    def delete(self, path: str):
        self._request("delete", path)
        self._authorise(path)
        self._server.data.pop(path, None)


class FakeUnit:
    def __init__(self, data: Dict[str, str]):
        self.received_raw = data


class FakeRelation:
    def __init__(self):
        self.to_publish: Dict[str, Any] = {}


class FakeEndpoint:
    """The requires endpoint as the layer sees it, answering like VaultKVRequires.

    The real requires code is exercised in test_interface.py; here its
    answers are plain data the tests change freely: ``unit_role_id`` and
    ``all_unit_tokens`` for the Juju unit name, ``grants`` for other names.
    """

    def __init__(self, server: FakeVault, juju) -> None:
        self.server = server
        self.juju = juju
        self.grants: Dict[str, tuple] = {}  # unit_name -> (role_id, [tokens])
        self.is_joined = True
        self.vault_url = "http://127.0.0.1:8200"
        self.unit_role_id = "role-app-0"
        self.all_unit_tokens = ["token-app-0"]
        self.vault_ca = None
        self.requests: List[dict] = []
        self.relations = [FakeRelation()]

    @property
    def unit_token(self):
        return self.all_unit_tokens[0] if self.all_unit_tokens else None

    @property
    def requested_unit_name(self):
        return self.requests[-1]["unit_name"] if self.requests else self.juju["unit"]

    @property
    def unit_names(self):
        return list(dict.fromkeys([self.requested_unit_name, self.juju["unit"]]))

    def grant(self, unit_name: str, role_id: str, secret_id: str, token: str) -> None:
        """What the vault charm does for a new request: an AppRole and a wrapped secret_id."""
        self.server.roles[role_id] = secret_id
        self.server.wrapped[token] = secret_id
        self.grants[unit_name] = (role_id, [token])

    def role_id_for(self, name):
        if name in self.grants:
            return self.grants[name][0]
        return self.unit_role_id if name == self.juju["unit"] else None

    def tokens_for(self, name):
        if name in self.grants:
            return list(self.grants[name][1])
        return list(self.all_unit_tokens) if name == self.juju["unit"] else []

    def request_secret_backend(self, name, isolated=True, unit_name=None):
        self.requests.append({"secret_backend": name, "isolated": isolated, "unit_name": unit_name})
        for relation in self.relations:  # as the interface does: on every relation there is
            relation.to_publish.update({"secret_backend": name, "unit_name": unit_name})
