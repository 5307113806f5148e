"""`visual-search demo`: the whole kiosk on this machine, with real IPC between processes.

Builds the demo bundle if it is missing or stale, starts the local nucleus stand-in and the
three components from `recipes/`, and records every match message. Headless runs stop
after `--duration` seconds and, on the demo video, score each held item against
`demo/video/timeline.json`.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from components.common import messages
from components.common.bundle import MANIFEST
from components.common.errors import VisualSearchError
from devkit.nucleus.config import ComponentSpec

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEMO_CATALOG = PROJECT_ROOT / "demo" / "catalog"
DEMO_MODEL = PROJECT_ROOT / "models" / "demo-featurizer"
DEMO_VIDEO = PROJECT_ROOT / "demo" / "video" / "demo.mp4"
DEMO_TIMELINE = DEMO_VIDEO.with_name("timeline.json")
RECORDER = "com.visualsearch.DemoRecorder"
START_TIMEOUT_S = 180  # loading MXNet and the model in three processes on a busy laptop
SHORT_NAMES = {
    "com.visualsearch.Featurizer": "featurizer",
    "com.visualsearch.LocalSearch": "local_search",
    "com.visualsearch.Display": "display",
}


@dataclass
class DemoOptions:
    source: str  # video file, camera index, stream URL or image folder
    catalog: Path = DEMO_CATALOG
    model: Path = DEMO_MODEL
    port: int = 8080
    work_dir: Path = PROJECT_ROOT / "demo-output"
    loop_video: bool = True


def ensure_bundle(catalog: Path, model: Path, out: Path, echo: Callable[[str], None]) -> Path:
    """Reuse `out` if it was built from this catalog with this model; otherwise rebuild it."""
    from cloud_sync.indexing.build_index import build_bundle
    from components.featurizer.model import fingerprint

    catalog_digest = catalog_fingerprint(catalog)
    try:
        manifest = json.loads((out / MANIFEST).read_text())
        if (
            manifest["model"]["fingerprint"] == fingerprint(model)
            and manifest.get("catalog", {}).get("digest") == catalog_digest
        ):
            return out
    except (OSError, ValueError, KeyError):
        pass
    echo(f"building the demo index from {catalog} with {model} ...")
    result = build_bundle(catalog, model, out, skip_bad_rows=True, catalog_digest=catalog_digest)
    echo(f"built {out}: {result.manifest['item_count']} items")
    return out


def catalog_fingerprint(catalog: Path) -> str:
    """Changes when the catalog file or any file under the catalog folder changes."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in Path(catalog).rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(catalog)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


class MatchRecorder:
    """Subscribes to matches as its own component and keeps (or writes) every message."""

    def __init__(self, nucleus, out: Path | None):
        from components.common.ipc import Ipc

        self.records: list[dict] = []
        self._out = open(out, "w") if out else None
        self._lock = threading.Lock()
        self.ipc = Ipc(nucleus.connect(RECORDER))
        self.ipc.subscribe_json(messages.MATCHES, self._record)

    def _record(self, data: dict) -> None:
        message = messages.MatchesMessage.from_json(data)
        record = {
            "query_id": message.query_id,
            "capture_time": message.capture_time,
            "publish_time": message.timestamp,
            "received_time": time.time(),
            "source": message.source,
            "source_time": message.source_time,
            "track_id": message.track_id,
            "index_version": message.index_version,
            "no_match": message.no_match,
            "matches": [
                {"item_id": m.item_id, "score": m.score, "category": m.category} for m in message.matches
            ],
        }
        with self._lock:
            self.records.append(record)
            if self._out:
                self._out.write(json.dumps(record) + "\n")
                self._out.flush()

    def close(self) -> None:
        self.ipc.close()
        if self._out:
            self._out.close()


