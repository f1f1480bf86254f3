"""How many stored objects are under which encryption key, read from etcd as kube-apiserver reaches it.

The rotation may drop the old key from the files only once no stored Secret
needs it.  Only etcd can say that: kube-apiserver keeps each object at
``{prefix}/{resource}/{namespace}/{name}`` (prefix ``/registry`` unless
``--etcd-prefix`` says otherwise), and an object encrypted with an ``aescbc``
key named N starts with ``k8s:enc:aescbc:v1:N:``.  Kubernetes' own
documentation checks encryption the same way (``etcdctl get``).

etcd is reached as the unit's kube-apiserver reaches it, from the arguments
it runs with (the kube-apiserver snap keeps them in
``/var/snap/kube-apiserver/current/args``, the layer option
``apiserver-args-path``): ``--etcd-servers``, ``--etcd-cafile``,
``--etcd-certfile``, ``--etcd-keyfile`` and ``--etcd-prefix``.  The reading
goes through etcd's v3 JSON gateway (``/v3/kv/range``) in pages at one
revision, so a census is one consistent view however many objects there are.

Only key names, counts and ``namespace/name`` ever leave this module: values
are looked at for their prefix and dropped.
"""

import base64
import shlex
import time
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

#: where the kube-apiserver snap keeps the arguments kube-apiserver runs with
DEFAULT_ARGS_PATH = "/var/snap/kube-apiserver/current/args"
PAGE_SIZE = 500
#: how many ``namespace/name`` an answer or a log shows of the objects not yet under the write key
SHOWN = 5
TIMEOUT = 10

ENCRYPTED = b"k8s:enc:"
AESCBC = b"k8s:enc:aescbc:v1:"


class EtcdUnavailable(Exception):
    """etcd cannot be read: its address is not known, it does not answer, or it refuses the certificates.

    The message says which and where (never a value); the caller shows it.
    """


class EtcdAccess(NamedTuple):
    """How kube-apiserver reaches etcd: endpoints, TLS files, key prefix."""

    servers: Tuple[str, ...]
    ca_file: Optional[str]
    cert_file: Optional[str]
    key_file: Optional[str]
    prefix: str


class Census(NamedTuple):
    """What etcd holds of the encrypted resources, at one revision."""

    write_key: str  #: the key name every object should be stored under
    total: int
    under_write_key: int
    not_under: List[str]  #: ``namespace/name`` (``resource/namespace/name`` beyond Secrets) of the others
    stored_under: Dict[str, int]  #: per key name ("identity" for objects stored as they are)

    @property
    def remaining(self) -> int:
        return self.total - self.under_write_key

    @property
    def clean(self) -> bool:
        return self.remaining == 0

    def progress(self) -> str:
        """``412 of 415 Secrets under key2``."""
        return "{} of {} Secrets under {}".format(self.under_write_key, self.total, self.write_key)

    def first_missing(self) -> str:
        shown = ", ".join(self.not_under[:SHOWN])
        more = self.remaining - min(self.remaining, SHOWN)
        return shown + (" and {} more".format(more) if more else "")


def read_apiserver_args(path: str) -> Dict[str, str]:
    """``{name: value}`` of the ``--name=value`` (or ``--name value``) arguments in the snap's args file."""
    try:
        with open(path) as handle:
            text = handle.read()
    except FileNotFoundError:
        raise EtcdUnavailable("kube-apiserver's arguments are not at {}".format(path)) from None
    except OSError as error:
        raise EtcdUnavailable("kube-apiserver's arguments at {} cannot be read ({})".format(path, error.strerror))
    try:
        words = shlex.split(text, comments=True)
    except ValueError:
        raise EtcdUnavailable("kube-apiserver's arguments at {} cannot be parsed".format(path)) from None
    found: Dict[str, str] = {}
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        if not word.startswith("--"):
            continue
        name, sep, value = word[2:].partition("=")
        if not sep and index < len(words) and not words[index].startswith("--"):
            value = words[index]
            index += 1
        found[name] = value
    return found


