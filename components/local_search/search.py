"""The search library: open a verified index bundle and answer top-k queries with metadata.

The index holds one vector per picture; a result is a product (rows sharing an item_id),
shown once with its best-matching picture. Products whose best-matching pictures are
near-identical (cosine >= `fold_similarity`: one photo listed under several ids, e.g. one
per size or colour) are folded into the first of them, the others listed as its variants.
A hard filter (faiss ids allowed) restricts the vector search itself. A compressed index
(manifest `index.rerank`) only proposes candidates, which the full vectors re-rank (rerank.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from components.common.bundle import INDEX_FILE, MANIFEST, RERANK_FILE, verify_bundle
from components.common.errors import BundleError
from components.common.items import ItemStore, connect_items
from components.local_search.faiss_index import set_search_params, similarity
from components.local_search.filtered_search import search_within
from components.local_search.rerank import RerankVectors, rerank_candidates

Ranked = list[tuple[int, float]]  # (faiss id, score), best first


@dataclass(frozen=True)
class SearchHit:
    """One result of IndexBundle.search (the library call; what travels over IPC is messages.Match)."""

    rank: int
    score: float  # cosine similarity in [-1, 1]; higher is more similar
    faiss_id: int
    item: dict  # the item's row: every ITEM_COLUMNS key (components/common/items.py)
    variants: tuple["SearchHit", ...] = ()  # products folded into this one (rank 0)


@dataclass
class Group:
    """One shown product: its best picture and score, and the products folded into it."""

    faiss_id: int
    score: float
    variants: Ranked = field(default_factory=list)


class IndexBundle(ItemStore):
    """A bundle opened for search. Thread-safe: searches may run from several threads."""

    def __init__(
        self,
        path: Path,
        manifest: dict,
        index: faiss.Index,
        db,
        reranker: RerankVectors | None = None,
        candidates: int = 0,  # the index's results the reranker re-ranks
    ):
        super().__init__(path, manifest, db)
        self.index = index
        self.reranker = reranker
        self.rerank_candidates = candidates if reranker is not None else 0

    @classmethod
    def open(cls, path: str | Path, expected_fingerprint: str | None = None) -> "IndexBundle":
        """Verify checksums, format and (if given) model fingerprint, then load the index."""
        path = Path(path).resolve()
        manifest = verify_bundle(path, expected_fingerprint)
        try:
            index = faiss.read_index(str(path / INDEX_FILE))
        except RuntimeError as exc:
            raise BundleError(f"{path / INDEX_FILE}: not a readable faiss index ({exc})") from None
        if index.ntotal != manifest["item_count"] or index.d != manifest["model"]["dim"]:
            raise BundleError(
                f"{path / INDEX_FILE}: holds {index.ntotal} x {index.d}, manifest says "
                f"{manifest['item_count']} x {manifest['model']['dim']}"
            )
        set_search_params(index, manifest["index"].get("search_params", ""))
        rerank = rerank_candidates(manifest, str(path / MANIFEST))
        reranker = RerankVectors.open(path / RERANK_FILE, index.ntotal, index.d) if rerank else None
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None and reranker is None:
            ivf.make_direct_map()  # so folding can read back the vectors of a few results
        return cls(path, manifest, index, connect_items(path), reranker, rerank)

    @property
    def metric(self) -> str:
        return self.manifest["metric"]

    def __len__(self) -> int:
        return self.index.ntotal

    def search_ids(
        self, vectors: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, faiss ids), each (Q, k), best first; ids are -1 where fewer exist.
        `allowed`: only these faiss ids (ascending) are searched (ItemStore.filter_ids)."""
        vectors = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        if vectors.shape[1] != self.index.d:
            raise ValueError(f"query vectors have {vectors.shape[1]} values, index expects {self.index.d}")
        k = max(1, min(int(k), self.index.ntotal))
        depth = max(k, self.rerank_candidates)
        if allowed is None:
            distances, ids = self.index.search(vectors, depth)
        else:
            distances, ids = search_within(self.index, vectors, depth, allowed)
        if self.reranker is not None:
            distances, ids = self.reranker.rerank(vectors, ids, k, self.metric)
        return similarity(distances, self.metric), ids

    def candidates(
        self,
        vector: np.ndarray,
        k: int,
        *,
        allowed: np.ndarray | None = None,
        fold_similarity: float | None = None,
    ) -> Ranked:
        """The pictures nearest one query vector, deep enough to make `k` products (after
        folding) when the index holds that many: ranked (faiss id, score)."""
        return self._ranked_groups(vector, k, allowed, fold_similarity)[0]

    def _ranked_groups(
        self, vector: np.ndarray, k: int, allowed: np.ndarray | None, fold_similarity: float | None
    ) -> tuple[Ranked, list[Group]]:
        """candidates(), and the products they group into."""
        available = self.index.ntotal if allowed is None else len(allowed)
        depth = k * self.products().most_pictures * (2 if fold_similarity is not None else 1)
        while True:
            scores, ids = self.search_ids(vector, min(depth, available), allowed)
            ranked = [(int(i), float(s)) for s, i in zip(scores[0], ids[0]) if i >= 0]
            groups = self.group(ranked, fold_similarity)
            if depth >= available or len(groups) >= k:
                return ranked, groups
            depth *= 4

    def group(self, ranked: Ranked, fold_similarity: float | None = None) -> list[Group]:
        """Ranked pictures -> ranked products, each once at its best picture, near-identical
        ones folded into the first (None: no folding)."""
        product_of = self.products().product_of
        seen: set[int] = set()
        best: Ranked = []
        for faiss_id, score in ranked:
            if int(product_of[faiss_id]) not in seen:
                seen.add(int(product_of[faiss_id]))
                best.append((faiss_id, score))
        vectors = self._vectors([fid for fid, _ in best]) if fold_similarity is not None else None
        groups: list[Group] = []
        leaders: list[int] = []  # rows of `vectors` of each group's first product
        for row, (faiss_id, score) in enumerate(best):
            if vectors is not None and leaders:
                near = vectors[leaders] @ vectors[row]
                closest = int(np.argmax(near))
                if near[closest] >= fold_similarity:
                    groups[closest].variants.append((faiss_id, score))
                    continue
            groups.append(Group(faiss_id, score))
            leaders.append(row)
        return groups

    def _vectors(self, faiss_ids: list[int]) -> np.ndarray | None:
        """The stored vectors of a few pictures (None for an index that cannot give them back)."""
        if not faiss_ids:
            return np.zeros((0, self.index.d), np.float32)
        if self.reranker is not None:
            return self.reranker.vectors(np.array(faiss_ids))
        try:
            return self.index.reconstruct_batch(np.array(faiss_ids, dtype=np.int64))
        except RuntimeError:
            return None

    def search(
        self,
        vectors: np.ndarray,
        k: int = 5,
        min_score: float | None = None,
        *,
        allowed: np.ndarray | None = None,
        fold_similarity: float | None = None,
    ) -> list[list[SearchHit]]:
        """Top-k products for each query vector (rows of `vectors`), best first.

        Products below `min_score` are left out, so a query may get an empty list:
        "no good match" is an answer, not an error. With a filter (`allowed`), see floor().
        """
        results = []
        for vector in np.atleast_2d(vectors):
            _, groups = self._ranked_groups(vector, k, allowed, fold_similarity)
            floor = self.floor(vector, min_score, allowed)
            results.append(self.hits([g for g in groups if g.score >= floor][:k]))
        return results

    def floor(self, vector: np.ndarray, min_score: float | None, allowed: np.ndarray | None) -> float:
        """The lowest score shown. Unfiltered: `min_score`. With a hard filter, `min_score` only
        decides whether the query shows an item at all (its best match in the whole catalog
        reaches it); then the products that pass the filter are shown however low they rank."""
        if min_score is None:
            return -np.inf
        if allowed is None:
            return min_score
        best = self.search_ids(vector, 1)[0][0][0]
        return -np.inf if best >= min_score else np.inf

    def hits(self, groups: list[Group]) -> list[SearchHit]:
        """Groups with their rows, ranked 1..n (variants at rank 0)."""
        rows = self.items(sorted({fid for g in groups for fid in (g.faiss_id, *(v for v, _ in g.variants))}))
        return [
            SearchHit(
                rank,
                g.score,
                g.faiss_id,
                rows[g.faiss_id],
                tuple(SearchHit(0, score, fid, rows[fid]) for fid, score in g.variants),
            )
            for rank, g in enumerate(groups, start=1)
        ]
