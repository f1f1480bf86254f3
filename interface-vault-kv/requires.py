"""Requires side of interface:vault-kv: the charm that wants a secrets backend.

Flags set here, for the layer and for charms:

- ``{endpoint_name}.connected``: a Vault application is related.
- ``{endpoint_name}.available``: Vault published its URL and, for this unit, a
  role id and a one-shot token, all well formed.

The names of the earlier interface:vault-kv keep working for charms written
against it: ``endpoint_address``, ``request_secret_backend(name, isolated)``,
``unit_role_id``, ``unit_token``, ``all_unit_tokens``, ``vault_url`` and
``vault_ca`` (PEM *bytes*, as before; :attr:`vault_ca_pem` is the same as text).
"""

import socket
from typing import List, Optional

from charmhelpers.core import hookenv
from charms.reactive import Endpoint, clear_flag, toggle_flag, when_not

from .relation_data import credential_string, decode_ca, decode_ca_bytes, decode_json, expect, vault_url


class VaultKVRequires(Endpoint):
    """The requirer's view of the vault-kv relation."""

    _unit_name_override: Optional[str] = None

    def manage_flags(self) -> None:
        """Re-derive our flags from the relation data each time it may change."""
        toggle_flag(self.expand_name("{endpoint_name}.connected"), self.is_joined)
        toggle_flag(
            self.expand_name("{endpoint_name}.available"),
            bool(self.is_joined and self.vault_url and self.unit_role_id and self.unit_token),
        )

    @when_not("endpoint.{endpoint_name}.joined")
    def broken(self) -> None:
        """Once the last Vault unit has gone, nothing we were given is usable."""
        clear_flag(self.expand_name("{endpoint_name}.connected"))
        clear_flag(self.expand_name("{endpoint_name}.available"))

    # -- what we ask for -------------------------------------------------

    @property
    def access_address(self) -> str:
        """Address Vault will see our requests come from (bound into the AppRole)."""
        try:
            return hookenv.network_get_primary_address(self.endpoint_name)
        except NotImplementedError:
            return hookenv.unit_private_ip()

    @property
    def endpoint_address(self) -> str:
        """The earlier interface's name for :attr:`access_address`."""
        return self.access_address

    def request_secret_backend(self, name: str, isolated: bool = True, unit_name: Optional[str] = None) -> None:
        """Ask Vault for the kv backend ``name`` and an AppRole to reach it.

        ``unit_name`` is the name Vault derives the AppRole and policy names
        from.  It defaults to the Juju unit name, which two models with the same
        application name share; pass ``{model-uuid}-{unit}`` to keep them apart.
        """
        if not isinstance(name, str) or not name.startswith("charm-"):
            raise ValueError("vault-kv backend names must start with 'charm-' (the vault charm ignores others)")
        unit_name = unit_name or hookenv.local_unit()
        self._unit_name_override = unit_name
        for relation in self.relations:
            relation.to_publish["secret_backend"] = name
            relation.to_publish["access_address"] = self.access_address
            relation.to_publish["hostname"] = socket.gethostname()
            relation.to_publish["isolated"] = bool(isolated)
            relation.to_publish["unit_name"] = unit_name

    # -- what we were given -----------------------------------------------

    @property
    def requested_unit_name(self) -> str:
        """The unit_name this unit asked Vault for (Juju unit name if none)."""
        if self._unit_name_override:
            return self._unit_name_override
        for relation in self.relations:
            value = expect("unit_name", relation.to_publish.get("unit_name"), str)
            if value:
                return value
        return hookenv.local_unit()

    @property
    def unit_names(self) -> List[str]:
        """Names Vault may answer this unit under: the requested one, then the Juju unit name."""
        return list(dict.fromkeys([self.requested_unit_name, hookenv.local_unit()]))

    def _received(self, key: str):
        """A value from any joined Vault unit, JSON-decoded, or None."""
        for unit in self.all_joined_units:
            value = decode_json(unit.received_raw.get(key))
            if value is not None:
                return value
        return None

    def role_id_for(self, unit_name: str) -> Optional[str]:
        """The AppRole id Vault published for ``unit_name`` (new or legacy name)."""
        key = "{}_role_id".format(unit_name)
        return credential_string(key, self._received(key))

    def token_for(self, unit_name: str) -> Optional[str]:
        """The one-shot wrapping token Vault published for ``unit_name``."""
        key = "{}_token".format(unit_name)
        return credential_string(key, self._received(key))

    @property
    def unit_role_id(self) -> Optional[str]:
        """AppRole id for this unit: under the requested name first, then the Juju unit name."""
        return next(filter(None, map(self.role_id_for, self.unit_names)), None)

    @property
    def unit_token(self) -> Optional[str]:
        """One-shot token that unwraps to this unit's secret_id."""
        return next(filter(None, map(self.token_for, self.unit_names)), None)

    def tokens_for(self, unit_name: str) -> List[str]:
        """Every distinct token the joined Vault units published for ``unit_name``."""
        key = "{}_token".format(unit_name)
        tokens: List[str] = []
        for unit in self.all_joined_units:
            token = credential_string(key, decode_json(unit.received_raw.get(key)))
            if token and token not in tokens:
                tokens.append(token)
        return tokens

    @property
    def all_unit_tokens(self) -> List[str]:
        """Every distinct token published for this unit, under the requested name first."""
        tokens: List[str] = []
        for name in self.unit_names:
            tokens.extend(t for t in self.tokens_for(name) if t not in tokens)
        return tokens

    @property
    def vault_url(self) -> Optional[str]:
        """URL of the Vault API, if published and well formed (the first of :attr:`vault_urls`)."""
        urls = self.vault_urls
        return urls[0] if urls else None

    @property
    def vault_urls(self) -> List[str]:
        """Every distinct well-formed URL the joined Vault units published, in unit order.

        Each unit of a vault application without a VIP publishes its own
        address; any of them can serve (standbys forward or answer reads).
        """
        urls: List[str] = []
        for unit in self.all_joined_units:
            url = vault_url(decode_json(unit.received_raw.get("vault_url")))
            if url and url not in urls:
                urls.append(url)
        return urls

    @property
    def vault_ca(self) -> Optional[bytes]:
        """The CA that signed Vault's certificate, as PEM **bytes**, if published.

        Bytes, as the earlier interface returned (``base64.b64decode`` of the
        published value); None when absent or not base64 of a PEM certificate.
        """
        return decode_ca_bytes(self._received("vault_ca"))

    @property
    def vault_ca_pem(self) -> Optional[str]:
        """The same CA as :attr:`vault_ca`, as PEM text (str), or None."""
        return decode_ca(self._received("vault_ca"))
