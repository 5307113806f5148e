"""`bench sync`: publish two index versions to a local S3 (moto) and time the device's swap
while a thread searches without pause. Version 2 is the catalog with one item's picture changed
and one item removed, built with --previous (only the change is featurized), so the figures
show what such a change costs: bytes uploaded and downloaded against the full version.
Figures only; the tests check behaviour."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from components.common.errors import VisualSearchError

PREFIX = "bench"
BUCKET = "visual-search-bench"


def _local_s3():
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        raise VisualSearchError("bench sync needs moto[server] (pip install -e '.[test]')") from None
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per S3 request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    # Only this process, which does nothing else, talks to this endpoint with dummy keys.
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{server._server.server_port}",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
    )
    for name in ("AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        os.environ.pop(name, None)
    return server


class _Searcher(threading.Thread):
    """Searches the served index without pause; records (time, version, latency, error)."""

    def __init__(self, serving, vectors: np.ndarray):
        super().__init__(name="searcher", daemon=True)
        self.serving, self.vectors, self.stop = serving, vectors, threading.Event()
        self.records: list[tuple[float, int | None, float, str]] = []

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            vector = self.vectors[n % len(self.vectors)][None, :]
            n += 1
            start = time.perf_counter()
            version, error = None, ""
            try:
                with self.serving.lease() as bundle:
                    version = bundle.version
                    _, ids = bundle.search_ids(vector, 5)
                    bundle.items([int(i) for i in ids[0] if i >= 0])
            except Exception as exc:  # counted, not raised: the figure is how many there are
                error = f"{type(exc).__name__}: {exc}"
            self.records.append((time.perf_counter(), version, 1000 * (time.perf_counter() - start), error))


def bench_sync(catalog: Path, model_dir: Path, seconds_after: float = 2.0) -> Iterator[str]:
    import boto3

    from cloud_sync.indexing.build_index import build_bundle
    from cloud_sync.indexing.previous_build import open_previous
    from cloud_sync.publishing.publish_index import publish_bundle
    from components.local_search.bundle_store import BundleStore
    from components.local_search.index_sync import IndexSync
    from components.local_search.serving import ServingIndex

    work = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    server = _local_s3()
    try:
        v1 = build_bundle(catalog, model_dir, work / "v1", index_version=1, progress=False).manifest
        changed = _one_picture_changed_one_removed(catalog, work / "catalog-v2")
        previous = open_previous(str(work / "v1"))  # build-index --previous: only the change is featurized
        v2 = build_bundle(
            changed, model_dir, work / "v2", index_version=2, progress=False, previous=previous
        ).manifest
        bundles = [v1, v2]
        size = sum(e["size"] for e in bundles[0]["files"].values())
        yield (
            f"bundle: {bundles[0]['item_count']} items, {len(bundles[0]['files'])} files, "
            f"{size / 1e6:.1f} MB"
        )
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        start = time.perf_counter()
        publish_bundle(work / "v1", BUCKET, PREFIX, s3=s3)
        yield f"publish-index v1 (upload, check, move LATEST): {time.perf_counter() - start:.2f} s"

        serving = ServingIndex()
        sync = IndexSync(
            BundleStore(work / "device"),
            serving,
            bucket=BUCKET,
            prefix=PREFIX,
            poll_interval_s=3600,
            expected_fingerprint=lambda: None,
            report=lambda *_: None,
        )
        start = time.perf_counter()
        sync.start()
        _wait(lambda: serving.bundle is not None and serving.bundle.version == 1, 120, sync)
        seconds = time.perf_counter() - start
        yield f"device, empty store -> serving v1 (download, verify, load): {seconds:.2f} s"

        with serving.lease() as bundle:
            vectors = bundle.index.reconstruct_n(0, len(bundle))
        searcher = _Searcher(serving, vectors)
        searcher.start()
        time.sleep(1.0)
        published = publish_bundle(work / "v2", BUCKET, PREFIX, s3=s3)
        fetched_before = sync.store.bytes_fetched
        triggered = time.perf_counter()
        sync.trigger()  # what the IoT Core index-updated message does
        _wait(lambda: serving.bundle.version == 2, 120, sync)
        swapped = time.perf_counter()
        yield f"notified -> serving v2 (download, verify, load, swap): {swapped - triggered:.2f} s"
        yield from _change_figures(bundles, published, sync.store.bytes_fetched - fetched_before, work / "v2")
        time.sleep(seconds_after)
        searcher.stop.set()
        searcher.join()
        sync.stop()
        yield from _query_figures(searcher.records, triggered, swapped)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def _one_picture_changed_one_removed(catalog: Path, out: Path) -> Path:
    """A copy of the catalog with its first picture mirrored and its last item removed (the
    row of a catalog.csv, else the picture of a class-folder catalog)."""
    import cv2

    shutil.copytree(catalog, out)
    pictures = sorted(p for p in out.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if len(pictures) < 2:
        raise VisualSearchError(f"{catalog}: needs two .jpg or .png pictures to change one and remove one")
    image = cv2.imread(str(pictures[0]))
    if image is None:
        raise VisualSearchError(f"{pictures[0]}: not a readable picture")
    cv2.imwrite(str(pictures[0]), image[:, ::-1])
    table = out / "catalog.csv"
    if table.is_file():
        lines = table.read_text().splitlines(keepends=True)
        table.write_text("".join(lines[:-1]))
    else:
        pictures[-1].unlink()
    return out


def _change_figures(bundles: list[dict], published, downloaded: int, v2: Path) -> Iterator[str]:
    from components.common.bundle import MANIFEST

    old, new = ({e["sha256"] for e in b["files"].values()} for b in bundles)
    full = sum(e["size"] for e in bundles[1]["files"].values()) + (v2 / MANIFEST).stat().st_size
    changed = sorted(rel for rel, e in bundles[1]["files"].items() if e["sha256"] not in old)
    yield (
        f"one item changed, one removed: v2 is {full / 1e6:.2f} MB in {len(new)} distinct files; "
        f"publish-index uploaded {published.bytes_uploaded / 1e6:.3f} MB "
        f"({len(published.uploaded)} file(s) changed), the device downloaded {downloaded / 1e6:.3f} MB "
        f"({100 * downloaded / full:.1f} % of the full version)"
    )
    sizes = ", ".join(f"{rel} {bundles[1]['files'][rel]['size'] / 1e6:.3f} MB" for rel in changed[:5])
    yield f"  files that changed: {sizes}" + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")


def _wait(condition, timeout: float, sync) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise VisualSearchError(
                f"the device did not swap within {timeout:.0f} s: {sync.last_error or sync.refusal}"
            )
        time.sleep(0.005)


def _query_figures(records, triggered: float, swapped: float) -> Iterator[str]:
    errors = [r for r in records if r[3]]
    by_version = {v: sum(1 for r in records if r[1] == v) for v in (1, 2)}
    yield (
        f"{len(records)} searches while it ran: {len(errors)} failed; answered by v1 {by_version[1]}, "
        f"by v2 {by_version[2]}" + (f"; first failure: {errors[0][3]}" if errors else "")
    )
    for label, chosen in (
        ("before the update", [r for r in records if r[0] < triggered]),
        ("while v2 downloaded and loaded", [r for r in records if triggered <= r[0] <= swapped]),
        ("after the swap", [r for r in records if r[0] > swapped]),
    ):
        if chosen:
            ms = np.asarray([r[2] for r in chosen])
            p50, p99 = np.percentile(ms, [50, 99])
            yield (
                f"  search latency {label}: p50 {p50:.3f} ms, p99 {p99:.3f} ms, "
                f"max {ms.max():.2f} ms ({len(ms)} searches)"
            )
