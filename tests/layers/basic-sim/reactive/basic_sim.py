"""Flags the real base layers keep, which the test charms' handlers (like the real ones) depend on.

- layer:leadership keeps ``leadership.is_leader`` in step with ``is-leader``;
- layer:basic sets ``is-update-status-hook`` during update-status.
"""

from charmhelpers.core import hookenv
from charms.reactive import clear_flag, set_flag


def _toggle(flag: str, on: bool) -> None:
    if on:
        set_flag(flag)
    else:
        clear_flag(flag)


@hookenv.atstart
def base_layer_flags():
    _toggle("leadership.is_leader", hookenv.is_leader())
    _toggle("is-update-status-hook", hookenv.hook_name() == "update-status")
