"""Many staff uploading at once (issue 14, item 1): no 500, and no upload is deleted before
its search has finished, although the folder keeps only a few files."""

from __future__ import annotations

import io
import json
import threading
import urllib.error
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import pytest

from components.common.messages import QueryMessage
from components.display.server import WebServer
from components.display.uploads import Uploads
from tests.conftest import demo_image
from tests.display.app_helpers import make_display, matches_for
from tests.support.waiting import wait_until

UPLOADERS = 16
UPLOADS_EACH = 6


def multipart(data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = io.BytesIO()
    body.write(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="p.jpg"\r\n'
        f"Content-Type: image/jpeg\r\n\r\n".encode()
    )
    body.write(data)
    body.write(f"\r\n--{boundary}--\r\n".encode())
    return body.getvalue(), f"multipart/form-data; boundary={boundary}"


class SlowFeaturizer:
    """Plays featurizer + local_search on their own threads: reads the uploaded file a moment
    after the query (as the real featurizer does), and answers only if the file was there."""

    def __init__(self, bundle):
        self.bundle = bundle
        self.display = None
        self.lost: list[str] = []
        self.read = 0
        self._lock = threading.Lock()

    def __call__(self, data: dict) -> list:
        threading.Thread(target=self._answer, args=(QueryMessage.from_json(data),), daemon=True).start()
        return []

    def _answer(self, query: QueryMessage) -> None:
        threading.Event().wait(0.02)  # the featurizer's queue and decode
        try:
            Path(query.image_path).read_bytes()
        except FileNotFoundError:
            with self._lock:
                self.lost.append(query.query_id)
            return
        with self._lock:
            self.read += 1
        self.display.searches.deliver(
            matches_for(self.bundle, [0, 1, 2], query_id=query.query_id, source="upload")
        )


def test_sixteen_concurrent_uploaders_get_no_500_and_no_upload_is_deleted_under_its_search(
    tmp_path, demo_bundle
):
    featurizer = SlowFeaturizer(demo_bundle)
    display = make_display(tmp_path, demo_bundle, featurizer, keep_uploads=1, upload_timeout_s=5.0)
    featurizer.display = display
    server = WebServer(display.app, "127.0.0.1", 0)
    server.start()
    body, content_type = multipart(demo_image("hat", 0).read_bytes())
    statuses: Counter = Counter()
    errors: list[str] = []
    lock = threading.Lock()

    def uploader():
        for _ in range(UPLOADS_EACH):
            request = urllib.request.Request(
                f"{server.url}/api/search", data=body, method="POST", headers={"Content-Type": content_type}
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    code = response.status
                    json.load(response)
            except urllib.error.HTTPError as exc:
                code = exc.code
                with lock:
                    errors.append(f"{code}: {exc.read()[:200]!r}")
            with lock:
                statuses[code] += 1

    threads = [threading.Thread(target=uploader) for _ in range(UPLOADERS)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in threads), "an uploader never finished"
    finally:
        server.stop()
    assert sum(statuses.values()) == UPLOADERS * UPLOADS_EACH
    assert statuses[500] == 0, errors[:5]
    assert (
        featurizer.lost == []
    ), f"{len(featurizer.lost)} uploads were deleted before the featurizer read them"
    assert statuses == Counter({200: UPLOADERS * UPLOADS_EACH}), errors[:5]
    assert len(list((tmp_path / "uploads").iterdir())) == 1  # once all searches are done, the cap holds


def test_pruning_skips_uploads_in_flight_and_files_that_vanish(tmp_path, monkeypatch):
    uploads = Uploads(tmp_path)
    held = [uploads.hold(tmp_path / f"held{n}.jpg") for n in range(3)]
    for path in held:
        path.write_bytes(b"x")
    for n in range(5):
        (tmp_path / f"old{n}.jpg").write_bytes(b"x")
    vanishing = tmp_path / "old0.jpg"
    real_stat = Path.stat

    def stat(self, *args, **kwargs):  # another process deleted it between listing and stat
        if self == vanishing:
            self.unlink(missing_ok=True)
        return real_stat(self, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", stat)
    uploads.prune(keep=2)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["held0.jpg", "held1.jpg", "held2.jpg"]
    for path in held:
        uploads.release(path)
    uploads.prune(keep=2)
    assert len(list(tmp_path.iterdir())) == 2


def test_an_upload_pruned_while_its_picture_is_requested_is_a_404_not_a_500(
    tmp_path, demo_bundle, monkeypatch
):
    import components.display.app as app_module

    client = make_display(tmp_path, demo_bundle).app.test_client()
    # then pruned
    monkeypatch.setattr(app_module, "find_upload", lambda folder, query_id: folder / f"{query_id}.jpg")
    response = client.get("/uploads/abc123")
    assert response.status_code == 404 and b"deleted" in response.data


def test_a_search_over_the_pending_limit_waits_for_a_slot_instead_of_a_503():
    """16 uploaders against the demo got mostly 503s (8 searches at most wait on the featurizer,
    which keeps 8 upload jobs): a search beyond them now waits for a slot, within its timeout."""
    from components.common.messages import MatchesMessage
    from components.display.upload_search import SearchBusy, UploadSearches

    published: list[dict] = []
    searches = UploadSearches(lambda topic, message: published.append(message), timeout_s=30, max_pending=1)

    def answer(query_id):
        searches.deliver(
            MatchesMessage(
                query_id=query_id,
                capture_time=1.0,
                source="upload",
                part=1,
                parts=1,
                index_version=1,
                model_fingerprint="f" * 64,
                min_score=0.3,
                matches=[],
            )
        )

    outcomes = {}
    first = threading.Thread(
        target=lambda: outcomes.update(a=searches.search(QueryMessage(query_id="a", image_path="/x")))
    )
    first.start()
    wait_until(lambda: published, 10, "the first query to be sent")
    second = threading.Thread(
        target=lambda: outcomes.update(b=searches.search(QueryMessage(query_id="b", image_path="/y")))
    )
    second.start()
    wait_until(lambda: searches.waiting_for_slot == 1, 10, "the second search to wait for a slot")
    assert [m["query_id"] for m in published] == ["a"]  # not sent while the featurizer's slots are full
    answer("a")
    wait_until(lambda: len(published) == 2, 10, "the second query to be sent once a slot is free")
    answer("b")
    first.join(10), second.join(10)
    assert outcomes["a"].answers and outcomes["b"].answers

    searches.timeout_s = 30
    blocker = threading.Thread(target=lambda: searches.search(QueryMessage(query_id="c", image_path="/z")))
    blocker.start()
    wait_until(lambda: searches.pending == 1, 10, "a search that holds the one slot")
    searches.timeout_s = 0.1  # the next one gives up waiting for a slot before the first is answered
    with pytest.raises(SearchBusy, match="1 searches are already waiting"):
        searches.search(QueryMessage(query_id="d", image_path="/w"))
    answer("c")
    blocker.join(10)