def access_from_args(path: str) -> EtcdAccess:
    """How this unit's kube-apiserver reaches etcd, from its arguments; EtcdUnavailable when they do not say."""
    args = read_apiserver_args(path)
    servers = tuple(server.strip().rstrip("/") for server in args.get("etcd-servers", "").split(",") if server.strip())
    if not servers:
        raise EtcdUnavailable("kube-apiserver's arguments ({}) name no etcd server (--etcd-servers)".format(path))
    prefix = "/" + (args.get("etcd-prefix") or "/registry").strip("/")
    return EtcdAccess(
        servers,
        args.get("etcd-cafile") or None,
        args.get("etcd-certfile") or None,
        args.get("etcd-keyfile") or None,
        prefix,
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class _Reader:
    """etcd's JSON gateway over HTTPS with the apiserver's client certificate, trying each server in turn."""

    def __init__(self, access: EtcdAccess) -> None:
        import requests

        self.access = access
        self.session = requests.Session()
        self.session.trust_env = False  # the apiserver's CA, not REQUESTS_CA_BUNDLE; no proxy between
        self.session.verify = access.ca_file or True
        if access.cert_file and access.key_file:
            self.session.cert = (access.cert_file, access.key_file)
        self.requests_made = 0

    def range(self, body: Dict[str, object]) -> Dict[str, object]:
        import requests

        reasons = []
        for server in self.access.servers:
            self.requests_made += 1
            try:
                response = self.session.post(server + "/v3/kv/range", json=body, timeout=TIMEOUT)
            except requests.exceptions.SSLError:
                reasons.append("{}: TLS failed (check --etcd-cafile, --etcd-certfile, --etcd-keyfile)".format(server))
                continue
            except requests.RequestException as error:
                reasons.append("{}: {}".format(server, type(error).__name__))
                continue
            if response.status_code != 200:
                reasons.append("{}: HTTP {}".format(server, response.status_code))
                continue
            try:
                answer = response.json()
            except ValueError:
                reasons.append("{}: not a JSON answer".format(server))
                continue
            if not isinstance(answer, dict):
                reasons.append("{}: not an etcd answer".format(server))
                continue
            return answer
        raise EtcdUnavailable("etcd could not be read ({})".format("; ".join(reasons)))

    def close(self) -> None:
        self.session.close()


def _scan(reader: _Reader, prefix: bytes, page_size: int) -> Iterator[Tuple[bytes, bytes]]:
    """(key, value) of every key under ``prefix``, page by page, all at the first page's revision."""
    end = prefix[:-1] + bytes([prefix[-1] + 1])
    start, revision = prefix, None
    while True:
        body: Dict[str, object] = {"key": _b64(start), "range_end": _b64(end), "limit": page_size}
        if revision is not None:
            body["revision"] = revision
        answer = reader.range(body)
        try:
            if revision is None:
                revision = str(answer["header"]["revision"])  # type: ignore[index]
            kvs = answer.get("kvs") or []
            items = [(base64.b64decode(item["key"]), base64.b64decode(item.get("value", ""))) for item in kvs]  # type: ignore[union-attr]
        except (KeyError, TypeError, ValueError):
            raise EtcdUnavailable("etcd's answer has not the expected form") from None
        yield from items
        if not answer.get("more") or not items:
            return
        start = items[-1][0] + b"\x00"


def stored_key_name(value: bytes) -> str:
    """The name of the key a stored value is encrypted with; "identity" when stored as it is."""
    if value.startswith(AESCBC):
        return value[len(AESCBC) :].split(b":", 1)[0].decode("utf-8", "replace")
    if value.startswith(ENCRYPTED):
        # another provider (aesgcm, secretbox, kms): k8s:enc:<provider>:v1:<name>:
        parts = value.split(b":", 5)
        return parts[4].decode("utf-8", "replace") if len(parts) > 5 else "unknown"
    return "identity"


def take(
    write_key: str,
    resources: Sequence[str] = ("secrets",),
    access: Optional[EtcdAccess] = None,
    args_path: str = DEFAULT_ARGS_PATH,
    page_size: int = PAGE_SIZE,
) -> Census:
    """Count, in etcd, the objects of ``resources`` stored under ``write_key`` and those that are not.

    Raises EtcdUnavailable (with the reason) when etcd cannot be read.
    """
    access = access or access_from_args(args_path)
    reader = _Reader(access)
    total, under, not_under, per_name = 0, 0, [], {}  # type: Tuple[int, int, List[str], Dict[str, int]]
    wanted = AESCBC + write_key.encode("utf-8") + b":"
    try:
        for resource in resources:
            prefix = "{}/{}/".format(access.prefix, resource).encode("utf-8")
            for key, value in _scan(reader, prefix, page_size):
                total += 1
                name = stored_key_name(value)
                per_name[name] = per_name.get(name, 0) + 1
                if value.startswith(wanted):
                    under += 1
                else:
                    shown = key[len(prefix) :].decode("utf-8", "replace")
                    not_under.append(shown if resource == "secrets" else "{}/{}".format(resource, shown))
    finally:
        reader.close()
    return Census(write_key, total, under, not_under, per_name)


def timed(write_key: str, **kwargs) -> Tuple[Census, float]:
    """``take`` and the seconds it took (the benchmark prints them)."""
    started = time.monotonic()
    census = take(write_key, **kwargs)
    return census, time.monotonic() - started
