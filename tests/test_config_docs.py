"""config/README.md: every configuration key described, rendered from config/schema.yaml.

Every key of the schema has a description; config/README.md is exactly what
cinerecon.config_docs renders from the schema now (so it cannot go stale: regenerate it with
`python -m cinerecon.config_docs > config/README.md`); every key the presets set is in it.
"""

from pathlib import Path

import pytest
import yaml

from cinerecon import config_docs
from cinerecon.config_docs import iter_properties, load_schema, render

REPO = Path(__file__).resolve().parents[1]
SCHEMA = load_schema(REPO / "config" / "schema.yaml")
README = REPO / "config" / "README.md"
PRESETS = REPO / "config" / "presets"
REGENERATE = "regenerate it: python -m cinerecon.config_docs > config/README.md"


def undescribed(schema: dict) -> list[str]:
    """Key paths of the schema whose description is missing, empty or not text."""
    return [path for path, node in iter_properties(schema)
            if not (isinstance(node, dict) and isinstance(node.get("description"), str)
                    and node["description"].strip())]


def preset_keys(tree: dict, documented: set, prefix: str = ""):
    """Key paths a preset sets, at every level; free-form mappings (whose keys the schema does
    not name) are not entered."""
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        yield path
        if isinstance(value, dict) and any(d.startswith(path + ".") for d in documented):
            yield from preset_keys(value, documented, path)


# ---- the walker finds every kind of nested key --------------------------------------------
TOY = {
    "type": "object",
    "properties": {
        "a": {"type": "integer", "description": "an a"},
        "b": {"type": "object", "description": "a b",
              "properties": {"c": {"type": "string", "description": "a c"}}},
        "d": {"description": "a d", "oneOf": [
            {"type": "string"},
            {"type": "object", "properties": {"e": {"type": "string", "description": "an e"}}}]},
        "f": {"type": "array", "description": "an f",
              "items": {"type": "object", "properties": {"g": {"type": "number"}}}},
        "h": {"type": "object", "description": "an h",
              "additionalProperties": {"type": "object", "properties": {"i": {"type": "boolean", "description": " "}}}},
    },
}


def test_the_walker_reaches_nested_objects_branches_array_items_and_free_form_values():
    assert [path for path, _ in iter_properties(TOY)] == ["a", "b", "b.c", "d", "d.e", "f", "f[].g", "h", "h.*.i"]


def test_a_missing_or_blank_description_is_found_at_any_depth():
    assert undescribed(TOY) == ["f[].g", "h.*.i"]


# ---- the real schema -------------------------------------------------------------------------
def test_every_key_of_the_schema_has_a_description():
    paths = [path for path, _ in iter_properties(SCHEMA)]
    assert len(paths) > 300  # the walker sees the whole schema (nested objects, aliases, branches)
    assert "mae.pretrain.steps" in paths and "cohort.synthetic.labels.lax.2ch" in paths
    assert undescribed(SCHEMA) == [], "describe these keys in config/schema.yaml"


# What a schema node may hold: anything else is a YAML slip, e.g. an unquoted description with a
# comma inside a {flow: mapping}, which YAML cuts at the comma into a shorter description and
# stray keys (that validation ignores).
KEYWORDS = {"$schema", "description", "type", "properties", "required", "additionalProperties", "propertyNames",
            "enum", "default", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "items",
            "minItems", "maxItems", "uniqueItems", "oneOf", "anyOf", "allOf"}


def stray_keys(node, path="") -> list[str]:
    """`path: key` of every key of a schema node that is not a JSON-schema keyword we use."""
    if not isinstance(node, dict):
        return []
    out = [f"{path or '(root)'}: {key}" for key in node if key not in KEYWORDS]
    for key, child in (node.get("properties") or {}).items():
        out += stray_keys(child, f"{path}.{key}" if path else key)
    for keyword in ("oneOf", "anyOf", "allOf"):
        for branch in node.get(keyword) or []:
            out += stray_keys(branch, path)
    for keyword, suffix in (("items", "[]"), ("additionalProperties", ".*"), ("propertyNames", "(names)")):
        out += stray_keys(node.get(keyword), path + suffix)
    return out


def test_a_description_cut_at_a_comma_is_found():
    cut = yaml.safe_load("properties: {sheet: {type: string, description: subjects (subject, split)}}")
    assert stray_keys(cut) == ["sheet: split)"]


def test_schema_nodes_hold_only_json_schema_keywords():
    assert stray_keys(SCHEMA) == [], "quote these descriptions in config/schema.yaml"


def test_config_readme_is_what_the_schema_renders_now():
    assert README.is_file(), REGENERATE
    assert README.read_text() == render(SCHEMA), f"config/README.md is stale; {REGENERATE}"


def test_every_key_of_the_schema_has_a_row_in_the_readme():
    text = README.read_text()
    missing = [path for path, _ in iter_properties(SCHEMA) if f"| `{path}` |" not in text]
    assert missing == []


@pytest.mark.parametrize("preset", ["demo", "paper"])
def test_every_key_a_preset_sets_is_in_the_readme(preset):
    tree = yaml.safe_load((PRESETS / f"{preset}.yaml").read_text())
    documented = {path for path, _ in iter_properties(SCHEMA)}
    keys = list(preset_keys(tree, documented))
    assert len(keys) > 100 and "mae.pretrain.steps" in keys
    text = README.read_text()
    assert [key for key in keys if f"`{key}`" not in text] == []


def test_the_readme_starts_with_how_a_configuration_is_composed():
    text = render(SCHEMA)
    intro = text.split("## Top-level keys")[0]
    for name in ("config/presets/", "--configfile", "config/config.yaml", "cinerecon/config_presets.py",
                 "config/ukbb_nifti.example.yaml", "config/ukbb_dicom.example.yaml"):
        assert name in intro


def test_the_module_prints_the_readme(capsys):
    assert config_docs.main([str(REPO / "config" / "schema.yaml")]) == 0
    assert capsys.readouterr().out == render(SCHEMA)
