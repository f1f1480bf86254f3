"""One authenticated Vault session per hook.

The old layer logged in to Vault for every read and write.  A session here
logs in once, on first use, and reuses the token for every request of the
hook.  Tokens issued to vault-kv AppRoles live 60 seconds, so a long hook can
outlive one: a 403 is answered by one fresh login and one retry, and a second
403 means the policy really does not grant the path.

Every failure is translated into the layer's exceptions (see
``vault_kv_errors``) with a message that says what went wrong and where, and
never carries a credential or a stored value.

Vault HA.  Every unit of the vault application publishes its own URL; a
session starts with the first and moves to the next when a server cannot
serve (refused connection, sealed, no active node, 5xx), so one dead or
sealed vault unit does not stop the charm.  Standby nodes of a raft cluster
answer reads from their own copy, which can lag the active node: every
response to a write carries ``X-Vault-Index``, and the hook sends the latest
one with each later request, so a standby that has not caught up answers 412
or 429 and the request is retried briefly instead of reading stale data.
"""

import base64
import json
import time
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from charmhelpers.core import hookenv

from charms.layer.vault_kv.errors import (
    VaultCredentialsInvalid,
    VaultNotReady,
    VaultOperatorActionNeeded,
    VaultUnreachable,
)

REQUEST_TIMEOUT = 15
CONNECT_TIMEOUT = 5
# how long a request waits, in all, for a standby to catch up with this hook's writes
CATCH_UP_SECONDS = 3.0
INDEX_HEADER = "X-Vault-Index"

# hvac and requests are imported on first use: a charm whose Vault relation is
# optional (kubernetes-control-plane) pays nothing for them in hooks without it.
# (hvac exception, reason, whether another Vault server may serve instead)
_TRANSIENT_REASONS = (
    ("VaultDown", "Vault is sealed or in standby without a leader", True),
    ("VaultNotInitialized", "Vault is not initialised", True),
    ("BadGateway", "Vault answered 502 Bad Gateway", True),
    ("InternalServerError", "Vault answered with an internal error", True),
    ("RateLimitExceeded", "Vault is rate-limiting requests", False),
    ("PreconditionFailed", "Vault has not caught up with this hook's writes", True),
    ("UnexpectedError", "Vault answered with an unexpected error", False),
)


def _transient():
    import hvac.exceptions as hvac_errors

    return tuple((getattr(hvac_errors, name), text, other) for name, text, other in _TRANSIENT_REASONS)


@contextmanager
def translate_errors(doing: str, login: bool = False) -> Iterator[None]:
    """Turn every failure met while ``doing`` a Vault request into a layer exception.

    The one place where hvac, requests and JSON decoding errors are
    translated: whatever the server or the network does, the caller gets a
    ``VaultNotReady`` (or, for refused credentials, ``VaultCredentialsInvalid``)
    with a message that names the condition, never a value.  The original
    exception is not chained: its text can hold a header value, such as a
    one-shot token (requests' ``InvalidHeader``).

    With ``login`` set, 400 and 403 mean the credentials themselves were
    refused.  Otherwise a 403 is left to the caller, which may log in again.
    """
    import hvac.exceptions as hvac_errors
    import requests

    transient = _transient()
    try:
        yield
    except VaultNotReady:
        raise
    except hvac_errors.Forbidden:
        if login:
            raise VaultCredentialsInvalid("Vault refused this unit's credentials while {}".format(doing)) from None
        raise
    except hvac_errors.InvalidRequest as error:
        if login:
            raise VaultCredentialsInvalid("Vault refused this unit's credentials while {}".format(doing)) from None
        if _refused_for_size(error):
            raise VaultOperatorActionNeeded(
                "Vault refused the size of the request while {} (a listener limit such as"
                " max_request_json_strings or max_request_size): raise the limit, or keep fewer or"
                " smaller values in this store".format(doing)
            ) from None
        raise VaultNotReady("Vault rejected the request while {}".format(doing)) from None
    except hvac_errors.UnexpectedError as error:
        if getattr(error, "status_code", None) == 413 or "too large" in str(error).lower():
            raise VaultOperatorActionNeeded(
                "Vault refused the size of the request while {} (max_request_size):"
                " raise the limit, or keep fewer or smaller values in this store".format(doing)
            ) from None
        raise VaultNotReady("Vault answered with an unexpected error while {}".format(doing)) from None
    except hvac_errors.InvalidPath:
        raise VaultNotReady("Vault has no such path while {} (backend not mounted yet?)".format(doing)) from None
    except tuple(kind for kind, _, _ in transient) as error:
        if isinstance(error, hvac_errors.InternalServerError) and _refused_by_storage_for_size(error):
            raise VaultOperatorActionNeeded(
                "Vault's storage refused the size of the write while {} (raft keeps at most 1 MiB an"
                " entry, max_entry_size): keep fewer or smaller values in this store, or raise the"
                " limit".format(doing)
            ) from None
        reason, other = next((text, other) for kind, text, other in transient if isinstance(error, kind))
        raise (VaultUnreachable if other else VaultNotReady)("{} while {}".format(reason, doing)) from None
    except hvac_errors.VaultError as error:
        raise VaultNotReady("Vault answered {} while {}".format(type(error).__name__, doing)) from None
    except requests.exceptions.SSLError:
        raise VaultUnreachable("TLS verification of Vault's certificate failed while {}".format(doing)) from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout):
        raise VaultUnreachable("cannot connect to Vault while {}".format(doing)) from None
    except requests.exceptions.TooManyRedirects:
        raise VaultNotReady("Vault redirected too often while {}".format(doing)) from None
    except requests.exceptions.RequestException as error:
        raise VaultNotReady("the request failed ({}) while {}".format(type(error).__name__, doing)) from None
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as error:
        # a body that is not JSON, or JSON of an unexpected shape
        raise VaultNotReady("Vault's answer was not usable ({}) while {}".format(type(error).__name__, doing)) from None


