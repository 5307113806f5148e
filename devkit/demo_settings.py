"""`visual-search demo --set component.key=value`: component settings given on the command line,
checked against the component's settings class with its recipe's defaults, as a deployment's
configuration would be."""

from __future__ import annotations

from pathlib import Path

from components.common.errors import VisualSearchError
from components.common.settings import check_settings

SHORT_NAMES = {
    "com.visualsearch.Featurizer": "featurizer",
    "com.visualsearch.LocalSearch": "local_search",
    "com.visualsearch.Display": "display",
}
GREENGRASS_NAMES = {short: name for name, short in SHORT_NAMES.items()}


def settings_class(short_name: str):
    if short_name == "featurizer":
        from components.featurizer.settings import FeaturizerSettings

        return FeaturizerSettings
    if short_name == "local_search":
        from components.local_search.settings import LocalSearchSettings

        return LocalSearchSettings
    from components.display.settings import DisplaySettings

    return DisplaySettings


def parse_set(text: str) -> tuple[str, str, str]:
    """'display.currency=EUR' -> ('display', 'currency', 'EUR')."""
    target, equals, value = text.partition("=")
    short_name, dot, key = target.strip().partition(".")
    if not equals or not dot or not key:
        raise VisualSearchError(f"--set {text!r}: expected component.key=value, e.g. display.currency=EUR")
    if short_name not in GREENGRASS_NAMES:
        raise VisualSearchError(
            f"--set {text!r}: no component {short_name!r} (one of {', '.join(GREENGRASS_NAMES)})"
        )
    return short_name, key.strip(), value


def configure(overrides: dict[str, dict], sets: list[str], recipes: Path) -> dict[str, dict]:
    """The demo's `overrides` (Greengrass name -> settings) with every `--set` applied, each
    component's result checked as a deployment would be: every problem names the key and value."""
    from devkit.nucleus.runner import load_recipe

    given: dict[str, dict] = {}
    for text in sets:
        short_name, key, value = parse_set(text)
        given.setdefault(short_name, {})[key] = value
    result = {name: dict(values) for name, values in overrides.items()}
    for short_name, values in given.items():
        name = GREENGRASS_NAMES[short_name]
        recipe = load_recipe(recipes / f"{name}.yaml")
        defaults = recipe.get("ComponentConfiguration", {}).get("DefaultConfiguration", {})
        configuration = {**defaults, **result.get(name, {}), **values}
        checked = check_settings(settings_class(short_name), configuration, short_name)
        if checked.problems:
            raise VisualSearchError(f"--set: {'; '.join(checked.problems)}")
        result.setdefault(name, {}).update({key: getattr(checked.settings, key) for key in values})
    return result
