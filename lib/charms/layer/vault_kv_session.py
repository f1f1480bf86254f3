"""One authenticated Vault session per hook.

The old layer logged in to Vault for every read and write.  A session here
logs in once, on first use, and reuses the token for every request of the
hook.  Tokens issued to vault-kv AppRoles live 60 seconds, so a long hook can
outlive one: a 403 is answered by one fresh login and one retry, and a second
403 means the policy really does not grant the path.

Every failure is translated into the layer's exceptions (see
``vault_kv_errors``) with a message that says what went wrong and where, and
never carries a credential or a stored value.
"""

from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from charmhelpers.core import hookenv

from charms.layer.vault_kv_errors import VaultCredentialsInvalid, VaultNotReady, VaultOperatorActionNeeded

REQUEST_TIMEOUT = 15

# hvac and requests are imported on first use: a charm whose Vault relation is
# optional (kubernetes-control-plane) pays nothing for them in hooks without it.
_TRANSIENT_REASONS = (
    ("VaultDown", "Vault is sealed or in standby without a leader"),
    ("VaultNotInitialized", "Vault is not initialised"),
    ("BadGateway", "Vault answered 502 Bad Gateway"),
    ("InternalServerError", "Vault answered with an internal error"),
    ("RateLimitExceeded", "Vault is rate-limiting requests"),
    ("UnexpectedError", "Vault answered with an unexpected error"),
)


def _transient():
    import hvac.exceptions as hvac_errors

    return tuple((getattr(hvac_errors, name), text) for name, text in _TRANSIENT_REASONS)


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
    except tuple(kind for kind, _ in transient) as error:
        reason = next(text for kind, text in transient if isinstance(error, kind))
        raise VaultNotReady("{} while {}".format(reason, doing)) from None
    except hvac_errors.VaultError as error:
        raise VaultNotReady("Vault answered {} while {}".format(type(error).__name__, doing)) from None
    except requests.exceptions.SSLError:
        raise VaultNotReady("TLS verification of Vault's certificate failed while {}".format(doing)) from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout):
        raise VaultNotReady("cannot connect to Vault while {}".format(doing)) from None
    except requests.exceptions.TooManyRedirects:
        raise VaultNotReady("Vault redirected too often while {}".format(doing)) from None
    except requests.exceptions.RequestException as error:
        raise VaultNotReady("the request failed ({}) while {}".format(type(error).__name__, doing)) from None
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as error:
        # a body that is not JSON, or JSON of an unexpected shape
        raise VaultNotReady("Vault's answer was not usable ({}) while {}".format(type(error).__name__, doing)) from None


def _refused_for_size(error: Exception) -> bool:
    """Whether Vault refused a request for its size or complexity (OpenBao: "high complexity")."""
    text = " ".join(str(e) for e in (getattr(error, "errors", None) or [])) + " " + str(error)
    text = text.lower()
    return any(words in text for words in ("complexity", "exceeded maximum", "too large", "request body"))


def checked_answer(answer: Any, doing: str) -> Optional[Dict[str, Any]]:
    """The JSON object Vault answered, or None for an empty success (204, 404 on read).

    hvac hands back the raw response when the body is not JSON, and for
    redirects, which are never followed: a redirect could take the token to
    another host.
    """
    if answer is None or isinstance(answer, dict):
        return answer
    status = getattr(answer, "status_code", None)
    if isinstance(status, int) and 300 <= status < 400:
        raise VaultNotReady("Vault answered with a redirect, not followed, while {}".format(doing))
    if status == 204:
        return None
    raise VaultNotReady("Vault's answer was not JSON while {}".format(doing))


def new_client(url: str, verify: Any, token: str = "") -> Any:
    """An hvac client that uses only what it is given.

    No ambient token (hvac would read ``VAULT_TOKEN`` or ``~/.vault-token``
    when none is passed), no client certificate, proxy or CA bundle from the
    environment, and no redirects followed.
    """
    import hvac
    import requests

    session = requests.Session()
    session.trust_env = False
    session.verify = verify  # hvac prefers a session's own verify over its argument
    return hvac.Client(
        url=url,
        token=token or "",
        cert=(),
        verify=verify,
        timeout=REQUEST_TIMEOUT,
        allow_redirects=False,
        session=session,
    )


