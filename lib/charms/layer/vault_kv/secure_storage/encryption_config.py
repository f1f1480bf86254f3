"""The kube-apiserver encryption configuration file, in kubernetes-control-plane's own form.

kubernetes-control-plane (reactive releases 1.24 to 1.28, and 1.29's takeover)
keeps in Vault's ``encryption_key`` a 32-character token of letters and
digits.  Its file holds the base64 of that token's UTF-8 bytes as the
``secret`` of an ``aescbc`` key named ``key1`` (32 bytes: AES-256), in an
``EncryptionConfig``/``v1`` document it writes with ``yaml.safe_dump``.  To
read the key back it takes the first provider's first key and base64-decodes
it.  This module uses exactly those forms, so that the charm's own handlers
and this layer's, running in the same hook, write byte-identical files and
never a second key.

Reading also accepts the current ``apiserver.config.k8s.io/v1``
``EncryptionConfiguration`` form.  A file that already lists other keys or
providers (a rotation done by hand) keeps them: dropping one would make the
Secrets encrypted with it unreadable.

Files are written 0600 by an atomic rename, so the apiserver never reads a
half-written file and no other user can read the key.
"""

import base64
import binascii
import os
import secrets
import string
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

API_VERSION = "v1"
KIND = "EncryptionConfig"
ACCEPTED_FORMS = {("v1", "EncryptionConfig"), ("apiserver.config.k8s.io/v1", "EncryptionConfiguration")}
KEY_PROVIDERS = ("aescbc", "aesgcm", "secretbox")
AES_KEY_SIZES = (16, 24, 32)
TOKEN_ALPHABET = string.ascii_letters + string.digits
TOKEN_LENGTH = 32
TEMP_PREFIX = ".encryption-config."


class EncryptionConfigError(Exception):
    """The file exists but is not an encryption configuration we can use."""


def generate_key() -> str:
    """A new Vault value: 32 random letters and digits, as kubernetes-control-plane generates."""
    return "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(TOKEN_LENGTH))


def valid_key(value: Any) -> bool:
    """Whether ``value`` (the Vault form) gives an AES key: a string of 16, 24 or 32 UTF-8 bytes."""
    return isinstance(value, str) and len(value.encode("utf-8")) in AES_KEY_SIZES


def file_secret(value: str) -> str:
    """The ``secret`` the file holds for a Vault value: base64 of its UTF-8 bytes."""
    return base64.b64encode(value.encode("utf-8")).decode("utf-8")


