"""The featurizer component: camera -> search trigger -> featurizer -> `visualsearch/features`.

Threads: the camera thread reads frames and asks the trigger whether to search; it hands
the frame to the worker through `JobQueue` (newest frame only, so the camera never waits
on the CNN or on IPC). The worker featurizes camera frames and uploaded queries (uploads
first: a photo gives one FeatureMessage, a clip one per distinct sampled frame) and
publishes them; IPC publishes are asynchronous. A status thread reports on
`visualsearch/status/featurizer` every `status_interval_s`; the camera thread reports at
once when the camera is lost or back, and the worker when a query cannot be answered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass

from components.common.backoff import Backoff
from components.common.errors import VisualSearchError
from components.common.messages import (
    FEATURES,
    QUERIES,
    FeatureMessage,
    MessageError,
    QueryMessage,
    new_id,
    status_message,
    status_topic,
)
from components.featurizer import camera
from components.featurizer.camera import ClipError, Frame
from components.featurizer.frames import (
    crop_to_box,
    distinct_frames,
    frames_with_item,
    load_query_image,
    thumbnail_b64,
)
from components.featurizer.query_files import confined_path, resolve_upload_dir
from components.featurizer.settings import COMPONENT, FeaturizerSettings
from components.featurizer.trigger import Decision, SearchTrigger, StillTrigger

log = logging.getLogger("featurizer")
COUNTS = ("frames", "searches", "published", "queries", "failed_queries", "bad_queries", "errors")
STATES = {
    "starting": "starting",
    "connected": "running",
    "reconnecting": "camera_lost",
    "ended": "camera_ended",
    "failed": "error",
}  # camera state -> component state


@dataclass
class CameraJob:
    frame: Frame
    decision: Decision


@dataclass
class UploadJob:
    query: QueryMessage
    received: float


class JobQueue:
    """Uploads (first, a few kept) and camera frames (only the newest kept): `put` never waits.

    `put` returns the job it pushed out to make room, or None.
    """

    def __init__(self, camera_slots: int = 1, upload_slots: int = 8):
        self._camera: deque = deque(maxlen=camera_slots)
        self._uploads: deque = deque(maxlen=upload_slots)
        self._ready = threading.Condition()

    def put(self, job: CameraJob | UploadJob) -> CameraJob | UploadJob | None:
        queue = self._uploads if isinstance(job, UploadJob) else self._camera
        with self._ready:
            dropped = queue[0] if len(queue) == queue.maxlen else None
            queue.append(job)
            self._ready.notify()
        return dropped

    def get(self, timeout: float) -> CameraJob | UploadJob | None:
        with self._ready:
            if not self._uploads and not self._camera:
                self._ready.wait(timeout)
            if self._uploads:
                return self._uploads.popleft()
            return self._camera.popleft() if self._camera else None

    def wake(self) -> None:
        with self._ready:
            self._ready.notify_all()


class FeaturizerComponent:
    def __init__(self, ipc, settings: FeaturizerSettings, featurizer, open_source=camera.open_source):
        self.ipc, self.settings, self.featurizer = ipc, settings, featurizer
        self._open_source = open_source
        self.jobs = JobQueue()
        self._counts: Counter = Counter()
        self._lock = threading.Lock()
        self.camera_state, self.camera_detail = "starting", ""
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        self.ipc.subscribe_json(QUERIES, self.on_query)
        for name, target in (
            ("camera", self._camera_loop),
            ("worker", self._work_loop),
            ("status", self._status_loop),
        ):
            thread = threading.Thread(target=target, name=f"featurizer-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info(
            "started: camera %s, model %s (%s) on %s",
            self.settings.camera,
            getattr(self.featurizer, "model_dir", self.settings.model_dir),
            self.featurizer.fingerprint[:12],
            getattr(self.featurizer, "runtime", "mxnet"),
        )

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.jobs.wake()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []
        try:
            self.ipc.publish_json_wait(
                status_topic(COMPONENT), self._status("stopped", "component stopped"), 2.0
            )
        except Exception as exc:  # the nucleus may be gone already: status is best effort
            log.info("last status not sent (%s)", type(exc).__name__)

    def apply_settings(self, settings: FeaturizerSettings) -> None:
        """Take new `live` settings (see settings.py) while running: the camera thread passes
        trigger thresholds on at its next frame; the rest is read where it is used."""
        self.settings = settings

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    @property
    def counts(self) -> dict:
        with self._lock:
            return {**dict.fromkeys(COUNTS, 0), **self._counts}

    # --- uploaded queries (IPC callback thread) ------------------------------------
    def on_query(self, message: dict) -> None:
        try:
            query = QueryMessage.from_json(message)
        except MessageError as exc:
            self.count("bad_queries")
            log.warning("query message dropped: %s", exc)
            return
        pushed_out = self.jobs.put(UploadJob(query, time.time()))
        if pushed_out is not None:
            self.count("dropped_queries")
            self._query_failed(pushed_out.query, "featurizer busy: too many queries waiting")

    # --- camera thread -------------------------------------------------------------
    def _camera_loop(self) -> None:
        s = self.settings
        source = camera.ReconnectingSource(
            lambda: self._open_source(s.camera, loop=s.loop_video, realtime=s.realtime, image_s=s.image_s),
            Backoff(s.reconnect_initial_s, s.reconnect_max_s, jitter=0),
            self._stop.wait,
            self._camera_changed,
        )
        stills, trigger, connection = StillTrigger(s.max_rate_hz), SearchTrigger(s), 0
        try:
            while not self._stop.is_set():
                frame = source.read()
                if frame is None:
                    break
                if self.settings is not s:  # applied live: new trigger thresholds, same scene
                    s = self.settings
                    trigger.settings, stills.period = s, 1.0 / s.max_rate_hz
                if source.connections != connection:  # a reopened camera may look at another scene
                    trigger, connection = SearchTrigger(s), source.connections
                self.count("frames")
                decision = (
                    stills.update(frame.still, frame.capture_time)
                    if frame.still >= 0
                    else trigger.update(frame.image, frame.capture_time)
                )
                if decision.search:
                    self.count("searches")
                    (log.info if decision.reason in ("new item", "new image") else log.debug)(
                        "search: track %s, %s", decision.track_id, decision.reason
                    )
                    if self.jobs.put(CameraJob(frame, decision)) is not None:
                        self.count("dropped_frames")
        except camera.SourceEnded as exc:
            self._camera_changed("ended", str(exc))
        except Exception as exc:  # a bug must not end the thread silently
            log.exception("camera loop failed")
            self._camera_changed("failed", f"camera loop failed ({type(exc).__name__}: {exc})")
        finally:
            source.close()

    def _camera_changed(self, state: str, detail: str) -> None:
        self.camera_state, self.camera_detail = state, detail
        (log.warning if state in ("reconnecting", "failed") else log.info)("camera %s: %s", state, detail)
        self._publish_status()

    # --- worker thread -------------------------------------------------------------
    def _work_loop(self) -> None:
        while not self._stop.is_set():
            job = self.jobs.get(timeout=0.5)
            try:
                if isinstance(job, UploadJob):
                    self._answer_query(job)
                elif job is not None:
                    self._publish(self.featurize_camera_job(job))
            except Exception:
                self.count("errors")
                log.exception("featurize/publish failed")

    def featurize_camera_job(self, job: CameraJob) -> FeatureMessage:
        box = job.decision.box if self.settings.crop_to_item else None
        image = crop_to_box(job.frame.image, box) if box else job.frame.image
        started = time.perf_counter()
        vector = self.featurizer.featurize([image])[0]
        featurize_ms = (time.perf_counter() - started) * 1000
        return self._message(
            new_id(), job.frame._replace(image=image), vector, featurize_ms, track_id=job.decision.track_id
        )

    def featurize_query(self, query: QueryMessage, received: float) -> list[FeatureMessage]:
        """A photo -> one message; a clip -> one per sampled frame that shows an item and is
        not a near-duplicate of the one kept before it, `part` i of `parts`."""
        s = self.settings
        upload_dir = resolve_upload_dir(s.upload_dir)
        sampled = 0
        if query.kind == "video":
            if not query.image_path:
                raise ClipError("a video query needs image_path (the clip file on the device)")
            clip = confined_path(query.image_path, upload_dir)  # QueryFileRefused: not read
            frames = camera.sample_clip(str(clip), s.clip_every_s, s.clip_max_frames)
            sampled = len(frames)
            frames = [frames[i] for i in frames_with_item([f.image for f in frames], s)]
        else:
            frames = [Frame(load_query_image(query, upload_dir), received)]
        started = time.perf_counter()
        vectors = self.featurizer.featurize([frame.image for frame in frames])
        featurize_ms = (time.perf_counter() - started) * 1000 / len(frames)
        kept = distinct_frames(vectors, s.clip_duplicate_similarity)
        return [
            self._message(
                query.query_id,
                frames[i]._replace(capture_time=received),
                vectors[i],
                featurize_ms,
                source="upload",
                part=part,
                parts=len(kept),
                clip_frames=sampled,
                keywords=query.keywords,
                labels=query.labels,
            )
            for part, i in enumerate(kept, start=1)
        ]

    def _answer_query(self, job: UploadJob) -> None:
        try:
            answers = self.featurize_query(job.query, job.received)
        except VisualSearchError as exc:  # not an image, a clip with no frame, a missing file
            self._query_failed(job.query, str(exc))
            return
        for message in answers:
            self._publish(message)
        self.count("queries")
        log.info("query %s (%s) answered in %d part(s)", job.query.query_id, job.query.kind, len(answers))

    def _query_failed(self, query: QueryMessage, reason: str) -> None:
        self.count("failed_queries")
        log.warning("query %s not answered: %s", query.query_id, reason)
        self._publish_status(
            f"query {query.query_id} not answered: {reason}", query_id=query.query_id, query_error=reason
        )

    def _message(self, query_id: str, frame: Frame, vector, featurize_ms: float, **fields) -> FeatureMessage:
        return FeatureMessage(
            query_id=query_id,
            capture_time=frame.capture_time,
            vector=vector,
            model_fingerprint=self.featurizer.fingerprint,
            source_time=frame.source_time,
            featurize_ms=round(featurize_ms, 1),
            thumbnail=thumbnail_b64(frame.image, self.settings.thumbnail_px),
            **fields,
        )

    def _publish(self, message: FeatureMessage) -> None:
        self.ipc.publish_json(FEATURES, message.to_json())
        self.count("published")

    # --- status --------------------------------------------------------------------
    def _status_loop(self) -> None:
        self._publish_status()
        while not self._stop.wait(self.settings.status_interval_s):
            self._publish_status()

    def _status(self, state: str, detail: str, **fields) -> dict:
        return status_message(
            COMPONENT,
            state,
            detail,
            camera=self.settings.camera,
            camera_state=self.camera_state,
            model_fingerprint=self.featurizer.fingerprint,
            **self.counts,
            **fields,
        )

    def _publish_status(self, detail: str | None = None, **fields) -> None:
        state = STATES.get(self.camera_state, self.camera_state)
        try:
            self.ipc.publish_json(
                status_topic(COMPONENT),
                self._status(state, self.camera_detail if detail is None else detail, **fields),
            )
        except Exception as exc:  # the nucleus went away: status is best effort
            log.warning("status not published (%s: %s)", type(exc).__name__, exc)