def _error_text(error: Exception) -> str:
    """The error's messages from Vault and its own text, lower case, for matching (never shown)."""
    return (" ".join(str(e) for e in (getattr(error, "errors", None) or [])) + " " + str(error)).lower()


def _refused_for_size(error: Exception) -> bool:
    """Whether Vault refused a request for its size or complexity (OpenBao: "high complexity")."""
    text = _error_text(error)
    return any(words in text for words in ("complexity", "exceeded maximum", "too large", "request body"))


def _refused_by_storage_for_size(error: Exception) -> bool:
    """Whether a 500 is raft refusing an entry over its size limit ("value being too large").

    Not transient: the same write fails on every node, every time.
    """
    return "too large" in _error_text(error)


def checked_answer(answer: Any, doing: str) -> Optional[Dict[str, Any]]:
    """The JSON object Vault answered, or None for an empty success (204, 404 on read).

    hvac hands back the raw response when the body is not JSON, and for
    redirects, which are never followed: a redirect could take the token to
    another host.  A redirect is what a standby that cannot forward answers
    with: this server cannot serve, another vault unit's URL may
    (``VaultUnreachable``).
    """
    if answer is None or isinstance(answer, dict):
        return answer
    status = getattr(answer, "status_code", None)
    if isinstance(status, int) and 300 <= status < 400:
        raise VaultUnreachable("Vault answered with a redirect, not followed, while {}".format(doing))
    if status == 204:
        return None
    raise VaultNotReady("Vault's answer was not JSON while {}".format(doing))


class _WriteIndex:
    """The latest ``X-Vault-Index`` this hook's writes (and logins) were answered with.

    OpenBao's index is base64 of ``{"cluster": ..., "value": "<raft index>"}``;
    of two indexes of one cluster the higher is kept.  An index in another
    form is opaque: the latest one is kept.
    """

    def __init__(self) -> None:
        self.value: Optional[str] = None

    @staticmethod
    def _position(index: str) -> Optional[Tuple[str, int]]:
        try:
            decoded = json.loads(base64.b64decode(index.encode("ascii") + b"==="))
            return str(decoded["cluster"]), int(decoded["value"])
        except Exception:  # opaque (Vault Enterprise's form): not comparable
            return None

    def note(self, method: str, index: Optional[str]) -> None:
        """Remember ``index`` from the answer to a request that may have written."""
        if not isinstance(index, str) or not index or method.upper() in ("GET", "HEAD", "LIST"):
            return
        if len(index) > 4096 or not index.isascii() or not index.isprintable():
            return  # never echo a malformed header back
        if self.value is not None:
            new, old = self._position(index), self._position(self.value)
            if new and old and new[0] == old[0] and new[1] <= old[1]:
                return
        self.value = index

    def forget(self) -> None:
        self.value = None


