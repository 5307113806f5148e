"""Write the reference parts of docs/ from the code, so they cannot drift from it.

    .venv/bin/python scripts/generate_docs.py           rewrite the generated blocks that are stale
    .venv/bin/python scripts/generate_docs.py --check   change nothing; exit 1 naming each stale page

A generated block sits between `<!-- generated: KEY -->` and `<!-- end generated -->` in a page
that is otherwise written by hand; only the blocks are rewritten:

- docs/cli.md: `help visual-search ...`, the `--help` of the command and of every subcommand and
  sub-group (click's API, in-process). A new command gets a new section at the end.
- docs/settings.md: `settings <component>`, the table of the component's settings class
  (components/<component>/settings.py: key, type, default, allowed values, help).
- docs/formats.md: `grants`, every IPC topic each recipe in recipes/ allows, and for what.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import re
import sys
import typing
from pathlib import Path

import click
import yaml
from click.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DOCS = REPO / "docs"
HELP_WIDTH = 100
BLOCK = re.compile(r"<!-- generated: (?P<key>[^>]+?) -->\n(?P<body>.*?)<!-- end generated -->", re.S)
REGENERATE = ".venv/bin/python scripts/generate_docs.py"


class DocsError(Exception):
    """A page that cannot be regenerated without a decision by hand."""


# ---- what the code says -------------------------------------------------------------------
def commands() -> dict[str, click.Command]:
    """'visual-search', 'visual-search build-index', ... -> command, groups before their subcommands."""
    from cloud_sync.cli.main import main

    found: dict[str, click.Command] = {}

    def walk(command: click.Command, path: str) -> None:
        found[path] = command
        if isinstance(command, click.Group):
            for name in command.list_commands(click.Context(command)):
                sub = command.get_command(click.Context(command), name)
                if sub is not None and not sub.hidden:
                    walk(sub, f"{path} {name}")

    walk(main, "visual-search")
    return found


def help_text(path: str) -> str:
    from cloud_sync.cli.main import main

    args = path.split()[1:] + ["--help"]
    result = CliRunner().invoke(
        main, args, prog_name="visual-search", terminal_width=HELP_WIDTH, max_content_width=HELP_WIDTH
    )
    if result.exit_code != 0:
        raise DocsError(f"`{path} --help` exited {result.exit_code}: {result.output}{result.exception or ''}")
    return result.output.rstrip() + "\n"


def component_packages() -> list[str]:
    """The components that run as processes (components/<name>/__main__.py), shared code excluded."""
    return sorted(p.parent.name for p in (REPO / "components").glob("*/__main__.py"))


def settings_class(component: str) -> type:
    """The settings dataclass of a component: the most derived `...Settings` dataclass defined in
    components/<component>/settings.py (component.py while a component still keeps it there)."""
    module_name = "settings" if (REPO / "components" / component / "settings.py").is_file() else "component"
    module = importlib.import_module(f"components.{component}.{module_name}")
    classes = [
        c
        for c in vars(module).values()
        if isinstance(c, type)
        and dataclasses.is_dataclass(c)
        and c.__module__ == module.__name__
        and c.__name__.endswith("Settings")
    ]
    leaves = [c for c in classes if not any(other is not c and issubclass(other, c) for other in classes)]
    if len(leaves) != 1:
        raise DocsError(
            f"{module.__name__}: expected one settings dataclass, found {[c.__name__ for c in leaves]}"
        )
    return leaves[0]


def recipes() -> dict[str, dict]:
    """component package -> its recipe (the one whose Run step starts `-m components.<package>`)."""
    found = {}
    for path in sorted((REPO / "recipes").glob("*.yaml")):
        match = re.search(r"-m components\.(\w+)", path.read_text())
        if match:
            found[match.group(1)] = yaml.safe_load(path.read_text())
    return found


# ---- rendering ----------------------------------------------------------------------------
def render(key: str) -> str:
    kind, _, arg = key.partition(" ")
    if kind == "help":
        return "```text\n" + help_text(arg) + "```\n"
    if kind == "settings":
        return render_settings(arg)
    if kind == "grants":
        return render_grants()
    raise DocsError(f"unknown generated block {key!r}")


def _cell(value) -> str:
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value == "":
        return '`""`'
    return f"`{value}`"


def _allowed(field: dataclasses.Field) -> str:
    low, high, choices = (field.metadata.get(k) for k in ("min", "max", "choices"))
    if choices is not None:
        return ", ".join(f"`{c}`" for c in choices)
    if low is not None and high is not None:
        return f"{low} to {high}"
    if low is not None:
        return f"at least {low}"
    if high is not None:
        return f"at most {high}"
    return ""


def render_settings(component: str) -> str:
    cls = settings_class(component)
    recipe = recipes().get(component, {})
    hints = typing.get_type_hints(cls)
    where = Path(sys.modules[cls.__module__].__file__).relative_to(REPO).as_posix()
    fields = dataclasses.fields(cls)
    has_live = any("live" in field.metadata for field in fields)  # on a configuration update
    lines = [
        f"`{recipe.get('ComponentName', '?')}`, from `{cls.__name__}` in `{where}`.",
        "",
        "| key | type | default | allowed |" + (" on update |" if has_live else "") + " meaning |",
        "|---|---|---|---|" + ("---|" if has_live else "") + "---|",
    ]
    for field in fields:
        meaning = field.metadata.get("help", "").replace("|", "\\|")
        kind = getattr(hints[field.name], "__name__", str(hints[field.name]))
        update = (" live |" if field.metadata.get("live") else " rebuild |") if has_live else ""
        lines.append(
            f"| `{field.name}` | {kind} | {_cell(field.default)} | {_allowed(field)} |{update} {meaning} |"
        )
    retired = dict(getattr(cls, "RETIRED", {}) or {})
    if retired:
        lines += ["", "Retired keys, ignored (and noted in the log) where a device still has them:", ""]
        lines += [f"- `{key}`: {what}" for key, what in sorted(retired.items())]
    return "\n".join(lines) + "\n"


def render_grants() -> str:
    lines = [
        "| component | service | operations | resources | why (the recipe's policyDescription) |",
        "|---|---|---|---|---|",
    ]
    for component, recipe in sorted(recipes().items()):
        access = recipe["ComponentConfiguration"]["DefaultConfiguration"].get("accessControl", {})
        for service, policies in access.items():
            for policy in policies.values():
                operations = ", ".join(f"`{op.split('#')[-1]}`" for op in policy["operations"])
                resources = ", ".join(f"`{r}`" for r in policy["resources"])
                lines.append(
                    f"| {component} | `{service}` | {operations} | {resources} | "
                    f"{policy.get('policyDescription', '')} |"
                )
    return "\n".join(lines) + "\n"


# ---- pages ----------------------------------------------------------------------------------
def _new_command_section(key: str) -> str:
    return f"\n## `{key.split(' ', 1)[1]}`\n\n<!-- generated: {key} -->\n<!-- end generated -->\n"


def _new_settings_section(key: str) -> str:
    return f"\n## {key.split(' ', 1)[1]}\n\n<!-- generated: {key} -->\n<!-- end generated -->\n"


PAGES = {
    # page: (keys the code has, section added for a key the page lacks)
    "cli.md": (lambda: [f"help {path}" for path in commands()], _new_command_section),
    "settings.md": (lambda: [f"settings {name}" for name in component_packages()], _new_settings_section),
    "formats.md": (lambda: ["grants"], None),
}


def regenerate(page: str, text: str) -> str:
    expected_keys, new_section = PAGES[page]
    expected = expected_keys()
    present = [m.group("key") for m in BLOCK.finditer(text)]
    gone = [key for key in present if key not in expected]
    if gone:
        raise DocsError(
            f"docs/{page} documents {', '.join(gone)}, which the code no longer has: "
            f"remove or rename that section by hand, then run {REGENERATE}"
        )
    missing = [key for key in expected if key not in present]
    if missing and new_section is None:
        raise DocsError(f"docs/{page} lacks the generated block(s) {', '.join(missing)}")
    text = text.rstrip("\n") + "\n" + "".join(new_section(key) for key in missing)
    return BLOCK.sub(
        lambda m: f"<!-- generated: {m.group('key')} -->\n{render(m.group('key'))}<!-- end generated -->",
        text,
    )


def stale_pages() -> list[str]:
    """The pages whose generated blocks differ from what the code says now."""
    stale = []
    for page in PAGES:
        text = (DOCS / page).read_text()
        if regenerate(page, text) != text:
            stale.append(f"docs/{page}")
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a page is stale")
    args = parser.parse_args(argv)
    try:
        stale = stale_pages()
        if args.check:
            for page in stale:
                print(f"{page} is stale: run {REGENERATE}", file=sys.stderr)
            return 1 if stale else 0
        for page in stale:
            path = DOCS / Path(page).name
            path.write_text(regenerate(path.name, path.read_text()))
            print(f"wrote {page}")
        if not stale:
            print("docs/ is up to date")
        return 0
    except DocsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
