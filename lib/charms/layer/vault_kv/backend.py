"""Which backend this unit's data should be in, and which one it is in.

``wanted()`` is what this build of the charm asks for (the layer option,
``charm-{model-uuid}-{app}`` or ``charm-{app}``, and the unit name Vault
knows it by).  ``active()`` is where the unit's data is now: recorded in
unitdata, or, for a unit upgraded from the old layer, what it last published
on the relation.  When the two differ the data must move first (``needed``),
and the stores wait (``VaultNotReady``) until it has.
"""

from typing import Dict, Optional, Set

from charmhelpers.core import hookenv, unitdata
from charms.reactive import is_flag_set

from charms.layer.vault_kv import names
from charms.layer.vault_kv import options as vault_kv_options
from charms.layer.vault_kv.credentials import vault_endpoint

KV_ACTIVE = names.ACTIVE


def wanted() -> Dict[str, str]:
    """The backend and unit name this build of the charm uses."""
    return {"backend": vault_kv_options.secret_backend_name(), "unit_name": vault_kv_options.vault_unit_name()}


def _published_request() -> Optional[Dict[str, str]]:
    """What this unit last asked Vault for, as published on the relation (old layer too)."""
    endpoint = vault_endpoint()
    for relation in getattr(endpoint, "relations", None) or []:
        backend = relation.to_publish.get("secret_backend")
        if isinstance(backend, str) and backend:
            unit_name = relation.to_publish.get("unit_name")
            return {"backend": backend, "unit_name": unit_name or hookenv.local_unit()}
    return None


def request_missing_on_a_relation() -> bool:
    """Whether a vault relation joined that carries no request of this unit.

    A request is published on every relation there is when it is made; a
    relation that joins later (the charm related to another vault
    application before the old relation is removed, as when moving to a new
    Vault) would otherwise never get one, and the unit would wait for an
    answer to a question it never asked there.
    """
    endpoint = vault_endpoint()
    relations = getattr(endpoint, "relations", None) or []
    return any(not relation.to_publish.get("secret_backend") for relation in relations)


def active() -> Optional[Dict[str, str]]:
    """The backend this unit's data lives in now, or None for a unit that never had one."""
    stored = unitdata.kv().get(KV_ACTIVE)
    if stored:
        return stored
    return _published_request()


def set_active(where: Dict[str, str]) -> None:
    unitdata.kv().set(KV_ACTIVE, dict(where))
    unitdata.kv().flush()


def needed(flags: Optional[Set[str]] = None) -> bool:
    """Whether this unit's data must move before the layer can be ready (``flags``: the set flags, if read)."""
    if (names.MIGRATION_IN_PROGRESS in flags) if flags is not None else is_flag_set(names.MIGRATION_IN_PROGRESS):
        return True
    current = active()
    return current is not None and current != wanted()
