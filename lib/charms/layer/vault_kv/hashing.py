"""Hashes of app data values, used to tell each unit what changed.

The hash is the md5 hexdigest of ``json.dumps(value, sort_keys=True)``, the
form every deployed unit of the old layer stored in ``kv/app-hashes``; keeping
it lets upgraded and not-yet-upgraded units agree about what changed.  md5 is
used for change detection only, so it is asked for with
``usedforsecurity=False``, which FIPS hosts require (Python 3.9+).
"""

import hashlib
import json
from typing import Any, Dict


def canonical_json(value: Any) -> str:
    """Serialise a value the way hashes and change checks compare it."""
    return json.dumps(value, sort_keys=True)


def _md5(data: bytes):
    try:
        return hashlib.md5(data, usedforsecurity=False)
    except TypeError:  # Python 3.8 has no usedforsecurity
        return hashlib.md5(data)


def value_hash(value: Any) -> str:
    """The md5 hexdigest of a value's canonical JSON."""
    return _md5(canonical_json(value).encode("utf-8")).hexdigest()


def fingerprint(value: Any) -> str:
    """A short, non-reversible fingerprint of a secret for logs and reports.

    sha256 truncated to 12 hex digits: enough to tell two keys apart, too
    short (and salted by a fixed label) to confirm a guessed value cheaply.
    """
    digest = hashlib.sha256(b"vault-kv-fingerprint:" + canonical_json(value).encode("utf-8"))
    return digest.hexdigest()[:12]


def hashes_digest(hashes: Dict[str, str]) -> str:
    """The digest of a unit's value hashes the leader publishes in leader data: equal digests, equal data."""
    return fingerprint(sorted(hashes.items()))
