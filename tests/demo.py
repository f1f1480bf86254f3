"""`make demo`: the layer in a built charm, hook by hook, against a real OpenBao.

1. Starts OpenBao, builds the test charms, deploys the vault application and
   3 units of kubernetes-control-plane built as today's releases are
   (backend charm-{app}), relates them and settles.
2. Upgrades them to the current build (backend charm-{model-uuid}-{app}).

After each step it prints, per unit, the layer's flags, the status, the
backend in use and a fingerprint of the encryption key the unit holds on disk
(never the key itself), plus the Vault requests made.  It exits non-zero if
the units disagree or the key changed across the upgrade.
"""

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import charmhelpers.osplatform  # noqa: E402

charmhelpers.osplatform.get_platform = lambda: "ubuntu"  # charms run on Ubuntu; this host may not

from tests.support import build_charms  # noqa: E402
from tests.support.cluster import Cluster  # noqa: E402
from tests.support.openbao import OpenBaoServer  # noqa: E402

SHOWN_FLAGS = ("layer.vault-kv.", "kubernetes-control-plane.secure-storage")


def report(cluster: Cluster, model: str, title: str, mark: int) -> dict:
    print("\n== {} ==".format(title))
    prints = cluster.file_fingerprints(model)
    for unit in cluster.units(model):
        data = cluster.controller.unitdata(model, unit)
        backend = (data.get("layer.vault-kv.active") or {}).get("backend", "?")
        flags = [f for f in cluster.flags(model, unit) if f.startswith(SHOWN_FLAGS)]
        status = cluster.controller.status(model, unit)
        print("{}  key {}  backend {}".format(unit, prints[unit] or "none", backend))
        print("    status: {} - {}".format(status["status"], status["message"]))
        print("    flags:  {}".format(", ".join(sorted(flags))))
    requests = cluster.bao.requests_since(mark)
    print("Vault requests by the units in this step: {}".format(len(requests)))
    return prints


def main() -> int:
    print("building the test charms (charm build) ...")
    charms = build_charms.build()
    problems = []
    with OpenBaoServer() as bao, tempfile.TemporaryDirectory(prefix="demo-") as workdir:
        print("OpenBao {} on {}".format("2.7.2", bao.url))
        cluster = Cluster(bao, charms, workdir=workdir)
        mark = bao.mark()
        print(
            "consumer: tests/charms/kcp-consumer-core, kubernetes-control-plane 1.28's Vault handlers"
            " (generate_encryption_key, create_secure_storage over a simulated vaultlocker mount,"
            " maybe_heal_vault_kv, migrate_vault_kv_secrets_backend) built with this layer;"
            " before the upgrade the same handlers with backend charm-{app}, as 1.27 was first released"
        )
        model = cluster.add_model("demo", build="legacy", units=3)
        hooks = cluster.settle()
        print("deployed 3 units with backend charm-{{app}}, related to vault; {} hooks ran".format(hooks))
        cluster.update_status(model)  # the charm's status reflects the flags it saw at hook start
        before = report(cluster, model, "before the upgrade (backend charm-{app})", mark)
        legacy_key = cluster.vault_fingerprint("charm-kubernetes-control-plane")
        if len(set(before.values())) != 1 or None in before.values():
            problems.append("units disagree about the key before the upgrade")
        if legacy_key is None or legacy_key not in before.values():
            problems.append("the key on disk is not the one in Vault")

        mark = bao.mark()
        cluster.upgrade(model, "current")
        hooks = cluster.settle()
        print("\nupgraded to the build with backend charm-{{model-uuid}}-{{app}}; {} hooks ran".format(hooks))
        cluster.update_status(model)
        after = report(cluster, model, "after the upgrade (backend charm-{model-uuid}-{app})", mark)
        new_key = cluster.vault_fingerprint(cluster.new_backend(model))
        print(
            "\nkey fingerprint before: {}  after: {}  in {}: {}".format(
                sorted(set(before.values())),
                sorted(set(after.values())),
                cluster.new_backend(model),
                new_key or "none",
            )
        )
        if after != before:
            problems.append("a unit's key changed across the upgrade")
        if new_key is None or new_key not in after.values():
            problems.append("the new backend does not hold the units' key")
        for unit in cluster.units(model):
            if "layer.vault-kv.ready" not in cluster.flags(model, unit):
                problems.append("{} is not ready".format(unit))
    if problems:
        print("\nFAILED: " + "; ".join(problems))
        return 1
    print("\nOK: all units agree, and the upgrade kept the key")
    return 0


if __name__ == "__main__":
    sys.exit(main())
