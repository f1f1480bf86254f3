"""A deployment for tests, the benchmark and the demo: the simulator, OpenBao and the test charms.

One "vault" model holds the simulated vault application, which configures a
real OpenBao; consumer models relate to it across models, as clusters that
share one Vault do.
"""

import base64
import os
import tempfile
from pathlib import Path
from typing import Dict, Optional

from charms.layer.vault_kv.hashing import fingerprint
from charms.layer.vault_kv.secure_storage import encryption_config as vault_kv_encryption_config
from tests.jujusim.controller import Controller
from tests.support.apiservers import ApiServers
from tests.support.openbao import OpenBaoServer
from tests.support.vault_provider import EVERY_RUN

APP = "kubernetes-control-plane"
ENCRYPTION_CONFIG = "/var/snap/kube-apiserver/common/encryption/encryption_config.yaml"


class Cluster:
    """Vault in its own model, and any number of kubernetes-control-plane models."""

    def __init__(
        self, bao: OpenBaoServer, charms: Dict[str, Path], workdir: Optional[str] = None, vault_units: int = 1
    ) -> None:
        """``bao`` may be an OpenBaoRaftCluster: each vault unit then publishes its own node's URL."""
        self.bao = bao
        self.charms = charms
        self.workdir = workdir or tempfile.mkdtemp(prefix="jujusim-")
        self.controller = Controller(self.workdir)
        # every kubernetes-control-plane apiserver stores and reads Secrets after every hook (issue 17)
        self.apiservers = ApiServers(
            self.controller, self.workdir.rstrip("/") + "-apiservers"
        )  # beside: snapshots copy the workdir
        self.controller.after_every_hook.append(self.apiservers)
        self.controller.hook_env["JUJUSIM_VAULT_URL"] = bao.url
        self.vault_model = self.controller.add_model("vault")
        config = {
            "bao-url": bao.url,
            "bao-urls": " ".join(getattr(bao, "urls", [])),
            "bao-token": getattr(bao, "root_token", "root"),
            "bao-ca-file": bao.ca_file or "",
            "ssl-ca": "",
            # when the vault application issues secret_ids: the vault charm as deployed unless told
            "secret-ids": os.environ.get("VAULT_SIM_SECRET_IDS") or EVERY_RUN,
        }
        if bao.ca_file:  # the vault charm's ssl-ca option holds base64 PEM
            config["ssl-ca"] = base64.b64encode(Path(bao.ca_file).read_bytes()).decode("ascii")
        self.controller.deploy(self.vault_model, "vault", str(charms["vault"]), vault_units, config=config)
        self.relations: Dict[str, str] = {}

    def add_model(self, name: str, build: str = "current", units: int = 3, relate: bool = True) -> str:
        model = self.controller.add_model(name)
        self.apiservers.prepare(model)  # its etcd starts while the units deploy
        self.controller.deploy(model, APP, str(self.charms[build]), units)
        if relate:
            self.relate(model)
        return model

    def close(self) -> None:
        """Stop what the cluster started besides OpenBao: each model's etcd, the Kubernetes API server."""
        self.apiservers.close()

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def relate(self, model: str) -> str:
        number = self.controller.relate(model, APP, "vault-kv", self.vault_model, "vault", "secrets")
        self.relations[model] = number
        return number

    def unrelate(self, model: str) -> None:
        self.controller.remove_relation(self.relations.pop(model))

    def upgrade(self, model: str, build: str = "current") -> None:
        self.controller.upgrade(model, APP, str(self.charms[build]))

    def settle(self, **kwargs) -> int:
        return self.controller.settle(**kwargs)

    def update_status(self, model: str) -> None:
        """Juju's periodic update-status on every unit of ``model`` (statuses settle in it)."""
        for unit in self.units(model):
            self.controller.queue(model, unit, "update-status")
        self.settle()

    def make_next_hooks_ask_vault(self, model: str) -> None:
        """Forget each unit's record of its last answer from Vault, as if the relation had changed.

        A hook in which nothing changed does not ask Vault (issue 19); a test of
        what a hook does when it must ask and Vault cannot answer starts here.
        """
        for unit in self.units(model):
            self.controller.forget_unitdata(model, unit, ["layer.vault-kv.last-asked"])

    def refresh_secrets(self) -> None:
        """The vault charm's refresh-secrets action: a new secret_id for every unit."""
        self._refreshes = getattr(self, "_refreshes", 0) + 1
        self.controller.set_config(self.vault_model, "vault", **{"refresh-secrets": self._refreshes})

    def vault_issues_secret_ids(self, mode: str) -> None:
        """When the vault application issues a secret_id: ``vault_provider.EVERY_RUN`` (the vault charm as
        deployed; the default, or ``VAULT_SIM_SECRET_IDS`` in the environment) or ``NEW_APPROLE`` (what its
        code intends).  Takes effect from the vault unit's next hook (a config-changed, queued here)."""
        self.controller.set_config(self.vault_model, "vault", **{"secret-ids": mode})

    # -- what a test checks -------------------------------------------------------

    def units(self, model: str):
        return self.controller.units(model, APP)

    def file_key(self, model: str, unit: str) -> Optional[str]:
        """The key in the unit's EncryptionConfiguration file (None if no file)."""
        data = self.controller.unit_file(model, unit, ENCRYPTION_CONFIG)
        if data is None:
            return None
        with tempfile.NamedTemporaryFile("wb", suffix=".yaml") as handle:
            handle.write(data)
            handle.flush()
            return vault_kv_encryption_config.read_key(handle.name)

    def file_fingerprints(self, model: str) -> Dict[str, Optional[str]]:
        return {
            u: (fingerprint(k) if k else None) for u, k in ((u, self.file_key(model, u)) for u in self.units(model))
        }

    def _vault_key(self, backend: str) -> Optional[str]:
        data = self.bao.read("{}/kv/app".format(backend))
        return (data or {}).get("encryption_key")

    def vault_fingerprint(self, backend: str) -> Optional[str]:
        """Fingerprint of the key in ``backend`` (tests compare these, so a failure never prints a key)."""
        key = self._vault_key(backend)
        return fingerprint(key) if key else None

    def key_leaked(self, model: str, backend: str) -> bool:
        """Whether the key appears in any unit's log or status message."""
        key = self._vault_key(backend)
        if not key:
            return False
        return any(
            key in self.controller.log(model, u) or key in self.controller.status(model, u)["message"]
            for u in self.units(model)
        )

    def key_changes(self, model: str, unit: str) -> int:
        """How many apiserver restarts the charm made for app-kv.changed.encryption_key."""
        return self.controller.unitdata(model, unit).get("kcp-consumer.apiserver-restarts") or 0

    def flags(self, model: str, unit: str):
        return self.controller.flags(model, unit)

    def new_backend(self, model: str) -> str:
        return "charm-{}-{}".format(model, APP)
