"""`make demo`: the layer in a built charm, hook by hook, against a real OpenBao.

1. Starts OpenBao, builds the test charms, deploys the vault application and
   3 units of kubernetes-control-plane built as today's releases are
   (backend charm-{app}), relates them and settles.
2. Upgrades them to the current build (backend charm-{model-uuid}-{app}).
3. Refreshes them to a build with the layer's secure storage on and rotates the
   encryption key with the layer's actions, printing each unit's key list (and
   what its apiserver runs with) in every phase; the rotation ends with every
   unit on the file kubernetes-control-plane writes itself (key1 = Vault's key),
   which reads every Secret stored through the units' apiservers.  The first
   rewrite misses one Secret on purpose: finish-encryption-key-rotation refuses,
   naming it, since the leader counts in etcd the Secrets not yet under the new key.
4. Rotates again, unattended (rotate-encryption-key rewrite=auto): the leader
   rewrites the Secrets itself through the Kubernetes API; the report gives the
   time it took from the action to done.

Every Secret is stored in a real etcd 3.5 (TLS, client certificates), one per
model, as kube-apiserver stores it (tests/support/apiservers.py).

After each step it prints, per unit, the layer's flags, the status, the
backend in use and a fingerprint of the encryption key the unit holds on disk
(never the key itself), plus the Vault requests made.  It exits non-zero if
the units disagree or the key changed across the upgrade.
"""

import contextlib
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import charmhelpers.osplatform  # noqa: E402

charmhelpers.osplatform.get_platform = lambda: "ubuntu"  # charms run on Ubuntu; this host may not

from tests.support import build_charms, rotation  # noqa: E402
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


def show_key_lists(phase: str, files: dict, loaded: dict) -> None:
    """Each unit's key list (name:fingerprint, the write key first) as the phase ended, and what its apiserver
    runs with now."""
    print("\n-- phase {} --".format(phase))
    for unit in sorted(files):
        print(
            "{}  file: {}   apiserver: {}".format(
                unit,
                " ".join("{}:{}".format(*pair) for pair in files[unit] or []),
                " ".join("{}:{}".format(*pair) for pair in loaded.get(unit) or []),
            )
        )


def stored_by_name(cluster: Cluster, model: str) -> str:
    """How many stored Secrets carry each key name (the prefix kube-apiserver writes; "identity": unencrypted),
    read from the model's etcd."""
    counts = cluster.apiservers.stored_under(model)
    return ", ".join("{} {}".format(name, count) for name, count in sorted(counts.items())) or "none"


def rotate(cluster: Cluster, model: str) -> list:
    """3. A refresh to a build with the layer's secure storage on, then a coordinated key rotation.

    Carried by Juju events only (no update-status), one kube-apiserver restarting at a time: the
    report gives the hooks it took, the update-status rounds (none), each unit's restarts and the
    most apiservers restarting between two hooks of the leader.
    """
    cluster.upgrade(model, "ss")
    cluster.settle()
    backend = cluster.new_backend(model)
    leader = cluster.controller.leader(model, "kubernetes-control-plane")
    shown = []

    def show_a_phase_once_ended(item, process):
        if phases.order and phases.order[-1] not in shown:
            if shown:
                show_key_lists(shown[-1], phases.lists[shown[-1]], phases.loaded[shown[-1]])
            shown.append(phases.order[-1])

    watch = rotation.RotationWatch(cluster, model, backend, also=show_a_phase_once_ended)
    invariant, phases, windows = watch.invariant, watch.phases, watch.windows
    print(
        "\nrefreshed to the build with the layer's secure storage on; juju run {} rotate-encryption-key".format(leader)
    )
    answer = rotation.action(cluster, model, leader, "rotate-encryption-key")
    if answer["failed"]:
        return ["rotate-encryption-key failed: {}".format(answer["failed"])]
    print("  {}".format(answer["results"]))
    try:
        for _ in range(3):
            cluster.settle(after_hook=watch, fail_fast=True, max_hooks=3000)
            phase = rotation.phase(cluster, backend)
            if phase in rotation.REWRITE_PHASES and not rotation.state(cluster, backend).get("confirmed"):
                print("  leader's status: {}".format(cluster.controller.status(model, leader)["message"][:90]))
                print(
                    "  (the operator rewrites every Secret here) juju run {} finish-encryption-key-rotation".format(
                        leader
                    )
                )
                print("  Secrets stored, by key name: {}".format(stored_by_name(cluster, model)))
                if phase == "rewrite":  # the operator's rewrite misses one Secret: etcd shows it
                    missed = "default/secret-00000"
                    cluster.apiservers.rewrite(model, via=leader, skip={missed})
                    print("  after a rewrite that missed {}: {}".format(missed, stored_by_name(cluster, model)))
                    answer = rotation.action(cluster, model, leader, "finish-encryption-key-rotation")
                    print("  finish-encryption-key-rotation refused: {}".format((answer["failed"] or "NOT")[:110]))
                    if not answer["failed"] or missed not in answer["failed"]:
                        return ["finish-encryption-key-rotation accepted a partial rewrite"]
                rotation.rewrite_stored_secrets(cluster, model)
                print("  after the rewrite:           {}".format(stored_by_name(cluster, model)))
                answer = rotation.action(cluster, model, leader, "finish-encryption-key-rotation")
                verified = answer["results"].get("verified")
                print("  finish-encryption-key-rotation: verified in etcd: {}".format(verified))
            if phase == "done":
                break
    except AssertionError as error:
        return ["rotation: {}".format(error)]
    show_key_lists("done", rotation.file_key_lists(cluster, model), rotation.loaded_key_lists(cluster, model))
    print(
        "\n{} checks after every hook: every write key readable by every unit, no key removed early".format(
            invariant.checks
        )
    )
    print(
        "the rotation took {} hooks, {} update-status rounds; restarts per unit: {}; most kube-apiservers"
        " restarting between two hooks of the leader: {}".format(
            windows.hooks,
            windows.update_status_hooks,
            ", ".join("{} {}".format(unit, count) for unit, count in sorted(windows.per_unit.items())),
            windows.most,
        )
    )
    print("Secrets stored, by key name, once done: {}".format(stored_by_name(cluster, model)))
    problems = []
    if rotation.phase(cluster, backend) != "done":
        return ["the rotation did not finish"]
    if windows.update_status_hooks or windows.most > 1:
        problems.append("the rotation waited for update-status or restarted apiservers together")
    if len({tuple(keys or ()) for keys in rotation.file_key_lists(cluster, model).values()}) != 1:
        return ["the units' key lists differ after the rotation"]
    apiservers = cluster.apiservers
    vault_value = cluster.bao.read("{}/kv/app".format(backend))["encryption_key"]
    unreadable, corrupted = apiservers.readable_with(model, apiservers.charm_file_for(vault_value))
    print(
        "{} Secrets stored through the units' apiservers (AES-CBC, as kube-apiserver stores them);"
        " a file the charm writes itself on a unit it adds (key1 = Vault's key) reads {} of them".format(
            apiservers.stored(model), apiservers.stored(model) - len(unreadable) - len(corrupted)
        )
    )
    if unreadable or corrupted:
        problems.append("a charm-written file cannot read every Secret after the rotation")
    return problems + rotate_unattended(cluster, model, backend)


