"""local_search as it runs on a device: real IPC client, local nucleus stand-in."""

import numpy as np
import pytest

from cloud_sync.indexing.build_index import build_bundle
from components.common import messages
from components.common.ipc import Ipc
from components.common.messages import FeatureMessage
from components.common.settings import defaults, parse_settings
from components.featurizer.model import Featurizer
from components.featurizer.preprocess import read_image
from components.local_search.component import LocalSearchComponent, LocalSearchSettings
from components.local_search.search import IndexBundle
from devkit.nucleus import ComponentSpec, LocalNucleus
from tests.conftest import DEMO_CATALOG, demo_image
from tests.kiosk_helpers import DISPLAY, FEATURIZER, LOCAL_SEARCH, recipe
from tests.support.inbox import Inbox


@pytest.fixture(scope="module")
def bundle(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("ls") / "bundle"
    build_bundle(DEMO_CATALOG, tiny_model, out, progress=False)
    return IndexBundle.open(out)


@pytest.fixture
def kiosk(bundle, request):
    specs = [ComponentSpec.from_recipe(recipe(name)) for name in (FEATURIZER, LOCAL_SEARCH, DISPLAY)]
    min_score = getattr(request, "param", 0.0)
    with LocalNucleus(components=specs) as nucleus:
        # the tiny test model puts every photo within cosine 0.94-0.99 of every other: folding
        # near-duplicates would fold them all (folding is tested with the default model)
        settings = LocalSearchSettings(
            bundle_dir=str(bundle.path), min_score=min_score, smoothing_window=3, fold_duplicates=False
        )
        component = LocalSearchComponent(Ipc(nucleus.connect(LOCAL_SEARCH)), settings, bundle)
        component.start()
        matches = Inbox.subscribe(nucleus, DISPLAY, messages.MATCHES)
        status = Inbox.subscribe(nucleus, DISPLAY, messages.status_topic("local_search"))
        featurizer_ipc = Ipc(nucleus.connect(FEATURIZER))
        yield featurizer_ipc, matches, status, component
        component.stop()
        for closable in (featurizer_ipc, matches, status, component.ipc):
            closable.close()


def feature(vector, fingerprint, **fields):
    return FeatureMessage(
        query_id=fields.pop("query_id", "q1"),
        capture_time=1.0,
        model_fingerprint=fingerprint,
        vector=np.asarray(vector, np.float32),
        **fields,
    )


def test_a_feature_message_comes_back_as_ranked_matches_with_metadata(kiosk, bundle, tiny_model):
    featurizer_ipc, matches, _, _ = kiosk
    vector = Featurizer(tiny_model).featurize([read_image(demo_image("hat", 2))])[0]
    featurizer_ipc.publish_json(
        messages.FEATURES, feature(vector, bundle.model_fingerprint, query_id="abc").to_json()
    )
    result = matches.next(where=lambda m: m["query_id"] == "abc")
    assert result["schema"] == messages.MATCHES_SCHEMA and result["no_match"] is False
    top = result["matches"][0]
    assert top["item_id"] == "hat-003" and top["rank"] == 1 and top["score"] == pytest.approx(1.0, abs=1e-3)
    assert top["title"] and top["price"] and top["location"] and top["thumbnail"].startswith("thumbnails/")
    assert len(result["matches"]) == 5 and result["index_version"] == bundle.version
    assert set(result["timings_ms"]) >= {"search", "featurize", "capture_to_publish"}


def test_the_hard_filters_of_a_feature_message_restrict_the_search_and_bad_ones_are_said(
    kiosk, bundle, tiny_model
):
    featurizer_ipc, matches, _, component = kiosk
    vector = Featurizer(tiny_model).featurize([read_image(demo_image("shoes", 0))])[0]
    filtered = feature(
        vector, bundle.model_fingerprint, query_id="hats", labels="category=hat", keywords="grey"
    )
    featurizer_ipc.publish_json(messages.FEATURES, filtered.to_json())
    result = matches.next(where=lambda m: m["query_id"] == "hats")
    assert result["matches"] and all(m["title"] == "Grey hat" for m in result["matches"])
    assert (result["keywords"], result["labels"]) == ("grey", "category=hat")
    bad = feature(vector, bundle.model_fingerprint, query_id="bad", labels="colour=")
    featurizer_ipc.publish_json(messages.FEATURES, bad.to_json())
    refused = matches.next(where=lambda m: m["query_id"] == "bad")
    assert refused["no_match"] and "colour= has no value" in refused["filter_error"]


@pytest.mark.parametrize("kiosk", [0.999], indirect=True)
def test_min_score_gives_a_no_good_match_result(kiosk, bundle):
    featurizer_ipc, matches, _, _ = kiosk
    rng = np.random.default_rng(0)
    vector = rng.standard_normal(bundle.index.d).astype(np.float32)
    vector /= np.linalg.norm(vector)
    featurizer_ipc.publish_json(
        messages.FEATURES, feature(vector, bundle.model_fingerprint, query_id="far").to_json()
    )
    result = matches.next(where=lambda m: m["query_id"] == "far")
    assert result["no_match"] is True and result["matches"] == []


def test_another_models_vectors_are_refused_with_a_status_message(kiosk, bundle):
    featurizer_ipc, matches, status, _ = kiosk
    vector = bundle.index.reconstruct(0)
    featurizer_ipc.publish_json(messages.FEATURES, feature(vector, "f" * 64, query_id="wrong").to_json())
    refusal = status.next(where=lambda m: m["state"] == "error")
    assert "differs from the bundle's" in refusal["detail"] and "ffffffffffff" in refusal["detail"]
    featurizer_ipc.publish_json(
        messages.FEATURES, feature(vector, bundle.model_fingerprint, query_id="right").to_json()
    )
    assert matches.next(where=lambda m: m["query_id"] in ("wrong", "right"))["query_id"] == "right"


def test_a_message_that_does_not_parse_is_dropped_and_the_subscription_stays(kiosk, bundle):
    featurizer_ipc, matches, _, component = kiosk
    featurizer_ipc.publish_json(messages.FEATURES, {"schema": "something/else"})
    featurizer_ipc.publish_json(
        messages.FEATURES,
        {**feature(bundle.index.reconstruct(1), bundle.model_fingerprint).to_json(), "vector": "not base64!"},
    )
    featurizer_ipc.publish_json(
        messages.FEATURES,
        feature(bundle.index.reconstruct(1), bundle.model_fingerprint, query_id="after").to_json(),
    )
    assert matches.next(where=lambda m: m["query_id"] == "after")["matches"][0]["faiss_id"] == 1


def test_smoothing_keeps_the_ranking_of_a_held_item_steady(kiosk, bundle):
    featurizer_ipc, matches, _, _ = kiosk
    a, b = bundle.index.reconstruct(10), bundle.index.reconstruct(11)
    tops = []
    for n, vector in enumerate([a, a, b]):  # one noisy frame of the same held item
        featurizer_ipc.publish_json(
            messages.FEATURES,
            feature(vector, bundle.model_fingerprint, track_id="t1", query_id=f"s{n}").to_json(),
        )
        tops.append(matches.next(where=lambda m, n=n: m["query_id"] == f"s{n}")["matches"][0]["faiss_id"])
    assert tops == [10, 10, 10]


def test_recipe_defaults_are_the_settings_defaults():
    configuration = recipe(LOCAL_SEARCH)["ComponentConfiguration"]["DefaultConfiguration"]
    assert parse_settings(LocalSearchSettings, configuration, "local_search") == LocalSearchSettings()
    assert set(configuration) - {"accessControl"} == set(defaults(LocalSearchSettings))


def test_unset_min_score_takes_the_bundles_calibrated_one(tiny_model, tmp_path):
    from components.common.bundle import read_manifest, write_manifest

    out = tmp_path / "calibrated"
    build_bundle(DEMO_CATALOG, tiny_model, out, progress=False)
    manifest = read_manifest(out)
    manifest.pop("files")
    write_manifest(out, {**manifest, "min_score": 0.999})
    calibrated = IndexBundle.open(out)
    specs = [ComponentSpec.from_recipe(recipe(name)) for name in (FEATURIZER, LOCAL_SEARCH, DISPLAY)]
    with LocalNucleus(components=specs) as nucleus:
        settings = parse_settings(
            LocalSearchSettings, {"bundle_dir": str(out), "min_score": ""}, "local_search"
        )
        assert settings.min_score is None
        component = LocalSearchComponent(Ipc(nucleus.connect(LOCAL_SEARCH)), settings, calibrated)
        component.start()
        matches = Inbox.subscribe(nucleus, DISPLAY, messages.MATCHES)
        featurizer_ipc = Ipc(nucleus.connect(FEATURIZER))
        try:
            near = Featurizer(tiny_model).featurize([read_image(demo_image("hat", 2))])[0]
            far = np.random.default_rng(1).standard_normal(calibrated.index.d).astype(np.float32)
            for query_id, vector in (("near", near), ("far", far / np.linalg.norm(far))):
                featurizer_ipc.publish_json(
                    messages.FEATURES,
                    feature(vector, calibrated.model_fingerprint, query_id=query_id).to_json(),
                )
            # in either order: the IPC client publishes and runs handlers asynchronously
            answers = {m["query_id"]: m for m in matches.wait(count=2)}
            near_answer, far_answer = answers["near"], answers["far"]
        finally:
            component.stop()
            for closable in (featurizer_ipc, matches, component.ipc):
                closable.close()
    assert near_answer["min_score"] == far_answer["min_score"] == 0.999
    # only the photo itself is that close
    assert [m["item_id"] for m in near_answer["matches"]] == ["hat-003"]
    assert far_answer["no_match"] is True
