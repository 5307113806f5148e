"""Topic names and the versioned JSON messages the components exchange over IPC.

Every message carries `schema` (name/version), a unique `id` and a `timestamp` (Unix
seconds). Feature vectors travel as base64 of little-endian float32 (2.7 KB for 512-d);
images never travel except small query thumbnails.
"""
from __future__ import annotations

import base64
import time
import uuid
from dataclasses import asdict, dataclass, field

import numpy as np

from components.common.errors import VisualSearchError

FEATURES = "visualsearch/features"          # featurizer -> local_search
MATCHES = "visualsearch/matches"            # local_search -> display
QUERIES = "visualsearch/queries"            # display -> featurizer (an uploaded image)
STATUS_PREFIX = "visualsearch/status/"      # + component short name
IOT_TELEMETRY = "visualsearch/{thing_name}/telemetry"  # device -> cloud (IoT Core)
IOT_INDEX_UPDATED = "visualsearch/index/updated"       # cloud -> devices (IoT Core)
LOCAL_TOPICS = (FEATURES, MATCHES, QUERIES)

FEATURES_SCHEMA = "visualsearch.features/1"
MATCHES_SCHEMA = "visualsearch.matches/1"
QUERY_SCHEMA = "visualsearch.query/1"
STATUS_SCHEMA = "visualsearch.status/1"
INDEX_UPDATED_SCHEMA = "visualsearch.index_updated/1"


class MessageError(VisualSearchError):
    """A message that does not parse or does not follow its schema."""


def status_topic(component: str) -> str:
    return STATUS_PREFIX + component


def new_id() -> str:
    return uuid.uuid4().hex


def encode_vector(vector: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def decode_vector(text: str, dim: int) -> np.ndarray:
    try:
        raw = base64.b64decode(text, validate=True)
    except (ValueError, TypeError) as exc:
        raise MessageError(f"vector is not base64 ({exc})") from None
    if len(raw) != 4 * dim:
        raise MessageError(f"vector has {len(raw) // 4} values, message says dim {dim}")
    vector = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if not np.all(np.isfinite(vector)):
        raise MessageError("vector holds NaN or infinite values")
    return vector


@dataclass
class FeatureMessage:
    """One query: a feature vector of what the camera saw (or of an uploaded image)."""

    query_id: str
    capture_time: float
    model_fingerprint: str
    vector: np.ndarray
    source: str = "camera"       # "camera" or "upload"
    track_id: str = ""           # same value while the same item is held (for smoothing)
    thumbnail: str = ""          # small JPEG, base64, optional
    featurize_ms: float = 0.0
    source_time: float = -1.0    # seconds into a video file or clip (-1: live camera or photo)
    part: int = 1                # a video clip query is answered in `parts` messages
    parts: int = 1
    id: str = field(default_factory=new_id)
    timestamp: float = field(default_factory=time.time)

    def to_json(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if k != "vector"}
        return {"schema": FEATURES_SCHEMA, **data, "dim": int(self.vector.shape[0]),
                "vector": encode_vector(self.vector)}

    @classmethod
    def from_json(cls, data) -> "FeatureMessage":
        _check_schema(data, FEATURES_SCHEMA)
        try:
            dim = int(data["dim"])
            return cls(query_id=str(data["query_id"]), capture_time=float(data["capture_time"]),
                       model_fingerprint=str(data["model_fingerprint"]),
                       vector=decode_vector(data["vector"], dim),
                       source=str(data.get("source", "camera")), track_id=str(data.get("track_id", "")),
                       thumbnail=str(data.get("thumbnail", "")),
                       featurize_ms=float(data.get("featurize_ms", 0.0)),
                       source_time=float(data.get("source_time", -1.0)),
                       part=int(data.get("part", 1)), parts=int(data.get("parts", 1)),
                       id=str(data["id"]), timestamp=float(data["timestamp"]))
        except KeyError as exc:
            raise MessageError(f"missing field {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise MessageError(f"bad field value ({exc})") from None


@dataclass
class QueryMessage:
    """An uploaded photo or video clip to search (display -> featurizer).

    `image_path` is a file on the device (photo, or clip when kind == "video"); `image_b64`
    a small JPEG carried in the message. A clip is answered with one feature message per
    distinct frame (`part` i of `parts`).
    """

    query_id: str
    image_path: str = ""
    image_b64: str = ""
    kind: str = "image"          # "image" or "video"
    id: str = field(default_factory=new_id)
    timestamp: float = field(default_factory=time.time)

    def to_json(self) -> dict:
        return {"schema": QUERY_SCHEMA, **asdict(self)}

    @classmethod
    def from_json(cls, data) -> "QueryMessage":
        _check_schema(data, QUERY_SCHEMA)
        if not data.get("image_path") and not data.get("image_b64"):
            raise MessageError("query has neither image_path nor image_b64")
        if data.get("kind", "image") not in ("image", "video"):
            raise MessageError(f"kind {data.get('kind')!r}, expected 'image' or 'video'")
        try:
            return cls(query_id=str(data["query_id"]), image_path=str(data.get("image_path", "")),
                       image_b64=str(data.get("image_b64", "")), kind=str(data.get("kind", "image")),
                       id=str(data["id"]), timestamp=float(data["timestamp"]))
        except KeyError as exc:
            raise MessageError(f"missing field {exc.args[0]!r}") from None


def matches_message(query: FeatureMessage, *, index_version: int, model_fingerprint: str,
                    matches: list[dict], min_score: float | None, timings_ms: dict) -> dict:
    """The ranked result of one query (local_search -> display). Empty `matches` = no good match."""
    return {"schema": MATCHES_SCHEMA, "id": new_id(), "timestamp": time.time(),
            "query_id": query.query_id, "capture_time": query.capture_time, "source": query.source,
            "source_time": query.source_time, "part": query.part, "parts": query.parts,
            "track_id": query.track_id, "index_version": index_version,
            "model_fingerprint": model_fingerprint, "min_score": min_score,
            "no_match": not matches, "matches": matches, "timings_ms": timings_ms,
            "thumbnail": query.thumbnail}


def status_message(component: str, state: str, detail: str = "", **fields) -> dict:
    """What a component reports about itself on visualsearch/status/<component>."""
    return {"schema": STATUS_SCHEMA, "id": new_id(), "timestamp": time.time(),
            "component": component, "state": state, "detail": detail, **fields}


def index_updated_message(*, index_version: int, manifest_sha256: str, item_count: int,
                          model_fingerprint: str, bucket: str, prefix: str, latest_key: str) -> dict:
    """cloud -> devices on IOT_INDEX_UPDATED: where LATEST is, and which version it names, so a
    device already serving that version can ignore it."""
    return {"schema": INDEX_UPDATED_SCHEMA, "id": new_id(), "timestamp": time.time(),
            "index_version": index_version, "manifest_sha256": manifest_sha256, "item_count": item_count,
            "model_fingerprint": model_fingerprint, "bucket": bucket, "prefix": prefix,
            "latest_key": latest_key}


def _check_schema(data, expected: str) -> None:
    if not isinstance(data, dict):
        raise MessageError(f"expected a JSON object, got {type(data).__name__}")
    if data.get("schema") != expected:
        raise MessageError(f"schema {data.get('schema')!r}, expected {expected!r}")
