"""local_search component: feature messages in, ranked matches with metadata out."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from components.common import messages
from components.common.backoff import Backoff
from components.common.bundle import bundle_min_score
from components.common.catalog_filter import KeywordError, LabelError
from components.common.messages import FeatureMessage, Match, MatchesMessage, StatusMessage, Variant
from components.local_search.bundle_store import BundleStore, resolve_index_dir
from components.local_search.index_sync import IndexSync
from components.local_search.search import IndexBundle
from components.local_search.serving import ServingIndex
from components.local_search.settings import COMPONENT, LocalSearchSettings
from components.local_search.smoothing import RankSmoother

log = logging.getLogger("local_search")


@dataclass(frozen=True)
class QueryEvent:
    """One handled feature message, for `query_listeners` (telemetry)."""

    latency_ms: float  # search latency on the device
    matched: bool  # at least one match shown
    item_ids: tuple[str, ...]  # ids shown, in rank order
    error: bool  # refused (another model), no index yet, or failed
    index_version: int | None  # of the index that answered (None: none served)
    model_fingerprint: str  # of that index ("" when none)


class LocalSearchComponent:
    """`bundle` is served at start (None: wait for the first one from S3, if index_bucket is
    set). `query_listeners` are called with a QueryEvent per feature message; `background`
    services (start()/stop(), optionally status_fields()) start and stop with the component."""

    def __init__(
        self,
        ipc,
        settings: LocalSearchSettings,
        bundle: IndexBundle | None = None,
        *,
        index_source: str = "bundle_dir",
        store: BundleStore | None = None,
        backoff: Backoff | None = None,
    ):
        self.ipc = ipc
        self.settings = settings
        self.serving = ServingIndex(bundle)
        self.index_source = index_source if bundle is not None else None
        self.query_listeners: list[Callable[[QueryEvent], None]] = []
        self.background: list = []
        self._smoothing = (bundle, RankSmoother(settings.smoothing_window))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._last_said: dict[str, float] = {}
        self._featurizer_fingerprint: str | None = None  # as last seen in feature messages
        self.counts = {"queries": 0, "matched": 0, "refused": 0}
        self._status_thread = threading.Thread(target=self._status_loop, name="status", daemon=True)
        self.sync = None
        if settings.index_bucket:
            self.sync = IndexSync(
                store or BundleStore(resolve_index_dir(settings.index_dir)),
                self.serving,
                bucket=settings.index_bucket,
                prefix=settings.index_prefix,
                poll_interval_s=settings.poll_interval_s,
                expected_fingerprint=self.expected_fingerprint,
                report=self._on_sync_report,
                seed_dir=settings.bundle_dir or None,
                backoff=backoff,
            )

    @property
    def bundle(self) -> IndexBundle | None:
        """The bundle served now."""
        return self.serving.bundle

    def expected_fingerprint(self) -> str | None:
        """The model a new bundle must be built for: the featurizer's, else the served bundle's."""
        bundle = self.serving.bundle
        return self._featurizer_fingerprint or (bundle.model_fingerprint if bundle is not None else None)

    def apply_settings(self, settings: LocalSearchSettings) -> None:
        """Take new `live` settings (see settings.py) while serving: top_k, min_score and
        folding apply from the next query, a new smoothing window starts its averages over, a new poll
        interval checks S3 at once and then keeps the new pace."""
        old, self.settings = self.settings, settings
        if settings.smoothing_window != old.smoothing_window:
            with self._lock:
                self._smoothing = (self.serving.bundle, RankSmoother(settings.smoothing_window))
        if self.sync is not None and settings.poll_interval_s != old.poll_interval_s:
            self.sync.poll_interval_s = settings.poll_interval_s
            self.sync.trigger()

    def start(self) -> None:
        self.ipc.subscribe_json(messages.FEATURES, self.handle_features)
        if self.sync is not None:
            self._subscribe_index_updates()
        for service in self.background:
            service.start()
        self._status_thread.start()
        self._routine_status()
        if self.sync is not None:
            self.sync.start()  # after the first status, so "waiting" never follows "now serving"
        bundle = self.serving.bundle
        if bundle is None:
            return
        log.info(
            "serving bundle %s version %s (from %s): %d items, %s, model %s",
            bundle.path,
            bundle.version,
            self.index_source,
            len(bundle),
            bundle.manifest["index"]["factory"],
            bundle.model_fingerprint[:12],
        )

    def stop(self) -> None:
        self._stop.set()
        if self.sync is not None:
            self.sync.stop()
        for service in reversed(self.background):
            try:
                service.stop()
            except Exception as exc:  # one service failing to stop must not keep the others running
                log.error("stopping %s: %s: %s", type(service).__name__, type(exc).__name__, exc)

    def handle_features(self, data: dict) -> None:
        received = time.time()
        query = FeatureMessage.from_json(data)  # MessageError: logged and dropped by Ipc
        start = time.perf_counter()
        shown, served, latency_ms = None, (None, ""), None
        try:
            with self.serving.lease() as bundle:  # this query uses this bundle to the end, even across a swap
                self._note_fingerprint(query.model_fingerprint, bundle)
                if bundle is None:
                    self._not_ready(query)
                elif query.model_fingerprint != bundle.model_fingerprint:
                    served = (bundle.version, bundle.model_fingerprint)
                    self._refuse(query, bundle)
                else:
                    served = (bundle.version, bundle.model_fingerprint)
                    shown, latency_ms = self._answer(query, bundle, received, start)
        finally:
            self._emit(
                QueryEvent(
                    latency_ms=latency_ms if latency_ms is not None else 1000 * (time.perf_counter() - start),
                    matched=bool(shown),
                    item_ids=tuple(shown or ()),
                    error=shown is None,
                    index_version=served[0],
                    model_fingerprint=served[1],
                )
            )

    def _answer(
        self, query: FeatureMessage, bundle: IndexBundle, received: float, start: float
    ) -> tuple[list[str], float]:
        s = self.settings
        fold = s.fold_similarity if s.fold_duplicates else None
        depth = s.top_k * 2 if s.smoothing_window > 1 else s.top_k
        try:
            allowed = (
                bundle.filter_ids(query.keywords, query.labels) if query.keywords or query.labels else None
            )
        except (KeywordError, LabelError) as exc:  # the display checks them first; another bundle may differ
            return self._publish_answer(query, bundle, received, start, [], filter_error=str(exc))
        ranked = bundle.candidates(query.vector, depth, allowed=allowed, fold_similarity=fold)
        with self._lock:
            owner, smoother = self._smoothing
            if owner is not bundle:  # faiss ids of another index mean other items: start over
                smoother = RankSmoother(s.smoothing_window)
                if bundle is self.serving.bundle:
                    self._smoothing = (bundle, smoother)
            ranked = smoother.update(query.track_id, dict(ranked))
        min_score = bundle_min_score(bundle.manifest, s.min_score)
        floor = bundle.floor(query.vector, min_score, allowed)
        groups = [g for g in bundle.group(ranked, fold) if g.score >= floor][: s.top_k]
        matches = [
            Match.from_item(
                hit.rank,
                round(hit.score, 4),
                hit.faiss_id,
                hit.item,
                [Variant.from_item(v.faiss_id, v.item) for v in hit.variants],
            )
            for hit in bundle.hits(groups)
        ]
        return self._publish_answer(query, bundle, received, start, matches, min_score=min_score)

    def _publish_answer(
        self, query, bundle: IndexBundle, received: float, start: float, matches: list[Match], **answer
    ) -> tuple[list[str], float]:
        search_ms = 1000 * (time.perf_counter() - start)
        message = MatchesMessage.answering(
            query,
            index_version=bundle.version,
            model_fingerprint=bundle.model_fingerprint,
            matches=matches,
            timings_ms={
                "featurize": round(query.featurize_ms, 2),
                "search": round(search_ms, 3),
                "transit": round(1000 * (received - query.timestamp), 2),
                "capture_to_publish": round(1000 * (time.time() - query.capture_time), 2),
            },
            **answer,
        )
        self.ipc.publish_json(messages.MATCHES, message.to_json())
        with self._lock:
            self.counts["queries"] += 1
            self.counts["matched"] += bool(matches)
        return [m.item_id for m in matches], search_ms

    def _emit(self, event: QueryEvent) -> None:
        for listener in list(self.query_listeners):
            try:
                listener(event)
            except Exception as exc:  # a listener never breaks a query
                if self._due(f"listener:{id(listener)}"):
                    log.warning("query listener %r failed (%s: %s)", listener, type(exc).__name__, exc)

    def _note_fingerprint(self, fingerprint: str, bundle: IndexBundle | None) -> None:
        if fingerprint == self._featurizer_fingerprint:
            return
        self._featurizer_fingerprint = fingerprint
        if self.sync is not None and (bundle is None or bundle.model_fingerprint != fingerprint):
            self.sync.trigger(recheck=True)  # a bundle refused for the old model may fit the new one

    def _due(self, key: str) -> bool:
        """Whether a message repeated per query (under `key`) may be said again: once per
        status interval, not per frame."""
        now = time.time()
        with self._lock:
            if now - self._last_said.get(key, 0.0) <= self.settings.status_interval_s:
                return False
            self._last_said[key] = now
            return True

    def _not_ready(self, query: FeatureMessage) -> None:
        if self._due("no index"):
            log.warning(
                "ignoring query %s: no index yet (waiting for the first one from %s)",
                query.query_id,
                self.sync.source if self.sync is not None else "nowhere",
            )

    def _refuse(self, query: FeatureMessage, bundle: IndexBundle) -> None:
        with self._lock:
            self.counts["refused"] += 1
        detail = (
            f"refused query {query.query_id}: model fingerprint {query.model_fingerprint[:12]} "
            f"differs from the bundle's {bundle.model_fingerprint[:12]}; deploy the "
            f"featurizer the index was built with, or rebuild the index"
        )
        if self._due(f"refused:{query.model_fingerprint}"):
            log.error(detail)
            self.publish_status("error", detail)

    # --- index sync ----------------------------------------------------------------------
    def _subscribe_index_updates(self) -> None:
        try:
            self.ipc.subscribe_iot_core(messages.IOT_INDEX_UPDATED, self.sync.on_index_updated)
        except Exception as exc:  # e.g. UnauthorizedError: a missing mqttproxy policy in the recipe
            log.error(
                "cannot subscribe to IoT Core %s (%s: %s); new indexes are found by polling every %s s",
                messages.IOT_INDEX_UPDATED,
                type(exc).__name__,
                exc,
                self.settings.poll_interval_s,
            )

    def _on_sync_report(self, state: str, detail: str) -> None:
        bundle = self.serving.bundle
        if state == "running" and bundle is not None:  # swapped: downloaded, or the bundle_dir seed
            self.index_source = "s3" if self.sync.store.versions in bundle.path.parents else "bundle_dir"
        self.publish_status(state, detail)

    def publish_status(self, state: str, detail: str = "") -> None:
        with self._lock:
            counts = dict(self.counts)
        bundle = self.serving.bundle
        fields = {
            "index_version": bundle.version if bundle else None,
            "items": len(bundle) if bundle else 0,
            "model_fingerprint": bundle.model_fingerprint if bundle else "",
            "bundle_dir": str(bundle.path) if bundle else "",
            "index_source": self.index_source,
        }
        if self.sync is not None:
            fields.update(self.sync.status_fields())
        for service in self.background:  # e.g. telemetry's fault: reported, never a reason to stop serving
            fields.update(getattr(service, "status_fields", dict)())
        self.ipc.publish_json(
            messages.status_topic(COMPONENT),
            StatusMessage.of(COMPONENT, state, detail, **fields, **counts).to_json(),
        )

    def _status_loop(self) -> None:
        while not self._stop.wait(self.settings.status_interval_s):
            self._routine_status()

    def _routine_status(self) -> None:
        if self.serving.bundle is None and self.sync is not None:
            self.publish_status("waiting", f"waiting for the first index from {self.sync.source}")
        else:
            self.publish_status("running")