write_index = _WriteIndex()
_session_class: Any = None


def _indexed_session_class() -> Any:
    """A ``requests.Session`` that sends this hook's latest write index and records new ones.

    A redirect is refused here, for every request (a login too, whose answer
    hvac would otherwise try to decode): this server cannot serve, the next
    vault unit's URL may.
    """
    global _session_class
    if _session_class is None:
        import requests

        class IndexedSession(requests.Session):
            def request(self, method, url, headers=None, **kwargs):  # type: ignore[override]
                headers = dict(headers or {})
                if write_index.value:
                    headers.setdefault(INDEX_HEADER, write_index.value)
                response = super().request(method, url, headers=headers, **kwargs)
                if response.is_redirect:  # never followed; see checked_answer
                    raise VaultUnreachable("Vault answered with a redirect, not followed")
                write_index.note(method, response.headers.get(INDEX_HEADER))
                return response

        _session_class = IndexedSession
    return _session_class


def new_client(url: str, verify: Any, token: str = "") -> Any:
    """An hvac client that uses only what it is given.

    No ambient token (hvac would read ``VAULT_TOKEN`` or ``~/.vault-token``
    when none is passed), no client certificate, proxy or CA bundle from the
    environment, and no redirects followed.  Its requests carry the hook's
    latest write index (see ``_WriteIndex``).
    """
    import hvac

    session = _indexed_session_class()()
    session.trust_env = False
    session.verify = verify  # hvac prefers a session's own verify over its argument
    return hvac.Client(
        url=url,
        token=token or "",
        cert=(),
        verify=verify,
        timeout=(CONNECT_TIMEOUT, REQUEST_TIMEOUT),
        allow_redirects=False,
        session=session,
    )


def caught_up(action: Callable[[], Any]) -> Any:
    """Run ``action``, retrying briefly while a standby has not caught up with this hook's writes.

    Vault answers 412 (Vault Enterprise) or 429 (OpenBao) to a request whose
    ``X-Vault-Index`` it has not reached yet.  Without an index sent, a 429 is
    plain rate limiting and is not retried here.
    """
    import hvac.exceptions as hvac_errors

    deadline = time.monotonic() + CATCH_UP_SECONDS
    delay = 0.02
    while True:
        sent_index = write_index.value is not None
        try:
            return action()
        except (hvac_errors.RateLimitExceeded, hvac_errors.PreconditionFailed):
            if not sent_index:
                raise
            if time.monotonic() + delay > deadline:  # a standby cut off from the active node: try another
                raise VaultUnreachable("Vault has not caught up with this hook's writes") from None
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def urls_of(config: Dict[str, Any]) -> List[str]:
    """The Vault URLs to try, in order: ``vault_urls`` if given, else ``vault_url``."""
    urls: Sequence[str] = config.get("vault_urls") or [config["vault_url"]]
    return list(dict.fromkeys(u for u in urls if u))


