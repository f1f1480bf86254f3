"""Secure storage of the kube-apiserver encryption-at-rest key (opt-in).

Enabled by the layer option ``encryption-config-path``.  When it is empty (the
default, and what kubernetes-control-plane 1.24 to 1.28 builds have) this
module registers no handler at all: it never touches a
``kubernetes-control-plane.*`` flag nor the file, so the charm's own
handlers keep sole charge of them.

When enabled, it does what kubernetes-control-plane's handlers do, in the same
formats (see ``vault_kv.secure_storage.encryption_config``), so the two can run side by side
and still leave one key list, identical on every unit:

- only the leader provides ``encryption_key``, only when the layer is ready
  and ``layer.vault-kv.app-kv.set.encryption_key`` is unset; it restores the
  key from its own file before it would ever generate one, and a file that
  exists but cannot be read blocks it instead of generating;
- every unit writes the key to the file when ready and the key is set, then
  sets ``kubernetes-control-plane.secure-storage.created``; in a charm that
  includes layer:vaultlocker it leaves the first write (and the encrypted
  mount) to the charm and only keeps the file in line with Vault afterwards;
- ``created`` is never cleared by this layer: not for a transient Vault
  outage, not during a move, not when the relation goes (the charm would
  mount its encrypted storage a second time over the directory);
- during a key rotation (``secure_storage.rotation_state``) the file holds the
  phase's keys; the leader moves the phase on, and every unit acknowledges
  at hook exit (``secure_storage.coordination.at_hook_exit``).
"""

from charmhelpers.core import hookenv
from charms.reactive import clear_flag, is_flag_set, set_flag, when, when_not

from charms.layer import vault_kv
from charms.layer.vault_kv import names, secure_storage
from charms.layer.vault_kv import options as vault_kv_options
from charms.layer.vault_kv import status as vault_kv_status
from charms.layer.vault_kv.secure_storage import coordination, encryption_config, rolling, rotation, rotation_state

KEY = secure_storage.KEY
FLAG_CREATED = names.SECURE_STORAGE_CREATED
FLAG_FAILED = names.SECURE_STORAGE_FAILED


config_path = secure_storage.config_path
_read_local_key = secure_storage.read_local_key


def includes_vaultlocker() -> bool:
    """Whether the built charm includes layer:vaultlocker (whose library it then carries)."""
    return vault_kv_options.charm_includes_vaultlocker()


_in_line = []  # paths brought in line by write_encryption_config in this hook


secure_storage.register_the_file_as_local_copy()  # when on: the file is the unit's own copy of the key

