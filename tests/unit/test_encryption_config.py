"""The encryption configuration file: kubernetes-control-plane's form, both file forms read, safe writes."""

import base64
import os
import stat

import pytest
import yaml

from charms.layer.vault_kv.secure_storage import encryption_config as ec

# Vault values, as kubernetes-control-plane generates them (32 letters and digits) ...
KEY_A = "A" * 16 + "a1" * 8
KEY_B = "B" * 16 + "b2" * 8
KEY_C = "C" * 16 + "c3" * 8


def secret(value):
    """... and the file's ``secret`` for each: base64 of the value's bytes."""
    return base64.b64encode(value.encode()).decode()


def write(path, document):
    path.write_text(yaml.safe_dump(document))


def config(kind, api, providers):
    return {"kind": kind, "apiVersion": api, "resources": [{"resources": ["secrets"], "providers": providers}]}


def aescbc(*keys):
    return {"aescbc": {"keys": [{"name": name, "secret": secret(value)} for name, value in keys]}}


def charm_file_text(value):
    """The file kubernetes-control-plane 1.24-1.28 writes (_write_encryption_config), rebuilt here."""
    document = {
        "kind": "EncryptionConfig",
        "apiVersion": "v1",
        "resources": [{"resources": ["secrets"], "providers": [aescbc(("key1", value)), {"identity": {}}]}],
    }
    return yaml.safe_dump(document)


def test_generated_keys_are_32_letters_and_digits_as_the_charm_makes_them():
    first, second = ec.generate_key(), ec.generate_key()
    assert len(first) == 32 and first.isalnum() and first.isascii() and first != second
    assert ec.valid_key(first)


def test_first_write_is_byte_identical_to_the_charms_file(tmp_path):
    path = tmp_path / "c.yaml"
    assert ec.write_key(str(path), KEY_A) is True
    assert path.read_text() == charm_file_text(KEY_A)
    assert (
        len(
            base64.b64decode(
                yaml.safe_load(path.read_text())["resources"][0]["providers"][0]["aescbc"]["keys"][0]["secret"]
            )
        )
        == 32
    )


