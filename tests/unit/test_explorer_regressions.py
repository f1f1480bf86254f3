"""Defects the lifecycle explorer (tests/explore) found in the tests' own checks, kept as named tests.

(The explorer's findings in the layer and its consumers are listed in the README, "What the explorer found".)
"""

import hvac
import pytest

from tests.support import rotation


class _Bao:
    def __init__(self):
        self.data = {"charm-x/kv/app": {"encryption_key": "k" * 32, rotation.ROTATION_KEY: {"id": "r", "phase": "add"}}}
        self.sealed = False

    def read(self, path):
        if self.sealed:
            raise hvac.exceptions.VaultDown("Vault is sealed")
        return self.data.get(path)


class _Cluster:
    def __init__(self):
        self.bao = _Bao()


def test_the_rotation_checks_read_the_last_known_state_while_vault_is_sealed():
    """Found by the explorer (seal Vault, then a second model's hooks): RotationInvariant read Vault after
    every hook and raised VaultDown while it was sealed; nothing changes the state while it is sealed."""
    cluster = _Cluster()
    assert rotation.phase(cluster, "charm-x") == "add"
    known = rotation.vault_key_fingerprint(cluster, "charm-x")
    cluster.bao.sealed = True
    assert rotation.phase(cluster, "charm-x") == "add"
    assert rotation.vault_key_fingerprint(cluster, "charm-x") == known
    cluster.bao.sealed = False
    cluster.bao.data["charm-x/kv/app"][rotation.ROTATION_KEY]["phase"] = "promote"
    assert rotation.phase(cluster, "charm-x") == "promote"


def test_a_sealed_vault_never_read_before_is_no_state_not_an_error():
    cluster = _Cluster()
    cluster.bao.sealed = True
    assert rotation.state(cluster, "charm-y") is None


@pytest.mark.parametrize("backend", ["charm-x"])
def test_two_clusters_do_not_share_what_was_last_read(backend):
    first, second = _Cluster(), _Cluster()
    rotation.phase(first, backend)
    second.bao.sealed = True
    assert rotation.state(second, backend) is None
