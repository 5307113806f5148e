"""Calibrating `min_score`: the similarity below which the kiosk says "no good match".

A genuine query is a photo of a catalog item, or a camera-like re-shot of it, whose best
match is right; a "nothing" query is a frame with no item in it (the empty counter, a black
or noisy frame, a picture of text) or a photo of something the store does not sell. The
threshold is the score that keeps a stated share of genuine best matches; the report says how
many "nothing" queries it rejects, so the trade-off is visible rather than guessed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from components.common.errors import ImageError
from components.featurizer.preprocess import read_image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
ABSENT_MARGIN_S = 0.5  # keep clear of frames where an item is entering or leaving
DEMO_VIDEO = Path(__file__).resolve().parents[2] / "demo" / "video" / "demo.mp4"
DEMO_TIMELINE = DEMO_VIDEO.with_name("timeline.json")


@dataclass(frozen=True)
class Calibration:
    min_score: float
    keep: float  # share of genuine best matches asked to be kept
    genuine_kept: float  # share actually kept at min_score
    genuine_queries: int
    nothing_rejected: float  # share of "nothing" queries with no match at min_score
    nothing_queries: int
    nothing_max_score: float  # the best score any "nothing" query reached

    def summary(self) -> str:
        """The figures in one sentence, after the words "min_score"."""
        return (
            f"{self.min_score:.3f}: keeps {self.genuine_kept:.1%} of {self.genuine_queries} genuine best "
            f"matches, rejects {self.nothing_rejected:.1%} of {self.nothing_queries} 'nothing' queries "
            f"(best 'nothing' score {self.nothing_max_score:.3f})"
        )

    def as_dict(self) -> dict:
        def plain(value):  # JSON has no NaN: an unknown share is null
            if isinstance(value, float):
                return None if np.isnan(value) else round(value, 4)
            return value

        return {key: plain(value) for key, value in asdict(self).items()}


def calibrate(genuine_scores: np.ndarray, nothing_scores: np.ndarray, keep: float) -> Calibration:
    """The highest threshold that keeps at least `keep` of the genuine best-match scores."""
    genuine = np.sort(np.asarray(genuine_scores, dtype=np.float64))
    if len(genuine) == 0:
        raise ValueError("no genuine matches to calibrate on (no query's best match was right)")
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], not {keep}")
    dropped = int(np.floor((1 - keep) * len(genuine) + 1e-9))  # genuine scores allowed below
    threshold = float(genuine[min(dropped, len(genuine) - 1)])
    threshold = float(np.floor(threshold * 1000) / 1000)  # a round figure at or below that score
    return at_threshold(threshold, genuine, nothing_scores, keep)


def at_threshold(
    min_score: float, genuine_scores: np.ndarray, nothing_scores: np.ndarray, keep: float = float("nan")
) -> Calibration:
    """What a given min_score keeps of genuine best matches and rejects of "nothing" queries."""
    genuine = np.asarray(genuine_scores, dtype=np.float64)
    nothing = np.asarray(nothing_scores, dtype=np.float64)
    return Calibration(
        min_score=min_score,
        keep=keep,
        genuine_kept=float(np.mean(genuine >= min_score)) if len(genuine) else float("nan"),
        genuine_queries=len(genuine),
        nothing_rejected=float(np.mean(nothing < min_score)) if len(nothing) else float("nan"),
        nothing_queries=len(nothing),
        nothing_max_score=float(nothing.max()) if len(nothing) else float("nan"),
    )


def synthetic_nothing(size: int = 360, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """Frames with no item: black, grey, uniform and sensor-like noise, printed text."""
    rng = np.random.default_rng(seed)
    frames = [
        ("black", np.zeros((size, size, 3), np.uint8)),
        ("grey", np.full((size, size, 3), 128, np.uint8)),
    ]
    for i in range(3):
        frames.append((f"uniform-noise-{i}", rng.integers(0, 256, (size, size, 3), dtype=np.uint8)))
        dark = np.clip(rng.normal(20, 12, (size, size, 3)), 0, 255).astype(np.uint8)
        frames.append((f"dark-sensor-noise-{i}", dark))
    for i, words in enumerate(("SALE 50% OFF", "Opening hours 9-18", "Please pay here")):
        page = np.full((size, size, 3), 245, np.uint8)
        for line in range(4):
            cv2.putText(
                page, words, (10, 60 + 80 * line), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (20, 20, 20), 2, cv2.LINE_AA
            )
        frames.append((f"text-{i}", page))
    return frames


def empty_scene_frames(video: Path, timeline: dict, count: int = 20) -> list[tuple[str, np.ndarray]]:
    """Up to `count` frames of a recorded counter at moments when no item is in view,
    spread evenly over the video (the demo video's timeline says when items are shown)."""
    spans = [
        (item["enter_s"] - ABSENT_MARGIN_S, item["leave_s"] + ABSENT_MARGIN_S)
        for item in timeline.get("items", [])
    ]
    fps = float(timeline["fps"])
    empty = [
        i for i in range(int(timeline["frames"])) if not any(start <= i / fps <= end for start, end in spans)
    ]
    wanted = set(empty[:: max(1, len(empty) // count)][:count])
    capture = cv2.VideoCapture(str(video))
    frames, index = [], 0
    try:
        while wanted:
            ok, frame = capture.read()
            if not ok:
                break
            if index in wanted:
                frames.append((f"{video.name}@{index / fps:.1f}s", frame))
                wanted.discard(index)
            index += 1
    finally:
        capture.release()
    return frames


def folder_images(folder: Path) -> list[tuple[str, np.ndarray]]:
    """Every image under `folder` (photos of things not in the catalog, the store's empty
    counter); an unreadable file is an error naming it, not a silent gap."""
    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ImageError(f"{folder}: no images (.jpg, .png, .webp, .bmp) found")
    return [(str(p), read_image(p)) for p in paths]


def nothing_queries(
    extra_folder: Path | None = None, video: Path | None = None, timeline_path: Path | None = None
) -> list[tuple[str, np.ndarray]]:
    frames = synthetic_nothing()
    if video is not None and timeline_path is not None and video.is_file() and timeline_path.is_file():
        frames += empty_scene_frames(video, json.loads(timeline_path.read_text()))
    if extra_folder is not None:
        frames += folder_images(extra_folder)
    return frames


def best_scores(
    evaluation, featurizer, nothing: list[tuple[str, np.ndarray]], seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Genuine scores: the best cosine score of every query whose best match is relevant, for
    the query photos and for a camera-like re-shot of each (kiosk frames score lower than
    product photos, and they are what min_score will judge); "nothing" scores: the best cosine
    score of each frame in `nothing`."""
    from cloud_sync.evaluation.evaluate import labels, relevance  # evaluate's helpers, imported late
    from cloud_sync.evaluation.reshots import reshoot

    catalog, queries = evaluation.catalog, evaluation.queries
    kind = evaluation.ground_truth
    shots = featurizer.featurize(reshoot(queries.items, evaluation.query_root, np.random.default_rng(seed)))
    genuine = []
    for vectors in (queries.vectors, shots):
        scores = vectors @ catalog.vectors.T
        best = np.argmax(scores, axis=1)[:, None]
        right, _ = relevance(best, labels(catalog.items, kind, False), labels(queries.items, kind, True))
        genuine.append(np.take_along_axis(scores, best, axis=1)[:, 0][right[:, 0]])
    nothing_vectors = featurizer.featurize([image for _, image in nothing])
    nothing_scores = (nothing_vectors @ catalog.vectors.T).max(axis=1) if len(nothing) else np.zeros(0)
    return np.concatenate(genuine), nothing_scores


def record_calibration(result: Calibration, model_dir: Path, bundle_dir: Path | None) -> list[Path]:
    """Write `min_score` into the model's featurizer.json (build-index copies it into every
    bundle) and, if given, into the bundle's manifest (its checksums are unaffected)."""
    from components.common.bundle import MANIFEST, read_manifest, write_manifest
    from components.featurizer.model import SPEC_FILE, read_spec, write_spec

    spec = read_spec(model_dir)
    extra = {**spec.extra, "calibration": result.as_dict()}
    write_spec(model_dir, replace(spec, extra=extra))
    written = [Path(model_dir) / SPEC_FILE]
    if bundle_dir is not None:
        manifest = read_manifest(bundle_dir)
        manifest.update(min_score=result.min_score, calibration=result.as_dict())
        manifest.pop("files")
        write_manifest(Path(bundle_dir), manifest)
        written.append(Path(bundle_dir) / MANIFEST)
    return written
