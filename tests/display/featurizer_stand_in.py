"""Plays the featurizer's part for uploads over the real IPC, until components/featurizer/component.py exists.

Subscribes to visualsearch/queries as the Featurizer component; a photo is featurized and
answered with one FeatureMessage (source "upload", same query_id); a clip is sampled at one
frame per second, near-duplicate frames are dropped by feature distance, and each distinct
frame is answered as part i of n.
"""

from __future__ import annotations

import base64
import time

import cv2
import numpy as np

from components.common import messages
from components.common.messages import FeatureMessage, QueryMessage
from components.featurizer.model import Featurizer
from components.featurizer.preprocess import read_image

DUPLICATE_SIMILARITY = 0.98


class FeaturizerStandIn:
    def __init__(self, ipc, model_dir):
        self.ipc = ipc
        self.model = Featurizer(model_dir)

    def start(self) -> None:
        self.ipc.subscribe_json(messages.QUERIES, self.handle_query)
        self.ipc.publish_json(
            messages.status_topic("featurizer"), messages.status_message("featurizer", "running")
        )

    def handle_query(self, data: dict) -> None:
        query = QueryMessage.from_json(data)
        start = time.perf_counter()
        frames = [read_image(query.image_path)] if query.kind == "image" else clip_frames(query.image_path)
        vectors = self.model.featurize(frames)
        kept = distinct(vectors)
        took = 1000 * (time.perf_counter() - start)
        for part, index in enumerate(kept, start=1):
            self.ipc.publish_json(
                messages.FEATURES,
                FeatureMessage(
                    query_id=query.query_id,
                    capture_time=time.time(),
                    model_fingerprint=self.model.fingerprint,
                    vector=vectors[index],
                    source="upload",
                    thumbnail=thumbnail(frames[index]),
                    featurize_ms=took,
                    part=part,
                    parts=len(kept),
                ).to_json(),
            )


def clip_frames(path: str) -> list[np.ndarray]:
    """One frame per second of the clip."""
    capture = cv2.VideoCapture(path)
    step = max(1, round(capture.get(cv2.CAP_PROP_FPS) or 1))
    frames, n = [], 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if n % step == 0:
            frames.append(frame)
        n += 1
    capture.release()
    return frames


def distinct(vectors: np.ndarray) -> list[int]:
    kept: list[int] = []
    for i, vector in enumerate(vectors):
        if all(float(vector @ vectors[j]) < DUPLICATE_SIMILARITY for j in kept):
            kept.append(i)
    return kept


def thumbnail(image: np.ndarray, side: int = 128) -> str:
    scale = side / max(image.shape[:2])
    small = cv2.resize(image, (max(1, int(image.shape[1] * scale)), max(1, int(image.shape[0] * scale))))
    return base64.b64encode(cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()).decode()
