"""The census of etcd and the unattended rewrite, against a real etcd 3.5 (TLS, client certificates) and the
tests' Kubernetes API (tests/support/kube_api.py) on it; and the tests' apiserver harness on that etcd.

No simulator here: the layer's modules (``etcd_census``, ``kube_rewrite``) are called as the leader
calls them, with an args file and a kubeconfig such as kubernetes-control-plane writes.
"""

import base64
import json
import time

import pytest
import yaml

from charms.layer.vault_kv.secure_storage import etcd_census, kube_rewrite
from tests.support import kube_apiserver
from tests.support.apiservers import ApiServers

APP = "kubernetes-control-plane"
OLD, NEW = "o" * 32, "n" * 32


def config_file(*keys):
    """An EncryptionConfiguration with aescbc keys (name, value), then identity."""
    return kube_apiserver.config_bytes(*keys)


class _Units:
    """The simulator's view the harness reads (each unit's apiserver record, its private files) in a folder."""

    def __init__(self, root):
        self.root = root
        self.records = {}

    def units(self, model, app):
        return sorted(self.records)

    def unit_file(self, model, unit, path):
        return self.records[unit]

    def unit_path(self, model, unit, path):
        return self.root / unit.replace("/", "-") / path.lstrip("/")


def running_with(config_bytes):
    return json.dumps({"config": base64.b64encode(config_bytes).decode(), "keys": [], "starts": 1})


@pytest.fixture
def harness(tmp_path):
    """The apiserver harness on a real etcd: unit 0 runs [key2:NEW, key1:OLD], unit 1 the same."""
    units = _Units(tmp_path / "units")
    servers = ApiServers(units, str(tmp_path / "apiservers"))
    both = config_file(("key2", NEW), ("key1", OLD))
    units.records = {APP + "/0": running_with(both), APP + "/1": running_with(both)}
    try:
        yield servers, units
    finally:
        servers.close()  # etcd stopped by its process id, the API server thread ended


def args_for(servers, model, tmp_path, wrong=False, server=None):
    """The args file kubernetes-control-plane's apiserver runs with, and the certificate files it names."""
    certs = servers.certificates
    cert, key = ("wrong-client-cert", "wrong-client-key") if wrong else ("client-cert", "client-key")
    files = {}
    for name in ("ca", cert, key):
        path = tmp_path / "{}.pem".format(name)
        path.write_bytes(certs.pem(name))
        files[name] = path
    args = tmp_path / "args"
    args.write_text(
        '--etcd-servers="{}"\n--etcd-cafile="{}"\n--etcd-certfile="{}"\n--etcd-keyfile="{}"\n--storage-backend=etcd3\n'.format(
            server or servers.etcd_of(model).server.url, files["ca"], files[cert], files[key]
        )
    )
    return str(args)


def store_old(servers, model, count):
    """``count`` Secrets written under key1 (OLD) before the rotation."""
    for _ in range(count):
        servers.etcd_of(model).store(kube_apiserver.parse(config_file(("key1", OLD))), "before")


def test_the_census_counts_the_secrets_not_under_the_write_key_in_pages_and_names_the_first(harness, tmp_path):
    servers, _ = harness
    store_old(servers, "m", 7)
    servers.rewrite("m", via=APP + "/0", skip={"kube-system/secret-00004"})
    args = args_for(servers, "m", tmp_path)
    census = etcd_census.take("key2", args_path=args, page_size=2)  # 4 pages: one revision throughout
    assert (census.total, census.under_write_key, census.not_under) == (7, 6, ["kube-system/secret-00004"])
    assert census.stored_under == {"key2": 6, "key1": 1} and census.progress() == "6 of 7 Secrets under key2"
    servers.rewrite("m", via=APP + "/0")
    assert etcd_census.take("key2", args_path=args).clean


def test_a_secret_written_under_the_old_key_after_the_rewrite_is_counted(harness, tmp_path):
    servers, _ = harness
    store_old(servers, "m", 3)
    servers.rewrite("m", via=APP + "/0")
    late = servers.store_through("m", config_file(("key1", OLD), ("key2", NEW)), "an apiserver one phase behind")
    census = etcd_census.take("key2", args_path=args_for(servers, "m", tmp_path))
    assert census.not_under == [late] and census.remaining == 1


