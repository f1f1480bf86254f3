"""A hook of a test charm with one more handler: write N application keys one by one.

Started by test_concurrency.py through the simulator (``start_hook_script``),
so two units' hooks write at the same time against a real OpenBao.  Keys are
``{WRITER_PREFIX}{n}``; a refused write (not the leader) is counted, and the
counts are printed for the test, never a value.
"""

import os
import sys

sys.path.append("lib")

from charmhelpers.core import hookenv  # noqa: E402
from charms.reactive import main, when  # noqa: E402

from charms.layer import vault_kv  # noqa: E402


@when("layer.vault-kv.ready")
def write_keys():
    prefix, count = os.environ["WRITER_PREFIX"], int(os.environ["WRITER_COUNT"])
    written = refused = 0
    for number in range(count):
        try:
            vault_kv.VaultAppKV()["{}{}".format(prefix, number)] = number
            written += 1
        except vault_kv.VaultAppKVNotLeader:
            refused += 1
    hookenv.log("app-kv-writer: written {} refused {}".format(written, refused))
    print("written {} refused {}".format(written, refused))


main()
