"""The display's settings on a device: configuration updates refused, applied live, or rebuilt on its port."""

from __future__ import annotations

import json
import threading
import urllib.request

import pytest

from components.common.component_main import run_component
from components.common.ipc import Ipc
from components.display.component import DisplayComponent
from components.display.settings import COMPONENT, DisplaySettings
from devkit.nucleus import ComponentSpec, LocalNucleus
from tests.kiosk_helpers import DISPLAY, recipe
from tests.support.network import free_port
from tests.support.waiting import wait_until


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


@pytest.fixture
def display(tmp_path):
    """The display under run_component in a thread: (nucleus, url, components built so far)."""
    spec = ComponentSpec.from_recipe(recipe(DISPLAY))
    port = free_port()
    spec.configuration.update(port=port, work_dir=str(tmp_path))
    built, stop, codes = [], threading.Event(), []

    def recorded_build(ipc, settings):
        built.append(DisplayComponent(ipc, settings))
        return built[-1]

    with LocalNucleus(components=[spec]) as nucleus:
        thread = threading.Thread(
            target=lambda: codes.append(
                run_component(
                    COMPONENT, DisplaySettings, recorded_build, ipc=Ipc(nucleus.connect(DISPLAY)), stop=stop
                )
            ),
            daemon=True,
        )
        thread.start()
        nucleus.wait_for_state(DISPLAY, "RUNNING", timeout=30)
        wait_until(lambda: DISPLAY in nucleus.validators(), 10, "the display to subscribe its validator")
        yield nucleus, f"http://127.0.0.1:{port}", built
        stop.set()
        thread.join(15)
    assert codes == [0]


def test_a_bad_port_is_refused_and_the_pages_stay_up(display):
    nucleus, url, built = display
    result = nucleus.deploy(DISPLAY, merge={"port": "eighty", "host": ["0.0.0.0"]}, timeout=10)
    assert not result.succeeded
    assert "display.port: 'eighty' is not an integer" in result.detail
    assert "display.host: ['0.0.0.0'] is not a string" in result.detail
    assert get_json(url + "/healthz")["ok"] is True and len(built) == 1


def test_kiosk_timings_are_applied_live(display):
    nucleus, url, built = display
    assert get_json(url + "/api/state")["idle_after_s"] == 20.0
    assert nucleus.deploy(DISPLAY, merge={"idle_after_s": 5, "upload_timeout_s": 3}, timeout=10).succeeded
    wait_until(
        lambda: get_json(url + "/api/state")["idle_after_s"] == 5.0, 10, "idle_after_s on the state twin"
    )
    assert built[0].searches.timeout_s == 3.0 and len(built) == 1


def test_a_setting_read_at_build_time_rebuilds_the_display_on_the_same_port(display):
    nucleus, url, built = display
    assert nucleus.deploy(DISPLAY, merge={"history_size": 3}, timeout=10).succeeded
    wait_until(lambda: len(built) == 2, 15, "the rebuilt display")
    assert built[1].settings.history_size == 3 and built[0]._stop.is_set()
    wait_until(lambda: get_json(url + "/healthz")["ok"], 10, "the pages served again")
