"""`bench search --synthetic`: the synthetic catalog and the figures it prints (never timed)."""

import numpy as np
from click.testing import CliRunner

from cloud_sync.cli.main import main
from devkit.bench_index import SyntheticCatalog, bench_synthetic


def real_like(count: int = 300, dim: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((count, dim)) * np.linspace(1.0, 0.1, dim) + 1.0
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def test_synthetic_vectors_are_unit_deterministic_and_near_the_real_ones():
    real = real_like()
    catalog = SyntheticCatalog(real, seed=3)
    first = np.concatenate(list(catalog.chunks(1200)))
    assert first.shape == (1200, 64)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(first, np.concatenate(list(SyntheticCatalog(real, seed=3).chunks(1200))))
    held_out = catalog.queries(50, stream=0)
    assert not (held_out[:, None, :] == first[None, :, :]).all(axis=2).any()
    assert np.median((held_out @ real.T).max(axis=1)) > 0.8  # close to some real vector


def test_the_benchmark_prints_build_size_recall_and_percentiles():
    lines = list(bench_synthetic(real_like(), 3000, queries=50, factory="PCA16,IVF16,SQ8"))
    text = "\n".join(lines)
    assert "index PCA16,IVF16,SQ8" in text and "index.faiss" in text
    assert "recall@10" in text and "held-out queries" in text
    assert all(f"{p} " in lines[-1] for p in ("p50", "p95", "p99"))


def test_a_re_ranked_synthetic_index_reports_its_file_on_disk_and_a_cold_cache_run():
    def run(rerank):
        return list(bench_synthetic(real_like(), 3000, queries=50, factory="PCA16,IVF16,SQ8", rerank=rerank))

    def held_out_recall(lines):
        return float(next(line for line in lines if "held-out" in line).split("recall@10 ")[-1].split()[0])

    lines, alone = run(100), run(0)
    assert "top 100 re-ranked from the full vectors" in lines[0]
    assert "rerank-vectors.npy: 0.4 MiB on disk" in "\n".join(lines)
    assert held_out_recall(lines) >= 0.85 and held_out_recall(alone) < 0.7  # 16 of 64 dimensions
    assert "out of the page cache first" in lines[-1] and "p50 " in lines[-1]
    assert not any("page cache" in line for line in alone)


def test_bench_search_takes_either_a_bundle_or_a_synthetic_size():
    result = CliRunner().invoke(main, ["bench", "search"])
    assert result.exit_code == 2 and "either --bundle or --synthetic" in result.output
