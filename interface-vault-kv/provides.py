"""Provides side of interface:vault-kv: the Vault charm that serves backends.

A provider reads each remote unit's request with :meth:`requests`, creates the
backend, policy and AppRole in Vault, then answers with :meth:`publish_url`,
:meth:`publish_ca` and :meth:`set_role_id`.  See README.md for the protocol.

The method names and keyword names are those of the earlier
interface:vault-kv, which the vault charm calls: ``publish_url(vault_url=,
remote_binding=)``, ``publish_ca(vault_ca=)`` (already base64),
``get_remote_unit_name(unit)``, ``set_role_id(unit=, role_id=, token=)`` and
``requests()``.

Flags: ``{endpoint_name}.connected`` while any unit is related and
``endpoint.{endpoint_name}.new-request`` when a request field changed.

A requirer names the AppRole it gets with ``unit_name``.  Only its own Juju
unit name, or that name prefixed with a model UUID (``{model-uuid}-{unit}``,
which keeps two models' units apart), is accepted: a unit may not claim
another unit's AppRole and so blank or refresh its secret_id.  Across models
(a cross-model relation) Juju shows the remote unit as ``remote-{hash}/{n}``,
so there the application part cannot be checked and the unit number must
match.  A model-scoped name claimed by two units is refused for both (a
plain Juju name is shared by same-named applications of several models, as
it always was).
"""

import ipaddress
import re
from subprocess import CalledProcessError
from typing import Any, Dict, List, Optional, Union

from charmhelpers.core import hookenv
from charms.reactive import Endpoint, clear_flag, is_flag_set, toggle_flag, when_not

from .relation_data import decode_ca_bytes, expect, non_empty_string

REQUEST_FIELDS = ("secret_backend", "access_address", "hostname", "isolated", "unit_name")
_MODEL_UUID_PREFIX = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}-")
_UNIT_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*/[0-9]+$")
_CROSS_MODEL_UNIT = re.compile(r"^remote-[0-9a-f]+/([0-9]+)$")


def unit_name_allowed(claimed: str, juju_name: str) -> bool:
    """Whether a requirer unit known to Juju as ``juju_name`` may be known to Vault as ``claimed``."""
    name = _MODEL_UUID_PREFIX.sub("", claimed, count=1)
    if name == juju_name:
        return True
    cross_model = _CROSS_MODEL_UNIT.match(juju_name)
    return bool(cross_model and _UNIT_NAME.match(name) and name.rsplit("/", 1)[1] == cross_model.group(1))


IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


def binding_networks(binding: str) -> Optional[List[IPNetwork]]:
    """The networks of the local binding ``binding``, or None if unknown.

    Read from ``network-get``: every ``cidr`` of every bind address.  Any
    failure (no network-get, an error from it, missing keys, a bad cidr) is
    None, which callers take as "cannot filter".  Logged at DEBUG by binding
    name only.
    """
    try:
        info = hookenv.network_get(binding)
        if not isinstance(info, dict):
            raise TypeError("network-get answer is not a mapping")
        networks = []
        for bind in info["bind-addresses"]:
            for address in bind["addresses"]:
                cidr = address["cidr"]
                if not isinstance(cidr, str):
                    raise TypeError("cidr is not a string")
                networks.append(ipaddress.ip_network(cidr, strict=False))
    except (NotImplementedError, CalledProcessError, OSError, KeyError, IndexError, TypeError, ValueError):
        networks = []
    if not networks:
        hookenv.log(
            "vault-kv: cannot determine the network of binding {!r}; publishing vault_url unfiltered".format(binding),
            level=hookenv.DEBUG,
        )
        return None
    return networks