def rotate_unattended(cluster: Cluster, model: str, backend: str) -> list:
    """4. A second rotation with rewrite=auto: the leader rewrites and verifies; no operator step after the action."""
    import time

    leader = cluster.controller.leader(model, "kubernetes-control-plane")
    watch = rotation.RotationWatch(cluster, model, backend)
    replaced_before = cluster.apiservers.api.replaced.get(model, 0)
    print("\njuju run {} rotate-encryption-key rewrite=auto".format(leader))
    started = time.monotonic()
    answer = rotation.action(cluster, model, leader, "rotate-encryption-key", rewrite="auto")
    if answer["failed"]:
        return ["rotate-encryption-key rewrite=auto failed: {}".format(answer["failed"])]
    try:
        cluster.settle(after_hook=watch, fail_fast=True, max_hooks=3000)
    except AssertionError as error:
        return ["unattended rotation: {}".format(error)]
    took = time.monotonic() - started
    phase = rotation.phase(cluster, backend)
    print(
        "the unattended rotation took {:.0f} s here (the simulator runs hooks one at a time) and {} hooks,"
        " {} update-status rounds, no operator step; phases: {}".format(
            took, watch.windows.hooks, watch.windows.update_status_hooks, " ".join(watch.phases.order)
        )
    )
    print(
        "the leader replaced {} Secrets through the Kubernetes API; Secrets stored, by key name, once done: {}".format(
            cluster.apiservers.api.replaced.get(model, 0) - replaced_before, stored_by_name(cluster, model)
        )
    )
    if phase != "done":
        return ["the unattended rotation did not finish (phase {})".format(phase)]
    if set(cluster.apiservers.stored_under(model)) != {"key1"}:
        return ["the unattended rotation left Secrets under another key"]
    return []


def main() -> int:
    print("building the test charms (charm build) ...")
    charms = build_charms.build()
    problems = []
    with OpenBaoServer() as bao, tempfile.TemporaryDirectory(
        prefix="demo-"
    ) as workdir, contextlib.ExitStack() as stack:
        print("OpenBao {} on {}; each model's Secrets in a real etcd 3.5 (TLS)".format("2.7.2", bao.url))
        cluster = stack.enter_context(Cluster(bao, charms, workdir=workdir))
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
        problems += rotate(cluster, model)
    if problems:
        print("\nFAILED: " + "; ".join(problems))
        return 1
    print("\nOK: all units agree, the upgrade kept the key, and the rotation kept every unit able to read")
    return 0


if __name__ == "__main__":
    sys.exit(main())
