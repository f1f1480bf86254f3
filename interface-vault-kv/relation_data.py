"""Decoding of vault-kv relation fields, shared by both sides of the interface.

Relation data comes from another charm that we do not control.  Every field is
checked for type here so that a malformed databag reads as "not available yet"
(with a log line naming the field, never its value) instead of crashing a hook.
"""

import base64
import binascii
import json
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
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return raw


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
