"""Every exception hvac and requests can raise, and JSON decoding errors, become a layer exception.

The list is taken from the libraries themselves at test time, so a new
exception type in a later hvac or requests is covered, or fails here.
"""

import inspect
import json

import hvac.exceptions
import pytest
import requests.exceptions

from charms.layer.vault_kv.errors import VaultCredentialsInvalid, VaultNotReady
from charms.layer.vault_kv.session import translate_errors

SECRET = "s.SECRET-TOKEN-VALUE"


def exception_types():
    found = []
    for module in (hvac.exceptions, requests.exceptions):
        for _, kind in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(kind, Exception)
                and not issubclass(kind, Warning)
                and kind.__module__.startswith(module.__name__.split(".")[0])
            ):
                found.append(kind)
    return sorted(set(found), key=lambda k: (k.__module__, k.__name__))


def make(kind):
    """An instance whose text holds a secret, as a header error's would."""
    for args in ((SECRET,), (SECRET, SECRET, 0), ()):
        try:
            return kind(*args)
        except TypeError:
            continue
    raise AssertionError("cannot build {}".format(kind))


TYPES = exception_types() + [json.JSONDecodeError, ValueError, RecursionError, TypeError, KeyError]


def test_the_libraries_expose_the_types_we_expect_to_cover():
    names = {k.__name__ for k in TYPES}
    assert {"InvalidHeader", "ChunkedEncodingError", "TooManyRedirects", "VaultDown", "InvalidPath"} <= names
    assert len(TYPES) > 30


@pytest.mark.parametrize("kind", TYPES, ids=lambda k: k.__name__)
def test_each_type_becomes_a_layer_exception_without_the_secret(kind):
    error = make(kind)
    login = isinstance(error, hvac.exceptions.Forbidden)  # outside a login a 403 goes back to the caller
    with pytest.raises(VaultNotReady) as raised:
        with translate_errors("reading charm-x/kv/app", login=login):
            raise error
    assert SECRET not in str(raised.value)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    if login or isinstance(error, hvac.exceptions.InvalidRequest):
        assert isinstance(raised.value, VaultCredentialsInvalid) or not login


def test_outside_a_login_a_403_is_left_to_the_caller_which_logs_in_again():
    with pytest.raises(hvac.exceptions.Forbidden):
        with translate_errors("reading charm-x/kv/app"):
            raise hvac.exceptions.Forbidden("permission denied")


@pytest.mark.parametrize(
    "error",
    [
        hvac.exceptions.InvalidRequest(
            "refused JSON input due to high complexity: exceeded maximum number of strings",
            errors=["refused JSON input due to high complexity: exceeded maximum number of strings"],
        ),
        hvac.exceptions.UnexpectedError("request body too large", errors=["http: request body too large"]),
    ],
    ids=["json-strings", "body-size"],
)
def test_a_request_refused_for_its_size_needs_the_operator_and_names_the_limit(error):
    from charms.layer.vault_kv.errors import VaultOperatorActionNeeded

    with pytest.raises(VaultOperatorActionNeeded, match="max_request"):
        with translate_errors("writing charm-x/kv/app"):
            raise error


def test_raft_refusing_an_entry_for_its_size_needs_the_operator_and_names_the_limit():
    """OpenBao on raft answers 500 "value being too large": not transient, not another server's to try."""
    from charms.layer.vault_kv.errors import VaultOperatorActionNeeded, VaultUnreachable

    text = "failed to write: put failed due to value being too large; got 1100106 bytes, max: 1048576 bytes"
    with pytest.raises(VaultOperatorActionNeeded, match="max_entry_size") as raised:
        with translate_errors("writing charm-x/kv/app"):
            raise hvac.exceptions.InternalServerError(text, errors=["1 error occurred:\n\t* " + text])
    assert not isinstance(raised.value, VaultUnreachable)
    # any other 500 stays transient: another vault unit may serve
    with pytest.raises(VaultUnreachable):
        with translate_errors("writing charm-x/kv/app"):
            raise hvac.exceptions.InternalServerError("local node not active", errors=["local node not active"])
