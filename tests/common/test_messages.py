"""The IPC contract: every topic, every message schema (fields, required or optional) and its checks.

A change here is a change of the wire format between components that may be deployed at
different versions: bump the schema version when a field changes meaning or becomes required.
"""

import json
import math

import numpy as np
import pytest

from components.common import messages
from components.common.messages import (
    FeatureMessage,
    Match,
    MatchesMessage,
    MessageError,
    QueryMessage,
    StatusMessage,
    decode_vector,
    encode_vector,
)

TOPICS = {
    "FEATURES": "visualsearch/features",
    "MATCHES": "visualsearch/matches",
    "QUERIES": "visualsearch/queries",
    "STATUS_PREFIX": "visualsearch/status/",
    "IOT_TELEMETRY": "visualsearch/{thing_name}/telemetry",
    "IOT_INDEX_UPDATED": "visualsearch/index/updated",
}
SCHEMAS = {
    "FEATURES_SCHEMA": "visualsearch.features/1",
    "MATCHES_SCHEMA": "visualsearch.matches/1",
    "QUERY_SCHEMA": "visualsearch.query/1",
    "STATUS_SCHEMA": "visualsearch.status/1",
    "INDEX_UPDATED_SCHEMA": "visualsearch.index_updated/1",
}
ENVELOPE = {"id", "timestamp"}
# message class -> (schema, required fields, optional fields); "schema" itself is always required
FIELDS = {
    FeatureMessage: (
        "visualsearch.features/1",
        {"query_id", "capture_time", "model_fingerprint", "dim", "vector", *ENVELOPE},
        {
            "source",
            "track_id",
            "thumbnail",
            "featurize_ms",
            "source_time",
            "part",
            "parts",
            "clip_frames",
            "keywords",
            "labels",
        },
    ),
    QueryMessage: (
        "visualsearch.query/1",
        {"query_id", *ENVELOPE},
        {"image_path", "image_b64", "kind", "keywords", "labels"},
    ),
    MatchesMessage: (
        "visualsearch.matches/1",
        {"query_id", "capture_time", "index_version", "model_fingerprint", "matches", *ENVELOPE},
        {
            "source",
            "source_time",
            "part",
            "parts",
            "track_id",
            "thumbnail",
            "clip_frames",
            "keywords",
            "labels",
            "filter_error",
            "min_score",
            "no_match",
            "timings_ms",
        },
    ),
    StatusMessage: (
        "visualsearch.status/1",
        {"component", "state", *ENVELOPE},
        {"detail", "index_version", "items", "bundle_dir", "online"},
    ),
}
MATCH_REQUIRED = {"rank", "score", "faiss_id", "item_id"}
MATCH_OPTIONAL = {"title", "category", "price", "location", "url", "thumbnail", "variants"}


def vector(dim=8, seed=0) -> np.ndarray:
    values = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return values / np.linalg.norm(values)


def match(rank=1, **fields) -> Match:
    return Match(
        **{
            "rank": rank,
            "score": 0.87,
            "faiss_id": 12,
            "item_id": "hat-003",
            "title": "Grey hat",
            "category": "hat",
            "price": "9.99",
            "location": "Aisle 3",
            "url": "https://shop/hat-003",
            "thumbnail": "thumbnails/12.jpg",
            **fields,
        }
    )


def sample(cls):
    """A message of `cls` with every field set."""
    if cls is FeatureMessage:
        return FeatureMessage(
            query_id="q1",
            capture_time=10.5,
            model_fingerprint="f" * 64,
            vector=vector(),
            source="upload",
            track_id="t1",
            thumbnail="QUJD",
            featurize_ms=12.5,
            source_time=3.0,
            part=1,
            parts=3,
        )
    if cls is QueryMessage:
        return QueryMessage(query_id="q1", image_path="/uploads/q1.mp4", image_b64="QUJD", kind="video")
    if cls is MatchesMessage:
        return MatchesMessage(
            query_id="q1",
            capture_time=10.5,
            index_version=7,
            model_fingerprint="f" * 64,
            matches=[match(1), match(2, faiss_id=13, item_id="hat-004", score=0.5)],
            source="upload",
            source_time=3.0,
            part=1,
            parts=3,
            track_id="t1",
            thumbnail="QUJD",
            min_score=0.35,
            timings_ms={"search": 1.5, "featurize": 12},
        )
    return StatusMessage(
        component="local_search",
        state="running",
        detail="serving",
        index_version=7,
        items=200,
        bundle_dir="/var/bundle",
        online=True,
        extra={"queries": 3, "index_source": "s3"},
    )


