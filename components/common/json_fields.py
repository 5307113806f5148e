"""Checks for the fields of a JSON message dataclass, with errors that name the message and the field.

A message dataclass calls `check_fields` when it is built, so the same checks apply to a
message a component is about to publish and to one it has just received (`Fields.of`).
The JSON type of each field comes from its annotation: `str`, `int`, `float`, `bool`,
`list[...]`, `dict[...]`, or any of them `| None` (read as text: the module defining the
dataclass uses `from __future__ import annotations`). JSON has one number type, so a float
field takes an int too; `True` is never a number; NaN and infinity are refused wherever a
number is expected (Python's json module lets them through).
"""

from __future__ import annotations

import math
from dataclasses import MISSING, fields

from components.common.errors import MessageError

REQUIRED = object()
OPTIONAL = "optional"  # in a kind tuple: None is allowed too
ENVELOPE = ("id", "timestamp")  # every message has them; never defaulted when received
_JSON_TYPES = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict}


def check(where: str, name: str, value, kind):
    """`value` if it is of `kind` (a type, or a tuple of them with OPTIONAL), else MessageError
    naming `where` and `name`."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if value is None and OPTIONAL in kinds:
        return value
    for one in kinds:
        if one is OPTIONAL or isinstance(value, bool) and one is not bool:
            continue
        if one is float and isinstance(value, (int, float)):
            if not math.isfinite(value):
                raise MessageError(f"{where}: field {name!r} is {value}, expected a finite number")
            return value
        if isinstance(value, one):
            return value
    expected = " or ".join("null" if k is OPTIONAL else k.__name__ for k in kinds)
    raise MessageError(
        f"{where}: field {name!r}: expected {expected}, got {type(value).__name__} {_short(value)}"
    )


def check_fields(where: str, message) -> None:
    """check() every field of the dataclass `message` whose annotation names a JSON type."""
    for spec in fields(message):
        kind = _kind(spec.type)
        if kind is not None:
            check(where, spec.name, getattr(message, spec.name), kind)


def check_choice(where: str, name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise MessageError(f"{where}: field {name!r} is {value!r}, expected one of {', '.join(choices)}")


def check_part(where: str, part: int, parts: int) -> None:
    """A query answered in `parts` messages: this one is `part`."""
    if not 1 <= part <= parts:
        raise MessageError(f"{where}: part {part} of {parts}, expected 1 <= part <= parts")


class Fields:
    """A received message: `schema` checked first, then its fields read by name."""

    def __init__(self, data, schema: str | None, where: str | None = None):
        self.where = where or schema or "message"
        if not isinstance(data, dict):
            raise MessageError(f"{self.where}: expected a JSON object, got {type(data).__name__}")
        if schema is not None and data.get("schema") != schema:
            raise MessageError(f"schema {data.get('schema')!r}, expected {schema!r}")
        self.data = data

    def get(self, name: str, kind=None, default=REQUIRED):
        """The field `name` (checked against `kind` if given); MessageError if it is required and missing."""
        if name not in self.data:
            if default is REQUIRED:
                raise MessageError(f"{self.where}: missing field {name!r}")
            return default
        value = self.data[name]
        return value if kind is None else check(self.where, name, value, kind)

    def of(self, cls, skip: tuple[str, ...] = ()) -> dict:
        """Keyword arguments for the dataclass `cls`: every field but `skip`. A field with a
        default may be left out of the message, except the envelope (id, timestamp)."""
        values = {}
        for spec in fields(cls):
            if spec.name in skip:
                continue
            if spec.name in ENVELOPE or spec.default is MISSING and spec.default_factory is MISSING:
                values[spec.name] = self.get(spec.name)
            elif spec.name in self.data:
                values[spec.name] = self.data[spec.name]
        return values


def _kind(annotation: str):
    """`str` -> str, `int | None` -> (int, OPTIONAL), `list[Match]` -> list; None for other types."""
    optional = annotation.endswith(" | None")
    kind = _JSON_TYPES.get(annotation.removesuffix(" | None").split("[")[0])
    return (kind, OPTIONAL) if kind is not None and optional else kind


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