@pytest.mark.parametrize("fault", ["wrong certificates", "etcd down", "no args file", "no etcd-servers"])
def test_an_unreadable_etcd_gives_a_clear_reason_and_no_count(harness, tmp_path, fault):
    servers, _ = harness
    store_old(servers, "m", 2)
    args = args_for(servers, "m", tmp_path, wrong=fault == "wrong certificates")
    if fault == "etcd down":
        servers.etcd_of("m").server.stop()
    elif fault == "no args file":
        args = str(tmp_path / "absent")
    elif fault == "no etcd-servers":
        (tmp_path / "args").write_text("--storage-backend=etcd3\n")
    with pytest.raises(etcd_census.EtcdUnavailable) as raised:
        etcd_census.take("key2", args_path=args)
    message = str(raised.value)
    expected = {
        "wrong certificates": "TLS failed",
        "etcd down": "ConnectionError",
        "no args file": "are not at",
        "no etcd-servers": "name no etcd server",
    }[fault]
    assert expected in message, message
    assert OLD not in message and NEW not in message


def kubeconfig_for(servers, model, unit, tmp_path, token=None):
    ca = tmp_path / "kube-ca.pem"
    ca.write_bytes(servers.certificates.pem("ca"))
    real = servers.api.tokens.setdefault(model, "t0ken")
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c", "cluster": {"server": servers.api.url_for(model, unit), "certificate-authority": str(ca)}}
        ],
        "users": [{"name": "admin", "user": {"token": token or real}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "admin"}}],
        "current-context": "x",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_the_unattended_rewrite_retries_a_conflict_reports_a_refusal_and_leaves_every_other_secret_under_the_new_key(
    harness, tmp_path
):
    servers, _ = harness
    store_old(servers, "m", 6)
    args = args_for(servers, "m", tmp_path)
    kubeconfig = kubeconfig_for(servers, "m", APP + "/0", tmp_path)
    servers.api.conflict_once.add(("m", "default/secret-00000"))
    servers.api.refuse.add(("m", "team-a/secret-00002"))
    before = etcd_census.take("key2", args_path=args)
    result = kube_rewrite.rewrite(before.not_under, time.monotonic() + 60, kubeconfig)
    assert result.finished and result.rewritten == 5 and result.conflicts == 1
    assert result.refused == ["team-a/secret-00002 (Forbidden)"]
    after = etcd_census.take("key2", args_path=args)
    assert after.not_under == ["team-a/secret-00002"]
    servers.check("m", when="after the unattended rewrite")  # every apiserver reads every Secret, as stored


def test_the_unattended_rewrite_stops_at_its_deadline_and_a_wrong_token_is_a_clear_error(harness, tmp_path):
    servers, _ = harness
    store_old(servers, "m", 3)
    kubeconfig = kubeconfig_for(servers, "m", APP + "/0", tmp_path)
    names = etcd_census.take("key2", args_path=args_for(servers, "m", tmp_path)).not_under
    result = kube_rewrite.rewrite(names, time.monotonic() - 1, kubeconfig)
    assert not result.finished and result.rewritten == 0
    with pytest.raises(kube_rewrite.KubeApiUnavailable, match="refused the charm's credentials"):
        kube_rewrite.rewrite(names, time.monotonic() + 60, kubeconfig_for(servers, "m", APP + "/0", tmp_path, "bad"))


def test_an_apiserver_started_without_a_file_counts_as_running_unencrypted_and_fails_the_check(tmp_path):
    """1.29+ leaves --encryption-provider-config out without a file: that apiserver cannot read encrypted Secrets."""
    units = _Units(tmp_path / "units")
    servers = ApiServers(units, str(tmp_path / "apiservers"))
    try:
        units.records = {APP + "/0": running_with(servers.charm_file_for("k" * 32))}
        servers({"model": "m", "unit": APP + "/0", "hook": "update-status"})
        assert servers.stored("m") == 1
        units.records[APP + "/1"] = json.dumps({"config": None, "unencrypted": True, "keys": [], "starts": 1})
        with pytest.raises(AssertionError, match="kubernetes-control-plane/1's apiserver cannot read Secrets"):
            servers({"model": "m", "unit": APP + "/1", "hook": "update-status"})
        units.records[APP + "/1"] = json.dumps({"config": None, "keys": [], "starts": 1})  # 1.28: not started
        servers({"model": "m", "unit": APP + "/0", "hook": "update-status"})
    finally:
        servers.close()
