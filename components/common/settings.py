"""Typed component settings read from Greengrass configuration.

Each component declares a frozen dataclass whose fields carry `help` (and optionally `min`,
`max`, `choices`) in their metadata. `parse_settings` builds it from the configuration
dict: unknown keys are refused, numbers that Greengrass returns as floats are coerced,
and an error names the key path, the value and what was expected.
"""
from __future__ import annotations

import dataclasses
from typing import Any, TypeVar, get_type_hints

from components.common.errors import VisualSearchError

T = TypeVar("T")
IGNORED_KEYS = {"accessControl"}  # read by the nucleus, not by the component


class SettingsError(VisualSearchError):
    """A configuration value that the component cannot use."""


def setting(default, help: str, **checks) -> Any:
    return dataclasses.field(default=default, metadata={"help": help, **checks})


def parse_settings(cls: type[T], config: dict | None, component: str) -> T:
    config = dict(config or {})
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(config) - set(fields) - IGNORED_KEYS)
    if unknown:
        raise SettingsError(f"{component}: unknown setting(s) {', '.join(unknown)} "
                            f"(known: {', '.join(sorted(fields))})")
    values = {}
    for name, f in fields.items():
        if name in config:
            values[name] = _coerce(config[name], hints[name], f, f"{component}.{name}")
    return cls(**values)


def describe(cls) -> list[tuple[str, Any, str]]:
    """(key, default, meaning) for every setting: the README table is checked against this."""
    return [(f.name, f.default, f.metadata.get("help", "")) for f in dataclasses.fields(cls)]


def defaults(cls) -> dict:
    return {f.name: f.default for f in dataclasses.fields(cls)}


def _coerce(value, kind, f, path: str):
    def fail(expected: str):
        raise SettingsError(f"{path}: {value!r} is not {expected}")

    if kind is bool:
        if isinstance(value, bool):
            result = value
        elif isinstance(value, str) and value.lower() in ("true", "false"):
            result = value.lower() == "true"
        else:
            fail("true or false")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            fail("an integer")
        try:
            number = float(value)
        except ValueError:
            fail("an integer")
        if number != int(number):
            fail("an integer")
        result = int(number)
    elif kind is float:
        if isinstance(value, bool):
            fail("a number")
        try:
            result = float(value)
        except (TypeError, ValueError):
            fail("a number")
    elif kind is str:
        if isinstance(value, (dict, list)):
            fail("a string")
        result = str(value)
    else:
        result = value
    low, high, choices = f.metadata.get("min"), f.metadata.get("max"), f.metadata.get("choices")
    if low is not None and result < low:
        fail(f"at least {low}")
    if high is not None and result > high:
        fail(f"at most {high}")
    if choices is not None and result not in choices:
        fail(f"one of {', '.join(map(str, choices))}")
    return result
