"""The pure parts of the rewrite verification: the apiserver's arguments, stored key names, the census's words,
and the rotation state's forced confirmation (etcd itself: tests/integration/test_etcd_verification.py)."""

import pytest

from charms.layer.vault_kv.secure_storage import encryption_config, etcd_census
from charms.layer.vault_kv.secure_storage import rotation_state as rs

OLD, NEW = "o" * 32, "n" * 32


def test_the_snap_args_file_is_read_in_its_quoted_and_spaced_forms(tmp_path):
    args = tmp_path / "args"
    args.write_text(
        "# written by snap set\n"
        '--etcd-servers="https://10.0.0.1:2379,https://10.0.0.2:2379/"\n'
        "--etcd-cafile=/root/cdk/etcd/client-ca.pem\n"
        "--etcd-certfile /root/cdk/etcd/client-cert.pem\n"
        "--etcd-keyfile='/root/cdk/etcd/client-key.pem'\n"
        "--allow-privileged\n"
        "--etcd-prefix=/custom/\n"
    )
    access = etcd_census.access_from_args(str(args))
    assert access.servers == ("https://10.0.0.1:2379", "https://10.0.0.2:2379")
    assert (access.ca_file, access.cert_file, access.key_file) == (
        "/root/cdk/etcd/client-ca.pem",
        "/root/cdk/etcd/client-cert.pem",
        "/root/cdk/etcd/client-key.pem",
    )
    assert access.prefix == "/custom"
    args.write_text('--etcd-servers="https://10.0.0.1:2379"\n')
    assert etcd_census.access_from_args(str(args)).prefix == "/registry"  # kube-apiserver's default


def test_an_args_file_that_says_nothing_of_etcd_is_a_clear_reason(tmp_path):
    args = tmp_path / "args"
    args.write_text('--storage-backend="etcd3"\n')
    with pytest.raises(etcd_census.EtcdUnavailable, match="name no etcd server"):
        etcd_census.access_from_args(str(args))
    args.write_text('--etcd-servers="unclosed\n')
    with pytest.raises(etcd_census.EtcdUnavailable, match="cannot be parsed"):
        etcd_census.access_from_args(str(args))


@pytest.mark.parametrize(
    "value, name",
    [
        (b"k8s:enc:aescbc:v1:key2:\x00\x01", "key2"),
        (b"k8s:enc:aesgcm:v1:gcm1:\x00\x01", "gcm1"),
        (b'{"kind":"Secret"}', "identity"),
        (b"\x6b\x38\x73\x00\x0a", "identity"),  # protobuf ("k8s\\x00"), as kube-apiserver stores unencrypted
    ],
)
def test_the_key_name_a_value_is_stored_under(value, name):
    assert etcd_census.stored_key_name(value) == name


def test_the_census_names_the_first_few_and_counts_the_rest():
    census = etcd_census.Census("key2", 415, 403, ["ns/s{}".format(n) for n in range(12)], {"key2": 403, "key1": 12})
    assert census.progress() == "403 of 415 Secrets under key2" and not census.clean and census.remaining == 12
    assert census.first_missing() == "ns/s0, ns/s1, ns/s2, ns/s3, ns/s4 and 7 more"


def test_the_resources_a_file_encrypts(tmp_path):
    path = tmp_path / "config.yaml"
    assert encryption_config.encrypted_resources(str(path)) == ["secrets"]  # no file: what kcp encrypts
    encryption_config.write_named_keys(str(path), [("key1", OLD)])
    assert encryption_config.encrypted_resources(str(path)) == ["secrets"]
    import yaml

    document = yaml.safe_load(path.read_text())
    document["resources"][0]["resources"].append("configmaps")
    path.write_text(yaml.safe_dump(document))
    assert encryption_config.encrypted_resources(str(path)) == ["secrets", "configmaps"]


def test_a_forced_confirmation_is_recorded_and_does_not_carry_into_the_next_rewrite():
    state = rs.start(OLD, "key1", ["key1"], NEW, rewrite="auto")
    assert state["rewrite"] == "auto" and state["new"]["name"] == "key2"
    for phase in ("promote", "rewrite"):
        state = dict(state, phase=phase)
    forced = rs.confirm(state, forced=True)
    assert forced["confirmed"] and forced["forced"]
    assert "forced" not in rs.confirm(state)
    _, following = rs.next_state(forced)
    assert following["phase"] == "retire" and not following["confirmed"] and "forced" not in following
    with pytest.raises(rs.RotationRefused):
        rs.confirm(dict(state, phase="retire"), forced=True)
