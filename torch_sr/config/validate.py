"""JSON config files -> `TrainConfig` and back.

Every problem is collected before failing, so one run of `train.py` lists them all: an unknown
key names its full path (`training/g_lrr`) and the closest valid one; a wrong type or range names
the key, what it accepts and the value found. Architecture sections are checked against the
constructor of the architecture they name (`torch_sr.config.arch_params`).
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from torch_sr.archs.registry import DISCRIMINATORS, generator_classes
from torch_sr.config.arch_params import REQUIRED, arch_params
from torch_sr.config.json_types import InvalidValue, convert, describe, is_json, show, to_json
from torch_sr.config.schema import (
    ARCH_DEFAULTS,
    IGNORED_KEYS,
    SHARED_ARCH_KEYS,
    ArchConfig,
    TrainConfig,
    config_fields,
    default_value,
    key_types,
)
from torch_sr.errors import ConfigError

ARCH_KINDS = ("generator", "discriminator")


def arch_table(kind: str) -> dict[str, type[nn.Module]]:
    """Name -> class for a config's `generator` or `discriminator` section."""
    return generator_classes() if kind == "generator" else DISCRIMINATORS


def load_config(path: str | os.PathLike) -> TrainConfig:
    """Read and validate a JSON config file; any problem is a `ConfigError` naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the config file ({e})") from None

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        twice = next((k for k in keys if keys.count(k) > 1), None)
        if twice is not None:
            raise ConfigError(f"{path}: key {twice!r} appears twice in the same object; keep one")
        return dict(pairs)

    def no_constants(name: str) -> Any:
        raise ConfigError(f"{path}: {name} is not a valid JSON number; write a finite number")

    try:
        data = json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constants)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    except RecursionError:
        raise ConfigError(f"{path}: objects or lists nested too deeply; a config is a few levels deep") from None
    except ValueError as e:  # an integer of more digits than Python converts (sys.get_int_max_str_digits)
        raise ConfigError(f"{path}: {str(e).split(';')[0]}; no config value needs that many digits") from None
    return validate_config(data, str(path))


def validate_config(data: Mapping[str, Any], source: str = "config") -> TrainConfig:
    """Validate plain JSON data (e.g. the dict stored in a checkpoint) into a `TrainConfig`."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: a config is a JSON object {{...}}, got {show(data)}")
    problems: list[str] = []
    data = {k: v for k, v in data.items() if k not in IGNORED_KEYS}
    values = _section(TrainConfig, data, "", problems)
    shared = {k: values.get(k, default_value(TrainConfig, k)) for k in SHARED_ARCH_KEYS}
    archs = {kind: _arch_section(kind, data.get(kind, {}), shared, problems) for kind in ARCH_KINDS}
    if not problems:
        cfg = TrainConfig(**values, **archs, source=source)
        problems += [f"{key}: {message}" for key, message in cfg.problems()]
        if not problems:
            return cfg
    if len(problems) == 1:
        raise ConfigError(f"{source}: {problems[0]}")
    raise ConfigError(f"{source}: {len(problems)} problems:\n  " + "\n  ".join(problems))


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A config (or one of its sections) as plain JSON data; `validate_config` reads it back equal.

    A phase is written as the keys where it differs from its stage, as a config file gives it.
    """
    out: dict[str, Any] = {}
    phases: list[tuple[str, Any]] = []
    for f in config_fields(type(cfg)):
        value = getattr(cfg, f.name)
        if f.metadata.get("phases"):
            phases.append((f.name, value))
        elif isinstance(value, ArchConfig):
            out[f.name] = {"arch": value.arch, **to_json(value.hparams)}
        elif dataclasses.is_dataclass(value):
            out[f.name] = config_to_dict(value)
        else:
            out[f.name] = to_json(value)
    for name, value in phases:
        out[name] = [
            {k: v for k, v in config_to_dict(phase).items() if k not in PHASE_EXCLUDED and v != out[k]}
            for phase in value
        ]
    return out


# Keys of a stage that a phase cannot set: they describe the stage as a whole.
PHASE_EXCLUDED = ("enabled", "phases")


def _build_section(cls: type, raw: Any, prefix: str, problems: list[str]) -> Any:
    """One nested section (with its cross-key checks and its phases), or None after a problem."""
    if not isinstance(raw, Mapping):
        problems.append(f"{prefix.rstrip('/')}: expected an object {{...}} of keys, got {show(raw)}")
        return None
    count = len(problems)
    values = _section(cls, raw, prefix, problems)
    if len(problems) > count:
        return None
    section = cls(**values)
    problems += [f"{prefix}{k}: {m}" for k, m in getattr(section, "problems", tuple)()]
    for f in config_fields(cls):
        if f.metadata.get("phases") and f.name in raw and len(problems) == count:
            section = dataclasses.replace(section, **{f.name: _phases(cls, raw, f"{prefix}{f.name}", problems)})
    return section


def _phases(cls: type, stage: Mapping[str, Any], path: str, problems: list[str]) -> tuple:
    """A stage's `phases`: each item's keys merged over the stage's, then validated as a whole section.

    Only checked once the stage itself is valid, so a stage's mistake is not reported once per phase.
    """
    items = stage[path.rsplit("/", 1)[-1]]
    if not isinstance(items, list):
        problems.append(f"{path}: expected a list of objects {{...}} (one per phase), got {show(items)}")
        return ()
    base = {k: v for k, v in stage.items() if k not in PHASE_EXCLUDED}
    phases = []
    for i, item in enumerate(items):
        where = f"{path}[{i}]"
        if not isinstance(item, Mapping):
            problems.append(f"{where}: expected an object {{...}} of the stage's keys, got {show(item)}")
            continue
        own = [k for k in PHASE_EXCLUDED if k in item]
        problems += [f"{where}/{k}: set it on the stage; a phase cannot" for k in own]
        merged = dict(base)
        for group in getattr(cls, "EXCLUSIVE", ()):  # a phase giving one member replaces the stage's choice
            if any(k in item for k in group):
                for k in group:
                    merged.pop(k, None)
        merged.update({k: v for k, v in item.items() if k not in own})
        phase = _build_section(cls, merged, f"{where}/", problems)
        if phase is not None:
            phases.append(phase)
    return tuple(phases)


def _section(cls: type, raw: Mapping[str, Any], prefix: str, problems: list[str]) -> dict[str, Any]:
    """Converted values of the keys of one section; nested sections are built, arch sections and phases skipped."""
    fields = {f.name: f for f in config_fields(cls)}
    raw = dict(raw)
    for group in getattr(cls, "EXCLUSIVE", ()):  # giving one member drops the others' defaults
        if any(k in raw for k in group):
            for k in group:
                raw.setdefault(k, None)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in fields:
            problems.append(_unknown_key(prefix, key, list(fields)))
            continue
        tp = key_types(cls)[key]
        if tp is ArchConfig or fields[key].metadata.get("phases"):
            continue
        if dataclasses.is_dataclass(tp):
            section = _build_section(tp, value, f"{prefix}{key}/", problems)
            if section is not None:
                values[key] = section
            continue
        try:
            values[key] = convert(value, tp, fields[key].metadata.get("range"))
        except InvalidValue as e:
            problems.append(f"{prefix}{key}{e.where}: {e.message}")
    return values


def _arch_section(kind: str, raw: Any, shared: dict[str, Any], problems: list[str]) -> ArchConfig | None:
    """The `generator` / `discriminator` section: `arch` plus that class's constructor arguments."""
    if not isinstance(raw, Mapping):
        problems.append(f"{kind}: expected an object {{...}} of keys, got {show(raw)}")
        return None
    table = arch_table(kind)
    arch = raw.get("arch", default_value(TrainConfig, kind).arch)
    if not isinstance(arch, str) or arch not in table:
        close = difflib.get_close_matches(str(arch), list(table), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(table))}"
        problems.append(f"{kind}/arch: unknown {kind} {show(arch)}; {hint}")
        return None
    params = arch_params(table[arch])
    count = len(problems)
    given: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "arch":
            continue
        if key in SHARED_ARCH_KEYS:
            problems.append(f"{kind}/{key}: set once for the whole config, as the top-level key '{key}'")
        elif key not in params:
            valid = ["arch", *(p for p in params if p not in SHARED_ARCH_KEYS)]
            owners = [name for name, cls in table.items() if key in arch_params(cls)]
            if owners:  # right key, other architecture
                problems.append(
                    f"{kind}/{key}: not an argument of {arch} (it is one of {', '.join(owners)}); "
                    f"{arch} takes: {', '.join(valid)}"
                )
            else:
                problems.append(_unknown_key(f"{kind}/", key, valid))
        else:
            try:
                given[key] = to_json(convert(value, params[key].annotation))
            except InvalidValue as e:
                problems.append(f"{kind}/{key}{e.where}: {e.message}")
    hparams: dict[str, Any] = {}
    defaults = ARCH_DEFAULTS.get(arch, {})
    for name, p in params.items():
        if name in SHARED_ARCH_KEYS:
            continue
        if name in given or name in defaults:
            hparams[name] = given.get(name, defaults.get(name))
        elif p.default is REQUIRED:
            problems.append(f"{kind}/{name}: missing; {arch} needs it ({describe(p.annotation)})")
        elif is_json(to_json(p.default)):
            hparams[name] = to_json(p.default)
    if len(problems) > count:
        return None
    return ArchConfig(arch, hparams, {k: v for k, v in shared.items() if k in params})


