"""Reactive handlers of layer:vault-kv.  Each is thin; the logic is in lib/.

Flags this layer sets:

- ``layer.vault-kv.requested``: access was asked for on the relation.
- ``layer.vault-kv.ready``: Vault answered with this unit's credentials and the
  app-kv flags below reflect Vault's data in this hook.
- ``layer.vault-kv.config.changed``: the connection data changed (the charm clears it).
- ``layer.vault-kv.app-kv.changed[.{key}]``, ``layer.vault-kv.app-kv.set.{key}``:
  see ``VaultAppKV``.
"""

import socket

from charmhelpers.core import hookenv
from charms.reactive import (
    clear_flag,
    data_changed,
    endpoint_from_flag,
    is_flag_set,
    set_flag,
    when,
    when_not,
)

from charms.layer import vault_kv
from charms.layer.vault_kv import backend as vault_kv_backend
from charms.layer.vault_kv import lifecycle as vault_kv_lifecycle
from charms.layer.vault_kv import migration as vault_kv_migration
from charms.layer.vault_kv import names, quiet_hooks, ready_holds
from charms.layer.vault_kv import status as vault_kv_status

FLAG_READY = names.READY
FLAG_REQUESTED = names.REQUESTED
FLAG_CONFIG_CHANGED = names.CONFIG_CHANGED


@when(names.CONNECTED)
@when_not(names.REQUESTED)
def request_vault_access():
    """Ask Vault for our backend.  Never isolated: VaultAppKV is shared by all units.

    When the backend or unit name differs from the one this unit's data is
    in (a charm upgrade), the legacy credentials are put aside first.
    """
    try:
        target = vault_kv_backend.wanted()
    except vault_kv.VaultNotReady as error:  # an invalid backend format: no request, no move
        vault_kv_status.blocked(str(error))
        return
    if vault_kv_backend.needed() and not is_flag_set(vault_kv_migration.FLAG_IN_PROGRESS):
        vault_kv_migration.begin()
    elif vault_kv_backend.active() is None:
        vault_kv_backend.set_active(target)
        vault_kv_migration.mark_joined_empty()
    endpoint = endpoint_from_flag(names.CONNECTED)
    endpoint.request_secret_backend(target["backend"], isolated=False, unit_name=target["unit_name"])
    data_changed(names.REQUEST_DATA, target)
    hookenv.log("vault-kv: requested backend {backend} as {unit_name}".format(**target), level=hookenv.INFO)
    set_flag(FLAG_REQUESTED)


@when(names.REQUESTED)
def request_again_if_changed():
    """Ask again: a new build (charm upgrade) may want another backend or unit name, or a vault relation
    joined after the request was made (relating to a second vault application before removing the first)."""
    try:
        target = vault_kv_backend.wanted()
    except vault_kv.VaultNotReady:
        return
    if data_changed(names.REQUEST_DATA, target) or vault_kv_backend.request_missing_on_a_relation():
        clear_flag(FLAG_REQUESTED)


@when(names.MIGRATION_IN_PROGRESS, names.CONNECTED)
def continue_migration():
    """Move the app data to the new backend as far as this hook allows."""
    try:
        vault_kv_migration.advance()
    except vault_kv_migration.MigrationFailed as error:
        vault_kv_migration.fail(str(error))
        vault_kv_status.blocked("moving to the new backend failed, retrying: {}".format(error))
    except vault_kv.VaultOperatorActionNeeded as error:
        vault_kv_status.blocked("moving to the new backend: {}".format(error))
    except vault_kv.VaultNotReady as error:
        vault_kv_status.waiting("moving to the new backend: {}".format(error))
    else:
        vault_kv.VaultAppKV.forget()


@when(names.CONNECTED)
@when_not(names.MIGRATION_IN_PROGRESS)
def update_ready():
    """Ready only once Vault answered, and only after the app-kv flags are derived.

    Runs on ``vault-kv.connected``, not ``vault-kv.available``: the vault
    charm's code answers a unit name only for a new AppRole (or on
    refresh-secrets) and blanks the unit's other name, so a relation removed
    and added again (or a refresh back to an earlier name) may carry no role
    id or token for this unit, and the credentials it held before are what it
    can log in with.  (As deployed, the vault charm re-issues a token to every
    request whenever any changes; both work.)

    In a hook where nothing changed (``quiet_hooks``) Vault is not asked:
    ``ready`` and the app-kv flags stay as the last answer left them.  When
    the hourly freshness check is the only reason to ask and Vault cannot
    answer, nothing moves either; refused credentials still block.
    """
    if quiet_hooks.reason_to_ask() is None:
        return
    try:
        app_kv = vault_kv.VaultAppKV()
    except vault_kv.VaultOperatorActionNeeded as error:
        clear_flag(FLAG_READY)
        vault_kv_status.blocked(str(error))
    except vault_kv.VaultNotReady as error:
        if quiet_hooks.only_for_freshness():
            hookenv.log("vault-kv: freshness check not answered, next hook asks again: {}".format(error))
            return
        clear_flag(FLAG_READY)
        vault_kv_status.waiting(str(error))
    else:
        held = ready_holds.set_ready_unless_held(app_kv)
        missing = app_kv.missing_after_move()
        try:
            legacy = vault_kv_migration.unit_secrets_not_copied(app_kv._session, vault_kv.backend_of(app_kv))
        except vault_kv.VaultNotReady:
            legacy = None  # asked again next hook
        if missing:
            vault_kv_status.blocked(
                "{} not found after the move (legacy backend unreadable, no local copy):"
                " write it back with VaultAppKV on the leader".format(", ".join(missing))
            )
        elif legacy:
            vault_kv_status.blocked(
                "this unit's secrets under {}/{}/ (vaultlocker device keys) could not be copied to the new"
                " backend: copy them with a Vault token that reads the old backend".format(legacy, socket.gethostname())
            )
        elif held:
            vault_kv_status.waiting(held)
        else:
            vault_kv_status.resolved()


@when(names.READY)
def check_config_changed():
    """Tell the charm when its Vault credentials or URL changed."""
    try:
        config = vault_kv.get_vault_config()
    except vault_kv.VaultNotReady:
        return
    # what charms use of it (the old layer's keys); another vault unit's URL joining is not a change
    if data_changed(names.CONFIG_DATA, {k: v for k, v in config.items() if k != "vault_urls"}):
        set_flag(FLAG_CONFIG_CHANGED)


@when_not(names.CONNECTED)
def relation_gone():
    """The vault relation went away: nothing of it can be relied on any more."""
    clear_flag(FLAG_READY)
    clear_flag(FLAG_REQUESTED)
    vault_kv.VaultAppKV._clear_all_flags()


# Hook start and exit are in the library (``vault_kv.lifecycle``): hook start is
# registered when the library is first imported, before the charm's own start
# callbacks (kubernetes-control-plane's check_vault_pending reads ready there);
# loading this module lets it work in this process, i.e. in hooks, not in actions.
derive_app_kv_flags = vault_kv_lifecycle.at_hook_start
record_app_kv_hashes = vault_kv_lifecycle.at_hook_exit

vault_kv_lifecycle.arm()
hookenv.atexit(record_app_kv_hashes)