def over_the_wire(message) -> dict:
    return json.loads(json.dumps(message.to_json()))


# --- topics and schema names ------------------------------------------------------------


def test_the_full_set_of_topics_is_pinned():
    topics = {
        name: value
        for name, value in vars(messages).items()
        if isinstance(value, str) and value.startswith("visualsearch/")
    }
    assert topics == TOPICS
    assert messages.LOCAL_TOPICS == ("visualsearch/features", "visualsearch/matches", "visualsearch/queries")
    assert messages.status_topic("local_search") == "visualsearch/status/local_search"


def test_the_full_set_of_schema_names_is_pinned():
    schemas = {name: value for name, value in vars(messages).items() if name.endswith("_SCHEMA")}
    assert schemas == SCHEMAS


# --- every schema: fields, required and optional ----------------------------------------


@pytest.mark.parametrize("cls", list(FIELDS), ids=lambda c: c.__name__)
def test_a_message_is_written_with_its_schema_and_exactly_its_fields(cls):
    schema, required, optional = FIELDS[cls]
    data = sample(cls).to_json()
    extra = set(sample(cls).extra) if cls is StatusMessage else set()
    assert data["schema"] == schema
    assert set(data) == {"schema"} | required | optional | extra


@pytest.mark.parametrize("cls", list(FIELDS), ids=lambda c: c.__name__)
def test_each_required_field_is_refused_when_missing_by_name(cls):
    _, required, _ = FIELDS[cls]
    for name in sorted(required | {"schema"}):
        data = over_the_wire(sample(cls))
        del data[name]
        with pytest.raises(MessageError, match=f"'{name}'|schema None"):
            cls.from_json(data)


@pytest.mark.parametrize("cls", list(FIELDS), ids=lambda c: c.__name__)
def test_each_optional_field_may_be_left_out(cls):
    _, _, optional = FIELDS[cls]
    for name in sorted(optional):
        data = over_the_wire(sample(cls))
        del data[name]
        parsed = cls.from_json(data)
        assert parsed.query_id == "q1" if cls is not StatusMessage else parsed.component == "local_search"


def test_the_fields_of_a_match_are_pinned():
    data = over_the_wire(sample(MatchesMessage))["matches"][0]
    assert set(data) == MATCH_REQUIRED | MATCH_OPTIONAL
    assert messages.ITEM_FIELDS == ("item_id", "title", "category", "price", "location", "url", "thumbnail")
    for name in sorted(MATCH_REQUIRED):
        with pytest.raises(MessageError, match=f"missing field '{name}'"):
            Match.from_json({k: v for k, v in data.items() if k != name})
    assert Match.from_json({k: data[k] for k in MATCH_REQUIRED}) == Match(1, 0.87, 12, "hat-003")


def test_the_index_updated_message_is_pinned():
    data = messages.index_updated_message(
        index_version=7,
        manifest_sha256="a" * 64,
        item_count=200,
        model_fingerprint="f" * 64,
        bucket="b",
        prefix="p",
        latest_key="p/indexes/LATEST",
    )
    assert data["schema"] == "visualsearch.index_updated/1"
    assert set(data) == {
        "schema",
        *ENVELOPE,
        "index_version",
        "manifest_sha256",
        "item_count",
        "model_fingerprint",
        "bucket",
        "prefix",
        "latest_key",
    }


# --- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [QueryMessage, MatchesMessage, StatusMessage], ids=lambda c: c.__name__)
def test_to_json_and_from_json_round_trip(cls):
    message = sample(cls)
    assert cls.from_json(over_the_wire(message)) == message


def test_a_feature_message_round_trips_with_its_vector_bit_for_bit():
    message = sample(FeatureMessage)
    parsed = FeatureMessage.from_json(over_the_wire(message))
    assert parsed.vector.dtype == np.float32 and np.array_equal(parsed.vector, message.vector)
    assert parsed.to_json() == message.to_json() and message.to_json()["dim"] == 8


