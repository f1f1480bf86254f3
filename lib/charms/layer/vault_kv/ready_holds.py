"""Reasons to keep ``layer.vault-kv.ready`` down although Vault answered.

A charm gates its first use of an app value on ready (kubernetes-control-plane
writes its EncryptionConfiguration file from ``encryption_key`` when it sees
the key set and vaultlocker ready, and vaultlocker configures on ready).  A
part of the charm that knows that first use would be wrong *now* registers a
hold: called with the app data the layer just read, it returns why the unit
must wait, or None.  Secure storage holds a unit that has no file yet while a
key rotation is in a phase the charm's own first file would not fit.

A hold is asked each time the layer would set ready (at hook start and in
the ``update_ready`` handler).  A hold that raises counts as a reason to
wait: it guards a key, and a defect must not let the charm act on a guess.
"""

from typing import Any, Callable, List, Optional

from charmhelpers.core import hookenv
from charms.reactive import clear_flag, set_flag

from charms.layer.vault_kv import names

Hold = Callable[[Any], Optional[str]]

_holds: List[Hold] = []


def hold_ready_while(hold: Hold) -> None:
    """Register ``hold`` (given the app data, it returns why ready stays down, or None); once per process."""
    if hold not in _holds:
        _holds.append(hold)


def reason_to_hold(app_kv: Any) -> Optional[str]:
    """The first registered hold's reason, None when none holds."""
    for hold in _holds:
        try:
            why = hold(app_kv)
        except Exception as error:  # fail closed: the unit waits, the defect shows in the log
            hookenv.log("vault-kv: a ready hold failed: unexpected {}".format(type(error).__name__), hookenv.ERROR)
            why = "a ready hold failed ({})".format(type(error).__name__)
        if why:
            return why
    return None


def set_ready_unless_held(app_kv: Any) -> Optional[str]:
    """Set ready after Vault answered, unless a hold says to wait; returns the hold's reason."""
    why = reason_to_hold(app_kv)
    if why:
        clear_flag(names.READY)
        hookenv.log("vault-kv: not ready: {}".format(why), hookenv.INFO)
        return why
    set_flag(names.READY)
    return None
