import faiss
import numpy as np
import pytest

from components.local_search.faiss_index import (
    build_index,
    exact_neighbours,
    recall_at_k,
    set_search_params,
    similarity,
    tune_on_catalog,
    tune_search_params,
)
from components.local_search.index_choice import (
    FLAT_MAX_ITEMS,
    RERANK_CANDIDATES,
    choose_index,
    flat_bytes,
    hnsw_bytes,
    ivf_nlist,
    ivf_sq8_bytes,
)

MB = 1024 * 1024


def test_small_catalogs_get_exact_search():
    best = choose_index(1_000, 512)[0]
    assert best.factory == "Flat" and best.search_params == ""


def test_medium_catalogs_get_hnsw_then_compressed_alternatives():
    choices = choose_index(FLAT_MAX_ITEMS + 1, 512, 1024 * MB)
    assert choices[0].factory == "HNSW32" and choices[0].search_params == "efSearch=64"
    assert choices[1].factory.startswith("IVF") and choices[1].factory.endswith(",SQ8")
    assert all(c.factory.startswith("IVF") and ",PQ" in c.factory for c in choices[2:])


def test_memory_budget_pushes_to_pca_then_product_quantisation():
    count, dim = 2_000_000, 512
    assert hnsw_bytes(count, dim) > 512 * MB
    best = choose_index(count, dim, 512 * MB)[0]
    assert best.factory.startswith("PCA256,IVF") and best.factory.endswith(",SQ8")
    assert best.search_params.startswith("nprobe=") and best.estimated_bytes <= 512 * MB
    tight = choose_index(count, dim, 128 * MB)[0]
    assert tight.factory.startswith("IVF") and ",PQ" in tight.factory and tight.estimated_bytes <= 128 * MB


def test_a_retail_catalog_of_the_default_featurizer_fits_the_default_budget_with_pca_and_rerank():
    best = choose_index(1_000_000, 1280)[0]
    assert best.factory == "PCA256,IVF4096,SQ8" and best.estimated_bytes <= 512 * MB
    assert "PCA 1280->256" in best.reason and "re-ranked" in best.reason
    assert best.rerank == RERANK_CANDIDATES and best.disk_bytes == 1_000_000 * 1280 * 2


def test_only_lossy_indexes_are_re_ranked():
    assert choose_index(1_000, 512)[0].rerank == 0  # Flat
    hnsw, full_sq8, *pq = choose_index(FLAT_MAX_ITEMS + 1, 512, 1024 * MB)
    assert hnsw.rerank == 0 and full_sq8.rerank == 0 and all(c.rerank == RERANK_CANDIDATES for c in pq)


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


def clustered(count: int, dim: int, seed: int) -> np.ndarray:
    """Unit vectors around a shared mean, in clusters of decreasing spread (as real features)."""
    rng = np.random.default_rng(seed)
    spread = np.linspace(1.0, 0.02, dim) ** 2
    centres = rng.standard_normal((50, dim)) * spread + 3.0
    vectors = centres[rng.integers(0, 50, count)] + 0.3 * rng.standard_normal((count, dim)) * spread
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def test_a_pca_index_takes_full_queries_from_its_file_and_keeps_cosine_ranking(tmp_path):
    vectors = clustered(4000, 64, seed=1)
    queries = clustered(100, 64, seed=2)
    index = build_index(vectors, "PCA48,IVF16,SQ8", "cosine")
    faiss.write_index(index, str(tmp_path / "index.faiss"))
    loaded = faiss.read_index(str(tmp_path / "index.faiss"))  # as the device loads it
    set_search_params(loaded, "nprobe=16")
    scores, found = loaded.search(queries, 10)  # 64-d queries: the PCA in the file applies itself
    truth = exact_neighbours(queries, np.array_split(vectors, 3), 10, "cosine")
    assert recall_at_k(found, truth) >= 0.9
    true_best = (queries * vectors[found[:, 0]]).sum(axis=1)
    np.testing.assert_allclose(scores[:, 0], true_best, atol=0.05)  # scores stay cosine
    estimate = ivf_sq8_bytes(len(vectors), 64, 16, 48)  # what the choice weighed against the budget
    assert (tmp_path / "index.faiss").stat().st_size <= estimate + 4096


def test_tuning_takes_the_cheapest_setting_that_reaches_the_recall_target():
    vectors, queries = clustered(3000, 32, seed=3), clustered(50, 32, seed=4)
    index = build_index(vectors, "IVF32,Flat", "cosine")
    truth = exact_neighbours(queries, [vectors], 10, "cosine")
    params, recall = tune_search_params(index, "IVF32,Flat", queries, truth, target=1.0)
    assert recall == 1.0 and params.startswith("nprobe=")
    cheaper = int(params.split("=")[1]) // 2
    set_search_params(index, f"nprobe={cheaper}")
    assert cheaper == 0 or recall_at_k(index.search(queries, 10)[1], truth) < 1.0
    set_search_params(index, params)  # what the manifest will say is what the index does
    assert recall_at_k(index.search(queries, 10)[1], truth) == 1.0


def test_exact_search_needs_no_tuning_and_the_note_names_the_measured_recall():
    vectors = clustered(2000, 16, seed=5)
    assert tune_on_catalog(build_index(vectors, "Flat", "cosine"), "Flat", vectors, "cosine") == ("", "")
    params, note = tune_on_catalog(build_index(vectors, "HNSW32", "cosine"), "HNSW32", vectors, "cosine")
    assert params.startswith("efSearch=") and "recall@10" in note


def test_an_index_is_built_from_vectors_on_disk_chunk_by_chunk_and_trained_on_a_sample(tmp_path, monkeypatch):
    import components.local_search.faiss_index as faiss_index

    vectors = clustered(3000, 32, seed=3)
    np.save(tmp_path / "vectors.npy", vectors)
    on_disk = np.load(tmp_path / "vectors.npy", mmap_mode="r")
    monkeypatch.setattr(faiss_index, "ADD_CHUNK", 700)  # five chunks
    monkeypatch.setattr(faiss_index, "MIN_TRAINING_POINTS", 1000)
    trained_on = []
    real_train = faiss_index.train_index
    monkeypatch.setattr(
        faiss_index,
        "train_index",
        lambda index, sample: trained_on.append(len(sample)) or real_train(index, sample),
    )
    index = faiss_index.build_index(on_disk, "PCA16,IVF8,SQ8", "cosine")
    assert trained_on == [1000] and index.ntotal == 3000
    set_search_params(index, "nprobe=8")
    again = faiss_index.build_index(vectors, "PCA16,IVF8,SQ8", "cosine")  # the same sample: deterministic
    set_search_params(again, "nprobe=8")
    np.testing.assert_array_equal(index.search(vectors[:20], 5)[1], again.search(vectors[:20], 5)[1])
    assert (index.search(vectors[:20], 1)[1][:, 0] == np.arange(20)).mean() >= 0.9  # ids in order
