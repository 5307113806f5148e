"""The built zip alone is enough for the recipe's Install and Run steps, in a fresh venv.

As a nucleus does: the zip is unpacked under a fresh `{artifacts:decompressedPath}`, the
Install script (recipe variables filled in) creates `{work:path}/venv` with a real pip install
of the pinned requirements (the pip cache keeps this tolerable), Skipif then skips it, and the
Run command, started in the work directory with the nucleus's environment, reports RUNNING
over IPC to the nucleus stand-in and stops cleanly on SIGTERM. Nothing of this checkout or
of the test run's virtual environment is on the component's path.
"""

import subprocess
import time

import pytest
import yaml
from packaging.utils import canonicalize_name

from cloud_sync.indexing.build_index import build_bundle
from cloud_sync.packaging.greengrass_build import COMPONENTS, build
from devkit.nucleus import ComponentSpec, LocalNucleus
from devkit.nucleus.runner import merge
from tests.conftest import DEMO_CATALOG
from tests.deploy_helpers import Device, pins, run_command, run_install
from tests.kiosk_helpers import REPO

THING = "kiosk-fresh-1"
DEMO_VIDEO = REPO / "demo" / "video" / "demo.mp4"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return {b.name: b for b in build(REPO, tmp_path_factory.mktemp("fresh") / "greengrass-build")}


@pytest.fixture(scope="module")
def tiny_bundle(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("fresh-bundle") / "bundle"
    build_bundle(DEMO_CATALOG, tiny_model, out, progress=False)
    return out


def overrides(package: str, request) -> dict:
    if package == "featurizer":  # model_dir stays the default: it must resolve inside the artifact
        return {"camera": str(DEMO_VIDEO), "loop_video": True}
    if package == "local_search":  # serves the seed bundle and syncs from (empty) S3 with boto3
        return {
            "bundle_dir": str(request.getfixturevalue("tiny_bundle")),
            "index_bucket": request.getfixturevalue("s3_bucket"),
            "telemetry_interval_s": 1.0,
        }
    return {"port": 0}


def start_and_stop(recipe: dict, device: Device, configuration: dict) -> str:
    name = recipe["ComponentName"]
    with LocalNucleus(thing_name=THING, components=[ComponentSpec(name, configuration)]) as nucleus:
        command, env = run_command(recipe, device)
        process = subprocess.Popen(
            command,
            cwd=device.work,
            env={**env, **nucleus.component_env(name)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            nucleus.wait_for_state(name, "RUNNING", timeout=180)
            running = True
        except TimeoutError:
            running = False
        finally:
            process.terminate()
            output, _ = process.communicate(timeout=60)
    assert running, f"{name} did not report RUNNING:\n{output[-3000:]}"
    assert process.returncode == 0, f"{name} exited {process.returncode} on SIGTERM:\n{output[-3000:]}"
    return output


@pytest.mark.timeout(1800)  # a real pip install of the pinned wheels, bounded like the recipe's Install step
@pytest.mark.parametrize("component", COMPONENTS, ids=lambda c: c.package)
def test_the_zip_installs_and_starts_in_a_fresh_venv(component, built, tmp_path, request):
    recipe = yaml.safe_load(built[component.name].recipe_path.read_text())
    device = Device(component.name, tmp_path / "greengrass")
    device.unpack(built[component.name].zip_path)

    skipped, seconds, output = run_install(recipe, device)
    assert not skipped
    print(
        f"\n{component.name}: Install (fresh venv, pip install of {len(pins(component))} pins) "
        f"took {seconds:.0f} s"
    )
    assert run_install(recipe, device)[0], "Skipif did not skip a finished install"

    python = device.work / "venv" / "bin" / "python"
    freeze = subprocess.run(
        [str(python), "-m", "pip", "freeze"], capture_output=True, text=True, check=True
    ).stdout
    installed = {canonicalize_name(n): v for n, _, v in (line.partition("==") for line in freeze.split())}
    assert installed == pins(component), "the venv holds more or other packages than the pins"

    defaults = recipe["ComponentConfiguration"]["DefaultConfiguration"]
    started = time.monotonic()
    log = start_and_stop(recipe, device, merge(defaults, overrides(component.package, request)))
    print(f"{component.name}: RUNNING {time.monotonic() - started:.0f} s after start")
    if component.package == "featurizer":
        assert str(device.decompressed / "visual-search" / "models" / "demo-featurizer") in log
