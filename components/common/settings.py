"""Typed component settings read from Greengrass configuration.

Each component declares, in its own `settings.py`, a frozen dataclass whose fields carry
`help` (and optionally `min`, `max`, `choices`, `live`) in their metadata:

- `check_settings(cls, config, component)` finds every problem of a configuration at once:
  unknown keys (the key path and the known keys named), values of the wrong type or out of
  bounds (the key path, the value and what was expected), and problems of the settings taken
  together (the class's optional `problems()` method). Numbers that Greengrass returns as
  floats are coerced. Keys in the class's `RETIRED` (old name -> what became of it) are
  ignored and reported, never refused: a device keeps its old configuration across an
  upgrade, so a renamed key must not stop it.
- `parse_settings` builds the settings from one configuration or raises SettingsError naming
  every problem of the individual values (not `problems()`: a recipe's defaults parse even
  when a deployment still has to fill something in).
- `live=True` marks a setting the running component applies without being rebuilt
  (`changed_settings`, `needs_rebuild`); see `components/common/component_main.py`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import typing
from typing import Any, TypeVar, get_type_hints

from components.common.errors import VisualSearchError

T = TypeVar("T")
IGNORED_KEYS = {"accessControl"}  # read by the nucleus, not by the component
log = logging.getLogger(__name__)


class SettingsError(VisualSearchError):
    """A configuration value that the component cannot use."""


def setting(default, help: str, *, live: bool = False, **checks) -> Any:
    """A settings field: `help` for the docs; checks `min`, `max`, `choices`; `live`: applied
    to the running component on a configuration update (otherwise the component is rebuilt)."""
    return dataclasses.field(default=default, metadata={"help": help, "live": live, **checks})


@dataclasses.dataclass(frozen=True)
class Checked:
    """What `check_settings` found: the settings (None when there are problems), every problem,
    and the retired keys that were ignored (with what became of each)."""

    settings: Any
    problems: list[str]
    retired: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def check_settings(cls: type[T], config: dict | None, component: str) -> Checked:
    settings, problems, retired = _build(cls, config, component)
    if settings is not None and hasattr(settings, "problems"):
        problems = list(settings.problems())
    return Checked(None if problems else settings, problems, retired)


def parse_settings(cls: type[T], config: dict | None, component: str) -> T:
    settings, problems, retired = _build(cls, config, component)
    if problems:
        raise SettingsError("; ".join(problems))
    if retired:
        log.warning("%s: ignoring retired setting(s): %s", component, "; ".join(retired))
    return settings


def describe(cls) -> list[tuple[str, Any, str]]:
    """(key, default, meaning) for every setting: the README table is checked against this."""
    return [(f.name, f.default, f.metadata.get("help", "")) for f in dataclasses.fields(cls)]


def defaults(cls) -> dict:
    """The configuration a recipe ships: every key at its default ("" for an optional one not set)."""
    return {f.name: "" if f.default is None else f.default for f in dataclasses.fields(cls)}


def live_keys(cls) -> set[str]:
    """The settings a running component takes without being rebuilt."""
    return {f.name for f in dataclasses.fields(cls) if f.metadata.get("live")}


def changed_settings(old, new) -> list[str]:
    """Names of the settings whose value differs between two settings objects of one class."""
    return [f.name for f in dataclasses.fields(old) if getattr(old, f.name) != getattr(new, f.name)]


def needs_rebuild(old, new) -> list[str]:
    """The changed settings that the running component cannot take live."""
    live = live_keys(type(old))
    return [name for name in changed_settings(old, new) if name not in live]


def _build(cls, config, component) -> tuple[Any, list[str], list[str]]:
    if config is not None and not isinstance(config, dict):
        return None, [f"{component}: the configuration must be a mapping, not {type(config).__name__}"], []
    config = dict(config or {})
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    old_names = dict(getattr(cls, "RETIRED", {}))
    retired = [f"{component}.{key}: {old_names[key]}" for key in sorted(set(config) & set(old_names))]
    unknown = sorted(set(config) - set(fields) - set(old_names) - IGNORED_KEYS)
    problems = []
    if unknown:
        problems.append(
            f"{component}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(fields))})"
        )
    values = {}
    for name, f in fields.items():
        if name in config:
            try:
                values[name] = _coerce(config[name], hints[name], f, f"{component}.{name}")
            except SettingsError as exc:
                problems.append(str(exc))
    return (None if problems else cls(**values)), problems, retired


def _coerce(value, kind, f, path: str):
    def fail(expected: str):
        raise SettingsError(f"{path}: {value!r} is not {expected}")

    options = typing.get_args(kind)
    if type(None) in options:  # optional: null (or "") means "not set"
        if value is None or value == "":
            return None
        kind = next(option for option in options if option is not type(None))
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
        if not math.isfinite(number) or number != int(number):
            fail("an integer")
        result = int(number)
    elif kind is float:
        if isinstance(value, bool) or value is None:
            fail("a number")
        try:
            result = float(value)
        except (TypeError, ValueError):
            fail("a number")
        if not math.isfinite(result):
            fail("a finite number")
    elif kind is str:
        if value is None or isinstance(value, (dict, list)):
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
