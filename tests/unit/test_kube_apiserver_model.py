"""The test harness's kube-apiserver (tests/support/kube_apiserver.py) behaves as kube-apiserver does."""

import base64
import os

import pytest
import yaml

from tests.support import kube_apiserver as apiserver


def config(*keys, identity=True, first_identity=False):
    providers = [{"aescbc": {"keys": [{"name": n, "secret": base64.b64encode(k).decode()} for n, k in keys]}}]
    if identity:
        providers.insert(0, {"identity": {}}) if first_identity else providers.append({"identity": {}})
    body = {
        "kind": "EncryptionConfig",
        "apiVersion": "v1",
        "resources": [{"resources": ["secrets"], "providers": providers}],
    }
    return apiserver.parse(yaml.safe_dump(body).encode())


OLD, NEW = os.urandom(32), os.urandom(32)


def test_a_secret_reads_back_with_the_file_that_stored_it_and_with_one_that_adds_keys():
    etcd = apiserver.Etcd()
    etcd.store(config(("key1", OLD)), "a")
    assert etcd.entries[0]["stored"].startswith(b"k8s:enc:aescbc:v1:key1:")
    assert etcd.failures(config(("key1", OLD))) == ([], [])
    assert etcd.failures(config(("key2", NEW), ("key1", OLD))) == ([], [])  # the second key is tried
    assert etcd.stored_under() == {"key1": 1}


def test_a_name_the_file_does_not_list_is_unreadable():
    etcd = apiserver.Etcd()
    etcd.store(config(("key2", NEW), ("key1", OLD)), "a")
    assert etcd.failures(config(("key1", NEW))) == ([0], [])


def test_the_wrong_key_under_the_right_name_never_reads_as_the_stored_bytes():
    etcd = apiserver.Etcd()
    for _ in range(300):
        etcd.store(config(("key1", OLD)), "a")
    unreadable, corrupted = etcd.failures(config(("key1", NEW)))
    assert len(unreadable) + len(corrupted) == 300  # a padding that happens to check out is corruption


def test_identity_stores_plainly_and_refuses_encrypted_bytes():
    etcd = apiserver.Etcd()
    etcd.store(config(("key1", OLD), first_identity=True), "a")
    assert etcd.stored_under() == {"identity": 1}
    assert etcd.failures(config(("key1", OLD))) == ([], [])  # identity after aescbc reads it
    etcd.store(config(("key1", OLD)), "a")
    assert etcd.failures(config(("key1", OLD), identity=True, first_identity=True)) == ([], [])
    assert etcd.failures(config(("key9", NEW))) == ([1], [])  # the plain one by identity, not the key1 one


def test_the_operators_rewrite_moves_every_secret_to_the_write_key():
    etcd = apiserver.Etcd()
    etcd.store(config(("key1", OLD)), "a")
    etcd.rewrite(config(("key2", NEW), ("key1", OLD)), "b")
    assert etcd.stored_under() == {"key2": 1}
    assert etcd.failures(config(("key2", NEW))) == ([], [])


def test_a_file_that_is_not_an_encryption_configuration_is_refused_without_its_content():
    with pytest.raises(apiserver.UnreadableConfig) as raised:
        apiserver.parse(
            b"resources: [{resources: [secrets], providers: [{aescbc: {keys: [{name: k, secret: QUJD}]}}]}]"
        )
    assert "QUJD" not in str(raised.value)