def remote_address(relation) -> Optional[IPAddress]:
    """IP address of the relation's first remote unit: ingress-address, else access_address."""
    units = relation.units
    if not units:
        return None
    data = units[0].received
    for field in ("ingress-address", "access_address"):
        value = data.get(field)
        if isinstance(value, str) and value.strip():
            try:
                return ipaddress.ip_address(value.strip())
            except ValueError:
                continue
    return None


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

    def publish_url(self, vault_url: str, remote_binding: Optional[str] = None) -> None:
        """Tell related units where the Vault API is.

        Without ``remote_binding`` every relation gets ``vault_url``.  With it
        (the vault charm calls once with ``'access'``, then with
        ``'external'`` for its external URL), a relation gets ``vault_url``
        if it has none published yet, or if its first remote unit's address
        (``ingress-address``, else ``access_address``) lies in the network of
        the local binding ``remote_binding``.  If that network cannot be
        determined, every relation gets it (fail open).  So the first call
        sets every relation, the second overrides only those whose remote
        unit is in the external network, and the next hook flips nothing.
        """
        networks: Optional[List[IPNetwork]] = None
        looked_up = False
        for relation in self.relations:
            if remote_binding and relation.to_publish.get("vault_url"):
                if not looked_up:
                    networks = binding_networks(remote_binding)
                    looked_up = True
                if networks is not None:
                    address = remote_address(relation)
                    if address is None or not any(address in network for network in networks):
                        continue
            relation.to_publish["vault_url"] = vault_url

    def publish_ca(self, vault_ca: Optional[str]) -> None:
        """Publish ``vault_ca``: the CA that signs Vault's certificate, ALREADY base64-encoded.

        The value is published unchanged, as the vault charm passes its
        ``ssl-ca`` option (base64 of PEM).  None or empty removes the CA.
        A value that is not base64 of a PEM certificate is still published,
        with a warning (requirers will ignore it).
        """
        if isinstance(vault_ca, bytes):
            vault_ca = vault_ca.decode("ascii", "replace")  # base64 is ASCII; anything else is dropped below
        if vault_ca is not None and not isinstance(vault_ca, str):
            raise TypeError("publish_ca: vault_ca must be a base64 string or None")
        if not vault_ca or not vault_ca.strip():
            vault_ca = None
        else:
            decode_ca_bytes(vault_ca)  # logs (field name only) if requirers will not accept it
        for relation in self.relations:
            relation.to_publish["vault_ca"] = vault_ca

    @staticmethod
    def _claimed_unit_name(unit) -> Optional[str]:
        claimed = non_empty_string("unit_name", unit.received.get("unit_name"))
        if claimed is None or unit_name_allowed(claimed, unit.unit_name):
            return claimed
        hookenv.log(
            "vault-kv: {} asked to be known as {!r}, which is not its own unit name;" " refused".format(
                unit.unit_name, claimed[:200]
            ),
            level=hookenv.WARNING,
        )
        return None

    @staticmethod
    def get_remote_unit_name(unit) -> str:
        """The unit_name a requirer asked to be known by: its Juju name if none, or if the claim is refused."""
        return VaultKVProvides._claimed_unit_name(unit) or unit.unit_name

    remote_unit_name = get_remote_unit_name  # the name this interface used before

    def set_role_id(self, unit, role_id: str, token: str) -> None:
        """Publish ``{unit_name}_role_id`` and ``{unit_name}_token`` for one requirer unit.

        A unit that changed its unit_name gets its answers under the new name;
        answers published earlier under another name for the same unit number
        are blanked, as the vault charm does.
        """
        unit_name = self.get_remote_unit_name(unit)
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
        names: Dict[int, Optional[str]] = {}  # id(unit) -> the name it is served under; None: refused
        claims: Dict[str, int] = {}
        for relation in self.relations:
            for unit in relation.units:
                claimed = non_empty_string("unit_name", unit.received.get("unit_name"))
                accepted = self._claimed_unit_name(unit) if claimed is not None else unit.unit_name
                names[id(unit)] = accepted  # a refused claim is not served under any name
                if accepted is not None:
                    claims[accepted] = claims.get(accepted, 0) + 1
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
                name = names.get(id(unit))
                if name is None:
                    continue
                if claims.get(name, 0) > 1 and _MODEL_UUID_PREFIX.match(name):
                    # a plain Juju name is shared across models by design (the
                    # old naming); a model-scoped one belongs to one unit only
                    hookenv.log(
                        "vault-kv: {!r} is claimed by more than one related unit; refused".format(name),
                        level=hookenv.WARNING,
                    )
                    continue
                found.append(
                    {
                        "unit": unit,
                        "unit_name": name,
                        "secret_backend": backend,
                        "access_address": address,
                        "ingress_address": data.get("ingress-address") or address,
                        "hostname": hostname,
                        "isolated": isolated,
                    }
                )
        return found
