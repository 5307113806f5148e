"""Swapping the served index while queries run: the lease holder, then the whole component
answering a continuous stream of queries across a swap from S3."""

import threading
import time
from collections import Counter

import boto3
import numpy as np
import pytest

from components.common import messages
from components.common.ipc import Ipc
from components.local_search.component import LocalSearchComponent, LocalSearchSettings, QueryEvent
from components.local_search.search import IndexBundle
from components.local_search.serving import ServingIndex
from tests.kiosk_helpers import DISPLAY, FEATURIZER, LOCAL_SEARCH
from tests.local_search.sync_helpers import (
    device_nucleus,
    make_bundle,
    publish,
    running_device,
    sync_settings,
)
from tests.support.inbox import Inbox
from tests.support.waiting import wait_until

PREFIX = "fleet/store-7"


class FakeBundle:
    def __init__(self, name):
        self.name = name
        self.closed = False

    def close(self):
        self.closed = True


def test_a_query_keeps_its_bundle_across_a_swap_and_the_old_one_closes_after_it():
    old, new = FakeBundle("old"), FakeBundle("new")
    serving = ServingIndex(old)
    with serving.lease() as leased:
        assert serving.swap(new) is old
        assert leased is old and not old.closed  # still in use by this query
        with serving.lease() as later:
            assert later is new
    assert old.closed and not new.closed
    assert serving.swap(new) is None and not new.closed  # the same bundle again: nothing to do
    newest = FakeBundle("newest")
    serving.swap(newest)
    assert new.closed  # no query held it: closed at once


def test_many_readers_never_use_a_closed_bundle_while_bundles_are_swapped():
    serving = ServingIndex(FakeBundle(0))
    problems, stop = [], threading.Event()

    def reader():
        while not stop.is_set():
            with serving.lease() as bundle:
                if bundle.closed:
                    problems.append(bundle.name)
                time.sleep(0.0001)
                if bundle.closed:
                    problems.append(bundle.name)

    readers = [threading.Thread(target=reader) for _ in range(8)]
    for thread in readers:
        thread.start()
    swapped = [FakeBundle(n) for n in range(1, 300)]
    for bundle in swapped:
        serving.swap(bundle)
    stop.set()
    for thread in readers:
        thread.join()
    assert problems == [] and all(b.closed for b in swapped[:-1]) and not swapped[-1].closed


