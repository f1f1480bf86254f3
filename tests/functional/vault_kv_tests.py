"""zaza functional tests of layer:vault-kv on a real Juju model.

They check on the deployed units what the simulator scenarios check in
``make test``: the layer is ready, the key sits in charm-{model-uuid}-{app},
every unit's EncryptionConfiguration holds that key, and refreshing from a
build with the legacy backend format keeps the key.
"""

import base64
import json
import unittest

import yaml
import zaza.model

from tests.functional.build import OUTPUTS
from tests.functional.vault_kv_setup import root_client

APP = "kubernetes-control-plane"
LEGACY_BACKEND = "charm-" + APP
ENCRYPTION_CONFIG = "/var/snap/kube-apiserver/common/encryption/encryption_config.yaml"
FLAG_QUERY = (
    "python3 -c \"import json, os, sqlite3; db = sqlite3.connect(os.environ['CHARM_DIR'] + '/.unit-state.db');"
    " print(json.dumps(sorted(k[len('reactive.states.'):] for (k,) in"
    ' db.execute(\\"SELECT key FROM kv WHERE key LIKE \'reactive.states.%\'\\"))))"'
)


def model_uuid() -> str:
    async def _uuid():
        model = await zaza.model.get_model()
        return model.info.uuid

    return zaza.model.sync_wrapper(_uuid)()


def unit_names():
    return [unit.entity_id for unit in zaza.model.get_units(APP)]


def unit_flags(unit: str):
    result = zaza.model.run_on_unit(unit, FLAG_QUERY)
    return json.loads(result["Stdout"])


def file_key(unit: str):
    """The Vault value behind the unit's first key (kubernetes-control-plane's file holds its base64)."""
    document = yaml.safe_load(zaza.model.file_contents(unit, ENCRYPTION_CONFIG))
    entry = document["resources"][0]
    return base64.b64decode(entry["providers"][0]["aescbc"]["keys"][0]["secret"]).decode("utf-8")


def vault_key(backend: str):
    response = root_client().read("{}/kv/app".format(backend))
    return ((response or {}).get("data") or {}).get("encryption_key")


class VaultKVReadyTest(unittest.TestCase):
    """Every unit is ready and holds the one key kept in this model's backend."""

    def test_ready_on_every_unit(self):
        for unit in unit_names():
            flags = unit_flags(unit)
            self.assertIn("layer.vault-kv.ready", flags, unit)
            self.assertIn("kubernetes-control-plane.secure-storage.created", flags, unit)

    def test_key_in_model_scoped_backend_and_on_every_unit(self):
        backend = "charm-{}-{}".format(model_uuid(), APP)
        key = vault_key(backend) or vault_key(LEGACY_BACKEND)
        self.assertIsNotNone(key)
        for unit in unit_names():
            self.assertEqual(file_key(unit), key, unit)  # compared, never printed


class LegacyUpgradeTest(unittest.TestCase):
    """juju refresh from a charm-{app} build to the current build keeps the key."""

    @classmethod
    def setUpClass(cls):
        cls.before = vault_key(LEGACY_BACKEND)
        if cls.before is None or vault_key("charm-{}-{}".format(model_uuid(), APP)) is not None:
            raise unittest.SkipTest("not a deployment of the legacy build")

    def test_refresh_keeps_the_key(self):
        files_before = {unit: file_key(unit) for unit in unit_names()}
        zaza.model.upgrade_charm(APP, path=str(OUTPUTS["current"]))
        zaza.model.block_until_all_units_idle()
        zaza.model.wait_for_application_states(
            states={APP: {"workload-status": "active", "workload-status-message-prefix": "key "}}
        )
        backend = "charm-{}-{}".format(model_uuid(), APP)
        self.assertEqual(vault_key(backend), self.before)
        self.assertEqual(vault_key(LEGACY_BACKEND), self.before)  # left for a rollback
        for unit in unit_names():
            self.assertEqual(file_key(unit), files_before[unit], unit)
            flags = unit_flags(unit)
            self.assertIn("layer.vault-kv.migration.done", flags, unit)
            self.assertNotIn("layer.vault-kv.app-kv.changed.encryption_key", flags, unit)
