"""Vault HA in the session: the next vault unit's URL when one cannot serve, and read-your-writes.

The real behaviour (a raft standby that lags, a sealed node, a killed active
node) is in tests/integration/test_vault_ha.py against a 3-node OpenBao; here
the session's decisions are pinned with the in-memory fake.
"""

import base64
import json

import hvac
import hvac.exceptions as hvac_errors
import pytest

from charms.layer import vault_kv
from charms.layer.vault_kv import session as vault_kv_session
from charms.layer.vault_kv.errors import VaultNotReady, VaultUnreachable
from tests.unit.fake_vault import FakeVault

DEAD = "http://10.0.0.9:8200"
LIVE = "http://10.0.0.1:8200"


def index(value, cluster="c1"):
    return base64.b64encode(json.dumps({"cluster": cluster, "value": str(value)}).encode()).decode()


@pytest.fixture
def two_servers(vault, monkeypatch):
    """The relation's first URL is a server that is down; the second is the fake Vault."""
    dead = FakeVault()
    dead.down = True

    def client(url=None, **kwargs):
        return (dead if url == DEAD else vault).client(url=url, **kwargs)

    monkeypatch.setattr(hvac, "Client", client)
    vault.endpoint.vault_url = DEAD
    vault.endpoint.vault_urls = [DEAD, LIVE]
    return dead


class TestNextVaultUnit:
    def test_a_server_that_is_down_passes_the_hook_to_the_next_url(self, vault, two_servers):
        vault.data["charm-app/kv/app"] = {"k": "v"}
        assert dict(vault_kv.VaultAppKV()) == {"k": "v"}
        vault_kv.VaultAppKV()["n"] = "w"
        assert vault.data["charm-app/kv/app"] == {"k": "v", "n": "w"}  # written at the live one

    @pytest.mark.parametrize("fault", ["sealed", "ssl_error"])
    def test_a_sealed_server_or_a_bad_certificate_passes_to_the_next_url(self, vault, two_servers, fault):
        two_servers.down = False
        setattr(two_servers, fault, True)
        vault.data["charm-app/kv/app"] = {"k": "v"}
        assert dict(vault_kv.VaultAppKV()) == {"k": "v"}

    def test_when_every_url_fails_the_hook_waits_and_nothing_is_written(self, vault, two_servers):
        vault.down = True
        with pytest.raises(VaultUnreachable) as raised:
            vault_kv.VaultAppKV()
        assert isinstance(raised.value, VaultNotReady)
        assert "secret" not in str(raised.value)

    def test_a_refusal_of_the_path_is_not_passed_on(self, vault, two_servers):
        """403 or 404 is the same at every node: no other URL is tried for it."""
        two_servers.down = False
        two_servers.allowed_prefixes = ["nothing-"]  # the first server's policy refuses the path
        with pytest.raises(VaultNotReady) as raised:
            vault_kv.VaultAppKV()
        assert not isinstance(raised.value, VaultUnreachable)
        assert vault.requests == []  # the second was not asked

    def test_the_unwrap_of_a_new_token_is_tried_at_the_next_url(self, vault, two_servers, unitdata_kv):
        vault_kv.get_vault_config()
        assert unitdata_kv.get("layer.vault-kv.secret_id") == "secret-app-0"

    def test_the_config_lists_every_url_first_one_first(self, vault, two_servers):
        config = vault_kv.get_vault_config()
        assert config["vault_url"] == DEAD and config["vault_urls"] == [DEAD, LIVE]


class TestWriteIndex:
    def test_the_higher_index_of_a_cluster_is_kept(self):
        tracker = vault_kv_session._WriteIndex()
        tracker.note("POST", index(40))
        tracker.note("PUT", index(12))  # an answer from a node that is behind
        assert tracker.value == index(40)
        tracker.note("DELETE", index(41))
        assert tracker.value == index(41)

    def test_reads_do_not_move_it_and_malformed_headers_are_never_echoed(self):
        tracker = vault_kv_session._WriteIndex()
        tracker.note("GET", index(50))
        assert tracker.value is None
        tracker.note("POST", "abc\r\nX-Evil: 1")
        tracker.note("POST", "x" * 5000)
        assert tracker.value is None

    def test_an_opaque_index_is_kept_as_the_latest(self):
        tracker = vault_kv_session._WriteIndex()
        tracker.note("POST", "opaque-one")
        tracker.note("POST", "opaque-two")
        assert tracker.value == "opaque-two"

    def test_a_new_hook_starts_without_one(self):
        vault_kv_session.write_index.note("POST", index(3))
        vault_kv_session.forget_sessions()
        assert vault_kv_session.write_index.value is None


class TestCatchingUp:
    @pytest.fixture(autouse=True)
    def no_sleep(self, monkeypatch):
        slept = []
        monkeypatch.setattr(vault_kv_session.time, "sleep", slept.append)
        yield slept
        vault_kv_session.write_index.forget()

    def flaky(self, failures, error=hvac_errors.RateLimitExceeded):
        calls = []

        def action():
            calls.append(1)
            if len(calls) <= failures:
                raise error("not caught up")
            return "answer"

        return action, calls

    def test_a_standby_behind_this_hooks_writes_is_asked_again(self, no_sleep):
        vault_kv_session.write_index.note("POST", index(7))
        action, calls = self.flaky(2)
        assert vault_kv_session.caught_up(action) == "answer"
        assert len(calls) == 3 and len(no_sleep) == 2

    def test_412_is_asked_again_too(self):
        vault_kv_session.write_index.note("POST", index(7))
        action, calls = self.flaky(1, hvac_errors.PreconditionFailed)
        assert vault_kv_session.caught_up(action) == "answer"

    def test_without_an_index_sent_a_429_is_rate_limiting_and_not_retried(self):
        action, calls = self.flaky(1)
        with pytest.raises(hvac_errors.RateLimitExceeded):
            vault_kv_session.caught_up(action)
        assert len(calls) == 1

    def test_a_standby_that_never_catches_up_gives_up_within_the_limit(self, monkeypatch, no_sleep):
        vault_kv_session.write_index.note("POST", index(7))
        now = [0.0]
        monkeypatch.setattr(vault_kv_session.time, "monotonic", lambda: now[0])
        no_sleep_and_advance = no_sleep.append

        def sleep(seconds):
            now[0] += seconds
            no_sleep_and_advance(seconds)

        monkeypatch.setattr(vault_kv_session.time, "sleep", sleep)
        action, calls = self.flaky(10**6)
        with pytest.raises(VaultUnreachable):  # so the session tries the next vault unit's URL
            vault_kv_session.caught_up(action)
        assert sum(no_sleep) <= vault_kv_session.CATCH_UP_SECONDS
        assert 3 <= len(calls) < 50

    def test_a_caught_up_failure_at_one_node_is_translated_to_try_the_next(self):
        with pytest.raises(VaultUnreachable):
            with vault_kv_session.translate_errors("reading x"):
                raise hvac_errors.PreconditionFailed("required index state not present")
