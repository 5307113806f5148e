"""The search library: open a verified index bundle and answer top-k queries with metadata."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from components.common.bundle import INDEX_FILE, verify_bundle
from components.common.errors import BundleError
from components.common.items import ItemStore, connect_items
from components.local_search.faiss_index import set_search_params, similarity


@dataclass(frozen=True)
class SearchHit:
    """One result of IndexBundle.search (the library call; what travels over IPC is messages.Match)."""

    rank: int
    score: float  # cosine similarity in [-1, 1]; higher is more similar
    faiss_id: int
    item: dict  # the item's row: every ITEM_COLUMNS key (components/common/items.py)


class IndexBundle(ItemStore):
    """A bundle opened for search. Thread-safe: searches may run from several threads."""

    def __init__(self, path: Path, manifest: dict, index: faiss.Index, db):
        super().__init__(path, manifest, db)
        self.index = index

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
        return cls(path, manifest, index, connect_items(path))

    @property
    def metric(self) -> str:
        return self.manifest["metric"]

    def __len__(self) -> int:
        return self.index.ntotal

    def search_ids(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, faiss ids), each (Q, k), best first; ids are -1 where fewer exist."""
        vectors = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        if vectors.shape[1] != self.index.d:
            raise ValueError(f"query vectors have {vectors.shape[1]} values, index expects {self.index.d}")
        k = max(1, min(int(k), self.index.ntotal))
        distances, ids = self.index.search(vectors, k)
        return similarity(distances, self.metric), ids

    def search(
        self, vectors: np.ndarray, k: int = 5, min_score: float | None = None
    ) -> list[list[SearchHit]]:
        """Top-k matches for each query vector (rows of `vectors`), best first.

        Matches below `min_score` are left out, so a query may get an empty list:
        "no good match" is an answer, not an error.
        """
        scores, ids = self.search_ids(vectors, k)
        rows = self.items([int(i) for i in np.unique(ids) if i >= 0])
        results = []
        for query_scores, query_ids in zip(scores, ids):
            matches = []
            for score, faiss_id in zip(query_scores, query_ids):
                if faiss_id < 0 or (min_score is not None and score < min_score):
                    continue
                matches.append(
                    SearchHit(
                        rank=len(matches) + 1,
                        score=float(score),
                        faiss_id=int(faiss_id),
                        item=rows[int(faiss_id)],
                    )
                )
            results.append(matches)
        return results
