"""`validate-config`: check a deployment's configuration for one component without starting anything."""

from __future__ import annotations

from pathlib import Path

import click

from cloud_sync.cli.options import expected_errors
from components.common.errors import VisualSearchError
from components.display import settings as display
from components.featurizer import settings as featurizer
from components.local_search import settings as local_search

# short name -> (Greengrass component name, settings class)
SETTINGS = {
    module.COMPONENT: (module.GREENGRASS_NAME, cls)
    for module, cls in (
        (featurizer, featurizer.FeaturizerSettings),
        (local_search, local_search.LocalSearchSettings),
        (display, display.DisplaySettings),
    )
}
NAMES = {**{short: short for short in SETTINGS}, **{full: short for short, (full, _) in SETTINGS.items()}}


def configuration_update(document, greengrass_name: str, where: str) -> tuple[object, list]:
    """(merge, reset) from a deployment document, a configurationUpdate or a plain configuration."""
    if not isinstance(document, dict):
        raise VisualSearchError(f"{where}: expected a JSON or YAML mapping, not {type(document).__name__}")
    if isinstance(document.get("components"), dict):  # a whole deployment (CreateDeployment request)
        component = document["components"].get(greengrass_name)
        if not isinstance(component, dict) or not isinstance(component.get("configurationUpdate"), dict):
            raise VisualSearchError(
                f"{where}: the deployment has no configurationUpdate for {greengrass_name}"
            )
        document = component["configurationUpdate"]
    elif not (document and set(document) <= {"merge", "reset"}):
        return document, []  # a plain configuration: merged as it is
    reset = document.get("reset") or []
    if not isinstance(reset, list) or not all(isinstance(pointer, str) for pointer in reset):
        raise VisualSearchError(f'{where}: reset must be a list of JSON pointers such as "/min_score"')
    return document.get("merge"), reset


def check_file(component: str, path: Path) -> tuple[str, list[str], list[str]]:
    """(Greengrass name, problems, retired keys ignored) of FILE deployed onto the recipe's defaults."""
    import yaml

    from components.common.settings import check_settings, defaults
    from devkit.nucleus.config import apply_update

    short = NAMES[component]
    greengrass_name, cls = SETTINGS[short]
    try:
        document = yaml.safe_load(path.read_text())  # YAML is a superset of JSON
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None)
        reason = (
            f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
            if mark and problem
            else f"{type(exc).__name__}: {exc}"
        )
        raise VisualSearchError(f"{path}: cannot read it as JSON or YAML ({reason})") from None
    merge, reset = configuration_update({} if document is None else document, greengrass_name, str(path))
    base = defaults(cls)
    try:
        configuration = apply_update(base, base, merge, reset)
    except ValueError as exc:  # a merge that is not a JSON object, a reset that is not a pointer
        raise VisualSearchError(f"{path}: {exc}") from None
    checked = check_settings(cls, configuration, short)
    return greengrass_name, checked.problems, checked.retired


@click.command("validate-config")
@click.argument("component", type=click.Choice(list(NAMES)), metavar="COMPONENT")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@expected_errors
def validate_config(component, file):
    """Check a component's configuration, offline.

    FILE, a deployment's configuration, is checked as COMPONENT would check it on a device,
    without starting anything. Prints OK, or every problem and exits 1.

    COMPONENT: featurizer, local_search, display, or its full name (com.visualsearch.Featurizer, ...).
    FILE (JSON or YAML): the component's configuration ({"min_score": 0.5}), a configurationUpdate
    ({"merge": ..., "reset": [...]}, merge as an object or as JSON text), or a whole deployment
    document such as deploy/deployment.json. It is applied to the recipe's defaults, as on a
    freshly installed device: reset first, then merge. Unknown keys, wrong types and values out of
    bounds are problems; keys retired by a newer version are only noted.
    """
    greengrass_name, problems, retired = check_file(component, file)
    for note in retired:
        click.echo(f"note: retired setting ignored: {note}")
    for problem in problems:
        click.echo(problem)
    if problems:
        raise SystemExit(1)
    click.echo(f"OK: {file} is a valid configuration of {greengrass_name}")
