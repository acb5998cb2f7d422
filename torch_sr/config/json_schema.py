"""The JSON Schema of config files, generated from the config dataclasses and the architectures.

Editors (VS Code, PyCharm, ...) complete and check a config that starts with
`"$schema": "../torch_sr/config/schema.json"`. The committed `schema.json` is regenerated after a
key changes or an architecture is registered (a test fails until then):

    python -m torch_sr.config.json_schema
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from torch_sr.files import atomic_write
from torch_sr.config.arch_params import REQUIRED, arch_params
from torch_sr.config.json_types import is_json, json_schema, to_json
from torch_sr.config.schema import (
    ARCH_DEFAULTS,
    SHARED_ARCH_KEYS,
    ArchConfig,
    TrainConfig,
    config_fields,
    default_value,
    key_types,
)
from torch_sr.config.validate import PHASE_EXCLUDED, arch_table

SCHEMA_PATH = Path(__file__).with_name("schema.json")


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) that a training config file satisfies."""
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "torch_sr training config",
        **_section(TrainConfig),
    }
    schema["properties"] = {
        "$schema": {"type": "string", "description": "Path or URL of this schema, for editors"},
        **schema["properties"],
    }
    return schema


def write_config_json_schema(path: str | os.PathLike = SCHEMA_PATH) -> Path:
    """Write the schema (atomically) where editors and `configs/*.json` find it."""
    text = json.dumps(config_json_schema(), indent=2, ensure_ascii=False) + "\n"
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def _section(cls: type, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    properties = {}
    for f in config_fields(cls):
        if f.name in exclude:
            continue
        tp, help = key_types(cls)[f.name], f.metadata["help"]
        if f.metadata.get("phases"):
            properties[f.name] = {"description": help, "type": "array", "items": _phase(cls), "default": []}
        elif tp is ArchConfig:
            properties[f.name] = _arch_section(f.name, help, default_value(cls, f.name).arch)
        elif dataclasses.is_dataclass(tp):
            properties[f.name] = {"description": help, **_section(tp)}
        else:
            default = to_json(default_value(cls, f.name))
            properties[f.name] = {"description": help, **json_schema(tp, f.metadata["range"]), "default": default}
    return {"type": "object", "properties": properties, "additionalProperties": False}


def _phase(cls: type) -> dict[str, Any]:
    """A phase: any of the stage's keys but `enabled` and `phases`; the stage's values are its defaults."""
    schema = _section(cls, exclude=PHASE_EXCLUDED)
    schema["properties"] = {k: {n: v for n, v in p.items() if n != "default"} for k, p in schema["properties"].items()}
    return schema


def _arch_section(kind: str, help: str, default_arch: str) -> dict[str, Any]:
    """One alternative per registered class; `arch` may be left out for the default one."""
    alternatives = []
    for name, cls in arch_table(kind).items():
        properties: dict[str, Any] = {"arch": {"const": name}}
        required = ["arch"]
        if name == default_arch:
            properties["arch"]["default"], required = name, []
        for p in arch_params(cls).values():
            if p.name in SHARED_ARCH_KEYS:
                continue
            properties[p.name] = json_schema(p.annotation)
            default = to_json(ARCH_DEFAULTS.get(name, {}).get(p.name, p.default))
            if default is REQUIRED:
                required.append(p.name)
            elif is_json(default):
                properties[p.name]["default"] = default
        alternatives.append(
            {"title": name, "type": "object", "properties": properties, "required": required,
             "additionalProperties": False}
        )
    return {"description": f"{help}; 'arch' defaults to {default_arch!r}", "oneOf": alternatives}


if __name__ == "__main__":
    print(write_config_json_schema())