def recorder_spec() -> ComponentSpec:
    return ComponentSpec(
        RECORDER,
        {
            "accessControl": {
                "aws.greengrass.ipc.pubsub": {
                    f"{RECORDER}:pubsub:1": {
                        "policyDescription": "Record match messages for the demo.",
                        "operations": ["aws.greengrass#SubscribeToTopic"],
                        "resources": [messages.MATCHES],
                    }
                }
            }
        },
    )


def start_kiosk(options: DemoOptions, out: Path | None, echo: Callable[[str], None], show_logs: bool):
    """Start the nucleus stand-in, the three components and the recorder; return once every
    component reports RUNNING (or stop everything and raise)."""
    from cloud_sync.training.assemble import ensure_assembled
    from devkit.nucleus.runner import KioskRunner

    ensure_assembled(options.model, echo)  # the demo model is assembled from its committed head once
    bundle = ensure_bundle(options.catalog, options.model, options.work_dir / "bundle", echo)
    overrides = {
        "com.visualsearch.Featurizer": {
            "camera": options.source,
            "model_dir": str(options.model),
            "loop_video": options.loop_video,
        },
        "com.visualsearch.LocalSearch": {"bundle_dir": str(bundle)},
        "com.visualsearch.Display": {"port": options.port},
    }

    def on_log(name: str, line: str) -> None:
        if show_logs:
            echo(f"[{SHORT_NAMES.get(name, name)}] {line}")

    runner = KioskRunner(
        PROJECT_ROOT / "recipes",
        PROJECT_ROOT,
        options.work_dir / "greengrass",
        overrides=overrides,
        extra_components=[recorder_spec()],
        on_log=on_log,
    )
    runner.start()
    try:
        recorder = MatchRecorder(runner.nucleus, out)
        runner.wait_until_running(timeout=START_TIMEOUT_S)
    except (RuntimeError, TimeoutError) as exc:
        runner.stop()
        raise VisualSearchError(f"the kiosk did not start: {exc}") from None
    except Exception:
        runner.stop()
        raise
    return runner, recorder


def score_held_items(records: list[dict], timeline: dict) -> tuple[int, int, list[dict]]:
    """For each item held up in the video: is the category at rank 1 of the last match shown
    while it was held the item's category? Returns (right, held items, per-item rows).
    Matches are placed on the video's time line by their `source_time`; items the run did
    not reach are left out."""
    played_until = max(
        (r.get("source_time") or -1 for r in records if r.get("source") == "camera"), default=-1
    )
    rows = []
    for held in timeline["items"]:
        start, end = held["hold_start_s"], held["leave_s"]
        if held["hold_end_s"] > played_until:
            continue  # the run ended before this item was held for its full time
        shown = [
            r
            for r in records
            if r.get("source") == "camera"
            and start <= (r.get("source_time") if r.get("source_time") is not None else -1) <= end
        ]
        last = shown[-1] if shown else None
        top = last["matches"][0]["category"] if last and last["matches"] else None
        rows.append(
            {
                "category": held["category"],
                "matches": len(shown),
                "rank1": top,
                "right": top == held["category"],
            }
        )
    return sum(r["right"] for r in rows), len(rows), rows


def kiosk_latency(records: list[dict]) -> dict:
    import numpy as np

    camera = [r for r in records if r.get("source") == "camera"]
    if not camera:
        return {}
    latency = np.array([1000 * (r["publish_time"] - r["capture_time"]) for r in camera])
    span = max(r["capture_time"] for r in camera) - min(r["capture_time"] for r in camera)
    return {
        "searches": len(camera),
        "median_ms": float(np.median(latency)),
        "p95_ms": float(np.percentile(latency, 95)),
        "searches_per_s": len(camera) / span if span > 0 else 0.0,
    }


def wait_for(
    stop: threading.Event, seconds: float | None, tick: Callable[[], None], every: float = 10.0
) -> None:
    deadline = time.monotonic() + seconds if seconds else None
    next_tick = time.monotonic() + every
    while not stop.is_set():
        now = time.monotonic()
        if deadline and now >= deadline:
            return
        if now >= next_tick:
            tick()
            next_tick = now + every
        stop.wait(0.2)
