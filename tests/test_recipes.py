"""The recipes, gdk-config.json and the version: what a nucleus and the GDK CLI would refuse."""

import json
import re

import pytest

from cloud_sync.packaging.greengrass_build import (
    ARTIFACT_URI,
    INSTALL_MARKER,
    MAX_RECIPE_BYTES,
    ZIP_NAME,
    project_version,
)
from components.common.settings import defaults, parse_settings
from tests.deploy_helpers import PACKAGES, SERVICES, SETTINGS, lifecycle, pyproject
from tests.kiosk_helpers import RECIPES, REPO, recipe

NAMES = list(SETTINGS)
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
VARIABLE = re.compile(r"\{([^{}]*)\}")


def test_recipes_dir_holds_exactly_the_three_components():
    assert sorted(p.stem for p in RECIPES.glob("*.yaml")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_recipe_has_what_a_nucleus_requires(name):
    r = recipe(name)
    assert (RECIPES / f"{name}.yaml").stat().st_size < MAX_RECIPE_BYTES
    assert r["RecipeFormatVersion"] == "2020-01-25"
    assert r["ComponentName"] == name and re.fullmatch(r"[a-z]+(\.[A-Za-z0-9]+)+", name)
    assert not name.startswith("aws.greengrass")
    assert SEMVER.match(r["ComponentVersion"]) and r["ComponentDescription"] and r["ComponentPublisher"]
    steps = lifecycle(r)
    assert set(steps) == {"Setenv", "Install", "Run"}
    assert steps["Setenv"] == {
        "PYTHONPATH": "{artifacts:decompressedPath}/visual-search",
        "VISUAL_SEARCH_WORK_DIR": "{work:path}",
    }
    assert steps["Run"]["Script"] == f"{{work:path}}/venv/bin/python -u -m components.{PACKAGES[name]}"
    assert "RequiresPrivilege" not in steps["Run"] and "RequiresPrivilege" not in steps["Install"]
    (manifest,) = r["Manifests"]
    assert manifest["Artifacts"] == [{"URI": ARTIFACT_URI, "Unarchive": "ZIP"}]
    assert ARTIFACT_URI.endswith("/" + ZIP_NAME)


@pytest.mark.parametrize("name", NAMES)
def test_install_makes_a_venv_once_per_version_with_a_long_timeout(name):
    install = lifecycle(recipe(name))["Install"]
    assert install["Timeout"] >= 1800  # mxnet, opencv and faiss wheels over a store's network
    assert install["Skipif"] == f"exists {{work:path}}/venv/{INSTALL_MARKER}"
    script = install["Script"]
    assert f'touch "$VENV/{INSTALL_MARKER}"' in script.splitlines()[-1]  # the marker is the last step
    assert 'VENV="{work:path}/venv"' in script and "-m venv" in script
    assert '--only-binary=:all: -r "{artifacts:decompressedPath}/visual-search/requirements.txt"' in script
    # braces only as recipe variables the nucleus fills in: shell `${x}` or `{ ...; }` would be misread
    assert set(VARIABLE.findall(script)) == {"work:path", "artifacts:decompressedPath"}


def test_the_three_install_scripts_are_the_same():
    scripts = {lifecycle(recipe(name))["Install"]["Script"] for name in NAMES}
    assert len(scripts) == 1


@pytest.mark.parametrize("name", NAMES)
def test_default_configuration_is_the_settings_model(name):
    configuration = recipe(name)["ComponentConfiguration"]["DefaultConfiguration"]
    settings = SETTINGS[name]
    assert {k: v for k, v in configuration.items() if k != "accessControl"} == defaults(settings)
    assert parse_settings(settings, configuration, name) == settings()


@pytest.mark.parametrize("name", NAMES)
def test_access_control_is_least_privilege(name):
    access = recipe(name)["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"]
    assert set(access) <= set(SERVICES)
    for service, policies in access.items():
        kind = service.rsplit(".", 1)[-1]
        for policy_id, policy in policies.items():
            assert re.fullmatch(rf"{re.escape(name)}:{kind}:\d+", policy_id), policy_id
            assert policy["policyDescription"] and policy["operations"] and policy["resources"]
            assert set(policy["operations"]) <= SERVICES[service], policy_id
            for resource in policy["resources"]:
                assert resource.startswith("visualsearch/"), resource
                assert not set("*+#?$") & set(resource), f"{policy_id}: {resource} is not an exact topic"
                assert set(VARIABLE.findall(resource)) <= (
                    {"iot:thingName"} if kind == "mqttproxy" else set()
                )


def test_policy_ids_are_unique_across_the_device():
    ids = [
        policy_id
        for name in NAMES
        for service in recipe(name)["ComponentConfiguration"]["DefaultConfiguration"][
            "accessControl"
        ].values()
        for policy_id in service
    ]
    assert len(ids) == len(set(ids))


def test_the_component_that_reads_s3_depends_on_the_token_exchange_service():
    assert recipe("com.visualsearch.LocalSearch")["ComponentDependencies"] == {
        "aws.greengrass.TokenExchangeService": {
            "VersionRequirement": ">=2.0.0 <3.0.0",
            "DependencyType": "HARD",
        }
    }
    for name in ("com.visualsearch.Featurizer", "com.visualsearch.Display"):
        assert "ComponentDependencies" not in recipe(name)


def test_versions_come_from_pyproject():
    version = pyproject()["project"]["version"]
    assert project_version(REPO) == version
    gdk = json.loads((REPO / "gdk-config.json").read_text())
    assert [c["version"] for c in gdk["component"].values()] == [version]
    assert {name: recipe(name)["ComponentVersion"] for name in NAMES} == dict.fromkeys(NAMES, version)


def test_gdk_config_follows_the_gdk_cli_schema():
    """The GDK CLI (1.6) schema: one component with author, version, build and publish."""
    gdk = json.loads((REPO / "gdk-config.json").read_text())
    assert set(gdk) == {"component", "gdk_version"} and SEMVER.match(gdk["gdk_version"])
    ((name, component),) = gdk["component"].items()
    assert re.fullmatch(r"[a-zA-Z0-9-_.]+", name)
    assert set(component) == {"author", "version", "build", "publish"}
    assert isinstance(component["author"], str) and SEMVER.match(component["version"])
    build = component["build"]
    assert build["build_system"] == "custom" and set(build) == {"build_system", "custom_build_command"}
    assert build["custom_build_command"] == ["python3", "-m", "cloud_sync.packaging.greengrass_build"]
    assert set(component["publish"]) <= {"bucket", "region", "options"} and component["publish"]["bucket"]


def test_gdk_finds_a_recipe_for_its_component():
    """GDK needs recipe.yaml (or .json) in the project root even for a custom build; ours is a
    link to the recipe of the component gdk-config.json names, so `gdk component publish`
    reads greengrass-build/recipes/<that name>.yaml, which the build writes."""
    link = REPO / "recipe.yaml"
    assert link.is_symlink() and not (REPO / "recipe.json").exists()
    (name,) = json.loads((REPO / "gdk-config.json").read_text())["component"]
    assert link.resolve() == (RECIPES / f"{name}.yaml").resolve()
