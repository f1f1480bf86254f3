"""The unattended rewrite: each stored Secret read and replaced through the Kubernetes API, so it is stored again.

What an operator does with ``kubectl get secrets -A -o json | kubectl replace
-f -``, done by the leader for the Secrets etcd shows are not yet under the
write key (``etcd_census``), with the charm's own credentials: the kubeconfig
kubernetes-control-plane keeps for itself (``/root/.kube/config``, the layer
option ``kubeconfig-path``).  A replace sends the object as read, with its
``resourceVersion``, so the apiserver refuses it (409 Conflict) if the Secret
changed meanwhile; the Secret is then read again and replaced again.  A
Secret deleted meanwhile (404) needs nothing.  The work stops at a deadline
and goes on at the leader's next hook; its progress is in the status.

Only names and counts leave this module; a Secret's content is held in memory
for the one request that replaces it.
"""

import base64
import os
import tempfile
import time
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

#: kubernetes-control-plane's admin kubeconfig (layer:kubernetes-common ``kubeclientconfig_path``)
DEFAULT_KUBECONFIG = "/root/.kube/config"
TIMEOUT = 15
RETRIES = 5


class KubeApiUnavailable(Exception):
    """The Kubernetes API cannot be used: no kubeconfig, not reachable, or credentials refused (says which)."""


class RewriteResult(NamedTuple):
    rewritten: int
    gone: int  #: deleted since etcd was read: nothing to do
    refused: List[str]  #: ``namespace/name`` the apiserver refused to replace (a webhook, a policy), with why
    finished: bool  #: False when the deadline came first
    conflicts: int


class _Client:
    """A minimal Kubernetes API client from a kubeconfig: server, CA, token or client certificate."""

    def __init__(self, path: str) -> None:
        import requests
        import yaml

        try:
            with open(path) as handle:
                config = yaml.safe_load(handle)
        except FileNotFoundError:
            raise KubeApiUnavailable("no kubeconfig at {}".format(path)) from None
        except (OSError, yaml.YAMLError):
            raise KubeApiUnavailable("the kubeconfig at {} cannot be read".format(path)) from None
        self._temporary: List[str] = []
        try:
            cluster, user = self._current(config)
            self.server = str(cluster["server"]).rstrip("/")
        except (KeyError, TypeError, ValueError, StopIteration):
            raise KubeApiUnavailable("the kubeconfig at {} names no usable cluster and user".format(path)) from None
        self.session = requests.Session()
        self.session.trust_env = False
        if cluster.get("insecure-skip-tls-verify"):
            self.session.verify = False
        elif cluster.get("certificate-authority-data"):
            self.session.verify = self._file(cluster["certificate-authority-data"])
        elif cluster.get("certificate-authority"):
            self.session.verify = cluster["certificate-authority"]
        if user.get("token"):
            self.session.headers["Authorization"] = "Bearer {}".format(user["token"])
        elif user.get("username") and user.get("password"):
            self.session.auth = (user["username"], user["password"])
        cert = user.get("client-certificate") or (
            self._file(user["client-certificate-data"]) if user.get("client-certificate-data") else None
        )
        key = user.get("client-key") or (self._file(user["client-key-data"]) if user.get("client-key-data") else None)
        if cert and key:
            self.session.cert = (cert, key)

    @staticmethod
    def _current(config: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        context_name = config.get("current-context")
        contexts = config.get("contexts") or []
        context = next(c["context"] for c in contexts if c.get("name") == context_name or not context_name)
        cluster = next(c["cluster"] for c in config["clusters"] if c.get("name") == context["cluster"])
        user = next(
            (u.get("user") or {} for u in config.get("users") or [] if u.get("name") == context.get("user")), {}
        )
        return cluster, user

    def _file(self, data: str) -> str:
        """Inline base64 PEM from the kubeconfig, as a private temporary file (requests wants paths)."""
        handle, path = tempfile.mkstemp(prefix="kubeconfig-", suffix=".pem")
        with os.fdopen(handle, "wb") as out:
            out.write(base64.b64decode(data))
        self._temporary.append(path)
        return path

    def request(self, method: str, path: str, body: Optional[Dict[str, Any]] = None) -> Tuple[int, Any]:
        import requests

        try:
            response = self.session.request(method, self.server + path, json=body, timeout=TIMEOUT)
        except requests.exceptions.SSLError:
            raise KubeApiUnavailable("TLS with the Kubernetes API at {} failed".format(self.server)) from None
        except requests.RequestException as error:
            raise KubeApiUnavailable(
                "the Kubernetes API at {} cannot be reached ({})".format(self.server, type(error).__name__)
            ) from None
        if response.status_code == 401:
            raise KubeApiUnavailable("the Kubernetes API at {} refused the charm's credentials".format(self.server))
        if response.status_code > 500:  # 500 is about one object (it cannot be decrypted); 502-504: the server
            raise KubeApiUnavailable(
                "the Kubernetes API at {} answered HTTP {}".format(self.server, response.status_code)
            )
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, None

    def close(self) -> None:
        self.session.close()
        for path in self._temporary:
            try:
                os.unlink(path)
            except OSError:
                pass


def _reason(answer: Any) -> str:
    if isinstance(answer, dict) and isinstance(answer.get("reason"), str):
        return answer["reason"]
    return "refused"


def rewrite(names: Sequence[str], deadline: float, kubeconfig: str = DEFAULT_KUBECONFIG) -> RewriteResult:
    """Replace each ``namespace/name`` Secret with itself through the API, until ``deadline`` (time.monotonic).

    Raises KubeApiUnavailable when the API cannot be used at all.
    """
    client = _Client(kubeconfig)
    rewritten = gone = conflicts = 0
    refused: List[str] = []
    try:
        for full_name in names:
            if time.monotonic() >= deadline:
                return RewriteResult(rewritten, gone, refused, False, conflicts)
            namespace, _, name = full_name.partition("/")
            path = "/api/v1/namespaces/{}/secrets/{}".format(namespace, name)
            for _ in range(RETRIES):
                code, obj = client.request("GET", path)
                if code == 404:
                    gone += 1
                    break
                if code != 200 or not isinstance(obj, dict):
                    refused.append("{} (read: {})".format(full_name, _reason(obj)))
                    break
                code, answer = client.request("PUT", path, obj)
                if code == 200:
                    rewritten += 1
                    break
                if code == 404:
                    gone += 1
                    break
                if code == 409:  # changed since read: read it again
                    conflicts += 1
                    continue
                refused.append("{} ({})".format(full_name, _reason(answer)))
                break
            else:
                refused.append("{} (conflict {} times)".format(full_name, RETRIES))
        return RewriteResult(rewritten, gone, refused, True, conflicts)
    finally:
        client.close()
