"""Credentials for Vault: what the relation gave us, plus the unwrapped secret_id.

Vault hands each unit a role id and a *one-shot* response-wrapping token.
Unwrapping the token yields the secret_id; a second unwrap fails.  So the
secret_id is stored in the unit's local key-value store (unitdata) together
with the token it came from, and flushed at once: if the hook failed later and
the store were rolled back, the secret_id would be lost for good.

The token is recorded only after a successful unwrap, so a transient failure
while unwrapping is simply retried in the next hook.
"""

import os
import tempfile
from typing import Any, Dict, List, Optional, Tuple, Union

from charmhelpers.core import hookenv, unitdata
from charms.reactive import endpoint_from_name

from charms.layer.vault_kv import names
from charms.layer.vault_kv import options as vault_kv_options
from charms.layer.vault_kv.errors import VaultCredentialsInvalid, VaultMisconfigured, VaultNotReady, VaultUnreachable
from charms.layer.vault_kv.hashing import value_hash
from charms.layer.vault_kv.session import caught_up, checked_answer, new_client, translate_errors

ENDPOINT_NAME = "vault-kv"
KV_SECRET_ID = names.SECRET_ID
KV_TOKEN = names.TOKEN
KV_SEEN_TOKENS = names.SEEN_TOKENS
KV_SECRET_ROLE = names.SECRET_ROLE
KV_TOKEN_HASH = names.TOKEN_HASH
KV_BOOK = names.CREDENTIAL_BOOK


def vault_endpoint():
    """The vault-kv endpoint object, or None when the charm has no such relation."""
    return endpoint_from_name(ENDPOINT_NAME)


def ca_file_for(ca_pem: Optional[str]) -> Optional[str]:
    """Path of a file holding ``ca_pem``, for requests' ``verify``; None without a CA.

    The CA is public, but it decides whom we trust, so it is written
    atomically beside the charm and rewritten only when it changes.
    """
    if not ca_pem:
        return None
    directory = hookenv.charm_dir() or os.getcwd()
    path = os.path.join(directory, ".vault-kv-ca.pem")
    try:
        with open(path) as handle:
            if handle.read() == ca_pem:
                return path
    except OSError:
        pass
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".vault-kv-ca.")
    with os.fdopen(fd, "w") as handle:
        handle.write(ca_pem)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path


def unwrap_secret_id(vault_urls: Union[str, List[str]], token: str, verify) -> str:
    """Exchange a one-shot wrapping token for the secret_id it wraps.

    Tried at each Vault URL in turn while a server cannot serve: a refused
    connection or a sealed server has not spent the token.
    """
    doing = "unwrapping the one-shot token"
    failure: Optional[VaultUnreachable] = None
    for url in [vault_urls] if isinstance(vault_urls, str) else vault_urls:
        try:
            with translate_errors(doing, login=True):
                client = new_client(url, verify, token=token)
                response = checked_answer(caught_up(client.sys.unwrap), doing)
                secret_id = ((response or {}).get("data") or {}).get("secret_id")
        except VaultUnreachable as error:
            failure = failure or error
            continue
        if not isinstance(secret_id, str) or not secret_id:
            raise VaultCredentialsInvalid("the one-shot token did not wrap a secret_id")
        return secret_id
    raise failure or VaultNotReady("Vault has not published its URL yet")


def token_hash(token: str) -> str:
    """The hash ``charms.reactive.data_changed`` keeps for a token (md5 of its JSON form).

    The old layer recorded the last token it unwrapped this way, under
    ``KV_TOKEN_HASH``; kubernetes-control-plane 1.29 compares it with the
    token on the relation to decide whether to unwrap again.
    """
    return value_hash(token)


def credential_book() -> Dict[str, Dict[str, Optional[str]]]:
    """Every set of credentials this unit has held, by the unit_name Vault knows it under.

    Kept so that a unit going back to a name it had before (a refresh back to
    the previous build, or forward again) can log in again: the vault charm's
    code issues a secret_id only for a new AppRole or on refresh-secrets, and
    its ``set_role_id`` blanks the unit's answers under its other name.  (As
    deployed, with hvac<0.12.0, it issues one to every request each time its
    handler runs; the book is then simply not needed.)
    """
    return dict(unitdata.kv().get(KV_BOOK) or {})


