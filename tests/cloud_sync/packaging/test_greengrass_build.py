"""The custom GDK build: three zips and three finished recipes where GDK expects them."""

import ast
import hashlib
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from cloud_sync.packaging.greengrass_build import (
    COMPONENTS,
    MAX_RECIPE_BYTES,
    PACKAGES,
    ZIP_NAME,
    BuildError,
    build,
    install_marker,
    project_version,
)
from tests.deploy_helpers import pins, pyproject
from tests.kiosk_helpers import REPO

VERSION = project_version(REPO)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("gg") / "greengrass-build"
    return out, {b.name: b for b in build(REPO, out)}


def names(zip_path: Path) -> set[str]:
    with zipfile.ZipFile(zip_path) as archive:
        return set(archive.namelist())


def test_gdk_custom_build_command_writes_the_layout_gdk_expects(tmp_path):
    command = json.loads((REPO / "gdk-config.json").read_text())["component"]["com.visualsearch.Featurizer"][
        "build"
    ]["custom_build_command"]
    out = tmp_path / "greengrass-build"
    result = subprocess.run(
        [sys.executable if command[0] == "python3" else command[0], *command[1:], "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (out / "recipes").iterdir()) == sorted(f"{c.name}.yaml" for c in COMPONENTS)
    assert sorted(p.relative_to(out).as_posix() for p in (out / "artifacts").rglob("*.zip")) == sorted(
        f"artifacts/{c.name}/{VERSION}/{ZIP_NAME}" for c in COMPONENTS
    )
    assert result.stdout.count("built com.visualsearch.") == 3


def test_recipe_uris_match_the_zip_names_and_sizes_are_under_the_limit(built):
    out, by_name = built
    for name, b in by_name.items():
        recipe = yaml.safe_load(b.recipe_path.read_text())
        assert recipe["ComponentName"] == name and recipe["ComponentVersion"] == VERSION
        uris = [a["URI"] for m in recipe["Manifests"] for a in m["Artifacts"]]
        files = [p.name for p in (out / "artifacts" / name / VERSION).iterdir()]
        assert [uri.rsplit("/", 1)[-1] for uri in uris] == files == [ZIP_NAME]
        assert all(uri.startswith("s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/") for uri in uris)
        assert b.recipe_path.stat().st_size < MAX_RECIPE_BYTES


def test_install_marker_names_the_version_and_the_requirements(built):
    _, by_name = built
    for component in COMPONENTS:
        requirements = (REPO / component.requirements).read_bytes()
        marker = f".installed-{VERSION}-{hashlib.sha256(requirements).hexdigest()[:12]}"
        text = by_name[component.name].recipe_path.read_text()
        assert "INSTALL_MARKER" not in text and text.count(marker) == 2
    assert install_marker(VERSION, b"a==1\n") != install_marker(VERSION, b"a==2\n")
    assert install_marker("0.1.0", b"a==1\n") != install_marker("0.1.1", b"a==1\n")


def shipped_sources() -> set[str]:
    found = {"components/__init__.py"}
    for tree in PACKAGES[1:]:
        found |= {
            p.relative_to(REPO).as_posix()
            for p in (REPO / tree).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        }
    return found


def test_zips_hold_every_package_file_and_nothing_of_the_dev_tree(built):
    _, by_name = built
    for component in COMPONENTS:
        contents = names(by_name[component.name].zip_path)
        assert shipped_sources() <= contents  # nothing needed is dropped (no test* pattern at work)
        assert "components/display/templates/kiosk.html" in contents
        assert not [
            n
            for n in contents
            if n.startswith(("tests/", "cloud_sync/", "devkit/nucleus/"))
            or "__pycache__" in n
            or n.endswith(".pyc")
            or "/." in n
        ]
        with zipfile.ZipFile(by_name[component.name].zip_path) as archive:
            assert archive.read("requirements.txt") == (REPO / component.requirements).read_bytes()
    model = {p.relative_to(REPO).as_posix() for p in (REPO / "models/demo-featurizer").iterdir()}
    shipped = names(by_name["com.visualsearch.Featurizer"].zip_path)
    # the assembled featurizer ships; the head it was assembled from does not (it is inside the params)
    assembly_inputs = {"models/demo-featurizer/head.json", "models/demo-featurizer/residual-head.params"}
    assert model - assembly_inputs <= shipped and not assembly_inputs & shipped
    assert "models/demo-featurizer/featurizer-v1-0000.params" in shipped
    assert "models/demo-featurizer/featurizer-v1.onnx" in shipped  # what the device runs, with ONNX Runtime
    assert not any(n.startswith("models/") for n in names(by_name["com.visualsearch.Display"].zip_path))


def test_the_build_is_reproducible(built, tmp_path):
    _, first = built
    again = {b.name: b for b in build(REPO, tmp_path / "again")}
    for name, b in first.items():
        assert b.zip_path.read_bytes() == again[name].zip_path.read_bytes()
        assert b.recipe_path.read_bytes() == again[name].recipe_path.read_bytes()


def copy_project(root: Path) -> Path:
    root.mkdir()
    for name in ("pyproject.toml", "gdk-config.json"):
        shutil.copy(REPO / name, root / name)
    ignore = shutil.ignore_patterns("__pycache__")
    for tree in ("recipes", "deploy", "components", "models"):
        shutil.copytree(REPO / tree, root / tree, ignore=ignore)
    return root


def test_a_version_copy_that_disagrees_stops_the_build_and_names_the_file(tmp_path):
    root = copy_project(tmp_path / "p")
    recipe = root / "recipes" / "com.visualsearch.Display.yaml"
    recipe.write_text(
        recipe.read_text().replace(f'ComponentVersion: "{VERSION}"', 'ComponentVersion: "9.9.9"')
    )
    with pytest.raises(
        BuildError, match=r"com\.visualsearch\.Display\.yaml: ComponentVersion '9\.9\.9' differs"
    ):
        build(root, tmp_path / "out")
    config = root / "gdk-config.json"
    config.write_text(config.read_text().replace(f'"version": "{VERSION}"', '"version": "0.0.1"'))
    with pytest.raises(BuildError, match=r"gdk-config\.json: version '0\.0\.1' differs from pyproject"):
        build(root, tmp_path / "out")


def test_a_test_file_inside_a_shipped_package_is_refused(tmp_path):
    root = copy_project(tmp_path / "p")
    (root / "components" / "display" / "test_page.py").write_text("")
    with pytest.raises(
        BuildError, match=r"components/display/test_page\.py: a test file inside a shipped package"
    ):
        build(root, tmp_path / "out")


def test_a_missing_default_model_stops_the_build(tmp_path):
    root = copy_project(tmp_path / "p")
    shutil.rmtree(root / "models" / "demo-featurizer")
    with pytest.raises(
        BuildError, match=r"demo-featurizer: missing \(shipped in the com\.visualsearch\.Featurizer"
    ):
        build(root, tmp_path / "out")


def test_a_default_model_without_its_onnx_export_stops_the_build(tmp_path):
    root = copy_project(tmp_path / "p")
    (root / "models" / "demo-featurizer" / "featurizer-v1.onnx").unlink()
    with pytest.raises(BuildError, match=r"demo-featurizer: not assembled yet \(or without its ONNX"):
        build(root, tmp_path / "out")


# ---- the pinned device requirements ---------------------------------------------------------
@pytest.mark.parametrize("component", COMPONENTS, ids=lambda c: c.package)
def test_device_pins_satisfy_pyproject(component):
    declared = {
        canonicalize_name(Requirement(r).name): Requirement(r).specifier
        for r in pyproject()["project"]["dependencies"]
    }
    for name, version in pins(component).items():
        if name in declared:
            assert declared[name].contains(
                version
            ), f"{component.requirements}: {name}=={version} vs pyproject"


def imported_modules(package: str) -> set[str]:
    """Top-level third-party modules imported (anywhere, lazily too) by the code a component runs."""
    todo, seen, third_party = [f"components.{package}.__main__"], set(), set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = REPO / Path(*module.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        if not path.is_file():
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            targets = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else (
                    [node.module]
                    if isinstance(node, ast.ImportFrom) and node.module and not node.level
                    else []
                )
            )
            for target in targets:
                parts = target.split(".")
                if parts[0] == "components":
                    todo += [".".join(parts[:i]) for i in range(2, len(parts) + 1)]
                elif parts[0] not in sys.stdlib_module_names and parts[0] != "__future__":
                    third_party.add(parts[0])
    return third_party


@pytest.mark.parametrize("component", COMPONENTS, ids=lambda c: c.package)
def test_every_module_a_component_imports_is_pinned_for_it(component):
    providers = importlib.metadata.packages_distributions()
    pinned = pins(component)
    for module in imported_modules(component.package):
        dists = {canonicalize_name(d) for d in providers.get(module, [])}
        assert dists & set(pinned), (
            f"{component.package} imports {module} ({dists or 'unknown'}), "
            f"not pinned in {component.requirements}"
        )
    assert re.search(r"awsiotsdk==", (REPO / component.requirements).read_text())