@pytest.fixture(scope="module")
def bundles(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("swap-bundles")
    return {v: make_bundle(tiny_model, root, v) for v in (1, 2)}


def test_queries_during_a_hot_swap_all_succeed_each_on_one_complete_index(
    s3_bucket, bundles, tmp_path, monkeypatch
):
    monkeypatch.setenv("VISUAL_SEARCH_WORK_DIR", str(tmp_path))
    s3 = boto3.client("s3")
    opened = {v: IndexBundle.open(bundles[v]) for v in (1, 2)}
    item_of = {
        v: {fid: row["item_id"] for fid, row in b.items(list(range(len(b)))).items()}
        for v, b in opened.items()
    }
    vectors = [opened[1].index.reconstruct(i) for i in range(len(opened[1]))]
    publish(s3, s3_bucket, PREFIX, bundles[1])
    settings = sync_settings(s3_bucket, smoothing_window=3, top_k=5)
    with device_nucleus() as nucleus, running_device(nucleus, settings) as device:
        device.status.next(where=lambda m: m.get("index_version") == 1, timeout=30)
        sent, stop = [], threading.Event()

        def shopper():  # one held item after another, as fast as the camera would go and more
            while not stop.is_set() and len(sent) < 5000:
                n = len(sent)
                device.send(vectors[n // 7 % len(vectors)], f"q{n}", track_id=f"held-{n // 7}")
                sent.append(f"q{n}")
                time.sleep(0.002)

        thread = threading.Thread(target=shopper)
        thread.start()
        try:
            wait_until(lambda: len(sent) > 100, 30, "queries before the swap")
            publish(s3, s3_bucket, PREFIX, bundles[2])
            nucleus.iot_core.publish(messages.IOT_INDEX_UPDATED, {"index_version": 2})
            device.status.next(where=lambda m: m.get("index_version") == 2, timeout=30)
            at_swap = len(sent)
            wait_until(lambda: len(sent) > at_swap + 100, 30, "queries after the swap")
        finally:
            stop.set()
            thread.join()
        answers = {}
        while len(answers) < len(sent):
            message = device.matches.next(timeout=30)
            answers[message["query_id"]] = message
        events = list(device.events)

    assert set(answers) == set(sent)
    versions = Counter(a["index_version"] for a in answers.values())
    assert set(versions) == {1, 2} and min(versions.values()) > 50
    for answer in answers.values():
        version = answer["index_version"]
        assert len(answer["matches"]) == 5
        for match in answer["matches"]:  # every item from that version's index, none from the other
            assert item_of[version][match["faiss_id"]] == match["item_id"] and match["item_id"].startswith(
                f"v{version}-"
            )
    assert len(events) == len(sent) and not any(e.error for e in events)
    assert {e.index_version for e in events} == {1, 2}
    for bundle in opened.values():
        bundle.close()


class Service:
    def __init__(self, log, fail_stop=False):
        self.log, self.fail_stop = log, fail_stop

    def start(self):
        self.log.append("start")

    def stop(self):
        self.log.append("stop")
        if self.fail_stop:
            raise RuntimeError("cannot stop")


def test_listeners_get_one_event_per_query_and_one_that_raises_breaks_nothing(bundles):
    from devkit.nucleus import ComponentSpec, LocalNucleus
    from tests.kiosk_helpers import recipe

    bundle = IndexBundle.open(bundles[1])
    specs = [ComponentSpec.from_recipe(recipe(n)) for n in (FEATURIZER, LOCAL_SEARCH, DISPLAY)]
    with LocalNucleus(components=specs) as nucleus:
        settings = LocalSearchSettings(bundle_dir=str(bundle.path), min_score=0.99, smoothing_window=1)
        component = LocalSearchComponent(Ipc(nucleus.connect(LOCAL_SEARCH)), settings, bundle)
        events, lifecycle = [], []
        component.query_listeners += [lambda event: 1 / 0, events.append]
        component.background += [Service(lifecycle, fail_stop=True), Service(lifecycle)]
        component.start()
        matches = Inbox.subscribe(nucleus, DISPLAY, messages.MATCHES)
        featurizer = Ipc(nucleus.connect(FEATURIZER))
        far = np.ones(bundle.index.d, np.float32) / np.sqrt(bundle.index.d)
        for query_id, vector, fingerprint in (
            ("hit", bundle.index.reconstruct(3), bundle.model_fingerprint),
            ("none", far, bundle.model_fingerprint),
            ("other-model", bundle.index.reconstruct(3), "f" * 64),
            ("after", bundle.index.reconstruct(5), bundle.model_fingerprint),
        ):
            featurizer.publish_json(
                messages.FEATURES,
                messages.FeatureMessage(
                    query_id=query_id, capture_time=1.0, model_fingerprint=fingerprint, vector=vector
                ).to_json(),
            )
            seen = len(events)
            wait_until(lambda seen=seen: len(events) > seen, 10, f"the event of {query_id}")
        assert matches.next(where=lambda m: m["query_id"] == "after")["matches"][0]["faiss_id"] == 5
        component.stop()
        for ipc in (featurizer, matches.ipc, component.ipc):
            ipc.close()
    hit, none, refused, after = events
    ids = {fid: row["item_id"] for fid, row in bundle.items([3, 5]).items()}
    assert isinstance(hit, QueryEvent) and hit.matched and not hit.error and hit.item_ids == (ids[3],)
    assert (hit.index_version, hit.model_fingerprint) == (1, bundle.model_fingerprint) and hit.latency_ms >= 0
    assert not none.matched and none.item_ids == () and not none.error
    assert refused.error and not refused.matched and refused.index_version == 1
    assert after.item_ids == (ids[5],)
    assert lifecycle == ["start", "start", "stop", "stop"]
