"""An architecture's config keys, read from its constructor's signature and type hints.

The `generator` and `discriminator` sections of a config are the keyword arguments of the
registered class, so a new architecture needs no config code: its `__init__` is the schema.
"""
from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import dataclass
from typing import Any

from torch import nn

REQUIRED = inspect.Parameter.empty


@dataclass(frozen=True)
class ArchParam:
    """One constructor argument: its type hint (`Any` when unannotated) and default (`REQUIRED` if none)."""

    name: str
    annotation: Any
    default: Any


@functools.cache
def arch_params(cls: type[nn.Module]) -> dict[str, ArchParam]:
    """The keyword arguments of `cls.__init__`, in signature order (no `*args` / `**kwargs`)."""
    try:
        hints = typing.get_type_hints(cls.__init__)
    except (NameError, TypeError):  # an unresolvable hint: accept any JSON value for every key
        hints = {}
    params = {}
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
            continue
        params[p.name] = ArchParam(p.name, hints.get(p.name, Any), p.default)
    return params
