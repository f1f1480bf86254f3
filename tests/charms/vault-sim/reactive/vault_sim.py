"""The simulated vault application: the vault charm's vault-kv handlers against a real OpenBao.

Modelled on the vault charm (openstack/charm-vault, src/reactive/vault_handlers.py):
``configure_secrets_backend`` and ``send_vault_url_and_ca`` call the
provides side of interface:vault-kv exactly as it does (same methods, same
keywords, same flags), and ``support.vault_provider`` does in OpenBao what it
does in Vault.  The charm's steps that do not touch the interface (installing
and unsealing Vault, its own AppRole) are replaced by the test's root token.

- leader, ``secrets.connected`` and ``endpoint.secrets.new-request`` (or
  ``secrets.refresh``, set by the refresh-secrets action): every request gets
  its kv mount, policy and AppRole ``charm-{unit_name with / as -}``; which
  requests get a new wrapped secret_id is the ``secret-ids`` option:
  ``every-run`` (the default, the vault charm as deployed: its new-AppRole
  test never matches with the hvac it pins, so every request is answered with
  a new one-shot token whenever the handler runs, i.e. whenever any unit's
  request is new or changed) or ``new-approle`` (what its code intends: only
  a new AppRole, or on refresh-secrets).
- every hook with ``secrets.connected``: ``publish_url(vault_url=...,
  remote_binding='access')`` and, with ``ssl-ca`` set (base64 PEM),
  ``publish_ca(vault_ca=...)``.

The refresh-secrets action is the ``refresh-secrets`` config counter here.

Vault HA: with ``bao-urls`` (one URL per OpenBao node) each vault unit
publishes the URL of "its" node, as vault units without a VIP publish their
own address, and the leader configures OpenBao through whichever node serves.
"""

import hvac
from charmhelpers.core import hookenv
from charms.reactive import clear_flag, data_changed, endpoint_from_flag, set_flag, when, when_any, when_not

from tests.support.vault_provider import EVERY_RUN, VaultProviderEmulator


def _node_urls():
    config = hookenv.config()
    return (config.get("bao-urls") or "").split() or [config["bao-url"]]


def _own_url():
    """The URL this vault unit publishes: its own node's."""
    urls = _node_urls()
    return urls[int(hookenv.local_unit().split("/")[1]) % len(urls)]


def _client():
    """A root client at the active node: the provider reads back what it just created."""
    config = hookenv.config()
    verify = config.get("bao-ca-file") or True
    urls = _node_urls()
    for url in urls if len(urls) > 1 else []:
        client = hvac.Client(url=url, token=config["bao-token"], verify=verify, timeout=10)
        try:
            if client.sys.read_health_status(method="HEAD").status_code == 200:
                return client
        except Exception:
            continue
    return hvac.Client(url=config["bao-url"], token=config["bao-token"], verify=verify)


@when("secrets.connected")
def refresh_secrets_action():
    """The refresh-secrets action sets ``secrets.refresh`` (here: the config counter moved)."""
    counter = hookenv.config().get("refresh-secrets") or 0
    if data_changed("vault-sim.refresh", counter) and counter:
        set_flag("secrets.refresh")


@when_not("is-update-status-hook")
@when("leadership.is_leader", "secrets.connected")
@when_any("endpoint.secrets.new-request", "secrets.refresh")
def configure_secrets_backend():
    if not hookenv.config().get("bao-url"):
        return
    config = hookenv.config()
    emulator = VaultProviderEmulator(
        _client(), token_ttl=config.get("token-ttl") or "60s", issue=config.get("secret-ids") or EVERY_RUN
    )
    secrets = endpoint_from_flag("endpoint.secrets.new-request") or endpoint_from_flag("secrets.connected")
    refresh = "secrets.refresh" in _flags()
    for request in secrets.requests():
        if not request["secret_backend"].startswith("charm-"):
            continue
        unit = request["unit"]
        role_id, token = emulator.serve(
            dict(request, unit_name=request.get("unit_name", unit.unit_name)), refresh=refresh
        )
        if token is not None:
            secrets.set_role_id(unit=unit, role_id=role_id, token=token)
    clear_flag("endpoint.secrets.new-request")
    clear_flag("secrets.refresh")


@when_not("is-update-status-hook")
@when("secrets.connected")
def send_vault_url_and_ca():
    config = hookenv.config()
    if not config.get("bao-url"):
        hookenv.status_set("blocked", "bao-url not set")
        return
    secrets = endpoint_from_flag("secrets.connected")
    secrets.publish_url(vault_url=_own_url(), remote_binding="access")
    if config.get("ssl-ca"):
        secrets.publish_ca(vault_ca=config.get("ssl-ca"))
    hookenv.status_set("active", "serving vault-kv")


def _flags():
    from charms.reactive import get_flags

    return set(get_flags())
