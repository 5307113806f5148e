"""The display app in-process (Flask test client), with a scripted stand-in for the IPC side."""

from __future__ import annotations

from pathlib import Path

from components.common import messages
from components.display.app import DisplayApp, build_display_app
from components.display.settings import DisplaySettings


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def matches_for(
    bundle,
    faiss_ids,
    scores=None,
    *,
    query_id="q1",
    source="camera",
    track_id="",
    part=1,
    parts=1,
    thumbnail="",
) -> messages.MatchesMessage:
    """A matches message as local_search publishes it, for items of `bundle`."""
    rows = bundle.items(list(faiss_ids))
    scores = scores or [0.9 - 0.1 * i for i in range(len(faiss_ids))]
    matches = [
        messages.Match.from_item(rank, score, fid, rows[fid])
        for rank, (fid, score) in enumerate(zip(faiss_ids, scores), start=1)
    ]
    return messages.MatchesMessage(
        query_id=query_id,
        capture_time=1.0,
        timestamp=1.0,
        source=source,
        part=part,
        parts=parts,
        track_id=track_id,
        index_version=bundle.version,
        model_fingerprint=bundle.model_fingerprint,
        min_score=0.35,
        matches=matches,
        timings_ms={"capture_to_publish": 80.0},
        thumbnail=thumbnail,
    )


def match_message(bundle, faiss_ids, scores=None, **fields) -> dict:
    """matches_for(...) as JSON, to publish over IPC."""
    return matches_for(bundle, faiss_ids, scores, **fields).to_json()


def status(component: str, state: str = "running", **fields) -> messages.StatusMessage:
    return messages.StatusMessage.of(component, state, **fields)


def make_display(tmp_path: Path, bundle, answers=None, clock=None, **overrides) -> DisplayApp:
    """The app as production builds it; `answers(query) -> [MatchesMessage]` plays featurizer +
    local_search (None: nothing answers, so uploads time out)."""
    settings = DisplaySettings(
        **{"work_dir": str(tmp_path), "bundle_dir": str(bundle.path), "upload_timeout_s": 5.0, **overrides}
    )
    holder: dict = {}

    def publish(topic: str, message: dict) -> None:
        assert topic == messages.QUERIES
        holder.setdefault("queries", []).append(message)
        for answer in answers(message) if answers else []:
            holder["display"].searches.deliver(answer)

    display = build_display_app(settings, publish, **({"clock": clock} if clock else {}))
    holder["display"] = display
    display.queries = holder.setdefault("queries", [])
    return display


def write_clip(
    path: Path, images: list[Path], fps: int = 4, seconds_each: float = 1.0, size=(160, 160)
) -> Path:
    """An MP4 (mp4v) that shows each image for `seconds_each` seconds."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert writer.isOpened(), "OpenCV cannot write MP4 here"
    for image in images:
        frame = cv2.resize(cv2.imread(str(image)), size)
        for _ in range(int(fps * seconds_each)):
            writer.write(frame)
    writer.release()
    return path