def _known_paths() -> tuple[str, ...]:
    """Every valid key path, architecture arguments of every registered class included."""
    paths: list[str] = []

    def walk(cls: type, prefix: str) -> None:
        for f in config_fields(cls):
            tp = key_types(cls)[f.name]
            if tp is ArchConfig:
                for arch_cls in arch_table(f.name).values():
                    names = ["arch", *(p for p in arch_params(arch_cls) if p not in SHARED_ARCH_KEYS)]
                    paths.extend(f"{prefix}{f.name}/{p}" for p in names)
            elif dataclasses.is_dataclass(tp):
                walk(tp, f"{prefix}{f.name}/")
            else:
                paths.append(prefix + f.name)

    walk(TrainConfig, "")
    return tuple(dict.fromkeys(paths))


def _parent(path: str) -> str:
    """'training/g_lr' -> 'training/'; 'batch_size' -> ''."""
    return path[: path.rfind("/") + 1]


def _unknown_key(prefix: str, key: str, valid: list[str]) -> str:
    """'unknown key X; did you mean Y?' — Y from the same section, else the same name elsewhere."""
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if close:
        return f"unknown key '{prefix}{key}'; did you mean '{prefix}{close[0]}'?"
    elsewhere = [p for p in _known_paths() if _parent(p) != prefix]  # this section's own keys are in `valid`
    leaves = {p.rsplit("/", 1)[-1]: p for p in reversed(elsewhere)}
    close = difflib.get_close_matches(key, list(leaves), n=1, cutoff=0.8)
    if close:
        return f"unknown key '{prefix}{key}'; did you mean '{leaves[close[0]]}'?"
    return f"unknown key '{prefix}{key}'; valid keys here: {', '.join(valid)}"