if config_path():
    vault_kv.ask_vault_when(secure_storage.why_ask_vault)
    vault_kv.hold_ready_while(rotation.hold_new_unit)
    vault_kv.hold_changes_while(KEY, rotation.hold_key_change)

    @when(names.READY)
    @when_not(names.app_kv_flag(names.APP_KV_SET_KEY, KEY))
    @when_not(names.MIGRATION_IN_PROGRESS)
    def provide_encryption_key():
        """The leader fills in a missing key: from its own file if it has one, else a new one."""
        if not hookenv.is_leader():
            return
        try:
            value = _read_local_key()
        except encryption_config.EncryptionConfigError as error:
            vault_kv_status.blocked("{}; fix or remove it, no key was generated".format(error))
            return
        source = "this unit's encryption configuration"
        if value is None:
            value = encryption_config.generate_key()
            source = "a newly generated key"
        try:
            vault_kv.VaultAppKV()[KEY] = value
        except vault_kv.VaultNotReady as error:
            hookenv.log("vault-kv: encryption key not stored yet: {}".format(error), level=hookenv.WARNING)
            return
        hookenv.log("vault-kv: stored encryption_key from {}".format(source), level=hookenv.INFO)

    @when(names.READY, names.app_kv_flag(names.APP_KV_SET_KEY, KEY))
    def write_encryption_config():
        """Make the file hold Vault's key, or what a running rotation's phase asks; then flag it.

        In a charm that includes layer:vaultlocker (kubernetes-control-plane
        does), nothing is written before ``layer.vaultlocker.ready``: the charm
        mounts encrypted storage over the directory first, and a file written
        before would end up unencrypted, or hidden under the mount.  The
        leader moves a rotation on here (a turn, or the next phase).  During
        a rotation the file changes only in this unit's turn (``rolling``:
        one apiserver at a time); any change of the file clears the charm's
        ``apiserver.configured`` (a restart).
        """
        if includes_vaultlocker() and not is_flag_set("layer.vaultlocker.ready"):
            return
        if includes_vaultlocker() and not is_flag_set(FLAG_CREATED):
            return  # the charm's create_secure_storage mounts, writes and sets created itself
        if vault_kv.quiet_hook() and secure_storage.file_as_last_synced():
            return  # nothing changed in Vault, no rotation runs, the file is as last brought in line
        path = config_path()
        try:
            app_kv = vault_kv.VaultAppKV()
            state = rotation.read_state(app_kv)
            may_change = rotation.may_change_file(state)  # the turn as this hook found it
            if rotation_state.is_running(state) and rolling.is_leader():
                coordination.restore_vault_key(app_kv, state)
                entered = coordination.advance(app_kv, state)
                if entered is not state:
                    state, may_change = entered, rotation.may_change_file(entered)
            value = app_kv.get(KEY)
        except vault_kv.VaultNotReady:
            return
        if value is None:
            return
        try:
            rotation.adopt_current_file()
            changed = rotation.sync_file(state, value, may_change)
        except encryption_config.EncryptionConfigError as error:
            set_flag(FLAG_FAILED)
            vault_kv_status.blocked("{}; fix or remove it, it was left as it is".format(error))
            return
        except (OSError, ValueError) as error:
            set_flag(FLAG_FAILED)
            vault_kv_status.blocked(
                "cannot write the encryption configuration: {}".format(
                    error if isinstance(error, ValueError) else type(error).__name__
                )
            )
            return
        clear_flag(FLAG_FAILED)
        secure_storage.remember_synced()
        if changed:
            hookenv.log("vault-kv: wrote the encryption configuration {}".format(path), level=hookenv.INFO)
        if rotation.reload_needed():
            clear_flag(names.APISERVER_CONFIGURED)  # the charm restarts the apiserver on it
        if rotation_state.is_running(state):
            set_flag(names.ROTATING)
        else:
            clear_flag(names.ROTATING)
        set_flag(FLAG_CREATED)
        _in_line.append(path)

    @when(names.READY, names.app_kv_flag(names.APP_KV_SET_KEY, KEY), FLAG_CREATED)
    def follow_the_charms_first_write():
        """Again once the charm's create_secure_storage wrote its file (and set ``created``).

        A unit that joins during a rotation gets Vault's key from the charm
        as ``key1``; charms.reactive runs a handler again in a hook only when
        one of its flags changed, so this one brings the file to the
        rotation's names in the same hook.  Once the file was brought in line
        in this hook (a hook is one process) there is nothing left to do.
        """
        if not _in_line:
            write_encryption_config()

    @when(names.READY, names.REWRITTEN)
    def confirm_rewrite_from_charm():
        """A charm that rewrote the stored Secrets itself confirms the rewrite phase with a flag."""
        if not hookenv.is_leader():
            return
        try:
            coordination.confirm_rewrite()
        except rotation_state.RotationRefused as error:
            hookenv.log("vault-kv: {} flag ignored: {}".format(names.REWRITTEN, error), level=hookenv.WARNING)
        except vault_kv.VaultNotReady:
            return  # the flag stays: tried again next hook
        clear_flag(names.REWRITTEN)

    hookenv.atexit(coordination.at_hook_exit)
