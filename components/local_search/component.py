"""local_search component: feature messages in, ranked matches with metadata out."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from components.common import messages
from components.common.messages import FeatureMessage
from components.common.settings import setting
from components.local_search.search import IndexBundle
from components.local_search.smoothing import RankSmoother

log = logging.getLogger("local_search")
COMPONENT = "local_search"


@dataclass(frozen=True)
class LocalSearchSettings:
    bundle_dir: str = setting("", "Index bundle directory on the device (built by build-index).")
    top_k: int = setting(5, "Matches shown per query.", min=1, max=50)
    min_score: float = setting(0.35, "Cosine similarity below which a match is not shown; "
                                     "no match above it is a 'no good match' result.", min=-1.0, max=1.0)
    smoothing_window: int = setting(3, "Queries of the same held item averaged to keep the ranking steady "
                                       "(1 = off).", min=1, max=20)
    status_interval_s: float = setting(10.0, "Seconds between status messages.", min=1.0)
    index_bucket: str = setting("", "S3 bucket that publish-index writes to; empty = no sync, serve bundle_dir only.")
    index_prefix: str = setting("", "Key prefix under the bucket (bundles are under <prefix>/indexes/).")
    index_dir: str = setting("indexes", "Where synced bundles are kept on the device "
                                        "(relative paths are under the component's work directory).")
    poll_interval_s: float = setting(300.0, "Seconds between checks of the LATEST pointer in S3 "
                                            "(an index-updated message from IoT Core triggers one at once).",
                                     min=0.1)
    telemetry_interval_s: float = setting(60.0, "Seconds of usage aggregated into one telemetry record.", min=0.01)
    telemetry_queue_max: int = setting(10080, "Telemetry records kept on disk while offline (10080 = 7 days "
                                              "of minutes); beyond it the oldest are dropped and counted.",
                                       min=10)


class LocalSearchComponent:
    def __init__(self, ipc, settings: LocalSearchSettings, bundle: IndexBundle):
        self.ipc = ipc
        self.settings = settings
        self.bundle = bundle
        self._smoother = RankSmoother(settings.smoothing_window)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._refused_fingerprints: dict[str, float] = {}
        self.counts = {"queries": 0, "matched": 0, "refused": 0}
        self._status_thread = threading.Thread(target=self._status_loop, name="status", daemon=True)

    def start(self) -> None:
        self.ipc.subscribe_json(messages.FEATURES, self.handle_features)
        self._status_thread.start()
        self.publish_status("running")
        log.info("serving bundle %s version %s: %d items, %s, model %s", self.bundle.path,
                 self.bundle.version, len(self.bundle), self.bundle.manifest["index"]["factory"],
                 self.bundle.model_fingerprint[:12])

    def stop(self) -> None:
        self._stop.set()

    def handle_features(self, data: dict) -> None:
        received = time.time()
        query = FeatureMessage.from_json(data)  # MessageError: logged and dropped by Ipc
        if query.model_fingerprint != self.bundle.model_fingerprint:
            self._refuse(query)
            return
        start = time.perf_counter()
        depth = self.settings.top_k * 2 if self.settings.smoothing_window > 1 else self.settings.top_k
        scores, ids = self.bundle.search_ids(query.vector[None, :], k=depth)
        candidates = {int(i): float(s) for s, i in zip(scores[0], ids[0]) if i >= 0}
        with self._lock:
            ranked = self._smoother.update(query.track_id, candidates)
        top = [(fid, score) for fid, score in ranked
               if score >= self.settings.min_score][: self.settings.top_k]
        rows = self.bundle.items([fid for fid, _ in top])
        search_ms = 1000 * (time.perf_counter() - start)
        matches = [{"rank": rank, "score": round(score, 4), "faiss_id": fid, **_public(rows[fid])}
                   for rank, (fid, score) in enumerate(top, start=1)]
        message = messages.matches_message(
            query, index_version=self.bundle.version, model_fingerprint=self.bundle.model_fingerprint,
            matches=matches, min_score=self.settings.min_score,
            timings_ms={"featurize": round(query.featurize_ms, 2), "search": round(search_ms, 3),
                        "transit": round(1000 * (received - query.timestamp), 2),
                        "capture_to_publish": round(1000 * (time.time() - query.capture_time), 2)})
        self.ipc.publish_json(messages.MATCHES, message)
        with self._lock:
            self.counts["queries"] += 1
            self.counts["matched"] += bool(matches)

    def _refuse(self, query: FeatureMessage) -> None:
        with self._lock:
            self.counts["refused"] += 1
            last = self._refused_fingerprints.get(query.model_fingerprint, 0.0)
            self._refused_fingerprints[query.model_fingerprint] = time.time()
        detail = (f"refused query {query.query_id}: model fingerprint {query.model_fingerprint[:12]} "
                  f"differs from the bundle's {self.bundle.model_fingerprint[:12]}; deploy the "
                  f"featurizer the index was built with, or rebuild the index")
        if time.time() - last > self.settings.status_interval_s:  # say it once per interval, not per frame
            log.error(detail)
            self.publish_status("error", detail)

    def publish_status(self, state: str, detail: str = "") -> None:
        with self._lock:
            counts = dict(self.counts)
        self.ipc.publish_json(messages.status_topic(COMPONENT), messages.status_message(
            COMPONENT, state, detail, index_version=self.bundle.version, items=len(self.bundle),
            model_fingerprint=self.bundle.model_fingerprint, bundle_dir=str(self.bundle.path), **counts))

    def _status_loop(self) -> None:
        while not self._stop.wait(self.settings.status_interval_s):
            self.publish_status("running")


def _public(item: dict) -> dict:
    """The metadata a display needs (image paths stay on the cloud side)."""
    keys = ("item_id", "title", "category", "price", "location", "url", "thumbnail")
    return {k: item.get(k, "") for k in keys}
