"""Components the stand-in knows (name, token, configuration) and configuration-tree helpers."""

from __future__ import annotations

import copy
import json
import secrets
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

_MISSING = object()
KeyPath = Sequence[str]


@dataclass
class ComponentSpec:
    """One component: its IPC token (SVCUID), its configuration and its access control.

    `access_control` defaults to `configuration["accessControl"]`, as on a device where it lives
    in the recipe's DefaultConfiguration; then configuration updates of it take effect at once.
    `defaults` is what a deployment's `reset` goes back to: the recipe's DefaultConfiguration,
    or the configuration the spec was made with.
    """

    name: str
    configuration: dict[str, Any] = field(default_factory=dict)
    access_control: dict[str, Any] | None = None
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    defaults: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.defaults is None:
            self.defaults = copy.deepcopy(self.configuration)

    @classmethod
    def from_mapping(cls, name: str, data: Mapping[str, Any]) -> ComponentSpec:
        """`{"token"?, "configuration"?, "accessControl"?}`, the shape of the CLI's config file."""
        unknown = set(data) - {"token", "configuration", "accessControl"}
        if unknown:
            raise ValueError(f"components.{name}: unknown keys {sorted(unknown)}")
        configuration = data.get("configuration") or {}
        if not isinstance(configuration, Mapping):
            raise ValueError(f"components.{name}.configuration: expected a mapping")
        spec = cls(name, copy.deepcopy(dict(configuration)), data.get("accessControl"))
        if data.get("token"):
            spec.token = str(data["token"])
        return spec

    @classmethod
    def from_recipe(cls, recipe: Mapping[str, Any], token: str | None = None) -> ComponentSpec:
        """From a parsed Greengrass recipe: ComponentName and DefaultConfiguration."""
        defaults = (recipe.get("ComponentConfiguration") or {}).get("DefaultConfiguration") or {}
        spec = cls(str(recipe["ComponentName"]), copy.deepcopy(dict(defaults)))
        if token:
            spec.token = token
        return spec

    def policy_source(self) -> Mapping[str, Any]:
        if self.access_control is not None:
            return self.access_control
        value = self.configuration.get("accessControl")
        return value if isinstance(value, Mapping) else {}


def specs_from(components: Mapping[str, Any] | Iterable[ComponentSpec]) -> dict[str, ComponentSpec]:
    if isinstance(components, Mapping):
        items = [
            value if isinstance(value, ComponentSpec) else ComponentSpec.from_mapping(name, value)
            for name, value in components.items()
        ]
    else:
        items = list(components)
    specs = {spec.name: spec for spec in items}
    tokens = [spec.token for spec in specs.values()]
    if len(set(tokens)) != len(tokens):
        raise ValueError("two components share one token")
    return specs


def key_path(path: KeyPath | str | None) -> list[str]:
    """["a", "b"], "a/b" and "/a/b" all name the same key; None or "" the whole tree."""
    if path is None:
        return []
    if isinstance(path, str):
        return [part for part in path.strip("/").split("/") if part]
    return [str(part) for part in path]


def lookup(tree: Any, path: KeyPath) -> Any:
    """The node at `path`, or the module's _MISSING marker (see `exists`)."""
    node = tree
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return _MISSING
        node = node[key]
    return node


def exists(node: Any) -> bool:
    return node is not _MISSING


def _leaf_changes(old: Any, new: Any, prefix: list[str]) -> list[list[str]]:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        changes: list[list[str]] = []
        for key in list(old) + [k for k in new if k not in old]:
            changes += _leaf_changes(old.get(key, _MISSING), new.get(key, _MISSING), prefix + [key])
        return changes
    if old is _MISSING and isinstance(new, Mapping):
        return _leaf_changes({}, new, prefix) or [prefix]
    return [] if old == new or old is new else [prefix]


def assign(tree: dict[str, Any], path: KeyPath | str | None, value: Any) -> list[list[str]]:
    """Set `path` to a copy of `value` (creating parents); return the key paths that changed."""
    path = key_path(path)
    if not path:
        if not isinstance(value, Mapping):
            raise ValueError("the whole configuration must be a mapping")
        changes = _leaf_changes(tree, value, [])
        tree.clear()
        tree.update(copy.deepcopy(dict(value)))
        return changes
    parent = tree
    for key in path[:-1]:
        if not isinstance(parent.get(key), dict):
            parent[key] = {}
        parent = parent[key]
    changes = _leaf_changes(parent.get(path[-1], _MISSING), value, path)
    parent[path[-1]] = copy.deepcopy(value)
    return changes


def related(subscribed: KeyPath, changed: KeyPath) -> bool:
    """A change at `changed` concerns a subscriber of `subscribed` (one is under the other)."""
    shorter = min(len(subscribed), len(changed))
    return list(subscribed[:shorter]) == list(changed[:shorter])


def json_pointer(pointer: str) -> list[str]:
    """RFC 6901: "" is the whole document, "/a/b" the key b under a (~1 is "/", ~0 is "~")."""
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise ValueError(f"reset path {pointer!r} is not a JSON pointer (it must start with /)")
    return [part.replace("~1", "/").replace("~0", "~") for part in pointer[1:].split("/")]


def merged(base: Any, update: Any) -> Any:
    """`update` merged into `base`: mappings key by key, anything else replaced."""
    if not (isinstance(base, Mapping) and isinstance(update, Mapping)):
        return copy.deepcopy(update)
    result = copy.deepcopy(dict(base))
    for key, value in update.items():
        result[key] = merged(result[key], value) if key in result else copy.deepcopy(value)
    return result


def apply_update(
    current: Mapping[str, Any],
    defaults: Mapping[str, Any] | None,
    merge: Mapping[str, Any] | str | None = None,
    reset: Iterable[str] = (),
) -> dict[str, Any]:
    """The configuration a deployment's `configurationUpdate` gives a component: first `reset`
    (JSON pointers; each key goes back to its default, or away when the defaults lack it; ""
    resets everything), then `merge` (a mapping, or the JSON text a deployment document holds)."""
    result = copy.deepcopy(dict(current))
    defaults = defaults or {}
    for pointer in reset:
        path = json_pointer(pointer)
        if not path:
            result = copy.deepcopy(dict(defaults))
            continue
        default = lookup(defaults, path)
        if exists(default):
            assign(result, path, default)
        else:
            parent = lookup(result, path[:-1])
            if isinstance(parent, dict):
                parent.pop(path[-1], None)
    if isinstance(merge, str):
        merge = json.loads(merge) if merge.strip() else {}
    if merge is not None and not isinstance(merge, Mapping):
        raise ValueError(f"merge must be a JSON object, not {type(merge).__name__}")
    return merged(result, merge or {})
