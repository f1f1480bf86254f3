"""kube-apiserver's encryption at rest, as it stores and reads Secrets with its EncryptionConfiguration.

The judge of every scenario: can each apiserver read every Secret stored so
far, with the file it was last started with?  Modelled on k8s.io/apiserver
(storage/value/encrypt/aes, and the prefix transformers of
storage/value), written here in our own words:

- a write uses the first provider's first key; an ``aescbc`` key named N
  stores ``k8s:enc:aescbc:v1:N:`` + a 16-byte random IV + AES-256-CBC of the
  PKCS#7-padded object; ``identity`` stores the object as it is;
- a read tries the providers in order and, within ``aescbc``, every key
  whose whole prefix the stored bytes start with, going on to the next after
  an error (a bad padding); ``identity`` refuses bytes that carry the
  ``k8s:enc:`` prefix; a Secret stored under a name no key has is unreadable;
- AES-CBC is not authenticated: the wrong key under the right name fails the
  padding check about 255 times in 256 and otherwise "decrypts" to other
  bytes.  The harness keeps what it stored, so such a read counts as a
  corrupted read, never as a success.

Keys never leave this module: failures name units, Secret numbers and key
names, never key material.
"""

import base64
import os
from typing import Any, Dict, List, Optional, Tuple

import yaml
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

ENC_PREFIX = b"k8s:enc:"
# (provider, [(key name, key bytes)]) in the order of the file
Providers = List[Tuple[str, List[Tuple[str, bytes]]]]


class UnreadableConfig(ValueError):
    """The file an apiserver was started with is not a usable EncryptionConfiguration."""


def parse(config_bytes: bytes) -> Providers:
    """The providers for ``secrets`` in an EncryptionConfig/EncryptionConfiguration file."""
    try:
        config = yaml.safe_load(config_bytes)
        resources = config["resources"]
        entry = next(r for r in resources if "secrets" in r.get("resources", []))
        providers: Providers = []
        for provider in entry["providers"]:
            if "aescbc" in provider:
                keys = [(k["name"], base64.b64decode(k["secret"])) for k in provider["aescbc"]["keys"]]
                if any(len(secret) not in (16, 24, 32) for _, secret in keys):
                    raise UnreadableConfig("an aescbc key of a size AES does not take")
                providers.append(("aescbc", keys))
            elif "identity" in provider:
                providers.append(("identity", []))
            else:
                raise UnreadableConfig("a provider this model does not know: {}".format(sorted(provider)))
        return providers
    except UnreadableConfig:
        raise
    except Exception as error:
        raise UnreadableConfig("not an EncryptionConfiguration ({})".format(type(error).__name__)) from None


def config_bytes(*keys: Tuple[str, str]) -> bytes:
    """An EncryptionConfiguration for ``secrets``: aescbc with the (name, Vault value) keys in order, then identity."""
    body = {
        "kind": "EncryptionConfiguration",
        "apiVersion": "apiserver.config.k8s.io/v1",
        "resources": [
            {
                "resources": ["secrets"],
                "providers": [
                    {
                        "aescbc": {
                            "keys": [
                                {"name": name, "secret": base64.b64encode(value.encode()).decode()}
                                for name, value in keys
                            ]
                        }
                    },
                    {"identity": {}},
                ],
            }
        ],
    }
    return yaml.safe_dump(body).encode()


def _prefix(name: str) -> bytes:
    return b"k8s:enc:aescbc:v1:" + name.encode("utf-8") + b":"


def encrypt(providers: Providers, plain: bytes) -> bytes:
    """What the apiserver writes to etcd for ``plain`` with these providers."""
    kind, keys = providers[0]
    if kind == "identity":
        return plain
    name, secret = keys[0]
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(secret), modes.CBC(iv)).encryptor()
    return _prefix(name) + iv + encryptor.update(padded) + encryptor.finalize()


def decrypt(providers: Providers, stored: bytes) -> Optional[bytes]:
    """What the apiserver reads back from ``stored``, or None when it cannot read it."""
    for kind, keys in providers:
        if kind == "identity":
            if not stored.startswith(ENC_PREFIX):
                return stored
            continue
        for name, secret in keys:
            prefix = _prefix(name)
            if not stored.startswith(prefix):
                continue
            body = stored[len(prefix) :]
            if len(body) < 32 or len(body) % 16:
                continue
            decryptor = Cipher(algorithms.AES(secret), modes.CBC(body[:16])).decryptor()
            padded = decryptor.update(body[16:]) + decryptor.finalize()
            unpadder = padding.PKCS7(128).unpadder()
            try:
                return unpadder.update(padded) + unpadder.finalize()
            except ValueError:  # bad padding: the next key, the next provider
                continue
    return None


class Etcd:
    """An in-memory store of Secrets, for the unit tests of this model (the suites use a real etcd: apiservers)."""

    def __init__(self) -> None:
        self.entries: List[Dict[str, Any]] = []

    def store(self, providers: Providers, by: str) -> int:
        plain = b'{"kind":"Secret","data":{"n":"' + base64.b64encode(os.urandom(24)) + b'"}}'
        self.entries.append({"stored": encrypt(providers, plain), "plain": plain, "by": by})
        return len(self.entries) - 1

    def rewrite(self, providers: Providers, by: str) -> None:
        """The operator's rewrite: every Secret read through one apiserver and stored again."""
        for number, entry in enumerate(self.entries):
            plain = decrypt(providers, entry["stored"])
            if plain != entry["plain"]:
                raise AssertionError("rewrite through {}: Secret {} is unreadable or corrupted".format(by, number))
            entry["stored"] = encrypt(providers, plain)
            entry["by"] = by

    def stored_under(self) -> Dict[str, int]:
        """How many Secrets are stored under each key name ("identity" for plain ones)."""
        counts: Dict[str, int] = {}
        for entry in self.entries:
            stored = entry["stored"]
            name = stored.split(b":")[4].decode() if stored.startswith(b"k8s:enc:aescbc:v1:") else "identity"
            counts[name] = counts.get(name, 0) + 1
        return counts

    def failures(self, providers: Providers, start: int = 0) -> Tuple[List[int], List[int]]:
        """(unreadable, corrupted) Secret numbers, from ``start`` on, for an apiserver running with ``providers``."""
        unreadable, corrupted = [], []
        for number, entry in enumerate(self.entries[start:], start):
            plain = decrypt(providers, entry["stored"])
            if plain is None:
                unreadable.append(number)
            elif plain != entry["plain"]:
                corrupted.append(number)
        return unreadable, corrupted
