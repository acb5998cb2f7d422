"""How a Python type hint reads a JSON value: checking and converting it, and its JSON Schema.

The config dataclasses and the architecture constructors both declare their keys with ordinary
type hints (`int`, `float | None`, `tuple[int, int]`, `Literal["l1", "l2"]`, `dict[str, float]`,
`Sequence[int]`, ...). This module is the one place that turns such a hint into a check and into
a schema, so the validator and the published JSON Schema cannot disagree.
"""
from __future__ import annotations

import collections.abc
import difflib
import json
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union

_SEQUENCES = (list, collections.abc.Sequence, collections.abc.MutableSequence)
_MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)
INT_LIMIT = 2**63 - 1  # what a 64-bit integer holds: larger values overflow torch and numpy later
_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
_PLURALS = {int: "integers", float: "numbers", bool: "booleans", str: "strings"}


class InvalidValue(ValueError):
    """A value does not fit its type or range. `where` locates it inside the key (`[1]`, `/conv5_4`)."""

    def __init__(self, message: str, where: str = ""):
        super().__init__(message)
        self.message, self.where = message, where


@dataclass(frozen=True)
class Range:
    """Bounds on a number, or on every number inside a list or object."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def violation(self, x: float) -> str | None:
        """The failed bound as text ('> 0'), or None when `x` is in range."""
        for bound, op, ok in (
            (self.ge, ">=", lambda b: x >= b),
            (self.gt, ">", lambda b: x > b),
            (self.le, "<=", lambda b: x <= b),
            (self.lt, "<", lambda b: x < b),
        ):
            if bound is not None and not ok(bound):
                return f"{op} {bound:g}"
        return None

    def schema(self) -> dict[str, float]:
        keys = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}
        return {keys[k]: getattr(self, k) for k in keys if getattr(self, k) is not None}


def show(value: Any) -> str:
    """A value as the user wrote it in JSON."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _is_union(origin: Any) -> bool:
    return origin is Union or origin is types.UnionType


def describe(tp: Any) -> str:
    """What a type hint accepts, in words: 'a list of 2 integers', 'one of "l1", "l2"'."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp in _NAMES:
        return _NAMES[tp]
    if origin is Literal:
        return "one of " + ", ".join(show(a) for a in args)
    if _is_union(origin):
        options = [describe(a) for a in args if a is not type(None)]
        return " or ".join(options + (["null"] if type(None) in args else []))
    if origin is tuple and args and args[-1] is not Ellipsis:
        return f"a list of {len(args)} {_PLURALS.get(args[0], 'values')}"
    if origin is tuple or origin in _SEQUENCES:
        return f"a list of {_PLURALS.get(args[0], 'values') if args else 'values'}"
    if origin in _MAPPINGS:
        return f"an object of {_PLURALS.get(args[1], 'values') if args else 'values'}"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def convert(value: Any, tp: Any, rng: Range | None = None) -> Any:
    """Check a JSON value against a type hint and return it in Python form (lists -> tuples for tuples).

    Integral floats are accepted where an integer is expected (`2e5`), integers where a number is,
    never booleans for either. Raises `InvalidValue` saying what was expected and what was found.
    """
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if _is_union(origin):
        if value is None and type(None) in args:
            return None
        failures = []
        for option in (a for a in args if a is not type(None)):
            try:
                return convert(value, option, rng)
            except InvalidValue as e:
                failures.append(e)
        # One option left: its own message is the most precise (e.g. a range or an item).
        if len(failures) == 1 and (failures[0].where or not failures[0].message.startswith("expected")):
            raise failures[0]
        raise InvalidValue(f"expected {describe(tp)}, got {show(value)}")
    if origin is Literal:
        if value in args and not isinstance(value, bool):
            return value
        hint = ""
        if isinstance(value, str):
            close = difflib.get_close_matches(value.lower(), [str(a) for a in args], n=1, cutoff=0.5)
            hint = f"; did you mean {show(close[0])}?" if close else ""
        raise InvalidValue(f"expected {describe(tp)}, got {show(value)}{hint}")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            if abs(value) > INT_LIMIT:
                shown = show(value) if len(str(value)) <= 30 else f"a {len(str(abs(value)))}-digit integer"
                raise InvalidValue(f"{shown} is out of range: integers here are at most {INT_LIMIT} (2^63 - 1)")
            return _in_range(value, rng)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(_in_range(value, rng))
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is type(None):
        if value is None:
            return None
    elif origin is tuple or origin in _SEQUENCES:
        if isinstance(value, list):
            return _convert_list(value, tp, origin, args, rng)
    elif origin in _MAPPINGS:
        if isinstance(value, dict):
            item_tp = args[1] if args else Any
            return {k: _item(v, item_tp, rng, f"/{k}") for k, v in value.items()}
    else:
        raise InvalidValue(f"cannot be set from a config file (its type is {describe(tp)})")
    raise InvalidValue(f"expected {describe(tp)}, got {show(value)}")


def _convert_list(value: list, tp: Any, origin: Any, args: tuple, rng: Range | None) -> list | tuple:
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise InvalidValue(f"expected {describe(tp)}, got {show(value)}")
        return tuple(_item(v, a, rng, f"[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    item_tp = args[0] if args else Any
    items = [_item(v, item_tp, rng, f"[{i}]") for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


def _item(value: Any, tp: Any, rng: Range | None, where: str) -> Any:
    try:
        return convert(value, tp, rng)
    except InvalidValue as e:
        raise InvalidValue(e.message, where + e.where) from None


def _in_range(x: float, rng: Range | None) -> float:
    failed = rng.violation(x) if rng else None
    if failed:
        raise InvalidValue(f"must be {failed}, got {show(x)}")
    return x


def to_json(value: Any) -> Any:
    """Python config values back to plain JSON data (tuples -> lists)."""
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


def is_json(value: Any) -> bool:
    """Whether `value` is plain, finite JSON data."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def json_schema(tp: Any, rng: Range | None = None) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a type hint, with `rng` on every number inside it."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    bounds = rng.schema() if rng else {}
    if tp is Any:
        return {}
    if _is_union(origin):
        return {"anyOf": [json_schema(a, rng) for a in args]}
    if origin is Literal:
        return {"enum": list(args)}
    if tp is type(None):
        return {"type": "null"}
    if tp in (int, float):
        return {"type": "integer" if tp is int else "number", **bounds}
    if tp in (bool, str):
        return {"type": "boolean" if tp is bool else "string"}
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(set(args)) == 1:
            return {"type": "array", "items": json_schema(args[0], rng), "minItems": len(args), "maxItems": len(args)}
        return {"type": "array", "prefixItems": [json_schema(a, rng) for a in args], "items": False,
                "minItems": len(args)}
    if origin is tuple or origin in _SEQUENCES:
        return {"type": "array", "items": json_schema(args[0] if args else Any, rng)}
    if origin in _MAPPINGS:
        return {"type": "object", "additionalProperties": json_schema(args[1] if args else Any, rng)}
    return {}
