"""`visual-search demo`: the whole kiosk on this machine, with real IPC between processes.

Builds the demo bundle if it is missing or stale (or serves one given with `--bundle`), starts
the local nucleus stand-in and the three components from `recipes/` with the demo's settings and
any `--set component.key=value` (checked as a deployment would be), and records every match
message. Headless runs stop after `--duration` seconds, print the components' warnings and
errors, and, on the demo video, score each held item against `demo/video/timeline.json`.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from components.common import messages
from components.common.bundle import MANIFEST
from components.common.errors import VisualSearchError
from devkit.demo_settings import SHORT_NAMES, configure
from devkit.nucleus.config import ComponentSpec

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEMO_CATALOG = PROJECT_ROOT / "demo" / "catalog"
DEMO_MODEL = PROJECT_ROOT / "models" / "demo-featurizer"
DEMO_VIDEO = PROJECT_ROOT / "demo" / "video" / "demo.mp4"
DEMO_TIMELINE = DEMO_VIDEO.with_name("timeline.json")
RECORDER = "com.visualsearch.DemoRecorder"
START_TIMEOUT_S = 180  # loading MXNet and the model in three processes on a busy laptop
LOUD_LEVELS = (" WARNING ", " ERROR ", " CRITICAL ")


@dataclass
class DemoOptions:
    source: str  # video file, camera index, stream URL or image folder
    catalog: Path = DEMO_CATALOG
    model: Path = DEMO_MODEL
    port: int = 8080
    work_dir: Path = PROJECT_ROOT / "demo-output"
    loop_video: bool = True
    bundle: Path | None = None  # a bundle already built (instead of building one from `catalog`)
    settings: list[str] = field(default_factory=list)  # "component.key=value", as given to --set


class LogEcho:
    """Passes on the component log lines worth a headless user's attention: warnings, errors and
    what follows them (a traceback), and anything that is not a log line (a crash's stderr)."""

    def __init__(self, echo: Callable[[str], None], everything: bool):
        self.echo, self.everything = echo, everything
        self._loud: dict[str, bool] = {}

    def __call__(self, name: str, line: str) -> None:
        short = SHORT_NAMES.get(name, name)
        is_log_line = f" {short} " in line[:40]
        if is_log_line:
            self._loud[name] = any(level in line[:60] for level in LOUD_LEVELS)
        if self.everything or not is_log_line or self._loud.get(name):
            self.echo(f"[{short}] {line}")


def log_files(work_dir: Path) -> Path:
    """Where the components' log files are (`<ComponentName>/logs/<ComponentName>.log` inside)."""
    return work_dir / "greengrass" / "work"


def ensure_bundle(catalog: Path, model: Path, out: Path, echo: Callable[[str], None]) -> Path:
    """Reuse `out` if it was built from this catalog with this model; otherwise rebuild it,
    reporting each bad catalog row as build-index does (the demo builds without them)."""
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

    def report(problems):
        for problem in problems:
            echo(f"bad row: {problem}")

    result = build_bundle(
        catalog, model, out, skip_bad_rows=True, catalog_digest=catalog_digest, on_problems=report
    )
    skipped = f", skipped {len(result.problems)} bad row(s)" if result.problems else ""
    echo(f"built {out}: {result.manifest['item_count']} items{skipped}")
    return out


def given_bundle(bundle: Path, model: Path) -> Path:
    """A bundle built elsewhere: complete, and made with this featurizer (or a one-line error)."""
    from components.common.bundle import verify_bundle
    from components.featurizer.model import fingerprint

    if not (bundle / MANIFEST).is_file():
        raise VisualSearchError(f"--bundle {bundle}: not an index bundle (no {MANIFEST})")
    try:
        verify_bundle(bundle, fingerprint(model))
    except VisualSearchError as exc:
        raise VisualSearchError(
            f"--bundle {bundle}: {exc} (is --model the featurizer it was built with?)"
        ) from None
    return bundle


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

    bundle = options.bundle or options.work_dir / "bundle"
    overrides = {
        "com.visualsearch.Featurizer": {
            "camera": options.source,
            "model_dir": str(options.model),
            "loop_video": options.loop_video,
        },
        "com.visualsearch.LocalSearch": {"bundle_dir": str(bundle)},
        "com.visualsearch.Display": {"port": options.port},
    }
    overrides = configure(overrides, options.settings, PROJECT_ROOT / "recipes")  # before any build
    ensure_assembled(options.model, echo)  # the demo model is assembled from its committed head once
    if options.bundle is not None:
        given_bundle(options.bundle, options.model)
    else:
        ensure_bundle(options.catalog, options.model, bundle, echo)
    on_log = LogEcho(echo, everything=show_logs)
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