class VaultSession:
    """Reads and writes of one hook, made with one AppRole login."""

    def __init__(self, config: Dict[str, Any]) -> None:
        self._url = config["vault_url"]
        self._role_id = config["role_id"]
        self._secret_id = config["secret_id"]
        self._verify = config.get("vault_ca") or True
        self._client: Any = None
        self.logins = 0

    def _login(self) -> Any:
        with translate_errors("logging in to Vault", login=True):
            client = new_client(self._url, self._verify)
            answer = client.auth.approle.login(role_id=self._role_id, secret_id=self._secret_id)
            if not ((checked_answer(answer, "logging in to Vault") or {}).get("auth") or {}).get("client_token"):
                raise VaultNotReady("Vault's login answer held no token")
        self.logins += 1
        if self.logins > 1:  # the first login of a hook is routine; log only the extra ones
            hookenv.log("vault-kv: logged in to Vault again (login {} of this hook)".format(self.logins))
        self._client = client
        return client

    def _call(self, doing: str, path: str, action: Callable[[Any], Any]) -> Any:
        """Run one request, logging in first if needed and once more on a 403."""
        import hvac.exceptions as hvac_errors

        fresh_login = self._client is None
        client = self._client or self._login()
        what = "{} {}".format(doing, path)
        try:
            with translate_errors(what):
                return action(client)
        except hvac_errors.Forbidden:
            if fresh_login:  # a token this new has not expired: the policy says no
                raise VaultNotReady("Vault's policy for this unit does not grant {} (yet)".format(what)) from None
            hookenv.log(
                "vault-kv: 403 while {}; token expired? logging in again once".format(what), level=hookenv.DEBUG
            )
        client = self._login()
        try:
            with translate_errors(what):
                return action(client)
        except hvac_errors.Forbidden:
            raise VaultNotReady("Vault's policy for this unit does not grant {} (yet)".format(what)) from None

    def read(self, path: str) -> Optional[Dict[str, Any]]:
        """The data at ``path``, or None if nothing is stored there.

        A 404 with an error ("no handler for route": the backend is not
        mounted) is not "nothing stored": it raises, so that no caller takes
        an unavailable backend for an empty one.
        """
        what = "reading " + path

        def get(client: Any) -> Any:
            import hvac.exceptions as hvac_errors

            try:
                return client.adapter.get("/v1/" + path)
            except hvac_errors.InvalidPath as error:
                if getattr(error, "errors", None):  # "no handler for route": not mounted
                    raise VaultNotReady("the backend of {} is not available (not mounted?)".format(path)) from None
                return None

        response = checked_answer(self._call("reading", path, get), what)
        if not response:
            return None
        data = response.get("data")
        return dict(data) if isinstance(data, dict) else None

    def write(self, path: str, data: Dict[str, Any]) -> None:
        """Replace the secret at ``path`` with ``data`` (kv version 1 semantics)."""
        answer = self._call("writing", path, lambda client: client.write_data(path, data=data))
        checked_answer(answer, "writing " + path)

    def list(self, path: str) -> List[str]:
        """The names under ``path`` (folders end with ``/``); empty when there are none."""
        response = checked_answer(self._call("listing", path, lambda client: client.list(path)), "listing " + path)
        keys = ((response or {}).get("data") or {}).get("keys") if isinstance(response, dict) else None
        return [k for k in keys if isinstance(k, str)] if isinstance(keys, list) else []

    def delete(self, path: str) -> None:
        """Remove the secret at ``path``."""
        checked_answer(self._call("deleting", path, lambda client: client.delete(path)), "deleting " + path)


_sessions: Dict[Tuple[str, str, str, Any], VaultSession] = {}


def session_for(config: Dict[str, Any]) -> VaultSession:
    """The hook's session for these credentials (created on first use)."""
    key = (config["vault_url"], config["role_id"], config["secret_id"], config.get("vault_ca"))
    session = _sessions.get(key)
    if session is None:
        session = _sessions[key] = VaultSession(config)
    return session


def forget_sessions() -> None:
    """Drop cached sessions (a new hook, or a test starting afresh)."""
    _sessions.clear()
