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

import hvac
import hvac.exceptions as hvac_errors
import requests
from charmhelpers.core import hookenv

from charms.layer.vault_kv_errors import VaultCredentialsInvalid, VaultNotReady

REQUEST_TIMEOUT = 15

_TRANSIENT = (
    (hvac_errors.VaultDown, "Vault is sealed or in standby without a leader"),
    (hvac_errors.VaultNotInitialized, "Vault is not initialised"),
    (hvac_errors.BadGateway, "Vault answered 502 Bad Gateway"),
    (hvac_errors.InternalServerError, "Vault answered with an internal error"),
    (hvac_errors.RateLimitExceeded, "Vault is rate-limiting requests"),
    (hvac_errors.UnexpectedError, "Vault answered with an unexpected error"),
)


@contextmanager
def translate_errors(doing: str, login: bool = False) -> Iterator[None]:
    """Turn hvac and requests failures met while ``doing`` into layer exceptions.

    With ``login`` set, 400 and 403 mean the credentials themselves were
    refused (``VaultCredentialsInvalid``).  Otherwise a 403 is left to the
    caller, which may log in again.
    """
    try:
        yield
    except requests.exceptions.SSLError as error:
        raise VaultNotReady("TLS verification of Vault's certificate failed while {}".format(doing)) from error
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as error:
        raise VaultNotReady("cannot connect to Vault while {}".format(doing)) from error
    except hvac_errors.InvalidRequest as error:
        if login:
            raise VaultCredentialsInvalid("Vault refused this unit's credentials while {}".format(doing)) from error
        raise VaultNotReady("Vault rejected the request while {}".format(doing)) from error
    except hvac_errors.Forbidden as error:
        if login:
            raise VaultCredentialsInvalid("Vault refused this unit's credentials while {}".format(doing)) from error
        raise
    except hvac_errors.InvalidPath as error:
        raise VaultNotReady("Vault has no such path while {} (backend not mounted yet?)".format(doing)) from error
    except tuple(kind for kind, _ in _TRANSIENT) as error:
        reason = next(text for kind, text in _TRANSIENT if isinstance(error, kind))
        raise VaultNotReady("{} while {}".format(reason, doing)) from error


class VaultSession:
    """Reads and writes of one hook, made with one AppRole login."""

    def __init__(self, config: Dict[str, Any]) -> None:
        self._url = config["vault_url"]
        self._role_id = config["role_id"]
        self._secret_id = config["secret_id"]
        self._verify = config.get("vault_ca") or True
        self._client: Optional[hvac.Client] = None
        self.logins = 0

    def _login(self) -> hvac.Client:
        client = hvac.Client(url=self._url, verify=self._verify, timeout=REQUEST_TIMEOUT)
        with translate_errors("logging in to Vault", login=True):
            client.auth.approle.login(role_id=self._role_id, secret_id=self._secret_id)
        self.logins += 1
        hookenv.log("vault-kv: logged in to Vault (login {} of this hook)".format(self.logins), level=hookenv.DEBUG)
        self._client = client
        return client

    def _call(self, doing: str, path: str, action: Callable[[hvac.Client], Any]) -> Any:
        """Run one request, logging in first if needed and once more on a 403."""
        fresh_login = self._client is None
        client = self._client or self._login()
        what = "{} {}".format(doing, path)
        try:
            with translate_errors(what):
                return action(client)
        except hvac_errors.Forbidden as error:
            if fresh_login:  # a token this new has not expired: the policy says no
                raise VaultNotReady("Vault's policy for this unit does not grant {} (yet)".format(what)) from error
            hookenv.log(
                "vault-kv: 403 while {}; token expired? logging in again once".format(what), level=hookenv.DEBUG
            )
        client = self._login()
        try:
            with translate_errors(what):
                return action(client)
        except hvac_errors.Forbidden as error:
            raise VaultNotReady("Vault's policy for this unit does not grant {} (yet)".format(what)) from error

    def read(self, path: str) -> Optional[Dict[str, Any]]:
        """The data at ``path``, or None if nothing is stored there."""
        response = self._call("reading", path, lambda client: client.read(path))
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
