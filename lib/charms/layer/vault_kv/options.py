"""Options of layer:vault-kv, read from the built charm's ``layer.yaml``.

``charm build`` merges each layer's options into ``layer.yaml`` at the top of
the charm under ``options: {vault-kv: {...}}``.  We read that file ourselves so
the layer needs no other layer (such as layer:options) to find its settings.
"""

import os
import re
from typing import Any, Dict, Optional

import yaml
from charmhelpers.core import hookenv

from charms.layer.vault_kv.errors import VaultMisconfigured

LAYER_NAME = "vault-kv"
DEFAULTS: Dict[str, Any] = {
    "secrets-backend-format": "charm-{app}",
    "encryption-config-path": "",
    "apiserver-args-path": "/var/snap/kube-apiserver/current/args",
    "kubeconfig-path": "/root/.kube/config",
}
LEGACY_BACKEND_FORMAT = "charm-{app}"


_parsed: Dict[Any, Any] = {}


def layer_options() -> Dict[str, Any]:
    """This layer's options, with defaults for any the charm does not set.

    Asked many times a hook (backend name, secure storage, local copies):
    the file is parsed again only when it is another file or has changed.
    """
    options = dict(DEFAULTS)
    path = os.path.join(hookenv.charm_dir() or os.getcwd(), "layer.yaml")
    try:
        stat = os.stat(path)
        key = (path, stat.st_mtime_ns, stat.st_size)
        if key not in _parsed:
            with open(path) as handle:
                _parsed.clear()
                _parsed[key] = yaml.safe_load(handle) or {}
        data = _parsed[key]
    except FileNotFoundError:
        return options
    except (OSError, yaml.YAMLError):
        raise VaultMisconfigured("the charm's layer.yaml cannot be read") from None
    if not isinstance(data, dict) or not isinstance(data.get("options") or {}, dict):
        raise VaultMisconfigured("the charm's layer.yaml has no usable options")
    found = (data.get("options") or {}).get(LAYER_NAME) or {}
    if isinstance(found, dict):
        options.update({k: v for k, v in found.items() if v is not None})
    return options


PLACEHOLDERS = ("{app}", "{model-uuid}")
_NAME = re.compile(r"^charm-[a-z0-9-]+$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_APP = re.compile(r"^[a-z][a-z0-9-]*$")


def substitute(template: str) -> str:
    """Fill ``{app}`` and ``{model-uuid}`` into a template, without checking anything."""
    values = {"{app}": hookenv.application_name() or "", "{model-uuid}": hookenv.model_uuid() or ""}
    name = template
    for placeholder, value in values.items():
        name = name.replace(placeholder, value)
    return name


def format_backend_name(template: Any) -> str:
    """Fill ``{app}`` and ``{model-uuid}`` into a backend name template, checked.

    Raises VaultMisconfigured (the unit shows ``blocked``) for a template that
    is not a string, names another placeholder, lacks ``{app}`` (every
    application of the model would share one backend), or does not give a
    name the vault charm serves and Vault accepts as one path segment
    (``charm-`` then lower-case letters, digits and hyphens); and when Juju
    gave no valid model UUID for ``{model-uuid}``.
    """
    if not isinstance(template, str) or not template:
        raise VaultMisconfigured("secrets-backend-format must be a non-empty string")
    rest = template
    for placeholder in PLACEHOLDERS:
        rest = rest.replace(placeholder, "")
    if "{" in rest or "}" in rest:
        raise VaultMisconfigured(
            "secrets-backend-format {!r}: only {{app}} and {{model-uuid}} may be used".format(template)
        )
    if "{app}" not in template:
        raise VaultMisconfigured("secrets-backend-format {!r} must contain {{app}}".format(template))
    if not _APP.match(hookenv.application_name() or ""):
        raise VaultMisconfigured("the application name from Juju is not usable in a backend name")
    if "{model-uuid}" in template and not _UUID.match(hookenv.model_uuid() or ""):
        raise VaultMisconfigured("Juju gave no valid model UUID for secrets-backend-format {!r}".format(template))
    name = substitute(template)
    if not _NAME.match(name):
        raise VaultMisconfigured(
            "secrets-backend-format {!r}: the name must start with 'charm-' and hold only"
            " lower-case letters, digits and '-'".format(template)
        )
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


def charm_includes_vaultlocker() -> bool:
    """Whether the built charm includes layer:vaultlocker (whose library it then carries)."""
    root = hookenv.charm_dir() or os.getcwd()
    return os.path.exists(os.path.join(root, "lib", "charms", "layer", "vaultlocker.py"))
