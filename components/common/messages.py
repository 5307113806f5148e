"""Topic names and the versioned JSON messages the components exchange over IPC.

Each message is a dataclass: `to_json()` gives the dict to publish, `from_json(data)` reads
one back and raises MessageError naming the field that is missing or wrong. A message is
checked when it is built too, so a component cannot publish one that others would refuse.
Every message carries `schema` (name/version), a unique `id` and a `timestamp` (Unix
seconds). Feature vectors travel as base64 of little-endian float32 (2.7 KB for 512-d);
images never travel except small query thumbnails.
"""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from components.common.errors import MessageError
from components.common.json_fields import Fields, check, check_choice, check_fields, check_part

FEATURES = "visualsearch/features"  # featurizer -> local_search
MATCHES = "visualsearch/matches"  # local_search -> display
QUERIES = "visualsearch/queries"  # display -> featurizer (an uploaded image)
STATUS_PREFIX = "visualsearch/status/"  # + component short name
IOT_TELEMETRY = "visualsearch/{thing_name}/telemetry"  # device -> cloud (IoT Core)
IOT_INDEX_UPDATED = "visualsearch/index/updated"  # cloud -> devices (IoT Core)
LOCAL_TOPICS = (FEATURES, MATCHES, QUERIES)

FEATURES_SCHEMA = "visualsearch.features/1"
MATCHES_SCHEMA = "visualsearch.matches/1"
QUERY_SCHEMA = "visualsearch.query/1"
STATUS_SCHEMA = "visualsearch.status/1"
INDEX_UPDATED_SCHEMA = "visualsearch.index_updated/1"

SOURCES = ("camera", "upload")
QUERY_KINDS = ("image", "video")


def status_topic(component: str) -> str:
    return STATUS_PREFIX + component


def new_id() -> str:
    return uuid.uuid4().hex


