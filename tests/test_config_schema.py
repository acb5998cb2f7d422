"""The published JSON Schema: up to date, and it accepts and rejects what the validator does."""
import json
from pathlib import Path

import pytest

from torch_sr.config.json_schema import SCHEMA_PATH, config_json_schema, write_config_json_schema
from torch_sr.config.validate import config_to_dict, validate_config
from torch_sr.errors import ConfigError

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def schema_errors(value, schema, path="") -> list[str]:
    """A small validator for the JSON Schema keywords `config_json_schema` emits (no jsonschema dependency)."""
    errors = []
    if "anyOf" in schema:
        if all(schema_errors(value, s, path) for s in schema["anyOf"]):
            errors.append(f"{path}: matches no alternative")
    if "oneOf" in schema:
        matches = sum(not schema_errors(value, s, path) for s in schema["oneOf"])
        if matches != 1:
            errors.append(f"{path}: matches {matches} alternatives, not one")
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: not one of {schema['enum']}")
    kind = schema.get("type")
    checks = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "boolean": lambda v: isinstance(v, bool),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "null": lambda v: v is None,
    }
    if kind and not checks[kind](value):
        return errors + [f"{path}: not of type {kind}"]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        for key, ok in (
            ("minimum", lambda b: value >= b),
            ("exclusiveMinimum", lambda b: value > b),
            ("maximum", lambda b: value <= b),
            ("exclusiveMaximum", lambda b: value < b),
        ):
            if key in schema and not ok(schema[key]):
                errors.append(f"{path}: violates {key} {schema[key]}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            errors.append(f"{path}: wrong number of items")
        for i, item in enumerate(value):
            errors += schema_errors(item, schema.get("items", {}), f"{path}[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        errors += [f"{path}/{k}: required" for k in schema.get("required", []) if k not in value]
        for k, v in value.items():
            if k in props:
                errors += schema_errors(v, props[k], f"{path}/{k}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{path}/{k}: not allowed")
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += schema_errors(v, schema["additionalProperties"], f"{path}/{k}")
    return errors


def test_committed_schema_is_up_to_date():
    assert json.loads(SCHEMA_PATH.read_text(encoding="utf-8")) == config_json_schema(), (
        "torch_sr/config/schema.json is stale: run python -m torch_sr.config.json_schema"
    )


def test_write_schema(tmp_path):
    path = write_config_json_schema(tmp_path / "schema.json")
    assert json.loads(path.read_text(encoding="utf-8")) == config_json_schema()


@pytest.mark.parametrize(
    "path", sorted(p for p in CONFIGS.rglob("*.json") if p.name != "recipe.json"), ids=lambda p: str(p.relative_to(CONFIGS))
)
def test_shipped_configs_satisfy_the_schema(path):
    data = json.loads(path.read_text())
    schema = path.parent / data["$schema"]  # relative to the file, as editors resolve it
    assert schema.resolve() == (CONFIGS.parent / "torch_sr" / "config" / "schema.json").resolve()
    assert schema_errors(data, config_json_schema()) == []


def test_the_full_default_config_satisfies_the_schema_and_its_defaults():
    schema = config_json_schema()
    full = config_to_dict(validate_config({}))
    assert schema_errors(full, schema) == []
    for section, keys in full.items():
        props = schema["properties"][section]
        if not isinstance(keys, dict):
            assert props["default"] == keys, section
            continue
        if "oneOf" in props:  # architecture sections: the default arch's alternative
            props = next(alt for alt in props["oneOf"] if alt["title"] == keys["arch"])
        for key, value in keys.items():
            if key != "arch":
                assert props["properties"][key]["default"] == value, f"{section}/{key}"


@pytest.mark.parametrize(
    "data",
    [
        {"training": {"g_lrr": 1e-4}},
        {"training": {"g_lr": "1e-4"}},
        {"training": {"g_lr": 0}},
        {"batch_size": 2.5},
        {"pretraining": {"cr_patch_size": [128]}},
        {"pretraining": {"cr_patch_size": [128, 0]}},
        {"content_loss": {"loss_f": "L1"}},
        {"perceptual_loss": {"layer_weights": {"conv5_4": -1}}},
        {"generator": {"num_basic_block": 3}},
        {"generator": {"rrdb_channels": "64"}},
        {"generator": {"scale_factor": 2}},
        {"generator": {"arch": "nope"}},
        {"discriminator": {"vgg_blk_ch": [64, "x"]}},
    ],
)
def test_schema_and_validator_reject_the_same_mistakes(data):
    assert schema_errors(data, config_json_schema()) != []
    with pytest.raises(ConfigError):
        validate_config(data)


def test_schema_accepts_every_registered_architecture_by_name():
    schema = config_json_schema()
    for kind in ("generator", "discriminator"):
        for alt in schema["properties"][kind]["oneOf"]:
            data = {kind: {"arch": alt["title"]}}
            assert schema_errors(data, schema) == [], alt["title"]
            assert validate_config(data).__getattribute__(kind).arch == alt["title"]
