"""A server on loopback that misbehaves in ways a real Vault cannot: every answer is a layer error.

The layer's session must turn each into ``VaultNotReady`` (the hook goes on,
``waiting``), never follow a redirect, never send a token it was not given
(hvac reads ``VAULT_TOKEN`` when a client is built without one), and never put
a credential in an exception's text.
"""

import http.server
import threading

import pytest

from charms.layer.vault_kv.errors import VaultNotReady
from charms.layer.vault_kv.session import VaultSession

ROLE, SECRET = "role-id-123", "secret-id-SECRET"


class Hostile(http.server.BaseHTTPRequestHandler):
    mode = "ok"
    seen_headers = []

    def log_message(self, *args):  # keep test output clean
        pass

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _answer(self, status, body, content_type="application/json", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # login
        self._body()
        type(self).seen_headers.append(dict(self.headers))
        if self.mode == "login-html":
            return self._answer(200, b"<html>proxy login page</html>", "text/html")
        if self.mode == "login-redirect":
            return self._answer(307, b"", headers=[("Location", "http://127.0.0.2:1/v1/auth/approle/login")])
        self._answer(200, b'{"auth": {"client_token": "s.client"}}')

    def do_GET(self):
        type(self).seen_headers.append(dict(self.headers))
        mode = self.mode
        if mode == "html":
            return self._answer(200, b"<html>not vault</html>", "text/html")
        if mode == "redirect":
            return self._answer(302, b"", headers=[("Location", "http://127.0.0.2:1/v1/elsewhere")])
        if mode == "truncated":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b'{"data": {"k"')
            return
        if mode == "deep":
            return self._answer(200, b'{"data": ' + b"[" * 100000 + b"]" * 100000 + b"}")
        if mode == "401":
            return self._answer(401, b'{"errors": ["unauthorised"]}')
        if mode == "unmounted":
            return self._answer(404, b'{"errors": ["no handler for route \\"charm-x/kv/app\\""]}')
        if mode == "missing":
            return self._answer(404, b'{"errors": []}')
        self._answer(200, b'{"data": {"k": "v"}}')


@pytest.fixture
def hostile():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Hostile.seen_headers = []
    try:
        yield "http://127.0.0.1:{}".format(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def session(url):
    return VaultSession({"vault_url": url, "role_id": ROLE, "secret_id": SECRET, "vault_ca": None})


@pytest.mark.parametrize("mode", ["html", "redirect", "truncated", "deep", "401", "unmounted"])
def test_every_bad_answer_to_a_read_is_not_ready_and_carries_no_credential(hostile, mode):
    Hostile.mode = mode
    with pytest.raises(VaultNotReady) as raised:
        session(hostile).read("charm-x/kv/app")
    text = str(raised.value)
    assert SECRET not in text and "s.client" not in text
    assert raised.value.__cause__ is None  # no chained exception with a header value in it
    assert not any("127.0.0.2" in str(h) for h in Hostile.seen_headers)  # the redirect was not followed


@pytest.mark.parametrize("mode", ["login-html", "login-redirect"])
def test_a_bad_login_answer_is_not_ready(hostile, mode):
    Hostile.mode = mode
    with pytest.raises(VaultNotReady):
        session(hostile).read("charm-x/kv/app")


def test_a_missing_secret_is_empty_but_an_unmounted_backend_is_not(hostile):
    Hostile.mode = "missing"
    assert session(hostile).read("charm-x/kv/app") is None
    Hostile.mode = "unmounted"
    with pytest.raises(VaultNotReady, match="not available"):
        session(hostile).read("charm-x/kv/app")


def test_no_ambient_token_is_sent_with_the_login(hostile, monkeypatch, tmp_path):
    monkeypatch.setenv("VAULT_TOKEN", "ambient-root-token")
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".vault-token").write_text("ambient-file-token")
    Hostile.mode = "ok"
    assert session(hostile).read("charm-x/kv/app") == {"k": "v"}
    login, read = Hostile.seen_headers[0], Hostile.seen_headers[1]
    assert "X-Vault-Token" not in login
    assert read.get("X-Vault-Token") == "s.client"


def _serve(handler):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


@pytest.mark.parametrize("mode", ["redirect", "login-redirect"])
def test_a_redirecting_server_passes_the_request_to_the_next_vault_url(hostile, mode):
    """A standby that cannot forward answers with a redirect: the next published URL serves."""

    class Serving(Hostile):
        mode = "ok"
        seen_headers = []

    Hostile.mode = mode
    server, thread = _serve(Serving)
    try:
        live = "http://127.0.0.1:{}".format(server.server_address[1])
        urls = {"vault_url": hostile, "vault_urls": [hostile, live], "role_id": ROLE, "secret_id": SECRET}
        assert VaultSession(dict(urls, vault_ca=None)).read("charm-x/kv/app") == {"k": "v"}
        assert Serving.seen_headers  # the second server answered
        assert not any("127.0.0.2" in str(h) for h in Hostile.seen_headers + Serving.seen_headers)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
