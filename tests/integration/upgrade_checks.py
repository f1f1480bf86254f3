"""What every upgrade test checks: the key, the files and the flags after the move (shared by the upgrade tests)."""

import hashlib

APP = "kubernetes-control-plane"
LEGACY = "charm-" + APP
GENERATED = "kcp-consumer: generated a new encryption_key"
DONE = "layer.vault-kv.migration.done"


def generations(cluster, model):
    return sum(cluster.controller.log(model, u).count(GENERATED) for u in cluster.units(model))


def file_bytes(cluster, model):
    """A digest of each unit's EncryptionConfiguration, byte for byte (digests: failures print no key)."""
    path = "/var/snap/kube-apiserver/common/encryption/encryption_config.yaml"
    return {
        u: hashlib.sha256(cluster.controller.unit_file(model, u, path) or b"").hexdigest() for u in cluster.units(model)
    }


def assert_upgraded(cluster, model, key, files_before, changes_before):
    """The upgraded model holds the original key (``key``: its fingerprint) everywhere, and was told of no change."""
    assert cluster.vault_fingerprint(cluster.new_backend(model)) == key
    assert file_bytes(cluster, model) == files_before  # not even rewritten: no apiserver restart
    for unit in cluster.units(model):
        flags = cluster.flags(model, unit)
        assert DONE in flags and "layer.vault-kv.ready" in flags, (unit, flags)
        assert "layer.vault-kv.migration.in-progress" not in flags
        assert "layer.vault-kv.app-kv.changed.encryption_key" not in flags
        assert cluster.key_changes(model, unit) == changes_before[unit]
        active = cluster.controller.unitdata(model, unit)["layer.vault-kv.active"]
        assert active == {"backend": cluster.new_backend(model), "unit_name": "{}-{}".format(model, unit)}
    assert generations(cluster, model) <= 1  # only the first deployment's
