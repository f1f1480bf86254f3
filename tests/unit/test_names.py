"""The names the layer owns (flags, unitdata and leader-data keys) are in one module, and README agrees."""

import re
from pathlib import Path

from charms.layer.vault_kv import names

ROOT = Path(__file__).resolve().parents[2]


def readme_flag_table():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Flags\n", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^\| `([^`]+)` \| (.+) \|$", section, flags=re.M))


def test_every_flag_is_in_the_readme_table_with_its_meaning_and_nothing_else_is():
    assert readme_flag_table() == names.FLAGS


def test_the_code_names_no_layer_flag_or_key_outside_the_names_module():
    """A literal "layer.vault-kv..." elsewhere would be a name the table and the upgrade story miss."""
    found = []
    for path in list((ROOT / "lib").rglob("*.py")) + list((ROOT / "reactive").glob("*.py")):
        if path.name == "names.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"(?<!b)[\"']layer\.vault-kv[.\w-]", line) or re.search(r"(?<!b)[\"']vault-kv-\w", line):
                found.append("{}:{}".format(path.relative_to(ROOT), number))
    assert found == []


def test_names_do_not_collide():
    values = list(names.FLAGS) + list(names.UNITDATA) + list(names.LEADER_DATA)
    assert len(values) == len(set(values))
