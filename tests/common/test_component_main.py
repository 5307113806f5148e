"""The settings lifecycle of a component process (run_component), on the nucleus stand-in.

local_search runs as its process does (its `build`, the real IPC client), in a thread; the
stand-in deploys configuration updates the way a Greengrass deployment does: validation first,
applied only when the component accepts.
"""

from __future__ import annotations

import logging
import logging.handlers
import threading
import time

import numpy as np
import pytest

from cloud_sync.indexing.build_index import build_bundle
from components.common import messages
from components.common.component_main import run_component
from components.common.ipc import Ipc
from components.common.messages import FeatureMessage
from components.local_search.__main__ import build
from components.local_search.search import IndexBundle
from components.local_search.settings import COMPONENT, LocalSearchSettings
from devkit.nucleus import ComponentSpec, LocalNucleus
from tests.conftest import DEMO_CATALOG
from tests.kiosk_helpers import DISPLAY, FEATURIZER, LOCAL_SEARCH, recipe
from tests.support.inbox import Inbox
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
def bundle(tiny_model, tmp_path_factory) -> IndexBundle:
    out = tmp_path_factory.mktemp("lifecycle") / "bundle"
    build_bundle(DEMO_CATALOG, tiny_model, out, progress=False)
    return IndexBundle.open(out)


class Device:
    """local_search under run_component, a featurizer to ask it, and the display's ears."""

    def __init__(self, nucleus: LocalNucleus, bundle: IndexBundle):
        self.nucleus, self.bundle, self.built = nucleus, bundle, []
        self.matches = Inbox.subscribe(nucleus, DISPLAY, messages.MATCHES)
        self.featurizer = Ipc(nucleus.connect(FEATURIZER))
        self.stop = threading.Event()
        self.exit_code = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        nucleus.wait_for_state(LOCAL_SEARCH, "RUNNING", timeout=30)
        wait_until(
            lambda: LOCAL_SEARCH in nucleus.validators(), 10, "local_search to subscribe its validator"
        )

    def _run(self) -> None:
        def recorded_build(ipc, settings):
            component = build(ipc, settings)
            self.built.append(component)
            return component

        self.exit_code = run_component(
            COMPONENT,
            LocalSearchSettings,
            recorded_build,
            ipc=Ipc(self.nucleus.connect(LOCAL_SEARCH)),
            stop=self.stop,
        )

    @property
    def component(self):
        return self.built[-1]

    def ask(self, faiss_id: int, timeout: float = 10.0) -> dict:
        query_id = f"q{time.monotonic_ns()}"
        message = FeatureMessage(
            query_id=query_id,
            capture_time=time.time(),
            track_id=query_id,
            model_fingerprint=self.bundle.model_fingerprint,
            vector=np.asarray(self.bundle.index.reconstruct(faiss_id), np.float32),
        )
        self.featurizer.publish_json(messages.FEATURES, message.to_json())
        return self.matches.next(timeout=timeout, where=lambda m: m["query_id"] == query_id)

    def wait_for_settings(self, condition, what: str):
        return wait_until(lambda: condition(self.component.settings), 10, what)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(15)
        self.matches.close()
        self.featurizer.close()


