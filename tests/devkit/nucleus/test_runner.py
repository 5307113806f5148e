"""The local runner starts recipe Run steps as processes, restarts crashes, reports BROKEN."""

import pytest

from cloud_sync.indexing.build_index import build_bundle
from components.common import messages
from devkit.nucleus.runner import KioskRunner, substitute
from tests.conftest import DEMO_CATALOG
from tests.kiosk_helpers import LOCAL_SEARCH, OBSERVER, RECIPES, REPO, observer_spec
from tests.support.inbox import Inbox
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
def bundle_dir(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("runner") / "bundle"
    build_bundle(DEMO_CATALOG, tiny_model, out, progress=False)
    return out


def test_a_killed_component_is_restarted_and_reports_running_again(bundle_dir, tmp_path):
    runner = KioskRunner(
        RECIPES,
        REPO,
        tmp_path / "gg",
        only=[LOCAL_SEARCH],
        extra_components=[observer_spec()],
        overrides={LOCAL_SEARCH: {"bundle_dir": str(bundle_dir), "status_interval_s": 1.0}},
    )
    with runner:
        runner.wait_until_running(timeout=120)
        status = Inbox.subscribe(runner.nucleus, OBSERVER, messages.status_topic("local_search"))
        first_pid = runner.states()[LOCAL_SEARCH]["pid"]
        runner.kill(LOCAL_SEARCH)
        wait_until(
            lambda: runner.states()[LOCAL_SEARCH]["restarts"] == 1
            and runner.states()[LOCAL_SEARCH]["pid"] != first_pid,
            60,
            "restart",
        )
        assert status.next(timeout=60)["component"] == "local_search"  # the new process publishes again
        assert runner.states()[LOCAL_SEARCH]["state"] == "RUNNING"
        status.close()


def test_three_failures_in_a_row_mark_a_component_broken(tmp_path):
    runner = KioskRunner(
        RECIPES,
        REPO,
        tmp_path / "gg",
        only=[LOCAL_SEARCH],
        overrides={LOCAL_SEARCH: {"bundle_dir": str(tmp_path / "no-bundle")}},
    )
    with runner:
        wait_until(lambda: runner.states()[LOCAL_SEARCH]["state"] == "BROKEN", timeout=120, what="BROKEN")
        proc = runner.processes[LOCAL_SEARCH]
        assert proc.restarts == 2
        assert any("bundle directory not found" in line for line in proc.log)


def test_recipe_variables_resolve_or_fail_clearly():
    assert substitute("{work:path}/venv/bin/python", {"work:path": "/w"}) == "/w/venv/bin/python"
    with pytest.raises(ValueError, match=r"\{configuration:/x\} is not supported"):
        substitute("{configuration:/x}", {})