def remember_credentials(unit_name: str, role_id: str, secret_id: str, token: Optional[str]) -> None:
    """Record working credentials in the book and make them the current ones.

    The current ones are also kept under the keys the old layer used
    (``KV_SECRET_ID`` and the token's ``data_changed`` hash), which is what
    kubernetes-control-plane 1.29 takes over.  Flushed at once: if the hook
    failed later and the store were rolled back, a secret_id unwrapped from a
    one-shot token would be lost for good.
    """
    kv = unitdata.kv()
    book = credential_book()
    book[unit_name] = {"role_id": role_id, "secret_id": secret_id, "token": token}
    kv.set(KV_BOOK, book)
    kv.set(KV_SECRET_ID, secret_id)
    kv.set(KV_SECRET_ROLE, role_id)
    if token:
        kv.set(KV_TOKEN, token)
        kv.set(KV_TOKEN_HASH, token_hash(token))
    kv.flush()


def _known_credentials(unit_name: str, role_id: str, tokens: List[str]) -> Optional[Dict[str, Optional[str]]]:
    """Credentials held for ``role_id``: from the book, or as the old layer left them."""
    entry = credential_book().get(unit_name)
    if entry and entry.get("role_id") == role_id and entry.get("secret_id"):
        return entry
    kv = unitdata.kv()
    stored = kv.get(KV_SECRET_ID)
    if stored and kv.get(KV_SECRET_ROLE) == role_id:
        return {"role_id": role_id, "secret_id": stored, "token": kv.get(KV_TOKEN)}
    if stored and kv.get(KV_SECRET_ROLE) is None:
        # the old layer kept one secret_id and no role: it belongs to the name
        # whose published token it came from (the hash it kept says which)
        kept = kv.get(KV_TOKEN_HASH)
        if not kept or not tokens or any(token_hash(token) == kept for token in tokens):
            return {"role_id": role_id, "secret_id": stored, "token": kv.get(KV_TOKEN)}
    return None


def _already_used(token: str, known: Optional[Dict[str, Optional[str]]]) -> bool:
    kv = unitdata.kv()
    if token in (kv.get(KV_SEEN_TOKENS) or []) or token == kv.get(KV_TOKEN):
        return True
    if known is not None and token == known.get("token"):
        return True
    # a unit upgraded from the old layer: only the hash of its last token is kept
    return known is not None and kv.get(KV_TOKEN_HASH) == token_hash(token)


def current_secret_id(vault_url: Union[str, List[str]], unit_name: str, role_id: str, tokens: List[str], verify) -> str:
    """The secret_id for ``role_id``, unwrapping any token Vault published that is new to us.

    Tokens already unwrapped, or found spent, are remembered so a steady-state
    hook makes no Vault request here at all.  A secret_id is used only for the
    AppRole it was issued for: after a switch to a new AppRole the unit waits
    for that role's token instead of failing to log in.
    """
    kv = unitdata.kv()
    known = _known_credentials(unit_name, role_id, tokens)
    seen = list(kv.get(KV_SEEN_TOKENS) or [])
    spent = False
    for token in tokens:
        if _already_used(token, known):
            # used or found spent in an earlier hook; without a secret_id for
            # it that is still the operator's refresh-secrets, not a wait
            spent = spent or known is None
            continue
        try:
            secret_id = unwrap_secret_id(vault_url, token, verify)
        except VaultCredentialsInvalid:
            # spent (by us in a lost hook, or never ours): remember it so it
            # is not tried again, and keep any secret_id we hold
            spent = True
            seen.append(token)
            kv.set(KV_SEEN_TOKENS, seen[-16:])
            kv.flush()
            continue
        seen.append(token)
        kv.set(KV_SEEN_TOKENS, seen[-16:])
        remember_credentials(unit_name, role_id, secret_id, token)
        hookenv.log("vault-kv: obtained a new secret_id from the one-shot token", level=hookenv.INFO)
        return secret_id
    if known is not None:
        if kv.get(KV_SECRET_ID) != known["secret_id"] or kv.get(KV_SECRET_ROLE) != role_id:
            remember_credentials(unit_name, role_id, known["secret_id"], known.get("token"))
        return known["secret_id"]
    if spent:
        # e.g. a hook died between unwrapping and storing: the vault charm's
        # code issues another secret_id for an existing AppRole only when an
        # operator refreshes secrets (as deployed, also whenever any request changes)
        raise VaultCredentialsInvalid(
            "the one-shot token Vault published for this unit was already used and no secret_id"
            " is stored for it; run the vault charm's refresh-secrets action"
        )
    if kv.get(KV_SECRET_ID):
        raise VaultNotReady("waiting for Vault to issue a secret_id for this unit's new AppRole")
    raise VaultNotReady("Vault has not published a token for this unit yet")