def test_matches_carry_the_query_they_answer_and_say_when_nothing_matched():
    query = sample(FeatureMessage)
    answer = MatchesMessage.answering(query, index_version=7, model_fingerprint="f" * 64, matches=[])
    assert (
        answer.query_id,
        answer.capture_time,
        answer.source,
        answer.part,
        answer.parts,
        answer.track_id,
    ) == ("q1", 10.5, "upload", 1, 3, "t1")
    assert answer.no_match and answer.to_json()["no_match"] is True and answer.to_json()["matches"] == []
    assert sample(MatchesMessage).to_json()["no_match"] is False


def test_status_facts_are_sorted_into_typed_fields_and_extra():
    status = StatusMessage.of("featurizer", "running", camera="0", online=False, published=4)
    assert status.online is False and status.extra == {"camera": "0", "published": 4}
    data = over_the_wire(status)
    assert data["camera"] == "0" and data["online"] is False and StatusMessage.from_json(data) == status
    assert messages.status_message("display", "running", url="http://x")["url"] == "http://x"


# --- feature vectors -------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_decode_vector_refuses_nan_and_infinite_values(bad):
    values = vector()
    values[3] = bad
    with pytest.raises(MessageError, match="NaN or infinite"):
        decode_vector(encode_vector(values), 8)


@pytest.mark.parametrize("dim", [7, 9, 16, 0])
def test_decode_vector_refuses_a_dim_that_does_not_match_the_values(dim):
    with pytest.raises(MessageError, match="dim"):
        decode_vector(encode_vector(vector(8)), dim)
    assert np.array_equal(decode_vector(encode_vector(vector(8)), 8), vector(8))


def test_decode_vector_refuses_text_that_is_not_base64():
    with pytest.raises(MessageError, match="not base64"):
        decode_vector("not base64!", 8)


def test_a_feature_message_with_a_bad_vector_is_refused_on_both_sides():
    data = over_the_wire(sample(FeatureMessage))
    with pytest.raises(MessageError, match="dim 9"):
        FeatureMessage.from_json({**data, "dim": 9})
    nan = vector()
    nan[0] = math.nan
    with pytest.raises(MessageError, match="NaN or infinite"):
        FeatureMessage.from_json({**data, "vector": encode_vector(nan)})
    with pytest.raises(MessageError, match="NaN or infinite"):
        FeatureMessage(query_id="q", capture_time=1.0, model_fingerprint="f", vector=nan)
    with pytest.raises(MessageError, match="1-d"):
        FeatureMessage(
            query_id="q", capture_time=1.0, model_fingerprint="f", vector=np.ones((1, 8), np.float32)
        )


# --- types and values -------------------------------------------------------------------------

BAD_FIELDS = [
    (FeatureMessage, "query_id", 5),
    (FeatureMessage, "capture_time", "now"),
    (FeatureMessage, "dim", "8"),
    (FeatureMessage, "part", True),
    (FeatureMessage, "vector", [0.1, 0.2]),
    (FeatureMessage, "source", "radio"),
    (QueryMessage, "image_path", 3),
    (QueryMessage, "kind", "gif"),
    (QueryMessage, "timestamp", None),
    (MatchesMessage, "index_version", "7"),
    (MatchesMessage, "index_version", 7.5),
    (MatchesMessage, "matches", "hat-003"),
    (MatchesMessage, "min_score", "low"),
    (MatchesMessage, "timings_ms", {"search": "fast"}),
    (MatchesMessage, "capture_time", math.nan),
    (MatchesMessage, "no_match", True),  # contradicts the matches it holds
    (MatchesMessage, "part", 4),  # of 3
    (StatusMessage, "component", None),
    (StatusMessage, "state", ""),
    (StatusMessage, "online", "yes"),
    (StatusMessage, "items", 1.5),
    (StatusMessage, "index_version", False),
]


@pytest.mark.parametrize(
    "cls, name, value", BAD_FIELDS, ids=[f"{c.__name__}.{n}={v!r}" for c, n, v in BAD_FIELDS]
)
def test_a_bad_field_is_refused_naming_it(cls, name, value):
    data = {**over_the_wire(sample(cls)), name: value}
    with pytest.raises(MessageError, match=name):
        cls.from_json(data)