def test_the_charms_file_reads_back_as_the_vault_value_and_is_not_rewritten(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(charm_file_text(KEY_A))
    assert ec.read_key(str(path)) == KEY_A
    assert ec.write_key(str(path), KEY_A) is False
    assert path.read_text() == charm_file_text(KEY_A)


def test_identity_only_file_of_an_unencrypted_start_becomes_the_charms_form(tmp_path):
    path = tmp_path / "c.yaml"
    write(path, config("EncryptionConfig", "v1", [{"identity": {}}]))
    assert ec.read_key(str(path)) is None
    assert ec.write_key(str(path), KEY_A) is True
    assert path.read_text() == charm_file_text(KEY_A)


def test_missing_file_reads_as_no_key(tmp_path):
    assert ec.read_key(str(tmp_path / "none.yaml")) is None


@pytest.mark.parametrize(
    "kind, api", [("EncryptionConfiguration", "apiserver.config.k8s.io/v1"), ("EncryptionConfig", "v1")]
)
def test_both_file_forms_are_read(tmp_path, kind, api):
    path = tmp_path / "c.yaml"
    write(path, config(kind, api, [aescbc(("key1", KEY_A)), {"identity": {}}]))
    assert ec.read_key(str(path)) == KEY_A


def test_rotation_in_progress_reads_the_first_providers_first_key(tmp_path):
    path = tmp_path / "c.yaml"
    write(path, config(ec.KIND, ec.API_VERSION, [aescbc(("key2", KEY_B)), aescbc(("key1", KEY_A)), {"identity": {}}]))
    assert ec.read_key(str(path)) == KEY_B


def test_identity_first_means_no_key(tmp_path):
    path = tmp_path / "c.yaml"
    write(path, config(ec.KIND, ec.API_VERSION, [{"identity": {}}, aescbc(("key1", KEY_A))]))
    assert ec.read_key(str(path)) is None


@pytest.mark.parametrize("text", ["kind: Pod\napiVersion: v1\n", "- a list\n", ": : not yaml :"])
def test_unusable_files_are_a_clear_error(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ec.EncryptionConfigError):
        ec.read_key(str(path))


def test_written_file_is_0600_charm_form_aescbc_then_identity(tmp_path):
    path = tmp_path / "dir" / "c.yaml"
    assert ec.write_key(str(path), KEY_A) is True
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    document = yaml.safe_load(path.read_text())
    assert document["kind"] == "EncryptionConfig" and document["apiVersion"] == "v1"
    providers = document["resources"][0]["providers"]
    assert providers == [aescbc(("key1", KEY_A)), {"identity": {}}]
    assert document["resources"][0]["resources"] == ["secrets"]
    assert not [p for p in os.listdir(path.parent) if p.startswith(".encryption-config.")]  # no temp left


def test_same_key_leaves_the_file_untouched(tmp_path):
    path = tmp_path / "c.yaml"
    write(path, config("EncryptionConfig", "v1", [aescbc(("mine", KEY_A)), {"identity": {}}]))
    before = path.read_bytes()
    assert ec.write_key(str(path), KEY_A) is False
    assert path.read_bytes() == before


def test_rewriting_keeps_the_other_keys_of_a_rotation(tmp_path):
    path = tmp_path / "c.yaml"
    write(
        path,
        config(
            ec.KIND,
            ec.API_VERSION,
            [aescbc(("key1", KEY_A), ("key2", KEY_B)), aescbc(("old", KEY_C)), {"identity": {}}],
        ),
    )
    assert ec.write_key(str(path), KEY_B) is True
    providers = yaml.safe_load(path.read_text())["resources"][0]["providers"]
    assert providers[0] == aescbc(("key2", KEY_B), ("key1", KEY_A))
    assert providers[1] == aescbc(("old", KEY_C))
    assert providers[2] == {"identity": {}}


def test_a_new_key_gets_a_fresh_name(tmp_path):
    path = tmp_path / "c.yaml"
    write(path, config(ec.KIND, ec.API_VERSION, [aescbc(("key1", KEY_A)), {"identity": {}}]))
    ec.write_key(str(path), KEY_B)
    keys = yaml.safe_load(path.read_text())["resources"][0]["providers"][0]["aescbc"]["keys"]
    assert [k["name"] for k in keys] == ["key2", "key1"]


def test_invalid_key_is_refused_without_echoing_it(tmp_path):
    with pytest.raises(ValueError) as raised:
        ec.write_key(str(tmp_path / "c.yaml"), "too-short-SECRETISH")
    assert "SECRETISH" not in str(raised.value)
    assert not (tmp_path / "c.yaml").exists()


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "c.yaml"
    write(path, config(ec.KIND, ec.API_VERSION, [aescbc(("key1", KEY_A)), {"identity": {}}]))
    before = path.read_bytes()

    def broken_dump(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ec.yaml, "safe_dump", broken_dump)
    with pytest.raises(OSError):
        ec.write_key(str(path), KEY_B)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["c.yaml"]


def test_a_file_that_exists_but_cannot_be_parsed_is_never_replaced(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("kind: EncryptionConfig\napiVersion: v1\nresources: [unclosed\n")
    before = path.read_bytes()
    with pytest.raises(ec.EncryptionConfigError):
        ec.write_key(str(path), KEY_A)
    assert path.read_bytes() == before


def test_a_block_scalar_secret_with_a_trailing_newline_reads_as_the_charm_reads_it(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "kind: EncryptionConfig\napiVersion: v1\nresources:\n- resources: [secrets]\n  providers:\n"
        "  - aescbc:\n      keys:\n      - name: key1\n        secret: |\n          {}\n  - identity: {{}}\n".format(
            secret(KEY_A)
        )
    )
    assert ec.read_key(str(path)) == KEY_A
    assert ec.write_key(str(path), KEY_A) is False  # recognised as the key in use, not rewritten


def test_every_other_resource_entry_and_its_keys_are_kept(tmp_path):
    path = tmp_path / "c.yaml"
    configmaps = {"resources": ["configmaps"], "providers": [aescbc(("cm1", KEY_C)), {"identity": {}}]}
    document = config("EncryptionConfig", "v1", [aescbc(("key1", KEY_A)), {"identity": {}}])
    document["resources"].append(configmaps)
    write(path, document)
    assert ec.write_key(str(path), KEY_B) is True
    written = yaml.safe_load(path.read_text())
    assert written["resources"][1] == configmaps
    assert written["resources"][0]["providers"][0] == aescbc(("key2", KEY_B), ("key1", KEY_A))


def test_temp_files_a_killed_hook_left_are_removed_by_the_next_write(tmp_path):
    path = tmp_path / "c.yaml"
    stale = tmp_path / ".encryption-config.abc123"
    stale.write_text("half-written key")
    ec.write_key(str(path), KEY_A)
    assert not stale.exists()
    stale.write_text("half-written key")
    assert ec.write_key(str(path), KEY_A) is False  # also when nothing else changes
    assert not stale.exists()


def test_an_existing_0644_file_is_made_0600(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(charm_file_text(KEY_A))
    os.chmod(path, 0o644)
    assert ec.write_key(str(path), KEY_A) is False
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