def encode_vector(vector: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def decode_vector(text: str, dim: int) -> np.ndarray:
    if dim < 1:
        raise MessageError(f"vector dim {dim}, expected at least 1")
    try:
        raw = base64.b64decode(text, validate=True)
    except (ValueError, TypeError) as exc:
        raise MessageError(f"vector is not base64 ({exc})") from None
    if len(raw) != 4 * dim:
        raise MessageError(f"vector has {len(raw) / 4:g} values, message says dim {dim}")
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
    vector: np.ndarray  # on the wire: `dim` and `vector` (base64 of little-endian float32)
    source: str = "camera"  # "camera" or "upload"
    track_id: str = ""  # same value while the same item is held (for smoothing)
    thumbnail: str = ""  # small JPEG, base64, optional
    featurize_ms: float = 0.0
    source_time: float = -1.0  # seconds into a video file or clip (-1: live camera or photo)
    part: int = 1  # a video clip query is answered in `parts` messages
    parts: int = 1
    clip_frames: int = 0  # frames sampled from the clip (those without an item were dropped); 0: no clip
    keywords: str = ""  # hard filters of the query (see QueryMessage), searched within by local_search
    labels: str = ""
    id: str = field(default_factory=new_id)
    timestamp: float = field(default_factory=time.time)

    def __post_init__(self):
        check_fields(FEATURES_SCHEMA, self)
        check_choice(FEATURES_SCHEMA, "source", self.source, SOURCES)
        check_part(FEATURES_SCHEMA, self.part, self.parts)
        vector = self.vector
        if not isinstance(vector, np.ndarray) or vector.ndim != 1 or not vector.size:
            raise MessageError(f"{FEATURES_SCHEMA}: field 'vector' must be a non-empty 1-d array")
        if not np.all(np.isfinite(vector)):
            raise MessageError(f"{FEATURES_SCHEMA}: field 'vector' holds NaN or infinite values")

    def to_json(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if k != "vector"}
        return {
            "schema": FEATURES_SCHEMA,
            **data,
            "dim": int(self.vector.shape[0]),
            "vector": encode_vector(self.vector),
        }

    @classmethod
    def from_json(cls, data) -> FeatureMessage:
        f = Fields(data, FEATURES_SCHEMA)
        try:
            vector = decode_vector(f.get("vector", str), f.get("dim", int))
        except MessageError as exc:
            raise MessageError(f"{FEATURES_SCHEMA}: {exc}") from None
        return cls(**f.of(cls, skip=("vector",)), vector=vector)


@dataclass
class QueryMessage:
    """An uploaded photo or video clip to search (display -> featurizer).

    `image_path` is a file on the device (photo, or clip when kind == "video"); `image_b64`
    a small JPEG carried in the message. A clip is answered with one feature message per
    distinct frame with an item in it (`part` i of `parts`). `keywords` and `labels` are hard
    filters: only products matching every keyword and the label expression (e.g.
    `(color=red OR color=blue) AND brand=X`) are searched; empty: no filter.
    """

    query_id: str
    image_path: str = ""
    image_b64: str = ""
    kind: str = "image"  # "image" or "video"
    keywords: str = ""
    labels: str = ""
    id: str = field(default_factory=new_id)
    timestamp: float = field(default_factory=time.time)

    def __post_init__(self):
        check_fields(QUERY_SCHEMA, self)
        if not self.image_path and not self.image_b64:
            raise MessageError(f"{QUERY_SCHEMA}: query has neither image_path nor image_b64")
        check_choice(QUERY_SCHEMA, "kind", self.kind, QUERY_KINDS)

    def to_json(self) -> dict:
        return {"schema": QUERY_SCHEMA, **asdict(self)}

    @classmethod
    def from_json(cls, data) -> QueryMessage:
        return cls(**Fields(data, QUERY_SCHEMA).of(cls))


@dataclass(frozen=True)
class Variant:
    """A product folded into a match because its picture is near-identical (another size,
    colour or id of the same photo): enough for a card's "also in: ..." line."""

    faiss_id: int
    item_id: str
    title: str = ""
    price: str = ""
    thumbnail: str = ""

    def __post_init__(self):
        check_fields("variant", self)

    @classmethod
    def from_item(cls, faiss_id: int, item: dict) -> Variant:
        """A variant for a row of the items table (ItemStore.items())."""
        return cls(
            faiss_id,
            **{name: str(item.get(name) or "") for name in ("item_id", "title", "price", "thumbnail")},
        )

    @classmethod
    def from_json(cls, data) -> Variant:
        return cls(**Fields(data, None, "variant").of(cls))


@dataclass(frozen=True)
class Match:
    """One catalog item in a matches message, at its rank. The item fields (item_id to
    thumbnail) are defined here once; the bundle's items table stores them plus what stays
    in the bundle (components/common/items.py)."""

    rank: int  # 1 = best
    score: float  # cosine similarity, higher is more similar (smoothed while an item is held)
    faiss_id: int  # row of the index that answered: only meaningful with index_version
    item_id: str
    title: str = ""
    category: str = ""
    price: str = ""
    location: str = ""  # where it is in the store
    url: str = ""
    thumbnail: str = ""  # bundle-relative, e.g. "thumbnails/12.jpg"
    variants: list[Variant] = field(default_factory=list)  # near-identical products folded into this one

    def __post_init__(self):
        check_fields("match", self)
        if not all(isinstance(v, Variant) for v in self.variants):
            raise MessageError("match: field 'variants' must hold Variant objects")
        if self.rank < 1 or self.faiss_id < 0 or not self.item_id:
            raise MessageError(
                f"match: rank {self.rank}, faiss_id {self.faiss_id}, item_id {self.item_id!r}: "
                f"expected rank >= 1, faiss_id >= 0 and an item_id"
            )

    @classmethod
    def from_item(
        cls, rank: int, score: float, faiss_id: int, item: dict, variants: list[Variant] = ()
    ) -> Match:
        """A match for a row of the items table (ItemStore.items())."""
        fields_ = {name: str(item.get(name) or "") for name in ITEM_FIELDS}
        return cls(rank, score, faiss_id, **fields_, variants=list(variants))

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data) -> Match:
        f = Fields(data, None, "match")
        variants = []
        for i, variant in enumerate(f.get("variants", list, [])):
            try:
                variants.append(Variant.from_json(variant))
            except MessageError as exc:
                raise MessageError(f"match: variants[{i}]: {exc}") from None
        return cls(**f.of(cls, skip=("variants",)), variants=variants)


ITEM_FIELDS = tuple(
    spec.name for spec in fields(Match) if spec.name not in ("rank", "score", "faiss_id", "variants")
)


