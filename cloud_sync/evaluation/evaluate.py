"""`evaluate`: how well a featurizer retrieves the right catalog items, per distance metric.

Ground truth is the query's `category` (same-category retrieval), or, when every query row
has an `item_id` column, that exact catalog item. A product with several pictures (catalog
rows sharing an id) is ranked once, at its best picture, so a hit on it counts once.
For each metric the catalog is ranked exactly with numpy (ties keep catalog order) and scored
with P@1, P@k, R@k and AP@k, next to a seeded random ranking. The index (a bundle's, or one
built in memory as build-index would) is checked against exact search of its own metric, picture
by picture: recall@k and median query latency.

Definitions, per query, averaged over queries (every value lies in [0, 1]):
  P@k  = relevant items in the top k / k
  R@k  = relevant items in the top k / relevant items in the catalog (0 when there are none)
  AP@k = sum over ranks i <= k of P@i * rel_i / min(k, relevant items) (0 when there are none)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from cloud_sync.indexing.catalog import CatalogItem, CatalogProblem, read_catalog
from cloud_sync.indexing.embed import FeaturizedCatalog, featurize_catalog
from components.common.errors import BundleError, CatalogError
from components.featurizer.model import Featurizer
from components.local_search.faiss_index import Search, build_index, plain_search, set_search_params
from components.local_search.index_choice import choose_index
from components.local_search.rerank import RERANK_DTYPE, RerankVectors, reranked_search

METRICS = ("cosine", "l2", "l1", "hamming")
BLOCK_BYTES = 64 << 20  # bounds the distance blocks held at once
TIE_TOLERANCE = 1e-5  # an index result this close to the exact k-th distance counts as found
EXAMPLE_MATCHES = 5


@dataclass
class Example:
    query: CatalogItem
    matches: list[tuple[CatalogItem, float, bool]]  # (item, cosine similarity, relevant)


@dataclass
class Evaluation:
    results: dict  # the JSON: {metric: figures, ..., "random": figures}
    ground_truth: str  # "category" or "item_id"
    catalog: FeaturizedCatalog
    queries: FeaturizedCatalog
    catalog_root: Path
    query_root: Path
    ks: list[int]
    index: dict  # metric, factory, search_params, source
    no_relevant: int  # queries without any relevant catalog item
    featurizer: Featurizer  # what made the vectors, for checks that featurize more images
    examples: list[Example] = field(default_factory=list)


def distance_matrix(queries: np.ndarray, catalog: np.ndarray, metric: str) -> np.ndarray:
    """(Q, N) distances, lower is closer: cosine -> -q.c, l2 -> squared Euclidean,
    l1 -> sum |q - c|, hamming -> differing sign bits (feature > 0 is bit 1)."""
    if metric == "cosine":
        return -(queries @ catalog.T)
    if metric == "l2":
        squared = (queries**2).sum(1)[:, None] + (catalog**2).sum(1)[None, :] - 2 * queries @ catalog.T
        return np.maximum(squared, 0)
    if metric == "hamming":
        q, c = (queries > 0).astype(np.float32), (catalog > 0).astype(np.float32)
        return q.sum(1)[:, None] + c.sum(1)[None, :] - 2 * q @ c.T  # exact small integers
    if metric == "l1":
        step = max(1, BLOCK_BYTES // (4 * catalog.shape[1] * max(1, len(queries))))
        return np.concatenate(
            [
                np.abs(queries[:, None, :] - catalog[None, s : s + step]).sum(-1)
                for s in range(0, len(catalog), step)
            ],
            axis=1,
        )
    raise ValueError(f"unknown metric {metric!r} (choose from {', '.join(METRICS)})")


def exact_rankings(queries: np.ndarray, catalog: np.ndarray, metric: str, depth: int):
    """Catalog rows of each query's `depth` nearest items and their distances; ties stable."""
    rows = max(1, BLOCK_BYTES // (16 * len(catalog)))
    ids, dists = [], []
    for start in range(0, len(queries), rows):
        d = distance_matrix(queries[start : start + rows], catalog, metric)
        order = np.argsort(d, axis=1, kind="stable")[:, :depth]
        ids.append(order)
        dists.append(np.take_along_axis(d, order, axis=1))
    return np.concatenate(ids), np.concatenate(dists)


def random_rankings(n_queries: int, n_catalog: int, depth: int, seed: int = 0) -> np.ndarray:
    """A seeded random ordering of the catalog per query (the baseline)."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(n_catalog)[:depth] for _ in range(n_queries)])


def products_of(items: list[CatalogItem]) -> tuple[np.ndarray, list[CatalogItem]]:
    """Product of each catalog picture (row), and each product's first picture."""
    position: dict[str, int] = {}
    for item in items:
        position.setdefault(item.id, len(position))
    first = list({item.id: item for item in reversed(items)}.values())[::-1]
    return np.array([position[item.id] for item in items], dtype=np.int64), first


def product_rankings(rankings: np.ndarray, product_of: np.ndarray, depth: int) -> np.ndarray:
    """Ranked pictures -> ranked products, each at its best picture, `depth` per query (-1 pads)."""
    out = np.full((len(rankings), depth), -1, dtype=np.int64)
    for q, row in enumerate(product_of[rankings]):
        _, first = np.unique(row, return_index=True)
        ranked = row[np.sort(first)][:depth]
        out[q, : len(ranked)] = ranked
    return out


def relevance(rankings: np.ndarray, catalog_labels: list[str], query_labels: list[str]):
    """(Q, depth) bool: is the ranked item relevant; and (Q,) relevant items in the catalog."""
    codes = {label: i for i, label in enumerate(dict.fromkeys(catalog_labels))}
    catalog_codes = np.array([codes[label] for label in catalog_labels])
    query_codes = np.array([codes.get(label, -1) for label in query_labels])
    counts = np.append(np.bincount(catalog_codes, minlength=len(codes)), 0)  # index -1 -> 0
    ranked = np.where(rankings >= 0, catalog_codes[rankings], -2)  # -1 pads never match
    return ranked == query_codes[:, None], counts[query_codes]


def retrieval_metrics(relevant: np.ndarray, n_relevant: np.ndarray, ks: list[int]) -> dict:
    """P@1, P@k, R@k, AP@k averaged over queries, from (Q, depth) relevance of ranked items."""
    rel = np.asarray(relevant, dtype=np.float64)
    n_rel = np.asarray(n_relevant, dtype=np.float64)
    hits = np.cumsum(rel, axis=1)
    precision_at_rank = hits / np.arange(1, rel.shape[1] + 1)
    out = {"precision_at_1": float(rel[:, 0].mean()), "precision_at_k": {}, "recall_at_k": {}, "map_at_k": {}}
    for k in ks:
        depth = min(k, rel.shape[1])
        found = hits[:, depth - 1]
        ap = (precision_at_rank[:, :depth] * rel[:, :depth]).sum(1) / np.maximum(np.minimum(k, n_rel), 1)
        out["precision_at_k"][str(k)] = float((found / k).mean())
        out["recall_at_k"][str(k)] = float((found / np.maximum(n_rel, 1)).mean())
        out["map_at_k"][str(k)] = float(ap.mean())
    return out


def ground_truth_kind(queries: list[CatalogItem], location: str) -> str:
    """ "item_id" if every query names its catalog item, else "category" (which must be set)."""
    if queries and all(q.extra.get("item_id") not in (None, "") for q in queries):
        return "item_id"
    missing = [q.where for q in queries if not q.category]
    if missing:
        raise CatalogError(
            f"{location}: {len(missing)} query row(s) without a category (or an "
            f"item_id on every row): {', '.join(missing[:10])}" + (", ..." if len(missing) > 10 else "")
        )
    return "category"


def labels(items: list[CatalogItem], kind: str, is_query: bool) -> list[str]:
    if kind == "category":
        return [item.category for item in items]
    return [str(item.extra["item_id"]) if is_query else item.id for item in items]


def index_fidelity(
    search: Search,
    queries: np.ndarray,
    catalog: np.ndarray,
    metric: str,
    ks: list[int],
    row_of_id: np.ndarray,
    exact_dists: np.ndarray,
) -> tuple[dict, float]:
    """Recall@k of `search` (an index's, as the device searches) against exact search, and
    the median single-query latency (s).

    An index result counts as found when it is as close as the exact k-th item (so equal
    distances in another order are not misses); faiss ids map to catalog rows by `row_of_id`.
    """
    depth = exact_dists.shape[1]
    found = np.zeros((len(queries), len(ks)))
    latencies = []
    search(queries[:1], depth)  # warm-up
    for q, vector in enumerate(queries):
        start = time.perf_counter()
        ids = search(vector[None], depth)[0]
        latencies.append(time.perf_counter() - start)
        rows = row_of_id[ids[ids >= 0]]
        dists = np.full(depth, np.inf)
        dists[: len(rows)] = distance_matrix(vector[None], catalog[rows], metric)[0]
        for j, k in enumerate(ks):
            kk = min(k, depth)
            found[q, j] = np.count_nonzero(dists[:kk] <= exact_dists[q, kk - 1] + TIE_TOLERANCE) / kk
    recall = {str(k): float(found[:, j].mean()) for j, k in enumerate(ks)}
    return recall, float(np.median(latencies))


def _bundle_rows(bundle, items: list[CatalogItem]) -> np.ndarray:
    """Catalog row of each faiss id of `bundle`; the bundle must hold exactly these pictures."""
    position = {(item.id, item.image): i for i, item in enumerate(items)}
    rows = {}
    for start in range(0, len(bundle), 500):  # SQLite limits the parameters per statement
        rows.update(bundle.items(list(range(start, min(start + 500, len(bundle))))))
    if len(bundle) != len(items) or any((r["item_id"], r["image"]) not in position for r in rows.values()):
        raise BundleError(
            f"{bundle.path}: holds {len(bundle)} pictures, not the {len(items)} usable "
            f"pictures of this catalog; evaluate with the catalog it was built from"
        )
    return np.array([position[rows[i]["item_id"], rows[i]["image"]] for i in range(len(bundle))])


def _index_for(bundle, catalog: FeaturizedCatalog, dim: int):
    """(search, catalog row of each faiss id, description): the bundle's index (re-ranked
    if it says so), or a new one chosen as build-index --index auto would."""
    if bundle is not None:
        return (
            lambda queries, k: bundle.search_ids(queries, k)[1],
            _bundle_rows(bundle, catalog.items),
            {
                "metric": bundle.metric,
                "factory": bundle.manifest["index"]["factory"],
                "search_params": bundle.manifest["index"].get("search_params", ""),
                "source": str(bundle.path),
            },
        )
    choice = choose_index(len(catalog.items), dim)[0]
    index = build_index(catalog.vectors, choice.factory, "cosine")
    set_search_params(index, choice.search_params)
    if choice.rerank:
        reranker = RerankVectors(catalog.vectors.astype(RERANK_DTYPE))
        search = reranked_search(index, reranker, choice.rerank, "cosine")
    else:
        search = plain_search(index)
    return (
        search,
        np.arange(len(catalog.items)),
        {
            "metric": "cosine",
            "factory": choice.factory,
            "search_params": choice.search_params,
            "source": "built in memory",
        },
    )


def run_evaluation(
    catalog_path,
    queries_path,
    model_dir,
    *,
    metrics=METRICS,
    ks=(1, 5, 10),
    bundle_path=None,
    seed: int = 0,
    progress: bool = True,
    n_examples: int = 6,
    on_problems: Callable[[str, list[CatalogProblem]], None] | None = None,
) -> Evaluation:
    """Featurize catalog and queries, rank, score. The index's metric is always evaluated."""
    ks = sorted(set(ks))
    featurizer = Featurizer(model_dir)
    bundle = None
    if bundle_path is not None:  # opened first: a bundle of another model fails fast
        from components.local_search.search import IndexBundle

        bundle = IndexBundle.open(bundle_path, expected_fingerprint=featurizer.fingerprint)
    try:
        query_set = read_catalog(queries_path)
        kind = ground_truth_kind(query_set.items, query_set.location)
        catalog_set = read_catalog(catalog_path)
        catalog = featurize_catalog(catalog_set, featurizer, desc="featurizing catalog", progress=progress)
        queries = featurize_catalog(query_set, featurizer, desc="featurizing queries", progress=progress)
        for what, result in (("catalog", catalog), ("query", queries)):
            if result.problems and on_problems is not None:
                on_problems(what, result.problems)
        if not catalog.items:
            raise CatalogError(f"{catalog_set.location}: no usable catalog items")
        if not queries.items:
            raise CatalogError(f"{query_set.location}: no usable queries")
        search, row_of_id, info = _index_for(bundle, catalog, featurizer.dim)
    finally:
        if bundle is not None:
            bundle.close()  # the faiss index stays usable; only the items table closes
    product_of, products = products_of(catalog.items)
    catalog_labels, query_labels = labels(products, kind, False), labels(queries.items, kind, True)
    depth = min(max(ks), len(products))
    picture_depth = min(depth * int(np.bincount(product_of).max()), len(catalog.items))
    results = {}
    for metric in dict.fromkeys([*metrics, info["metric"]]):
        ranking, dists = exact_rankings(queries.vectors, catalog.vectors, metric, picture_depth)
        ranked_products = product_rankings(ranking, product_of, depth)
        rel, n_relevant = relevance(ranked_products, catalog_labels, query_labels)
        results[metric] = retrieval_metrics(rel, n_relevant, ks)
        if metric == info["metric"]:
            recall, latency = index_fidelity(
                search, queries.vectors, catalog.vectors, metric, ks, row_of_id, dists
            )
            results[metric].update(
                index_recall_at_k=recall, median_query_latency_s=latency, index_factory=info["factory"]
            )
    ranking = random_rankings(len(queries.items), len(products), depth, seed)
    results["random"] = retrieval_metrics(*relevance(ranking, catalog_labels, query_labels), ks)
    evaluation = Evaluation(
        results,
        kind,
        catalog,
        queries,
        catalog_set.root,
        query_set.root,
        ks,
        info,
        int(np.count_nonzero(n_relevant == 0)),
        featurizer,
    )
    evaluation.examples = examples(evaluation, n_examples)
    return evaluation


def examples(evaluation: Evaluation, count: int) -> list[Example]:
    """The first query of each of up to `count` categories (or the first queries, where
    they have none), with its top cosine matches."""
    catalog, queries = evaluation.catalog, evaluation.queries
    first: dict[str, int] = {}
    for i, query in enumerate(queries.items):
        first.setdefault(query.category or f"#{i}", i)
    chosen = list(first.values())[:count]
    product_of, _ = products_of(catalog.items)
    depth = min(EXAMPLE_MATCHES * int(np.bincount(product_of).max()), len(catalog.items))
    ranking, dists = exact_rankings(queries.vectors[chosen], catalog.vectors, "cosine", depth)
    kind = evaluation.ground_truth
    rel, _ = relevance(
        ranking, labels(catalog.items, kind, False), labels([queries.items[i] for i in chosen], kind, True)
    )
    shown = []
    for j, q in enumerate(chosen):
        _, best = np.unique(product_of[ranking[j]], return_index=True)  # each product at its best picture
        rows = np.sort(best)[:EXAMPLE_MATCHES]
        matches = [(catalog.items[ranking[j, r]], float(-dists[j, r]), bool(rel[j, r])) for r in rows]
        shown.append(Example(queries.items[q], matches))
    return shown
