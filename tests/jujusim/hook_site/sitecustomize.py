"""Loaded by every simulated hook process (the simulator puts this folder on PYTHONPATH).

1. charmhelpers refuses to import ``charmhelpers.core.host`` on a host whose
   os-release says Debian; charms run on Ubuntu, so simulated hooks are told
   they do too.
2. Fault injection for tests: with ``JUJUSIM_KILL_AT_VAULT_REQUEST=N`` and a
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

_kill_at = int(os.environ.get("JUJUSIM_KILL_AT_VAULT_REQUEST", "0") or 0)
_counter = os.environ.get("JUJUSIM_KILL_COUNTER", "")
_vault = os.environ.get("JUJUSIM_VAULT_URL", "")

_files = os.environ.get("JUJUSIM_KILL_COUNTS_FILES_UNDER", "")


def _count_then_maybe_die():
    with open(_counter) as handle:
        count = int(handle.read() or 0) + 1
    with open(_counter, "w") as handle:
        handle.write(str(count))
    if count == _kill_at:
        os._exit(137)


if _kill_at and _counter and _vault:
    import requests.sessions

    _send = requests.sessions.Session.send

    def _send_then_maybe_die(self, request, **kwargs):
        response = _send(self, request, **kwargs)
        if request.url.startswith(_vault):
            _count_then_maybe_die()
        return response

    requests.sessions.Session.send = _send_then_maybe_die

if _kill_at and _counter and _files:
    # 3. with ``JUJUSIM_KILL_COUNTS_FILES_UNDER=/some/dir`` a file renamed into place
    #    under it (an atomic write's last step) counts as one more step
    _replace = os.replace

    def _replace_then_maybe_die(source, destination, *args, **kwargs):
        _replace(source, destination, *args, **kwargs)
        if str(destination).startswith(_files):
            _count_then_maybe_die()

    os.replace = _replace_then_maybe_die
