"""`make bench`, part 2: the census of etcd before a rewrite phase ends, and the unattended rewrite.

A real etcd 3.5 (TLS, client certificates) holds 10,000 Secrets encrypted as
kube-apiserver stores them, all under key2 but 25 left under key1.  The
layer's census (``etcd_census.take``, what the leader runs before the old key
may leave the files) reads them in pages through the apiserver's arguments;
its time is printed beside a baseline measured in the same run: one plain
read of the same keys by the test client.  Then 1,000 Secrets under key1 are
replaced through the tests' Kubernetes API by ``kube_rewrite`` (the
unattended rewrite), with its rate.  Nothing here fails on time.
"""

import base64
import json
import os
import statistics
import tempfile
import time

from charms.layer.vault_kv.secure_storage import etcd_census, kube_rewrite
from tests.support import kube_apiserver
from tests.support.apiservers import PREFIX, ApiServers
from tests.support.kube_api import canonical

APP = "kubernetes-control-plane"
SECRETS, LEFT_BEHIND, REWRITTEN = 10000, 25, 1000
OLD, NEW = "o" * 32, "n" * 32


class _Units:
    def __init__(self, root, records):
        self.root, self.records = root, records

    def units(self, model, app):
        return sorted(self.records)

    def unit_file(self, model, unit, path):
        return self.records[unit]

    def unit_path(self, model, unit, path):
        return os.path.join(self.root, unit.replace("/", "-"), path.lstrip("/"))


def _fill(client, count, providers, start=0, left_behind=0, old=None):
    """``count`` Secrets in batches of 100 puts per etcd transaction; the first ``left_behind`` under ``old``."""
    batch = []
    for number in range(start, start + count):
        key = PREFIX + "default/bench-{:06d}".format(number).encode()
        obj = {"metadata": {"name": "bench-{:06d}".format(number), "namespace": "default"}, "data": {"n": "eA=="}}
        using = old if number - start < left_behind else providers
        value = kube_apiserver.encrypt(using, canonical(obj))
        batch.append(
            {"request_put": {"key": base64.b64encode(key).decode(), "value": base64.b64encode(value).decode()}}
        )
        if len(batch) == 100:
            client._call("/v3/kv/txn", {"success": batch})
            batch = []
    if batch:
        client._call("/v3/kv/txn", {"success": batch})


def main() -> None:
    both = kube_apiserver.config_bytes(("key2", NEW), ("key1", OLD))
    record = json.dumps({"config": base64.b64encode(both).decode(), "keys": [], "starts": 1})
    with tempfile.TemporaryDirectory(prefix="bench-census-") as workdir:
        servers = ApiServers(_Units(workdir, {APP + "/0": record}), os.path.join(workdir, "apiservers"))
        try:
            etcd = servers.etcd_of("bench")
            client = etcd.client
            new_only = kube_apiserver.parse(kube_apiserver.config_bytes(("key2", NEW)))
            old_only = kube_apiserver.parse(kube_apiserver.config_bytes(("key1", OLD)))
            _fill(client, SECRETS, new_only, left_behind=LEFT_BEHIND, old=old_only)
            certs = servers.certificates
            args = os.path.join(workdir, "args")
            with open(args, "w") as handle:
                handle.write(
                    '--etcd-servers="{}"\n--etcd-cafile="{}"\n--etcd-certfile="{}"\n--etcd-keyfile="{}"\n'.format(
                        etcd.server.url, certs.path("ca"), certs.path("client-cert"), certs.path("client-key")
                    )
                )
            baseline, census_times = [], []
            for _ in range(3):
                started = time.monotonic()
                plain = sum(1 for _ in client.scan(PREFIX, page=etcd_census.PAGE_SIZE))
                baseline.append(time.monotonic() - started)
                census, took = etcd_census.timed("key2", args_path=args)
                census_times.append(took)
            base, took = statistics.median(baseline), statistics.median(census_times)
            pages = -(-census.total // etcd_census.PAGE_SIZE)
            print(
                "\ncensus of etcd before a rewrite phase ends ({} Secrets, pages of {}: {} range requests):"
                " {} not under key2 found, first {}".format(
                    census.total, etcd_census.PAGE_SIZE, pages, census.remaining, census.not_under[0]
                )
            )
            print(
                "  {:.2f} s (median of 3); baseline, a plain read of the same {} keys: {:.2f} s; x{:.2f}".format(
                    took, plain, base, took / base
                )
            )
            # the unattended rewrite: REWRITTEN Secrets under key1, replaced through unit 0's Kubernetes API
            _fill(client, REWRITTEN, old_only, start=SECRETS)
            names = etcd_census.take("key2", args_path=args).not_under
            token = servers.api.tokens.setdefault("bench", "bench-token")
            kubeconfig = os.path.join(workdir, "kubeconfig")
            with open(kubeconfig, "w") as handle:
                json.dump(
                    {
                        "clusters": [
                            {
                                "name": "c",
                                "cluster": {
                                    "server": servers.api.url_for("bench", APP + "/0"),
                                    "certificate-authority": str(certs.path("ca")),
                                },
                            }
                        ],
                        "users": [{"name": "u", "user": {"token": token}}],
                        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                        "current-context": "x",
                    },
                    handle,
                )
            started = time.monotonic()
            result = kube_rewrite.rewrite(names, time.monotonic() + 600, kubeconfig)
            spent = time.monotonic() - started
            after = etcd_census.take("key2", args_path=args)
            print(
                "unattended rewrite through the Kubernetes API: {} Secrets replaced in {:.1f} s ({:.0f} a second;"
                " one GET and one PUT each); afterwards {}".format(
                    result.rewritten, spent, result.rewritten / spent if spent else 0, after.progress()
                )
            )
        finally:
            servers.close()