@pytest.fixture
def device(bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("VISUAL_SEARCH_WORK_DIR", str(tmp_path))
    specs = [ComponentSpec.from_recipe(recipe(name)) for name in (FEATURIZER, LOCAL_SEARCH, DISPLAY)]
    # fold_duplicates off: the tiny test model puts every photo within cosine 0.94-0.99
    specs[1].configuration.update(
        bundle_dir=str(bundle.path), min_score=0.0, smoothing_window=1, fold_duplicates=False
    )
    with LocalNucleus(components=specs) as nucleus:
        running = Device(nucleus, bundle)
        yield running
        running.close()
        assert running.exit_code == 0 and not running.thread.is_alive()


def feature_subscriptions(nucleus) -> int:
    return sum(
        1
        for name, kind, topic in nucleus.subscriptions()
        if (name, kind, topic) == (LOCAL_SEARCH, "pubsub", messages.FEATURES)
    )


def test_an_invalid_update_is_refused_with_its_reason_and_the_component_keeps_answering(device):
    before = device.nucleus.configuration(LOCAL_SEARCH)

    result = device.nucleus.deploy(
        LOCAL_SEARCH, merge={"min_score": "high", "top_k": 0, "colour": "red"}, timeout=10
    )

    assert result.status == "FAILED_NO_STATE_CHANGE"
    assert "local_search.min_score: 'high' is not a number" in result.detail
    assert "local_search.top_k: 0 is not at least 1" in result.detail
    assert "unknown setting(s) colour" in result.detail
    assert device.nucleus.configuration(LOCAL_SEARCH) == before
    answer = device.ask(3)
    assert (
        answer["matches"][0]["faiss_id"] == 3 and answer["min_score"] == 0.0 and len(answer["matches"]) == 5
    )
    assert len(device.built) == 1


def test_a_valid_update_of_live_settings_is_applied_without_a_rebuild(device):
    result = device.nucleus.deploy(LOCAL_SEARCH, merge={"min_score": 0.999, "top_k": 2}, timeout=10)

    assert result.succeeded
    device.wait_for_settings(lambda s: s.min_score == 0.999 and s.top_k == 2, "min_score and top_k applied")
    answer = device.ask(7)
    # only itself is that close
    assert answer["min_score"] == 0.999 and [m["faiss_id"] for m in answer["matches"]] == [7]
    assert len(device.built) == 1 and feature_subscriptions(device.nucleus) == 1


def test_a_setting_that_needs_a_rebuild_rebuilds_the_component_in_the_same_process(device):
    first = device.component

    assert device.nucleus.deploy(
        LOCAL_SEARCH, merge={"telemetry_interval_s": 30.0, "top_k": 3}, timeout=10
    ).succeeded

    wait_until(lambda: len(device.built) == 2, 15, "the rebuilt component")
    assert device.component.settings.telemetry_interval_s == 30.0 and first._stop.is_set()
    assert len(device.ask(4)["matches"]) == 3
    assert feature_subscriptions(device.nucleus) == 1  # the old instance's subscription was closed
    assert device.thread.is_alive()


def test_settings_that_cannot_be_used_after_all_leave_the_previous_ones_running(device, tmp_path):
    missing = str(tmp_path / "no-such-bundle")

    assert device.nucleus.deploy(
        LOCAL_SEARCH, merge={"bundle_dir": missing}, timeout=10
    ).succeeded  # a valid string

    wait_until(lambda: len(device.built) == 2, 15, "the component started again")
    assert device.component.settings.bundle_dir == str(device.bundle.path)
    assert device.ask(2)["matches"][0]["faiss_id"] == 2 and device.thread.is_alive()


def test_a_change_made_without_validation_is_not_applied_when_it_has_problems(device, caplog):
    device.nucleus.set_configuration(LOCAL_SEARCH, "min_score", 7)  # no deployment: nobody was asked
    device.nucleus.set_configuration(LOCAL_SEARCH, "top_k", 1)
    wait_until(
        lambda: "local_search.min_score: 7 is not at most 1.0" in caplog.text, 10, "the refusal logged"
    )
    assert device.component.settings.top_k == 5  # all or nothing: the configuration as a whole has a problem
    assert len(device.ask(1)["matches"]) == 5
    device.nucleus.set_configuration(LOCAL_SEARCH, "min_score", 0.5)
    device.wait_for_settings(lambda s: s.min_score == 0.5 and s.top_k == 1, "both applied once valid")
    assert len(device.built) == 1


def test_retired_keys_left_on_a_device_are_ignored_at_start_and_in_updates(
    bundle, tmp_path, monkeypatch, caplog
):
    monkeypatch.setattr(LocalSearchSettings, "RETIRED", {"min_similarity": "renamed to min_score in 0.2"})
    monkeypatch.setenv("VISUAL_SEARCH_WORK_DIR", str(tmp_path))
    specs = [ComponentSpec.from_recipe(recipe(name)) for name in (FEATURIZER, LOCAL_SEARCH, DISPLAY)]
    specs[1].configuration.update(bundle_dir=str(bundle.path), min_similarity=0.8)  # kept from an old version
    with LocalNucleus(components=specs) as nucleus:
        device = Device(nucleus, bundle)  # starts: RUNNING, not ERRORED
        try:
            assert (
                "ignoring retired setting(s): local_search.min_similarity: renamed to min_score"
                in caplog.text
            )
            assert nucleus.deploy(LOCAL_SEARCH, merge={"min_similarity": 0.9, "min_score": 0.2}).succeeded
            device.wait_for_settings(lambda s: s.min_score == 0.2, "min_score applied")
            refused = nucleus.deploy(LOCAL_SEARCH, merge={"min_similarty": 0.9})  # a typo is still refused
            assert "unknown setting(s) min_similarty" in refused.detail and len(device.built) == 1
        finally:
            device.close()
    assert device.exit_code == 0


def test_a_bad_configuration_at_start_is_one_error_line_exit_1_and_in_the_work_dir_log(
    bundle, tmp_path, monkeypatch, caplog
):
    from components.common.component_main import work_log_file

    monkeypatch.setenv("VISUAL_SEARCH_WORK_DIR", str(tmp_path))
    log_file = work_log_file(LOCAL_SEARCH)
    assert log_file == tmp_path / "logs" / f"{LOCAL_SEARCH}.log"
    spec = ComponentSpec.from_recipe(recipe(LOCAL_SEARCH))
    spec.configuration.update(bundle_dir=str(bundle.path), top_k="many")
    with LocalNucleus(components=[spec]) as nucleus:
        code = run_component(
            COMPONENT,
            LocalSearchSettings,
            build,
            ipc=Ipc(nucleus.connect(LOCAL_SEARCH)),
            stop=threading.Event(),
            log_file=log_file,
        )
        assert code == 1 and nucleus.states[LOCAL_SEARCH] == "ERRORED"
    assert "local_search.top_k: 'many' is not an integer" in caplog.text
    # the same line in the rotating log file a device keeps in the component's work dir
    assert "local_search ERROR local_search.top_k: 'many' is not an integer" in log_file.read_text()
    handlers = [
        h for h in logging.getLogger().handlers if isinstance(h, logging.handlers.RotatingFileHandler)
    ]
    assert handlers == []  # closed with the component: nothing keeps writing to it