def granted_credentials(endpoint) -> Tuple[Optional[str], Optional[str], List[str]]:
    """(name, role id, tokens): the credentials to use, all for the same name.

    In this order:

    1. what Vault published under the name this unit asked to be known by;
    2. credentials this unit held before under that name (the credential
       book): the vault charm's code answers a name only for a new AppRole or
       on refresh-secrets, and ``set_role_id`` blanks a unit's answers under
       its other name, so a unit going back to a name it had (a refresh back,
       or forward again after a refresh-secrets while rolled back) may find
       no answer for it on the relation, only the other name's;
    3. what Vault published under the Juju unit name, for providers that
       ignore ``unit_name`` (and, during a move, the legacy role: the move
       then waits for the new name's answer).
    """
    requested = endpoint.requested_unit_name
    role_id = endpoint.role_id_for(requested)
    if role_id:
        return requested, role_id, endpoint.tokens_for(requested)
    entry = credential_book().get(requested) or {}
    if entry.get("role_id") and entry.get("secret_id"):
        return requested, entry["role_id"], []
    for name in endpoint.unit_names:
        role_id = endpoint.role_id_for(name) if name != requested else None
        if role_id:
            return name, role_id, endpoint.tokens_for(name)
    return None, None, []


def published_urls(endpoint) -> List[str]:
    """Every vault unit's URL the relation carries (``vault_urls``), else the one ``vault_url``."""
    return list(getattr(endpoint, "vault_urls", None) or filter(None, [endpoint.vault_url]))


def ca_pem_of(endpoint) -> Optional[str]:
    """The CA PEM text the relation carries (``vault_ca_pem``; ``vault_ca`` is bytes)."""
    if endpoint is None:
        return None
    pem = getattr(endpoint, "vault_ca_pem", None)
    if pem is None:
        pem = getattr(endpoint, "vault_ca", None)
    if isinstance(pem, bytes):
        pem = pem.decode("ascii", "replace")
    return pem or None


def get_vault_config(backend_format: Optional[str] = None, **_ignored: Any) -> Dict[str, Optional[str]]:
    """The settings needed to reach this application's backend in Vault.

    Keys: ``vault_url``, ``secret_backend``, ``role_id``, ``secret_id`` (as
    charms expect today), ``vault_ca`` (path of the CA file, or None) and
    ``vault_urls`` (every vault unit's URL, ``vault_url`` first).
    ``backend_format`` (as the old layer accepted) names the backend with
    another template than the layer option; other keywords are ignored.

    Raises VaultNotReady while the relation is incomplete, and
    VaultCredentialsInvalid when the only token Vault gave us is spent and no
    secret_id is stored.
    """
    # the charm's own option first: a misconfiguration the operator must fix is
    # what the unit shows, not the wait for Vault that would hide it
    secret_backend = vault_kv_options.secret_backend_name(backend_format)
    endpoint = vault_endpoint()
    if endpoint is None or not endpoint.is_joined:
        raise VaultNotReady("the vault-kv relation is not joined")
    vault_urls = published_urls(endpoint)
    name, role_id, tokens = granted_credentials(endpoint)
    if not vault_urls:
        raise VaultNotReady("Vault has not published its URL yet")
    if not role_id:
        raise VaultNotReady("Vault has not granted this unit access yet")
    ca_pem = ca_pem_of(endpoint)
    if ca_pem and any(url.lower().startswith("http://") for url in vault_urls):
        raise VaultMisconfigured(
            "Vault published a CA but an http:// URL; credentials are not sent in clear:"
            " configure the vault charm to serve https"
        )
    verify = ca_file_for(ca_pem)
    secret_id = current_secret_id(vault_urls, name, role_id, tokens, True if verify is None else verify)
    return {
        "vault_url": vault_urls[0],
        "vault_urls": vault_urls,
        "secret_backend": secret_backend,
        "role_id": role_id,
        "secret_id": secret_id,
        "vault_ca": verify,
    }
