"""Options of layer:vault-kv, read from the built charm's ``layer.yaml``.

``charm build`` merges each layer's options into ``layer.yaml`` at the top of
the charm under ``options: {vault-kv: {...}}``.  We read that file ourselves so
the layer needs no other layer (such as layer:options) to find its settings.
"""

import os
from typing import Any, Dict, Optional

import yaml
from charmhelpers.core import hookenv

LAYER_NAME = "vault-kv"
DEFAULTS: Dict[str, Any] = {
    "secrets-backend-format": "charm-{app}",
    "encryption-config-path": "",
}
LEGACY_BACKEND_FORMAT = "charm-{app}"


def layer_options() -> Dict[str, Any]:
    """This layer's options, with defaults for any the charm does not set."""
    options = dict(DEFAULTS)
    path = os.path.join(hookenv.charm_dir() or os.getcwd(), "layer.yaml")
    try:
        with open(path) as handle:
            data = yaml.safe_load(handle) or {}
    except FileNotFoundError:
        return options
    found = (data.get("options") or {}).get(LAYER_NAME) or {}
    if isinstance(found, dict):
        options.update({k: v for k, v in found.items() if v is not None})
    return options


def format_backend_name(template: str) -> str:
    """Fill ``{app}`` and ``{model-uuid}`` into a backend name template.

    Raises ValueError for a template that names anything else or that does
    not give a name the vault charm serves (it only serves ``charm-*``).
    """
    values = {"app": hookenv.application_name(), "model-uuid": hookenv.model_uuid()}
    name = template
    for key, value in values.items():
        name = name.replace("{" + key + "}", value or "")
    if "{" in name or "}" in name:
        raise ValueError("secrets-backend-format {!r}: only {{app}} and {{model-uuid}} may be used".format(template))
    if not name.startswith("charm-"):
        raise ValueError("secrets-backend-format {!r}: the name must start with 'charm-'".format(template))
    return name


def secret_backend_name(backend_format: Optional[str] = None) -> str:
    """The backend this build of the charm keeps its data in.

    ``backend_format`` overrides the layer option, as the old layer's
    ``backend_format`` keyword did.
    """
    return format_backend_name(backend_format or layer_options()["secrets-backend-format"])


def legacy_backend_name() -> str:
    """The backend releases before model-scoped names used: ``charm-{app}``."""
    return format_backend_name(LEGACY_BACKEND_FORMAT)


def uses_model_scoped_names() -> bool:
    """True when the backend format keeps this model apart from others on the same Vault."""
    return "{model-uuid}" in layer_options()["secrets-backend-format"]


def vault_unit_name() -> str:
    """The unit_name sent to Vault, from which it names our AppRole and policy.

    Builds using the legacy format send the Juju unit name, exactly as
    deployments of the old layer do.  Model-scoped builds send
    ``{model-uuid}-{unit}`` so two models' units never share an AppRole.
    """
    unit = hookenv.local_unit()
    if uses_model_scoped_names():
        return "{}-{}".format(hookenv.model_uuid(), unit)
    return unit
