"""Each recipe's accessControl allows exactly the topics its component really uses.

The three components run as processes under the nucleus stand-in (KioskRunner, the recipes'
Run steps), local_search syncing from a moto S3 bucket with a short telemetry interval, and
are driven through everything they do: the camera, an upload on the display, telemetry. The
stand-in records every authorization asked for; a missing grant (the commonest deployment
failure, UnauthorizedError) or a grant nothing uses fails here.
"""

import io
import json
import time
import urllib.error
import urllib.request

import pytest
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from cloud_sync.indexing.build_index import build_bundle
from components.common import messages
from devkit.nucleus.runner import KioskRunner
from tests.conftest import DEMO_CATALOG, demo_image
from tests.deploy_helpers import SETTINGS, grants
from tests.kiosk_helpers import RECIPES, REPO, recipe
from tests.support.network import free_port

THING = "kiosk-topics-1"
DEMO_VIDEO = REPO / "demo" / "video" / "demo.mp4"


def upload(url: str, data: bytes) -> int:
    boundary, body = encode_multipart({"file": FileStorage(io.BytesIO(data), filename="item.jpg")})
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            json.load(response)
            return response.status
    except (urllib.error.URLError, ConnectionError) as error:
        return getattr(error, "code", 0)


@pytest.fixture(scope="module")
def tiny_bundle(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("topics") / "bundle"
    build_bundle(DEMO_CATALOG, tiny_model, out, progress=False)
    return out


def used(runner: KioskRunner) -> dict[str, set]:
    seen = {name: set() for name in SETTINGS}
    for (component, service, operation, resource, allowed), _ in runner.nucleus.access_requests().items():
        if component in seen:
            seen[component].add((service, operation, resource, allowed))
    return seen


def test_each_component_uses_exactly_the_topics_its_recipe_allows(
    tiny_model, tiny_bundle, s3_bucket, tmp_path
):
    port = free_port()
    overrides = {
        "com.visualsearch.Featurizer": {
            "camera": str(DEMO_VIDEO),
            "loop_video": True,
            "model_dir": str(tiny_model),
            "status_interval_s": 1.0,
        },
        "com.visualsearch.LocalSearch": {
            "bundle_dir": str(tiny_bundle),
            "index_bucket": s3_bucket,
            "index_prefix": "topics",
            "telemetry_interval_s": 0.5,
            "status_interval_s": 1.0,
        },
        "com.visualsearch.Display": {"port": port, "status_interval_s": 1.0},
    }
    expected = {name: {(*grant, True) for grant in grants(recipe(name), THING)} for name in SETTINGS}
    runner = KioskRunner(RECIPES, REPO, tmp_path / "gg", overrides=overrides, thing_name=THING)
    with runner:
        runner.wait_until_running(timeout=180)
        deadline = time.monotonic() + 180
        uploaded = False
        while time.monotonic() < deadline:
            if not uploaded:  # display -> queries -> featurizer -> features -> local_search -> matches
                uploaded = (
                    upload(f"http://127.0.0.1:{port}/api/search", demo_image("dress").read_bytes()) == 200
                )
            seen = used(runner)
            if all(seen[name] >= expected[name] for name in SETTINGS):
                break
            time.sleep(0.5)
        time.sleep(1.0)  # one more round of status and telemetry: anything else would show now
        seen = used(runner)
        telemetry = runner.nucleus.iot_core.messages_on(messages.IOT_TELEMETRY.format(thing_name=THING))
        logs = {name: list(proc.log)[-5:] for name, proc in runner.processes.items()}
    assert uploaded, logs
    assert telemetry, "local_search sent no telemetry to IoT Core"
    for name in SETTINGS:
        refused = sorted(entry[:3] for entry in seen[name] if not entry[3])
        assert not refused, f"{name} was refused {refused}: its recipe lacks a grant"
        missing = sorted(entry[:3] for entry in expected[name] - seen[name])
        assert (
            not missing
        ), f"{name} never used {missing}: remove the grant, or find why it was not used ({logs[name]})"
        assert seen[name] == expected[name]
