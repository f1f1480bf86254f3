"""Decoding of vault-kv relation fields, shared by both sides of the interface.

Relation data comes from another charm that we do not control.  Every field is
checked for type here so that a malformed databag reads as "not available yet"
(with a log line naming the field, never its value) instead of crashing a hook.
"""

import base64
import binascii
import json
import urllib.parse
from typing import Any, Callable, Optional

try:  # charmhelpers is always present in a built charm; tests may stub it
    from charmhelpers.core import hookenv

    def _log(message: str) -> None:
        hookenv.log(message, level=hookenv.WARNING)

except ImportError:  # pragma: no cover - only outside a charm

    def _log(message: str) -> None:
        pass


def decode_json(raw: Optional[str]) -> Any:
    """Decode one raw relation value that the other side JSON-encoded.

    charms.reactive's ``to_publish`` writes JSON; older or hand-written peers
    may publish bare strings, which are returned unchanged.
    """
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str) or len(raw) > MAX_RAW_LENGTH:
        return None
    try:
        value = json.loads(raw)
    except RecursionError:
        return None
    except (TypeError, ValueError):
        return raw
    return value if _depth_ok(value) else None


MAX_RAW_LENGTH = 65536
MAX_DEPTH = 8


def _depth_ok(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` nests no deeper than any field of this interface needs."""
    if depth > MAX_DEPTH:
        return False
    if isinstance(value, dict):
        return all(_depth_ok(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return all(_depth_ok(v, depth + 1) for v in value)
    return True


def credential_string(field: str, value: Any) -> Optional[str]:
    """A role id or one-shot token: one line of printable, non-space ASCII, or None.

    Anything else would be sent as an HTTP header, where requests refuses it
    with an error whose text holds the value.
    """
    return expect(field, value, str, lambda v: 0 < len(v) <= 4096 and all(33 <= ord(c) < 127 for c in v))


def vault_url(value: Any) -> Optional[str]:
    """An http(s) URL with a host (and a valid port, if any), or None."""

    def usable(text: str) -> bool:
        if text != text.strip() or any(ord(c) < 33 or ord(c) == 127 for c in text):
            return False
        try:
            parts = urllib.parse.urlsplit(text)
            port = parts.port  # raises ValueError for a port that is not one
        except ValueError:
            return False
        if port == 0:
            return False
        return parts.scheme in ("http", "https") and bool(parts.hostname) and not parts.username

    return expect("vault_url", value, str, usable)


def expect(field: str, value: Any, kind: type, check: Optional[Callable[[Any], bool]] = None) -> Any:
    """Return ``value`` if it is of ``kind`` (and passes ``check``), else None.

    A missing value is None without a log line; a present value of the wrong
    type is logged by field name only, because values may be credentials.
    """
    if value is None:
        return None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        _log(
            "vault-kv: ignoring relation field {!r}: expected {}, got {}".format(
                field, kind.__name__, type(value).__name__
            )
        )
        return None
    if check is not None and not check(value):
        _log("vault-kv: ignoring relation field {!r}: malformed value".format(field))
        return None
    return value


def non_empty_string(field: str, value: Any) -> Optional[str]:
    """A non-empty string field, or None."""
    return expect(field, value, str, lambda v: bool(v.strip()))


def decode_ca_bytes(value: Any) -> Optional[bytes]:
    """Decode ``vault_ca`` (base64 of a PEM bundle) to the PEM bytes, or None.

    Whitespace inside the base64 is ignored: ``base64 ca.pem`` wraps its
    output in lines, and that is how operators set the vault charm's
    ``ssl-ca`` option.  A value that is not base64 of text holding a PEM
    certificate is dropped with a log line: using it would only make TLS
    fail later with a less helpful error.
    """
    encoded = non_empty_string("vault_ca", value)
    if encoded is None:
        return None
    try:
        pem = base64.b64decode("".join(encoded.split()), validate=True)
        text = pem.decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        _log("vault-kv: ignoring relation field 'vault_ca': not base64 of a PEM certificate")
        return None
    if "-----BEGIN CERTIFICATE-----" not in text:
        _log("vault-kv: ignoring relation field 'vault_ca': no PEM certificate in it")
        return None
    return pem


def decode_ca(value: Any) -> Optional[str]:
    """Decode ``vault_ca`` to PEM text, or None (see :func:`decode_ca_bytes`)."""
    pem = decode_ca_bytes(value)
    return None if pem is None else pem.decode("utf-8")


def encode_ca(pem: str) -> str:
    """Encode PEM text the way ``vault_ca`` is published (base64)."""
    return base64.b64encode(pem.encode("utf-8")).decode("ascii")
