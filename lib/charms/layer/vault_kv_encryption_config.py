"""The kube-apiserver EncryptionConfiguration file that holds the encryption-at-rest key.

The key in Vault is the exact ``secret`` string of an ``aescbc`` key (base64
of 32 random bytes).  This module reads it back from the file (both the
current ``apiserver.config.k8s.io/v1`` ``EncryptionConfiguration`` and the old
``v1`` ``EncryptionConfig``), and writes it as the first key of the first
provider, keeping any other keys and providers already there: during a key
rotation the file lists several, and dropping one would make the Secrets
encrypted with it unreadable.

Files are written 0600 by an atomic rename, so the apiserver never reads a
half-written file and no other user can read the key.
"""

import base64
import binascii
import os
import secrets
import tempfile
from typing import Any, Dict, List, Optional

import yaml

API_VERSION = "apiserver.config.k8s.io/v1"
KIND = "EncryptionConfiguration"
LEGACY = {("v1", "EncryptionConfig")}
KEY_PROVIDERS = ("aescbc", "aesgcm", "secretbox")


class EncryptionConfigError(Exception):
    """The file exists but is not an encryption configuration we can use."""


def generate_key() -> str:
    """A new aescbc key: base64 of 32 random bytes."""
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def valid_key(value: Any) -> bool:
    """Whether ``value`` is usable as an aescbc secret (base64 of 16, 24 or 32 bytes)."""
    if not isinstance(value, str):
        return False
    try:
        return len(base64.b64decode(value, validate=True)) in (16, 24, 32)
    except (binascii.Error, ValueError):
        return False


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
    form = (document.get("apiVersion"), document.get("kind"))
    if form != (API_VERSION, KIND) and form not in LEGACY:
        raise EncryptionConfigError("{} is neither an EncryptionConfiguration nor an EncryptionConfig".format(path))
    if not isinstance(document.get("resources"), list):
        raise EncryptionConfigError("{} has no resources list".format(path))
    return document


def _secrets_entry(document: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The resources entry that covers Secrets (the first one, if none names them)."""
    entries = [e for e in document["resources"] if isinstance(e, dict)]
    for entry in entries:
        if "secrets" in (entry.get("resources") or []):
            return entry
    return entries[0] if entries else None


def _keys_of(provider: Any) -> Optional[List[Dict[str, Any]]]:
    if not isinstance(provider, dict):
        return None
    for kind in KEY_PROVIDERS:
        body = provider.get(kind)
        if isinstance(body, dict) and isinstance(body.get("keys"), list):
            return body["keys"]
    return None


def read_key(path: str) -> Optional[str]:
    """The key the apiserver encrypts with: the first provider's first key, or None.

    None when there is no file, or when the first provider holds no key
    (``identity`` first means nothing is encrypted).
    """
    document = _load(path)
    if document is None:
        return None
    entry = _secrets_entry(document)
    providers = (entry or {}).get("providers") or []
    keys = _keys_of(providers[0]) if providers else None
    if not keys or not isinstance(keys[0], dict):
        return None
    secret = keys[0].get("secret")
    if not valid_key(secret):
        raise EncryptionConfigError("{}: the first key is not a valid aescbc secret".format(path))
    return secret


def render(key: str, existing: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """An EncryptionConfiguration encrypting with ``key``, keeping what ``existing`` had."""
    others: List[Dict[str, Any]] = []
    tail: List[Any] = []
    name = None
    used = set()
    if existing is not None:
        entry = _secrets_entry(existing) or {}
        providers = list(entry.get("providers") or [])
        first_keys = _keys_of(providers[0]) if providers else None
        if first_keys is not None and "aescbc" in providers[0]:
            for item in first_keys:
                if not isinstance(item, dict):
                    continue
                used.add(item.get("name"))
                if item.get("secret") == key:
                    name = item.get("name")
                else:
                    others.append(item)
            providers = providers[1:]
        for provider in providers:
            keys = _keys_of(provider) or []
            used.update(k.get("name") for k in keys if isinstance(k, dict))
            for item in keys:
                if isinstance(item, dict) and item.get("secret") == key:
                    name = name or item.get("name")
            tail.append(provider)
    if name is None:
        number = 1
        while "key{}".format(number) in used:
            number += 1
        name = "key{}".format(number)
    if not any(isinstance(p, dict) and "identity" in p for p in tail):
        tail.append({"identity": {}})
    return {
        "kind": KIND,
        "apiVersion": API_VERSION,
        "resources": [
            {
                "resources": ["secrets"],
                "providers": [{"aescbc": {"keys": [{"name": name, "secret": key}] + others}}] + tail,
            }
        ],
    }


def write_key(path: str, key: str) -> bool:
    """Make ``key`` the key the apiserver encrypts with; True if the file changed.

    Raises ValueError for a value that is not a usable key (never echoing it).
    """
    if not valid_key(key):
        raise ValueError("the encryption key is not base64 of a 16, 24 or 32 byte secret")
    try:
        existing = _load(path)
    except EncryptionConfigError:
        existing = None  # unusable file: replaced, its content cannot be trusted
    if existing is not None:
        try:
            if read_key(path) == key:
                return False  # already in use; an older file form is left as the apiserver reads it
        except EncryptionConfigError:
            existing = None
    document = render(key, existing)
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".encryption-config.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            yaml.safe_dump(document, handle, default_flow_style=False, sort_keys=False)
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
    return True
