"""What the layer does at the start and at the end of a hook, and what an action records.

Hook start (``at_hook_start``) finishes a move that can finish now, reads the
app data so the app-kv flags are true for the hook, and says whether the
layer is ready, before any handler runs.  It is registered with
``hookenv.atstart`` when this package is first imported, not when the
layer's reactive module is: a charm's own hook-start callbacks see its
result only if they run after it, and charms import this package before
they register theirs.  kubernetes-control-plane 1.28's ``check_vault_pending``
(``reactive/kubernetes_control_plane.py``, ``from charms.layer import
vault_kv`` at its top) reads ``layer.vault-kv.ready`` at hook start to set
its "Waiting for encryption info from Vault" status; charms.reactive loads
reactive modules in directory order, so a callback registered by
``reactive/vault_kv.py`` could run after the charm's and leave a unit whose
move finished in its last hook showing that status until update-status.

The callback does its work only in processes where the layer's reactive
module was loaded (``arm``), i.e. in hooks run by charms.reactive: a charm's
actions that import every layer library and run the start callbacks
(kubernetes-control-plane's do) get nothing of it.

Hook exit (``at_hook_exit``) records the app-kv hashes; the layer's actions
call it themselves when they wrote application data.  Nothing here raises:
an exception at hook start or exit would fail every hook of the unit.
"""

from charmhelpers.core import hookenv
from charms.reactive import clear_flag, is_flag_set

from charms.layer.vault_kv import migration, names, quiet_hooks, ready_holds
from charms.layer.vault_kv import status as vault_kv_status
from charms.layer.vault_kv.errors import VaultNotReady, VaultOperatorActionNeeded
from charms.layer.vault_kv.store import VaultAppKV, VaultUnitKV

# this process: whether at_hook_start is registered, and whether the layer's reactive module was loaded
_process = {"registered": False, "armed": False}


def _log(message: str, level: str = hookenv.DEBUG) -> None:
    hookenv.log("vault-kv: " + message, level=level)


def register() -> None:
    """Register ``at_hook_start`` with charmhelpers, once per process (called by the package)."""
    if not _process["registered"]:
        hookenv.atstart(at_hook_start)
        # exit callbacks run last registered first: this one runs after the charm's final status
        hookenv.atexit(vault_kv_status.apply_final)
        _process["registered"] = True


def arm() -> None:
    """Let ``at_hook_start`` work in this process: the layer's reactive module calls it on load."""
    _process["armed"] = True


def _finish_move() -> None:
    """Take a move as far as it goes before any handler runs; a failure is left to the handler.

    ``continue_migration`` runs in the same hook while the move is in
    progress: it tries again and shows why it waits.
    """
    if not (is_flag_set(names.MIGRATION_IN_PROGRESS) and is_flag_set(names.CONNECTED)):
        return
    try:
        migration.advance()
    except (VaultNotReady, migration.MigrationFailed) as error:
        _log("move not finished at hook start: {}".format(error))
        return
    except Exception as error:  # a defect: the handler meets it again and the hook shows it
        _log("move not finished at hook start: unexpected {}".format(type(error).__name__), hookenv.ERROR)
        return
    VaultAppKV.forget()


def at_hook_start() -> None:
    """Finish a move that can finish, derive the app-kv flags if anything changed, then say whether ready.

    Ready is set only when Vault answered and the flags are derived, as the
    ``update_ready`` handler sets it.  A hook in which nothing changed
    (``quiet_hooks``: the leader's digest is the one this unit recorded, the
    relation is the same, ...) asks Vault nothing: the flags, ready among
    them, are as the last answer left them.  When Vault cannot be reached
    the app-kv flags keep their last known values (clearing ``set.{key}``
    would invite a charm to generate a new value); only ready is cleared,
    and not even that when only the hourly freshness check asked.
    """
    if not _process["armed"]:
        return
    _finish_move()  # before quiet_hooks decides: a move under way always asks Vault
    if quiet_hooks.reason_to_ask() is None:
        return
    try:
        app_kv = VaultAppKV()
    except VaultOperatorActionNeeded as error:
        clear_flag(names.READY)
        _log("app data not read at hook start: {}".format(error))
    except VaultNotReady as error:
        if quiet_hooks.only_for_freshness():
            _log("freshness check not answered at hook start: {}".format(error))
            return
        clear_flag(names.READY)
        _log("app data not read at hook start: {}".format(error))
    except Exception as error:  # a defect, or input nobody foresaw: never fail the hook for it
        clear_flag(names.READY)
        _log("app data not read at hook start: unexpected {}".format(type(error).__name__), hookenv.ERROR)
    else:
        if is_flag_set(names.CONNECTED):
            ready_holds.set_ready_unless_held(app_kv)


def at_hook_exit() -> None:
    """Record what this unit has seen; the leader tells the others.  Nothing escapes."""
    app_kv = VaultAppKV.loaded()
    try:
        if app_kv is not None:
            app_kv.restore_lost_writes()
        for store in (app_kv, VaultUnitKV.loaded()):
            if store is not None:
                store.log_writes()
        if app_kv is None:
            return
        # the leader's digest tells every unit, without asking Vault, whether the data changed
        digest = app_kv.data_digest()
        if hookenv.is_leader() and hookenv.leader_get(migration.LEADER_NONCE) != digest:
            hookenv.leader_set({migration.LEADER_NONCE: digest})
        app_kv.update_hashes()
        quiet_hooks.record_asked()
    except VaultNotReady as error:
        _log("hashes not recorded, next hook will: {}".format(error), hookenv.WARNING)
    except Exception as error:  # never fail a hook at its very end
        _log("hashes not recorded, next hook will: unexpected {}".format(type(error).__name__), hookenv.ERROR)
