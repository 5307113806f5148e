"""The docs match the code: generated pages are fresh, every command, option and setting is
documented, recipes default to the code's defaults, links resolve, and the README stays short."""

import dataclasses
import importlib.util
import re

import click
import pytest

from components.common import messages, s3_layout
from components.common.settings import defaults, describe
from components.common.telemetry import UsageRecord
from tests.kiosk_helpers import REPO

DOCS = REPO / "docs"
PAGES = ("architecture.md", "cli.md", "settings.md", "formats.md", "deployment.md")


def load_generator():
    spec = importlib.util.spec_from_file_location("generate_docs", REPO / "scripts" / "generate_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generator = load_generator()


def docs_text() -> str:
    return "\n".join(path.read_text() for path in sorted(DOCS.glob("*.md")))


def test_generated_pages_are_fresh():
    stale = generator.stale_pages()
    assert not stale, f"{', '.join(stale)} stale: run .venv/bin/python scripts/generate_docs.py"


def test_check_mode_names_a_stale_page_and_exits_1(tmp_path, monkeypatch, capsys):
    for page in generator.PAGES:
        (tmp_path / page).write_text((DOCS / page).read_text())
    text = (tmp_path / "settings.md").read_text()
    (tmp_path / "settings.md").write_text(text.replace("| `top_k` |", "| `top_k_renamed` |"))
    monkeypatch.setattr(generator, "DOCS", tmp_path)
    assert generator.main(["--check"]) == 1
    assert "docs/settings.md is stale" in capsys.readouterr().err
    assert (tmp_path / "settings.md").read_text() != (
        DOCS / "settings.md"
    ).read_text()  # --check wrote nothing
    assert generator.main([]) == 0 and generator.main(["--check"]) == 0
    assert (tmp_path / "settings.md").read_text() == (DOCS / "settings.md").read_text()


def test_a_new_command_gets_a_section_of_its_own(tmp_path, monkeypatch):
    page = (DOCS / "cli.md").read_text()
    start = page.index("## `visual-search search-image`")
    (tmp_path / "cli.md").write_text(page[:start] + page[page.index("\n## ", start + 1) + 1 :])
    monkeypatch.setattr(generator, "DOCS", tmp_path)
    redone = generator.regenerate("cli.md", (tmp_path / "cli.md").read_text())
    assert "## `visual-search search-image`" in redone and "Usage: visual-search search-image" in redone


@pytest.mark.parametrize("path,command", list(generator.commands().items()))
def test_every_command_and_option_is_in_the_docs(path, command):
    text = docs_text()
    assert f"`{path}`" in text, f"docs/ never names {path}"
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            for opt in param.opts + param.secondary_opts:
                assert opt in text, f"docs/ lack {opt} of {path}"


def test_the_three_components_have_their_settings_documented():
    assert generator.component_packages() == ["display", "featurizer", "local_search"]


@pytest.mark.parametrize("component", generator.component_packages())
def test_every_setting_is_documented_and_the_recipe_defaults_to_it(component):
    settings = generator.settings_class(component)
    page = (DOCS / "settings.md").read_text()
    for key, _, meaning in describe(settings):
        assert f"| `{key}` |" in page, f"docs/settings.md lacks setting {key} of {component}"
        assert meaning, f"setting {key} of {component} has no help text"
    recipe = generator.recipes()[component]
    configuration = recipe["ComponentConfiguration"]["DefaultConfiguration"]
    assert {k: v for k, v in configuration.items() if k != "accessControl"} == defaults(settings)


def test_every_topic_and_message_field_is_in_the_formats_page():
    page = (DOCS / "formats.md").read_text()
    topics = [
        messages.FEATURES,
        messages.MATCHES,
        messages.QUERIES,
        messages.IOT_INDEX_UPDATED,
        messages.STATUS_PREFIX + "<component>",
        messages.IOT_TELEMETRY.format(thing_name="<thingName>"),
    ]
    schemas = [
        messages.FEATURES_SCHEMA,
        messages.MATCHES_SCHEMA,
        messages.QUERY_SCHEMA,
        messages.STATUS_SCHEMA,
        messages.INDEX_UPDATED_SCHEMA,
    ]
    for name in topics + schemas:
        assert f"`{name}`" in page, f"docs/formats.md lacks {name}"
    for cls in (
        messages.FeatureMessage,
        messages.QueryMessage,
        messages.Match,
        messages.MatchesMessage,
        messages.StatusMessage,
        UsageRecord,
        s3_layout.Pointer,
    ):
        for field in dataclasses.fields(cls):
            if field.name not in ("id", "timestamp", "extra"):
                assert (
                    f"`{field.name}`" in page or f'"{field.name}"' in page
                ), f"docs/formats.md lacks field {field.name} of {cls.__name__}"


def test_links_between_the_docs_resolve():
    for path in [REPO / "README.md", *sorted(DOCS.glob("*.md"))]:
        text = path.read_text()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://")):
                continue
            file, _, anchor = target.partition("#")
            linked = (path.parent / file).resolve() if file else path
            assert linked.is_file(), f"{path.name}: link to missing {target}"
            if anchor and linked.suffix == ".md":
                headings = {_anchor(h) for h in re.findall(r"^#+ (.+)$", linked.read_text(), re.M)}
                assert anchor in headings, f"{path.name}: {target} names no heading of {file or path.name}"


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_is_short_starts_with_the_two_commands_and_links_every_page():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) < 200
    first_block = re.search(r"```sh\n(.*?)```", readme, re.S).group(1)
    assert [line.split()[0] for line in first_block.splitlines()] == ["./setup.sh", ".venv/bin/pytest"]
    assert ".venv/bin/pytest -q" in (REPO / ".ci" / "run").read_text()  # what CI runs is what the README says
    assert "visual-search demo" in (REPO / "setup.sh").read_text()
    for page in PAGES:
        assert f"(docs/{page})" in readme, f"README does not link docs/{page}"


def test_readme_names_only_commands_that_exist():
    readme = (REPO / "README.md").read_text()
    named = set(re.findall(r"`visual-search ([a-z][a-z-]+)", readme))
    named |= set(re.findall(r"` / `([a-z]+-[a-z-]+)", readme))
    top = {path.split()[1] for path in generator.commands() if len(path.split()) == 2}
    assert named and named <= top, f"README names commands that do not exist: {named - top}"
