"""Two units writing application data at the same time, against a real OpenBao.

kv version 1 has no check-and-set, so two writers can drop each other's keys.
The layer lets only the leader write (as Juju's leader-set does) and trusts
an is-leader answer for less than Juju's 30-second leadership lease, so two
units never both write; a leader's writes start from what its hook read
(a new leader reads after the old one's last write).
"""

from pathlib import Path

import pytest

APP = "kubernetes-control-plane"
WRITER = str(Path(__file__).with_name("app_kv_writer.py"))
COUNT = 40


@pytest.fixture
def cluster(cluster_for, make_bao):
    return cluster_for(make_bao())


def write_at_once(cluster, model, writers):
    """Start every unit's writer hook together; wait for all; returns {unit: stdout}."""
    processes = {
        unit: cluster.controller.start_hook_script(
            model, unit, "config-changed", WRITER, {"WRITER_PREFIX": prefix, "WRITER_COUNT": str(COUNT)}
        )
        for unit, prefix in writers.items()
    }
    results = {}
    for unit, process in processes.items():
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-2000:]
        results[unit] = out
    return results


def test_only_the_leader_writes_and_no_key_is_lost_across_a_leadership_change(cluster):
    model = cluster.add_model("k8s", units=2)
    cluster.settle(fail_fast=True)
    backend = cluster.new_backend(model)
    key = cluster.vault_fingerprint(backend)
    leader = cluster.controller.leader(model, APP)
    other = next(u for u in cluster.units(model) if u != leader)

    # both units write at the same time: the non-leader is refused every time
    out = write_at_once(cluster, model, {leader: "a", other: "b"})
    assert out[leader].strip() == "written {} refused 0".format(COUNT)
    assert out[other].strip() == "written 0 refused {}".format(COUNT)

    # leadership moves; both write again at the same time: now only the new leader's writes land
    cluster.controller.set_leader(model, APP, other)
    out = write_at_once(cluster, model, {leader: "c", other: "d"})
    assert out[leader].strip() == "written 0 refused {}".format(COUNT)
    assert out[other].strip() == "written {} refused 0".format(COUNT)
    cluster.settle(fail_fast=True)

    data = cluster.bao.read(backend + "/kv/app")
    expected = {"{}{}".format(p, n) for p in "ad" for n in range(COUNT)}
    assert expected <= set(data)  # 0 keys lost
    assert not {k for k in data if k[0] in "bc" and k[1:].isdigit()}  # nothing from a non-leader
    assert cluster.vault_fingerprint(backend) == key  # the charm's key untouched