def vault_value(secret: Any) -> Optional[str]:
    """The Vault value a file ``secret`` stands for, or None when it is not one."""
    if not isinstance(secret, str):
        return None
    try:  # whitespace is allowed, as the charm's reader allows it (a YAML block scalar ends in a newline)
        value = base64.b64decode("".join(secret.split()), validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return value if valid_key(value) else None


def _load(path: str) -> Optional[Dict[str, Any]]:
    try:
        with open(path) as handle:
            document = yaml.safe_load(handle)
    except FileNotFoundError:
        return None
    except (OSError, yaml.YAMLError) as error:
        raise EncryptionConfigError("{} cannot be read: {}".format(path, type(error).__name__)) from None
    if not isinstance(document, dict):
        raise EncryptionConfigError("{} is not a YAML mapping".format(path))
    if (document.get("apiVersion"), document.get("kind")) not in ACCEPTED_FORMS:
        raise EncryptionConfigError("{} is neither an EncryptionConfig nor an EncryptionConfiguration".format(path))
    if not isinstance(document.get("resources"), list):
        raise EncryptionConfigError("{} has no resources list".format(path))
    return document


def _first_entry(document: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The first resources entry: the one kubernetes-control-plane reads and writes."""
    entries = document["resources"]
    return entries[0] if entries and isinstance(entries[0], dict) else None


def _keys_of(provider: Any) -> Optional[List[Dict[str, Any]]]:
    if not isinstance(provider, dict):
        return None
    for kind in KEY_PROVIDERS:
        body = provider.get(kind)
        if isinstance(body, dict) and isinstance(body.get("keys"), list):
            return body["keys"]
    return None


def encrypted_resources(path: str) -> List[str]:
    """The resources the file's first entry encrypts (kubernetes-control-plane: ``secrets``).

    ``secrets`` when the file cannot say (no file, an unreadable one): a
    census then still covers what kubernetes-control-plane encrypts.
    """
    try:
        document = _load(path)
    except EncryptionConfigError:
        document = None
    entry = _first_entry(document) if document else None
    resources = entry.get("resources") if entry else None
    if isinstance(resources, list) and resources and all(isinstance(r, str) and r for r in resources):
        return [str(r) for r in resources]
    return ["secrets"]


def read_key(path: str) -> Optional[str]:
    """The Vault value of the key the apiserver encrypts with, or None.

    None when there is no file, or when the first provider holds no key
    (``identity`` first: the file kubernetes-control-plane writes before Vault
    is related).  A key that does not decode to a Vault value is an error.
    """
    document = _load(path)
    if document is None:
        return None
    providers = (_first_entry(document) or {}).get("providers") or []
    keys = _keys_of(providers[0]) if providers else None
    if not keys or not isinstance(keys[0], dict):
        return None
    value = vault_value(keys[0].get("secret"))
    if value is None:
        raise EncryptionConfigError("{}: the first key is not a key this layer or the charm wrote".format(path))
    return value


def render(value: str, existing: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The document kubernetes-control-plane writes for ``value``, keeping everything else ``existing`` had.

    Only the first resources entry's first provider changes: ``value`` becomes
    its first key and the keys it had stay after it.  Every other entry
    (``configmaps``, say), provider and key is kept as it was.
    """
    secret = file_secret(value)
    entry: Dict[str, Any] = {"resources": ["secrets"], "providers": [{"identity": {}}]}
    others: List[Dict[str, Any]] = []
    rest: List[Any] = []
    document: Dict[str, Any] = {"kind": KIND, "apiVersion": API_VERSION}
    if existing is not None:
        document = {k: v for k, v in existing.items() if k != "resources"}
        first = _first_entry(existing)
        if first is not None:
            entry = dict(first)
        rest = list(existing["resources"][1:])
    providers = list(entry.get("providers") or [])
    keys = _keys_of(providers[0]) if providers else None
    if keys is not None and "aescbc" in providers[0]:
        providers = providers[1:]
        others = [item for item in keys if not (isinstance(item, dict) and item.get("secret") == secret)]
    used = {item.get("name") for item in others if isinstance(item, dict)}
    number = 1
    while "key{}".format(number) in used:
        number += 1
    if not any(isinstance(p, dict) and "identity" in p for p in providers):
        providers.append({"identity": {}})
    entry["providers"] = [{"aescbc": {"keys": [{"name": "key{}".format(number), "secret": secret}] + others}}]
    entry["providers"] += providers
    document["resources"] = [entry] + rest
    return document


def dump(document: Dict[str, Any]) -> str:
    """The file's text: ``yaml.safe_dump`` with its defaults, as the charm writes it."""
    return yaml.safe_dump(document)


def write_key(path: str, value: str) -> bool:
    """Make ``value`` (the Vault form) the key the apiserver encrypts with; True if the file changed.

    Raises ValueError for a value that is not a usable key (never echoing
    it), and EncryptionConfigError for a file that exists but cannot be read:
    it is what the apiserver uses, so it is never replaced blindly.  Temp
    files a killed hook left behind are removed, and the file is made 0600
    even when its content stays.
    """
    if not valid_key(value):
        raise ValueError("the encryption key is not a string of 16, 24 or 32 bytes")
    remove_stale_temp_files(path)
    existing = _load(path)
    if existing is not None and read_key(path) == value:
        _make_private(path)
        return False  # already in use: the apiserver keeps reading the same bytes
    write_atomically(path, dump(render(value, existing)))
    return True


def _make_private(path: str) -> None:
    """A file left as it is still ends up 0600 (an older one may have been written 0644)."""
    if os.stat(path).st_mode & 0o777 != 0o600:
        os.chmod(path, 0o600)


def remove_stale_temp_files(path: str) -> None:
    """Remove temp files of ours (which may hold a key) left by a hook that died mid-write."""
    directory = os.path.dirname(path) or "."
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if name.startswith(TEMP_PREFIX):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass


def write_atomically(path: str, text: str) -> None:
    """Replace ``path`` with ``text``, mode 0600, never leaving a partial or readable copy."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=TEMP_PREFIX)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# -- named key lists (coordinated rotation) ---------------------------------------------
#
# During a rotation every unit's file must name each key alike: the apiserver
# prefixes what it stores with the key's name and, reading, takes the key of
# that name.  The functions below place keys by (name, value) pairs.


def read_named_keys(path: str) -> Optional[List[Tuple[str, Optional[str]]]]:
    """The (name, Vault value) pairs of the first ``aescbc`` provider, in file order; None without a file.

    A key that is not one this layer or the charm could have written reads
    as (name, None): it is kept in place, never trusted.
    """
    document = _load(path)
    if document is None:
        return None
    providers = (_first_entry(document) or {}).get("providers") or []
    keys = providers[0].get("aescbc", {}).get("keys") if providers and isinstance(providers[0], dict) else None
    if not isinstance(keys, list):
        return []
    return [(str(item.get("name")), vault_value(item.get("secret"))) for item in keys if isinstance(item, dict)]


def render_named(
    keys: Sequence[Tuple[str, str]], drop: Sequence[str] = (), existing: Optional[Dict[str, Any]] = None
) -> Dict[str, Any]:
    """The document with ``keys`` (name, Vault value) first in the first ``aescbc`` provider, in that order.

    Of the keys ``existing`` had there, those whose name is taken by ``keys``
    or whose value is in ``drop`` go; every other key, provider and resources
    entry stays where it was (a key under a second name for the same value
    is kept: what the apiserver stored under that name stays readable).
    """
    first_value = keys[0][1]
    document = render(first_value, existing)  # shape, identity provider and the other entries as for one key
    entry = document["resources"][0]
    provider = entry["providers"][0]["aescbc"]
    before = (_first_entry(existing) or {}).get("providers") if existing is not None else None
    old_keys = _keys_of(before[0]) if before and "aescbc" in before[0] else None
    taken = {name for name, _ in keys}
    dropped = {file_secret(value) for value in drop}
    kept = [
        item
        for item in (old_keys or [])
        if not (isinstance(item, dict) and (item.get("name") in taken or item.get("secret") in dropped))
    ]
    provider["keys"] = [{"name": name, "secret": file_secret(value)} for name, value in keys] + kept
    return document


def write_named_keys(path: str, keys: Sequence[Tuple[str, str]], drop: Sequence[str] = ()) -> bool:
    """Make the file's first provider start with ``keys`` and hold nothing in ``drop``; True if it changed.

    The same guarantees as ``write_key``: atomic, 0600, a file that cannot be
    read is never replaced, values are checked and never echoed.
    """
    if not keys or not all(valid_key(value) for _, value in keys):
        raise ValueError("an encryption key is not a string of 16, 24 or 32 bytes")
    remove_stale_temp_files(path)
    existing = _load(path)
    document = render_named(keys, drop, existing)
    if document == existing:
        _make_private(path)
        return False  # already what the phase asks: the apiserver keeps reading the same file
    write_atomically(path, dump(document))
    return True
