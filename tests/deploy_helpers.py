"""Helpers for the deployment tests: recipes as a nucleus reads them, and their grants."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from cloud_sync.packaging.greengrass_build import COMPONENTS
from components.display.settings import DisplaySettings
from components.featurizer.component import FeaturizerSettings
from components.local_search.component import LocalSearchSettings
from devkit.nucleus.runner import substitute

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pip vendors the same parser
    from pip._vendor import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {
    "com.visualsearch.Featurizer": FeaturizerSettings,
    "com.visualsearch.LocalSearch": LocalSearchSettings,
    "com.visualsearch.Display": DisplaySettings,
}
PACKAGES = {c.name: c.package for c in COMPONENTS}
SERVICES = {
    "aws.greengrass.ipc.pubsub": {"aws.greengrass#PublishToTopic", "aws.greengrass#SubscribeToTopic"},
    "aws.greengrass.ipc.mqttproxy": {"aws.greengrass#PublishToIoTCore", "aws.greengrass#SubscribeToIoTCore"},
}


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def pins(component) -> dict[str, str]:
    lines = [line.split("#")[0].strip() for line in (ROOT / component.requirements).read_text().splitlines()]
    found = {}
    for line in filter(None, lines):
        requirement = Requirement(line)
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"{component.requirements}: {line} is not pinned with =="
        found[canonicalize_name(requirement.name)] = spec.version
    return found


def lifecycle(recipe: dict) -> dict:
    (manifest,) = [m for m in recipe["Manifests"] if m.get("Platform", {}).get("os") == "linux"]
    return manifest["Lifecycle"]


def grants(recipe: dict, thing_name: str) -> set[tuple[str, str, str]]:
    """(service, operation, resource) for every pair the recipe's accessControl allows."""
    access = recipe["ComponentConfiguration"]["DefaultConfiguration"].get("accessControl", {})
    return {
        (service, operation, resource.replace("{iot:thingName}", thing_name))
        for service, policies in access.items()
        for policy in policies.values()
        for operation in policy["operations"]
        for resource in policy["resources"]
    }


@dataclass
class Device:
    """The paths a nucleus gives one component, under a fresh root."""

    name: str
    root: Path

    @property
    def decompressed(self) -> Path:  # {artifacts:decompressedPath}
        return self.root / "packages" / "artifacts-unarchived" / self.name

    @property
    def work(self) -> Path:  # {work:path}
        return self.root / "work" / self.name

    def variables(self, thing_name: str = "kiosk-fresh-1") -> dict[str, str]:
        return {
            "artifacts:decompressedPath": str(self.decompressed),
            "work:path": str(self.work),
            "iot:thingName": thing_name,
        }

    def unpack(self, zip_path: Path) -> None:
        """As Unarchive: ZIP does: into <decompressedPath>/<zip name without .zip>/."""
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(self.decompressed / zip_path.stem)
        self.work.mkdir(parents=True, exist_ok=True)


def device_env(setenv: dict, variables: dict) -> dict[str, str]:
    """A component's environment without this test run's virtual environment in it."""
    venv_bin = str(Path(sys.prefix) / "bin")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")
    }
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p and p != venv_bin)
    env.update({k: substitute(str(v), variables) for k, v in setenv.items()})
    return env


def skipif_holds(skipif: str, variables: dict, env: dict) -> bool:
    """The nucleus's two Skipif forms: `exists <path>` and `onpath <executable>`."""
    kind, _, target = substitute(skipif, variables).partition(" ")
    if kind == "exists":
        return Path(target.strip()).exists()
    if kind == "onpath":
        return any((Path(d) / target.strip()).is_file() for d in env["PATH"].split(os.pathsep))
    raise ValueError(f"unknown Skipif {skipif!r}")


def run_install(recipe: dict, device: Device) -> tuple[bool, float, str]:
    """Run the Install step as the nucleus would: (skipped, seconds, output)."""
    steps, variables = lifecycle(recipe), device.variables()
    install = steps["Install"]
    env = device_env(steps.get("Setenv", {}), variables)
    if skipif_holds(install["Skipif"], variables, env):
        return True, 0.0, ""
    start = time.monotonic()
    result = subprocess.run(
        ["sh", "-c", substitute(install["Script"], variables)],
        cwd=device.work,
        env=env,
        capture_output=True,
        text=True,
        timeout=float(install["Timeout"]),
    )
    output = result.stdout[-4000:] + result.stderr[-4000:]
    assert result.returncode == 0, f"{recipe['ComponentName']} Install failed:\n{output}"
    return False, time.monotonic() - start, output


def run_command(recipe: dict, device: Device) -> tuple[list[str], dict[str, str]]:
    steps, variables = lifecycle(recipe), device.variables()
    run = steps["Run"]
    script = run["Script"] if isinstance(run, dict) else run
    return shlex.split(substitute(script, variables)), device_env(steps.get("Setenv", {}), variables)
