"""zaza configure step: initialise and unseal Vault, then authorise the vault charm.

The vault charm waits, blocked, until an operator initialises Vault, unseals
every unit and runs its ``authorize-charm`` action with a token; this does
the same with hvac and zaza's model API.  The unseal key and root token are
kept in ``build/functional/vault-init.json`` (mode 0600, git-ignored) for the
tests to read Vault with; they are never printed.
"""

import json
import os
from pathlib import Path

import hvac
import zaza.model

REPO = Path(__file__).resolve().parents[2]
SECRETS_FILE = REPO / "build" / "functional" / "vault-init.json"
TARGET_STATES = {
    "vault": {"workload-status": "active", "workload-status-message-prefix": "Unit is ready"},
    "kubernetes-control-plane": {"workload-status": "active", "workload-status-message-prefix": "key "},
}


def vault_urls():
    return ["http://{}:8200".format(ip) for ip in zaza.model.get_app_ips("vault")]


def _sys(client):
    """hvac >= 0.7 groups these calls under client.sys; zaza pins an older hvac."""
    return client.sys if hasattr(client, "sys") else client


def _unseal(client, key: str) -> None:
    if hasattr(client, "sys"):
        client.sys.submit_unseal_key(key)
    else:
        client.unseal(key)


def _create_token(client, ttl: str):
    if hasattr(client, "auth") and hasattr(client.auth, "token"):
        return client.auth.token.create(ttl=ttl)
    return client.create_token(ttl=ttl)


def save_secrets(data) -> None:
    SECRETS_FILE.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(SECRETS_FILE) + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle)
    os.replace(str(SECRETS_FILE) + ".tmp", str(SECRETS_FILE))


def load_secrets():
    return json.loads(SECRETS_FILE.read_text())


def root_client() -> hvac.Client:
    """A root-token client on the first vault unit, for the tests' ground truth."""
    return hvac.Client(url=vault_urls()[0], token=load_secrets()["root_token"])


def initialize_and_authorize_vault() -> None:
    urls = vault_urls()
    first = hvac.Client(url=urls[0])
    if not _sys(first).is_initialized():
        result = _sys(first).initialize(secret_shares=1, secret_threshold=1)
        save_secrets({"unseal_key": result["keys"][0], "root_token": result["root_token"]})
    secrets = load_secrets()
    for url in urls:
        client = hvac.Client(url=url)
        if _sys(client).is_sealed():
            _unseal(client, secrets["unseal_key"])
    token = _create_token(hvac.Client(url=urls[0], token=secrets["root_token"]), ttl="10m")
    zaza.model.run_action_on_leader("vault", "authorize-charm", action_params={"token": token["auth"]["client_token"]})
    zaza.model.wait_for_application_states(states=TARGET_STATES)
