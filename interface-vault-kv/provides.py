"""Provides side of interface:vault-kv: the Vault charm that serves backends.

A provider reads each remote unit's request with :meth:`requests`, creates the
backend, policy and AppRole in Vault, then answers with :meth:`publish_url`,
:meth:`publish_ca` and :meth:`set_role_id`.  See README.md for the protocol.

Flags: ``{endpoint_name}.connected`` while any unit is related and
``endpoint.{endpoint_name}.new-request`` when a request field changed.
"""

import re
from typing import Any, Dict, List, Optional

from charmhelpers.core import hookenv
from charms.reactive import Endpoint, clear_flag, is_flag_set, toggle_flag, when_not

from .relation_data import encode_ca, expect, non_empty_string

REQUEST_FIELDS = ("secret_backend", "access_address", "hostname", "isolated", "unit_name")


class VaultKVProvides(Endpoint):
    """The Vault charm's view of the vault-kv relation."""

    def manage_flags(self) -> None:
        """Raise ``new-request`` when any unit changed what it asks for."""
        changed = False
        for field in REQUEST_FIELDS:
            flag = self.expand_name("endpoint.{endpoint_name}.changed." + field)
            changed = changed or is_flag_set(flag)
            clear_flag(flag)
        toggle_flag(self.expand_name("{endpoint_name}.connected"), self.is_joined)
        if changed:
            toggle_flag(self.expand_name("endpoint.{endpoint_name}.new-request"), True)

    @when_not("endpoint.{endpoint_name}.joined")
    def broken(self) -> None:
        """No related units: nothing to serve."""
        clear_flag(self.expand_name("{endpoint_name}.connected"))
        clear_flag(self.expand_name("endpoint.{endpoint_name}.new-request"))

    def publish_url(self, vault_url: str) -> None:
        """Tell every related unit where the Vault API is."""
        for relation in self.relations:
            relation.to_publish["vault_url"] = vault_url

    def publish_ca(self, ca_pem: Optional[str]) -> None:
        """Publish the PEM CA that signs Vault's certificate (base64-encoded)."""
        for relation in self.relations:
            relation.to_publish["vault_ca"] = encode_ca(ca_pem) if ca_pem else None

    @staticmethod
    def remote_unit_name(unit) -> str:
        """The unit_name a requirer asked to be known by (its Juju name if none)."""
        return non_empty_string("unit_name", unit.received.get("unit_name")) or unit.unit_name

    def set_role_id(self, unit, role_id: str, token: str) -> None:
        """Publish ``{unit_name}_role_id`` and ``{unit_name}_token`` for one requirer unit.

        A unit that changed its unit_name gets its answers under the new name;
        answers published earlier under another name for the same unit number
        are blanked, as the vault charm does.
        """
        unit_name = self.remote_unit_name(unit)
        number = unit_name.rsplit("/", 1)[-1]
        stale = re.compile(r".*/{}_(role_id|token)$".format(re.escape(number)))
        current = ("{}_role_id".format(unit_name), "{}_token".format(unit_name))
        for key in list(unit.relation.to_publish.keys()):
            if stale.match(key) and key not in current:
                unit.relation.to_publish.raw_data[key] = ""
        unit.relation.to_publish[current[0]] = role_id
        unit.relation.to_publish[current[1]] = token

    def requests(self) -> List[Dict[str, Any]]:
        """Every complete, well-formed request from related units.

        Incomplete or malformed requests are skipped (and logged by field
        name) until the unit publishes a valid one.
        """
        found = []
        for relation in self.relations:
            for unit in relation.units:
                data = unit.received
                backend = non_empty_string("secret_backend", data.get("secret_backend"))
                address = non_empty_string("access_address", data.get("access_address"))
                hostname = non_empty_string("hostname", data.get("hostname"))
                isolated = expect("isolated", data.get("isolated"), bool)
                if backend is None or address is None or hostname is None or isolated is None:
                    continue
                if not backend.startswith("charm-"):
                    hookenv.log(
                        "vault-kv: ignoring request for backend not starting with 'charm-'", level=hookenv.WARNING
                    )
                    continue
                found.append(
                    {
                        "unit": unit,
                        "unit_name": self.remote_unit_name(unit),
                        "secret_backend": backend,
                        "access_address": address,
                        "ingress_address": data.get("ingress-address") or address,
                        "hostname": hostname,
                        "isolated": isolated,
                    }
                )
        return found