class VaultSession:
    """Reads and writes of one hook, made with one AppRole login."""

    def __init__(self, config: Dict[str, Any]) -> None:
        self._urls = urls_of(config)
        self._at = 0  # the URL in use: the first that served this hook
        self._role_id = config["role_id"]
        self._secret_id = config["secret_id"]
        self._verify = config.get("vault_ca") or True
        self._client: Any = None
        self.logins = 0

    @property
    def url(self) -> str:
        """The Vault URL this session uses now."""
        return self._urls[self._at]

    def _login(self) -> Any:
        with translate_errors("logging in to Vault", login=True):
            client = new_client(self.url, self._verify)
            answer = caught_up(lambda: client.auth.approle.login(role_id=self._role_id, secret_id=self._secret_id))
            if not ((checked_answer(answer, "logging in to Vault") or {}).get("auth") or {}).get("client_token"):
                raise VaultNotReady("Vault's login answer held no token")
        self.logins += 1
        if self.logins > 1:  # the first login of a hook is routine; log only the extra ones
            hookenv.log("vault-kv: logged in to Vault again (login {} of this hook)".format(self.logins))
        self._client = client
        return client

    def _call(self, doing: str, path: str, action: Callable[[Any], Any]) -> Any:
        """Run one request at the first Vault URL that can serve it.

        A server that cannot serve (down, sealed, no active node, behind on
        this hook's writes, a standby answering with a redirect) passes the
        request to the next published URL, with a login there; kv version 1
        writes replace the whole secret, so sending one again is safe.  The
        answer is checked here (``checked_answer``), so a redirect is one of
        those servers.
        """
        what = "{} {}".format(doing, path)

        def checked(client: Any) -> Any:
            return checked_answer(action(client), what)

        failure: Optional[VaultUnreachable] = None
        for _ in self._urls:
            try:
                return self._call_here(doing, path, checked)
            except VaultUnreachable as error:
                failure = failure or error
                if len(self._urls) == 1:
                    break
                hookenv.log(
                    "vault-kv: {} cannot serve ({}); trying the next Vault unit".format(self.url, error),
                    level=hookenv.INFO,
                )
                self._at = (self._at + 1) % len(self._urls)
                self._client = None
        assert failure is not None
        raise failure

    def _call_here(self, doing: str, path: str, action: Callable[[Any], Any]) -> Any:
        """Run one request at the current URL, logging in first if needed and once more on a 403."""
        import hvac.exceptions as hvac_errors

        fresh_login = self._client is None
        client = self._client or self._login()
        what = "{} {}".format(doing, path)
        try:
            with translate_errors(what):
                return caught_up(lambda: action(client))
        except hvac_errors.Forbidden:
            if fresh_login:  # a token this new has not expired: the policy says no
                raise VaultNotReady("Vault's policy for this unit does not grant {} (yet)".format(what)) from None
            hookenv.log(
                "vault-kv: 403 while {}; token expired? logging in again once".format(what), level=hookenv.DEBUG
            )
        client = self._login()
        try:
            with translate_errors(what):
                return caught_up(lambda: action(client))
        except hvac_errors.Forbidden:
            raise VaultNotReady("Vault's policy for this unit does not grant {} (yet)".format(what)) from None

    def read(self, path: str) -> Optional[Dict[str, Any]]:
        """The data at ``path``, or None if nothing is stored there.

        A 404 with an error ("no handler for route": the backend is not
        mounted) is not "nothing stored": it raises, so that no caller takes
        an unavailable backend for an empty one.
        """

        def get(client: Any) -> Any:
            import hvac.exceptions as hvac_errors

            try:
                return client.adapter.get("/v1/" + path)
            except hvac_errors.InvalidPath as error:
                if getattr(error, "errors", None):  # "no handler for route": not mounted
                    raise VaultNotReady("the backend of {} is not available (not mounted?)".format(path)) from None
                return None

        response = self._call("reading", path, get)
        if not response:
            return None
        data = response.get("data")
        return dict(data) if isinstance(data, dict) else None

    def write(self, path: str, data: Dict[str, Any]) -> None:
        """Replace the secret at ``path`` with ``data`` (kv version 1 semantics)."""
        self._call("writing", path, lambda client: client.write_data(path, data=data))

    def list(self, path: str) -> List[str]:
        """The names under ``path`` (folders end with ``/``); empty when there are none."""
        response = self._call("listing", path, lambda client: client.list(path))
        keys = ((response or {}).get("data") or {}).get("keys") if isinstance(response, dict) else None
        return [k for k in keys if isinstance(k, str)] if isinstance(keys, list) else []

    def delete(self, path: str) -> None:
        """Remove the secret at ``path``."""
        self._call("deleting", path, lambda client: client.delete(path))


_sessions: Dict[Tuple[Tuple[str, ...], str, str, Any], VaultSession] = {}


def session_for(config: Dict[str, Any]) -> VaultSession:
    """The hook's session for these credentials (created on first use)."""
    key = (tuple(urls_of(config)), config["role_id"], config["secret_id"], config.get("vault_ca"))
    session = _sessions.get(key)
    if session is None:
        session = _sessions[key] = VaultSession(config)
    return session


def forget_sessions() -> None:
    """Drop cached sessions and the write index (a new hook, or a test starting afresh)."""
    _sessions.clear()
    write_index.forget()
