"""Loaded by every simulated hook process (the simulator puts this folder on PYTHONPATH).

1. charmhelpers refuses to import ``charmhelpers.core.host`` on a host whose
   os-release says Debian; charms run on Ubuntu, so simulated hooks are told
   they do too.
2. Fault injection for tests (``install``, run at start-up and again by a hook
   forked from the hook server, with that hook's environment): with ``JUJUSIM_KILL_AT_VAULT_REQUEST=N`` and a
   counter file in ``JUJUSIM_KILL_COUNTER``, the hook process dies (as if the
   machine lost power) right after the N-th HTTP request to Vault counted
   across the unit's hooks has been answered, before the charm sees it.
   With ``JUJUSIM_KILL_COUNTS_FILES_UNDER`` set, a file put in place under that
   directory by ``os.replace`` counts too (see 3. below).
"""

import os

try:
    import charmhelpers.osplatform as _osplatform

    _osplatform.get_platform = lambda: "ubuntu"
except ImportError:  # pragma: no cover
    pass

_original = {}


def _count_then_maybe_die(counter: str, kill_at: int) -> None:
    with open(counter) as handle:
        count = int(handle.read() or 0) + 1
    with open(counter, "w") as handle:
        handle.write(str(count))
    if count == kill_at:
        os._exit(137)


def install(environ=os.environ) -> None:
    """Arm the fault injection ``environ`` asks for (nothing when it asks for none)."""
    kill_at = int(environ.get("JUJUSIM_KILL_AT_VAULT_REQUEST", "0") or 0)
    counter = environ.get("JUJUSIM_KILL_COUNTER", "")
    vault = environ.get("JUJUSIM_VAULT_URL", "")
    files = environ.get("JUJUSIM_KILL_COUNTS_FILES_UNDER", "")

    if kill_at and counter and vault:
        import requests.sessions

        send = _original.setdefault("send", requests.sessions.Session.send)

        def _send_then_maybe_die(self, request, **kwargs):
            response = send(self, request, **kwargs)
            if request.url.startswith(vault):
                _count_then_maybe_die(counter, kill_at)
            return response

        requests.sessions.Session.send = _send_then_maybe_die

    if kill_at and counter and files:
        # 3. with ``JUJUSIM_KILL_COUNTS_FILES_UNDER=/some/dir`` a file renamed into place
        #    under it (an atomic write's last step) counts as one more step
        replace = _original.setdefault("replace", os.replace)

        def _replace_then_maybe_die(source, destination, *args, **kwargs):
            replace(source, destination, *args, **kwargs)
            if str(destination).startswith(files):
                _count_then_maybe_die(counter, kill_at)

        os.replace = _replace_then_maybe_die


install()
