"""What can be checked of the functional suite without a Juju controller (part of `make test`).

Run with the functional virtualenv (zaza installed): every YAML file parses,
every configure step and test class named in tests.yaml imports, and every
local charm path in the bundles is one `make functional-charms` produces.
"""

import importlib
from pathlib import Path

import pytest
import yaml

from tests.functional.build import OUTPUTS

HERE = Path(__file__).resolve().parent
BUNDLES = sorted((HERE / "bundles").glob("*.yaml"))


def load_config():
    return yaml.safe_load((HERE / "tests.yaml").read_text())


def named_entries(value):
    """Dotted names from a tests.yaml list (plain names, or {alias: [names]} maps)."""
    for item in value or []:
        if isinstance(item, dict):
            for names in item.values():
                yield from named_entries(names)
        else:
            yield item


@pytest.mark.parametrize("path", [HERE / "tests.yaml"] + BUNDLES, ids=lambda p: p.name)
def test_yaml_parses(path):
    assert isinstance(yaml.safe_load(path.read_text()), dict)


def test_every_bundle_named_in_tests_yaml_exists():
    config = load_config()
    names = set(named_entries(config["gate_bundles"])) | set(named_entries(config.get("smoke_bundles")))
    assert names and names == {p.stem for p in BUNDLES}


def test_every_configure_step_and_test_class_imports():
    config = load_config()
    names = list(named_entries(config["configure"])) + list(named_entries(config["tests"]))
    assert names
    for dotted in names:
        module_name, attribute = dotted.rsplit(".", 1)
        module = importlib.import_module(module_name)
        assert callable(getattr(module, attribute)), dotted


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: p.name)
def test_local_charm_paths_are_build_outputs(bundle):
    data = yaml.safe_load(bundle.read_text())
    local = [app["charm"] for app in data["applications"].values() if app["charm"].startswith((".", "/"))]
    assert local, "the bundle deploys the consumer from a local build"
    for charm in local:
        assert (bundle.parent / charm).resolve() in {p.resolve() for p in OUTPUTS.values()}, charm


def test_target_deploy_status_names_deployed_applications():
    config = load_config()
    for bundle in BUNDLES:
        apps = yaml.safe_load(bundle.read_text())["applications"]
        assert set(config["target_deploy_status"]) <= set(apps)
