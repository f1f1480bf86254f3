"""What the vault charm does in Vault for a vault-kv request, done to a real server.

Used through the provides side of interface:vault-kv: the simulated vault
application reads ``requests()`` from ``VaultKVProvides`` and answers each
with :meth:`VaultProviderEmulator.serve`, then ``set_role_id``.  The steps
follow the vault charm (openstack/charm-vault, src/lib/charm/vault.py and
src/reactive/vault_handlers.py): a kv v1 mount named
after the backend, a policy and an AppRole named ``charm-`` + the request's
unit_name with ``/`` as ``-``, 60 s tokens bound to the unit's address, and a
response-wrapped secret_id.

When a secret_id is issued: the vault charm's test is ``new_role or
refresh_secrets`` with ``new_role = approle_name not in
client.auth.approle.list_roles()``.  With the hvac it pins (``hvac<0.12.0``,
src/wheelhouse.txt) ``list_roles()`` returns the whole response (a dict whose
keys are ``request_id``, ``data``, ...), so ``new_role`` is always true and
every request is answered with a new one-shot token each time the handler
runs (:data:`EVERY_RUN`, what deployments see).  What the code intends, a
secret_id only for a new AppRole or on refresh-secrets, is :data:`NEW_APPROLE`.
"""

from typing import Dict, Optional, Tuple

import hvac

SHARED_POLICY = """
path "{backend}/*" {{
  capabilities = ["create", "read", "update", "delete", "list"]
}}
path "sys/internal/ui/mounts/{backend}" {{
  capabilities = ["read"]
}}
"""

ISOLATED_POLICY = """
path "{backend}/{hostname}/*" {{
  capabilities = ["create", "read", "update", "delete", "list"]
}}
path "sys/internal/ui/mounts/{backend}" {{
  capabilities = ["read"]
}}
"""


EVERY_RUN = "every-run"  # the vault charm as deployed (hvac<0.12.0): every request, every time
NEW_APPROLE = "new-approle"  # what its code intends: new AppRoles and refresh-secrets only
ISSUE_MODES = (EVERY_RUN, NEW_APPROLE)


def approle_name(unit_name: str) -> str:
    """The name the vault charm gives the policy and the AppRole of a unit."""
    return "charm-" + unit_name.replace("/", "-")


class VaultProviderEmulator:
    """Configures a real Vault/OpenBao for vault-kv requests, as the vault charm does."""

    def __init__(
        self, client: hvac.Client, token_ttl: str = "60s", bind_cidr: bool = True, issue: str = EVERY_RUN
    ) -> None:
        if issue not in ISSUE_MODES:
            raise ValueError("issue must be one of {}".format(", ".join(ISSUE_MODES)))
        self.client = client
        self.token_ttl = token_ttl
        self.bind_cidr = bind_cidr
        self.issue = issue

    def _ensure_approle_auth(self) -> None:
        if "approle/" not in self.client.sys.list_auth_methods()["data"]:
            self.client.sys.enable_auth_method("approle")

    def _ensure_mount(self, backend: str) -> None:
        mounts = self.client.sys.list_mounted_secrets_engines()["data"]
        if backend + "/" not in mounts:
            self.client.sys.enable_secrets_engine("kv", path=backend, options={"version": "1"})

    def serve(self, request: Dict, refresh: bool = False) -> Tuple[str, Optional[str]]:
        """Handle one request; returns (role_id, wrapping token or None if none is due).

        A token is due for a new AppRole or on ``refresh``; with ``issue`` =
        :data:`EVERY_RUN` (the vault charm as deployed) always.  The AppRole
        is bound to ``ingress_address`` when the request has one (the vault
        charm's choice), else to ``access_address``.
        """
        backend = request["secret_backend"]
        if not backend.startswith("charm-"):
            raise ValueError("the vault charm serves only charm-* backends")
        self._ensure_approle_auth()
        self._ensure_mount(backend)
        name = approle_name(request["unit_name"])
        template = ISOLATED_POLICY if request["isolated"] else SHARED_POLICY
        self.client.sys.create_or_update_policy(name, template.format(backend=backend, hostname=request["hostname"]))
        existing = self.client.list("auth/approle/role") or {}
        is_new = name not in (existing.get("data") or {}).get("keys", [])
        address = request.get("ingress_address") or request["access_address"]
        cidrs = ["{}/32".format(address)] if self.bind_cidr else []
        self.client.auth.approle.create_or_update_approle(
            name,
            token_policies=[name],
            token_ttl=self.token_ttl,
            token_max_ttl=self.token_ttl,
            bind_secret_id=True,
            token_bound_cidrs=cidrs or None,
        )
        role_id = self.client.auth.approle.read_role_id(name)["data"]["role_id"]
        if not (is_new or refresh or self.issue == EVERY_RUN):
            return role_id, None
        params = {"cidr_list": cidrs} if cidrs else {}
        response = self.client.write_data("auth/approle/role/{}/secret-id".format(name), data=params, wrap_ttl="1h")
        return role_id, response["wrap_info"]["token"]
