import faiss
import numpy as np
import pytest

from components.local_search.faiss_index import build_index, set_search_params, similarity
from components.local_search.index_choice import (
    FLAT_MAX_ITEMS,
    choose_index,
    flat_bytes,
    hnsw_bytes,
    ivf_nlist,
)

MB = 1024 * 1024


def test_small_catalogs_get_exact_search():
    best = choose_index(1_000, 512)[0]
    assert best.factory == "Flat" and best.search_params == ""


def test_medium_catalogs_get_hnsw_then_compressed_alternatives():
    choices = choose_index(FLAT_MAX_ITEMS + 1, 512, 1024 * MB)
    assert choices[0].factory == "HNSW32" and choices[0].search_params == "efSearch=64"
    assert all(c.factory.startswith("IVF") and ",PQ" in c.factory for c in choices[1:])


def test_memory_budget_pushes_to_product_quantisation():
    count, dim = 2_000_000, 512
    assert hnsw_bytes(count, dim) > 512 * MB
    best = choose_index(count, dim, 512 * MB)[0]
    assert best.factory.startswith("IVF") and ",PQ" in best.factory
    assert best.search_params.startswith("nprobe=")
    assert best.estimated_bytes <= 512 * MB


def test_every_choice_fits_the_budget_and_best_first_is_most_accurate_that_fits():
    for count in (10, 5_000, 60_000, 300_000, 3_000_000):
        for budget in (16 * MB, 256 * MB, 4096 * MB):
            try:
                choices = choose_index(count, 256, budget)
            except ValueError:
                assert flat_bytes(count, 256) > budget
                continue
            assert all(c.estimated_bytes <= budget for c in choices)
            pq_sizes = [int(c.factory.rsplit("PQ", 1)[1]) for c in choices if ",PQ" in c.factory]
            assert pq_sizes == sorted(pq_sizes, reverse=True)


def test_nothing_fits_is_an_error_not_a_none():
    with pytest.raises(ValueError, match="memory budget"):
        choose_index(1_000, 512, memory_budget=1024)
    with pytest.raises(ValueError):
        choose_index(0, 512)


def test_ivf_lists_are_trainable_from_the_catalog():
    for count in (10_000, 100_000, 10_000_000):
        assert count >= 39 * ivf_nlist(count)


def test_factory_strings_build_and_score_as_cosine():
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((300, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for metric in ("cosine", "l2"):
        for factory, params in (("Flat", ""), ("HNSW32", "efSearch=64")):
            index = build_index(vectors, factory, metric)
            set_search_params(index, params)
            distances, ids = index.search(vectors[:5], 1)
            assert list(ids[:, 0]) == [0, 1, 2, 3, 4]
            np.testing.assert_allclose(similarity(distances, metric)[:, 0], 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="faiss cannot build"):
        build_index(vectors, "NotAnIndex99", "cosine")
    assert isinstance(build_index(vectors, "Flat", "cosine"), faiss.Index)