BAD_MATCH_FIELDS = [
    ("score", "high"),
    ("score", math.inf),
    ("rank", 1.0),
    ("faiss_id", None),
    ("item_id", 17),
    ("title", None),
    ("price", 9.99),
]


@pytest.mark.parametrize("name, value", BAD_MATCH_FIELDS, ids=[f"{n}={v!r}" for n, v in BAD_MATCH_FIELDS])
def test_a_bad_field_of_a_match_is_refused_naming_the_match_and_the_field(name, value):
    data = over_the_wire(sample(MatchesMessage))
    data["matches"][1][name] = value
    with pytest.raises(MessageError, match=rf"matches\[1\].*{name}"):
        MatchesMessage.from_json(data)


def test_matches_must_be_ranked_one_to_n():
    with pytest.raises(MessageError, match=r"ranked 1..n, got ranks \[2, 1\]"):
        MatchesMessage(
            query_id="q",
            capture_time=1.0,
            index_version=1,
            model_fingerprint="f",
            matches=[match(2), match(1)],
        )
    with pytest.raises(MessageError, match="rank >= 1"):
        match(0)
    with pytest.raises(MessageError, match="an item_id"):
        match(1, item_id="")


@pytest.mark.parametrize("cls", list(FIELDS), ids=lambda c: c.__name__)
def test_not_an_object_or_another_schema_is_refused(cls):
    with pytest.raises(MessageError, match="expected a JSON object, got list"):
        cls.from_json([1, 2])
    with pytest.raises(MessageError, match="schema 'visualsearch.other/1'"):
        cls.from_json({**over_the_wire(sample(cls)), "schema": "visualsearch.other/1"})


def test_a_query_needs_an_image_path_or_an_image():
    data = over_the_wire(sample(QueryMessage))
    del data["image_path"], data["image_b64"]
    with pytest.raises(MessageError, match="neither image_path nor image_b64"):
        QueryMessage.from_json(data)


def test_status_extra_fields_cannot_shadow_the_typed_ones():
    with pytest.raises(MessageError, match="clash"):
        StatusMessage("display", "running", extra={"online": "yes"})


def test_a_message_built_with_a_bad_field_is_refused_before_it_is_published():
    with pytest.raises(MessageError, match="'score': expected float, got float32"):
        match(score=np.float32(0.5))  # json cannot write it
    with pytest.raises(MessageError, match="'items'"):
        StatusMessage.of("local_search", "running", items=1.5)
    with pytest.raises(MessageError, match="'index_version'"):
        MatchesMessage(query_id="q", capture_time=1.0, index_version=None, model_fingerprint="f", matches=[])


def test_a_match_carries_the_products_folded_into_it_and_older_matches_still_read():
    from components.common.messages import Variant

    folded = match(variants=[Variant(7, "hat-red-m", "Red hat, size M", "12.99", "thumbnails/7.jpg")])
    data = over_the_wire(folded)
    assert data["variants"] == [
        {
            "faiss_id": 7,
            "item_id": "hat-red-m",
            "title": "Red hat, size M",
            "price": "12.99",
            "thumbnail": "thumbnails/7.jpg",
        }
    ]
    assert Match.from_json(data) == folded
    del data["variants"]  # as an older local_search writes it
    assert Match.from_json(data).variants == []
    data["variants"] = [{"item_id": "x"}]
    with pytest.raises(MessageError, match=r"variants\[0\].*'faiss_id'"):
        Match.from_json(data)


def test_the_hard_filters_of_a_query_travel_to_its_feature_message_and_answer():
    query = QueryMessage.from_json(
        over_the_wire(
            QueryMessage(query_id="q1", image_path="/x.jpg", keywords="red", labels="category=dress")
        )
    )
    assert (query.keywords, query.labels) == ("red", "category=dress")
    feature = FeatureMessage(
        query_id="q1", capture_time=1.0, model_fingerprint="f", vector=vector(), keywords="red"
    )
    answer = MatchesMessage.answering(
        FeatureMessage.from_json(over_the_wire(feature)), index_version=1, model_fingerprint="f", matches=[]
    )
    assert answer.keywords == "red" and answer.labels == ""
