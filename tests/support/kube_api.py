"""The part of each test apiserver's Kubernetes API that a rewrite of the Secrets uses: get and replace one Secret.

One HTTPS server (a thread of the test process) answers for every
kubernetes-control-plane unit of a Cluster: a unit's kubeconfig names
``https://127.0.0.1:PORT/<model>/<unit>`` as its server, and a request there is
served as that unit's kube-apiserver serves it, with the encryption
configuration it runs with (``ApiServers.running``) and the model's real etcd:

- ``GET  /api/v1/namespaces/NS/secrets/NAME``: read from etcd and decrypted;
  ``metadata.resourceVersion`` is the key's etcd mod revision, as in
  Kubernetes; 500 when this apiserver's keys cannot read it, 404 when absent;
- ``PUT`` of the same path: refused with 409 Conflict when
  ``metadata.resourceVersion`` is not the stored one (the object changed since
  it was read); otherwise encrypted with this apiserver's write key and stored
  only if etcd still holds that revision (a transaction, as the apiserver's
  guaranteed update).

Requests need the model's bearer token (401 otherwise).  Fault switches a test
sets: ``conflict_once`` (another writer replaces the Secret just before this
PUT arrives, so it meets a conflict), ``refuse`` (an admission webhook denies
the replace: 403), ``down`` (the unit's apiserver does not answer: 503).
"""

import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Optional, Set, Tuple
from urllib.parse import unquote, urlsplit


def canonical(obj: Dict[str, Any]) -> bytes:
    """The bytes an object is stored as (what the harness compares a read against); no resourceVersion."""
    metadata = {key: obj["metadata"][key] for key in ("name", "namespace")}
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "data": obj.get("data") or {}}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


class KubeApi:
    """The HTTPS server; ``apiservers`` is the ApiServers harness it serves for."""

    def __init__(self, apiservers, cert_file: str, key_file: str) -> None:
        self.apiservers = apiservers
        self.tokens: Dict[str, str] = {}  # model -> token its units' kubeconfigs carry
        self.conflict_once: Set[Tuple[str, str]] = set()  # (model, "ns/name")
        self.refuse: Set[Tuple[str, str]] = set()
        self.down: Set[Tuple[str, str]] = set()  # (model, unit)
        self.replaced: Dict[str, int] = {}  # model -> successful replaces
        self.conflicts: Dict[str, int] = {}  # model -> 409s answered
        self.lock = threading.Lock()
        handler = _handler_for(self)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="kube-api", daemon=True)
        self.thread.start()

    def url_for(self, model: str, unit: str) -> str:
        return "https://127.0.0.1:{}/{}/{}".format(self.port, model, unit.replace("/", "-"))

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def _handler_for(api: KubeApi):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet: tests read outcomes, not access logs
            pass

        def setup(self) -> None:
            super().setup()
            # the status line and headers go out before the body: without this, Nagle's algorithm and the
            # client's delayed ACK hold each answer about 40 ms
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _answer(self, code: int, body: Dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _status(self, code: int, reason: str, message: str) -> None:
            self._answer(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
                                "message": message, "code": code})  # fmt: skip

        def _route(self) -> Optional[Tuple[str, str, str, str]]:
            """(model, unit, namespace, name) of a Secret path, after the token check (None: answered)."""
            parts = [unquote(part) for part in urlsplit(self.path).path.strip("/").split("/")]
            if len(parts) != 8 or parts[2:5] != ["api", "v1", "namespaces"] or parts[6] != "secrets":
                self._status(404, "NotFound", "no such path")
                return None
            model, unit = parts[0], parts[1][::-1].replace("-", "/", 1)[::-1]
            if self.headers.get("Authorization") != "Bearer {}".format(api.tokens.get(model)):
                self._status(401, "Unauthorized", "Unauthorized")
                return None
            if (model, unit) in api.down:
                self._status(503, "ServiceUnavailable", "the apiserver is not up")
                return None
            return model, unit, parts[5], parts[7]

        def do_GET(self) -> None:
            route = self._route()
            if route is None:
                return
            model, unit, namespace, name = route
            with api.lock:
                found = api.apiservers.read_secret(model, unit, namespace, name)
            if found is None:
                self._status(404, "NotFound", 'secrets "{}" not found'.format(name))
            elif found == "unreadable":
                self._status(500, "InternalError", "Internal error occurred: no key could decrypt the object")
            else:
                self._answer(200, found)

        def do_PUT(self) -> None:
            route = self._route()
            if route is None:
                return
            model, unit, namespace, name = route
            length = int(self.headers.get("Content-Length") or 0)
            try:
                obj = json.loads(self.rfile.read(length))
                sent = str(obj["metadata"]["resourceVersion"])
                if obj["metadata"].get("name") != name or obj["metadata"].get("namespace") != namespace:
                    raise ValueError
            except (ValueError, KeyError, TypeError):
                self._status(400, "BadRequest", "not a Secret for this path")
                return
            who = (model, "{}/{}".format(namespace, name))
            with api.lock:
                if who in api.refuse:
                    self._status(403, "Forbidden", "admission webhook denied the request")
                    return
                if who in api.conflict_once:
                    api.conflict_once.discard(who)
                    api.apiservers.touch_secret(model, namespace, name)  # another writer got there first
                answer = api.apiservers.replace_secret(model, unit, obj, sent)
                if answer == "conflict":
                    api.conflicts[model] = api.conflicts.get(model, 0) + 1
                    self._status(409, "Conflict", "the object has been modified; please apply your changes"
                                 " to the latest version and try again")  # fmt: skip
                elif answer is None:
                    self._status(404, "NotFound", 'secrets "{}" not found'.format(name))
                else:
                    api.replaced[model] = api.replaced.get(model, 0) + 1
                    self._answer(200, answer)

    return Handler
