"""Search never depends on telemetry (issue 14, item 2): local_search built as its process
builds it, with a work directory where telemetry.sqlite cannot be opened, still answers
queries, says what is wrong in its status, and picks telemetry up once the disk is fixed."""

from __future__ import annotations

import pytest

from cloud_sync.indexing.build_index import build_bundle
from components.common import messages
from components.common.ipc import Ipc
from components.common.messages import FeatureMessage
from components.local_search.__main__ import build
from components.local_search.bundle_store import WORK_DIR_ENV
from components.local_search.search import IndexBundle
from components.local_search.settings import LocalSearchSettings
from devkit.nucleus import ComponentSpec, LocalNucleus
from tests.conftest import DEMO_CATALOG
from tests.kiosk_helpers import DISPLAY, FEATURIZER, LOCAL_SEARCH, recipe
from tests.support.inbox import Inbox


@pytest.fixture(scope="module")
def bundle(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("ls-fault") / "bundle"
    build_bundle(DEMO_CATALOG, tiny_model, out, progress=False)
    return IndexBundle.open(out)


def test_local_search_answers_queries_when_its_telemetry_queue_cannot_be_opened(
    bundle, tmp_path, monkeypatch
):
    work = tmp_path / "work"
    work.write_text("a file where the work directory should be")
    monkeypatch.setenv(WORK_DIR_ENV, str(work))
    specs = [ComponentSpec.from_recipe(recipe(name)) for name in (FEATURIZER, LOCAL_SEARCH, DISPLAY)]
    with LocalNucleus(components=specs) as nucleus:
        settings = LocalSearchSettings(
            bundle_dir=str(bundle.path), min_score=0.0, telemetry_interval_s=0.05, status_interval_s=1.0
        )
        component = build(Ipc(nucleus.connect(LOCAL_SEARCH)), settings)
        matches = Inbox.subscribe(nucleus, DISPLAY, messages.MATCHES)
        status = Inbox.subscribe(nucleus, DISPLAY, messages.status_topic("local_search"))
        featurizer = Ipc(nucleus.connect(FEATURIZER))
        component.start()
        try:
            for n in range(32):
                featurizer.publish_json(
                    messages.FEATURES,
                    FeatureMessage(
                        query_id=f"q{n}",
                        capture_time=1.0,
                        model_fingerprint=bundle.model_fingerprint,
                        vector=bundle.index.reconstruct(n),
                    ).to_json(),
                )
            answered = {
                matches.next(where=lambda m: m["query_id"].startswith("q"))["query_id"] for _ in range(32)
            }
            assert len(answered) == 32
            faulty = status.next(where=lambda m: m.get("telemetry_fault"))
            assert faulty["state"] == "running" and str(work) in faulty["telemetry_fault"]

            work.unlink()
            work.mkdir()  # fixed: the next period opens the queue
            status.next(timeout=30, where=lambda m: m.get("telemetry_fault") == "")
            assert (work / "telemetry.sqlite").is_file()
        finally:
            component.stop()
            for client in (featurizer, matches, status, component.ipc):
                client.close()