@dataclass
class MatchesMessage:
    """The ranked answer to one query (local_search -> display); no matches = no good match."""

    query_id: str
    capture_time: float
    index_version: int  # of the index that answered: faiss ids and thumbnails belong to it
    model_fingerprint: str
    matches: list[Match]  # best first, ranks 1..n
    source: str = "camera"  # copied from the query, like the fields down to thumbnail
    source_time: float = -1.0
    part: int = 1
    parts: int = 1
    track_id: str = ""
    thumbnail: str = ""
    clip_frames: int = 0
    keywords: str = ""  # the hard filters searched within
    labels: str = ""
    filter_error: str = ""  # why the filters could not be applied (then no matches)
    min_score: float | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    id: str = field(default_factory=new_id)
    timestamp: float = field(default_factory=time.time)

    def __post_init__(self):
        check_fields(MATCHES_SCHEMA, self)
        check_choice(MATCHES_SCHEMA, "source", self.source, SOURCES)
        check_part(MATCHES_SCHEMA, self.part, self.parts)
        for name, value in self.timings_ms.items():
            check(MATCHES_SCHEMA, f"timings_ms.{name}", value, float)
        ranks = [m.rank if isinstance(m, Match) else None for m in self.matches]
        if ranks != list(range(1, len(ranks) + 1)):
            raise MessageError(
                f"{MATCHES_SCHEMA}: field 'matches' must hold Match objects ranked 1..n, "
                f"got ranks {ranks}"
            )

    @property
    def no_match(self) -> bool:
        return not self.matches

    @classmethod
    def answering(cls, query: FeatureMessage, **answer) -> MatchesMessage:
        """The answer to `query`: its ids, times, parts and thumbnail, plus `answer`'s fields."""
        return cls(
            query_id=query.query_id,
            capture_time=query.capture_time,
            source=query.source,
            source_time=query.source_time,
            part=query.part,
            parts=query.parts,
            track_id=query.track_id,
            thumbnail=query.thumbnail,
            clip_frames=query.clip_frames,
            keywords=query.keywords,
            labels=query.labels,
            **answer,
        )

    def to_json(self) -> dict:
        return {"schema": MATCHES_SCHEMA, **asdict(self), "no_match": self.no_match}

    @classmethod
    def from_json(cls, data) -> MatchesMessage:
        f = Fields(data, MATCHES_SCHEMA)
        matches = []
        for i, match in enumerate(f.get("matches", list)):
            try:
                matches.append(Match.from_json(match))
            except MessageError as exc:
                raise MessageError(f"{MATCHES_SCHEMA}: matches[{i}]: {exc}") from None
        no_match = f.get("no_match", bool, not matches)
        if no_match != (not matches):
            raise MessageError(
                f"{MATCHES_SCHEMA}: field 'no_match' is {no_match} but the message holds "
                f"{len(matches)} matches"
            )
        return cls(**f.of(cls, skip=("matches",)), matches=matches)


@dataclass
class StatusMessage:
    """What a component reports about itself on visualsearch/status/<component>.

    The typed fields are the ones other components act on (the display opens the bundle
    local_search announces, and shows whether the device is online); `extra` holds what is
    particular to one component (counters, camera, url, ...), written flat beside them.
    """

    component: str
    state: str  # e.g. running, waiting, error, camera_lost, stopped
    detail: str = ""
    index_version: int | None = None  # local_search: the index served (display: the one it shows)
    items: int | None = None  # local_search: items in that index
    bundle_dir: str = ""  # local_search: where that bundle is on the device
    online: bool | None = None  # whether the cloud was reachable last time it was tried
    extra: dict = field(default_factory=dict)
    id: str = field(default_factory=new_id)
    timestamp: float = field(default_factory=time.time)

    def __post_init__(self):
        check_fields(STATUS_SCHEMA, self)
        if not self.component or not self.state:
            raise MessageError(
                f"{STATUS_SCHEMA}: component {self.component!r}, state {self.state!r}: " f"both must be named"
            )
        clashes = sorted(set(self.extra) & {"schema", *STATUS_FIELDS})
        if clashes:
            raise MessageError(
                f"{STATUS_SCHEMA}: extra field(s) {', '.join(clashes)} clash with the schema's"
            )

    @classmethod
    def of(cls, component: str, state: str, detail: str = "", **facts) -> StatusMessage:
        """Keyword facts sorted into the typed fields and `extra`."""
        typed = {name: facts.pop(name) for name in STATUS_FIELDS if name in facts}
        return cls(component, state, detail, **typed, extra=facts)

    def to_json(self) -> dict:
        return {
            "schema": STATUS_SCHEMA,
            **self.extra,
            **{name: getattr(self, name) for name in STATUS_FIELDS},
        }

    @classmethod
    def from_json(cls, data) -> StatusMessage:
        f = Fields(data, STATUS_SCHEMA)
        extra = {k: v for k, v in data.items() if k != "schema" and k not in STATUS_FIELDS}
        return cls(**f.of(cls, skip=("extra",)), extra=extra)


STATUS_FIELDS = tuple(spec.name for spec in fields(StatusMessage) if spec.name != "extra")


def status_message(component: str, state: str, detail: str = "", **facts) -> dict:
    """StatusMessage.of(...).to_json(): a checked status, ready to publish."""
    return StatusMessage.of(component, state, detail, **facts).to_json()


def index_updated_message(
    *,
    index_version: int,
    manifest_sha256: str,
    item_count: int,
    model_fingerprint: str,
    bucket: str,
    prefix: str,
    latest_key: str,
) -> dict:
    """cloud -> devices on IOT_INDEX_UPDATED: where LATEST is, and which version it names, so a
    device already serving that version can ignore it."""
    return {
        "schema": INDEX_UPDATED_SCHEMA,
        "id": new_id(),
        "timestamp": time.time(),
        "index_version": index_version,
        "manifest_sha256": manifest_sha256,
        "item_count": item_count,
        "model_fingerprint": model_fingerprint,
        "bucket": bucket,
        "prefix": prefix,
        "latest_key": latest_key,
    }
