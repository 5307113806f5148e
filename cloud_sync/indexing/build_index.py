"""`build-index`: catalog -> featurizer -> faiss index + metadata + thumbnails -> bundle."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import faiss

from cloud_sync.indexing.catalog import CatalogItem, CatalogProblem, read_catalog
from cloud_sync.indexing.reuse import PreviousBuild
from cloud_sync.indexing.rows import Engine, ReuseCounts, featurize_rows, local_engine
from components.common.bundle import INDEX_FILE, ITEMS_FILE, MANIFEST, METRICS, RERANK_FILE, write_manifest
from components.common.errors import BundleError, CatalogError
from components.common.files import can_replace, staged_dir
from components.common.items import write_items
from components.featurizer.model import Featurizer
from components.local_search.faiss_index import build_index as build_faiss_index
from components.local_search.faiss_index import chunks_of, set_search_params, tune_on_catalog
from components.local_search.index_choice import DEFAULT_MEMORY_BUDGET, choose_index
from components.local_search.rerank import RerankVectors, reranked_search, write_rerank_vectors


@dataclass
class BuildResult:
    bundle: Path
    manifest: dict
    problems: list[CatalogProblem]
    counts: ReuseCounts  # rows reused from --previous, featurized, removed


def build_bundle(
    catalog_path: str | Path,
    model_dir: str | Path,
    out: str | Path,
    *,
    index: str = "auto",
    search_params: str | None = None,
    rerank: int | None = None,
    metric: str = "cosine",
    skip_bad_rows: bool = False,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    index_version: int | None = None,
    progress: bool = True,
    featurizer: Featurizer | None = None,
    on_problems: Callable[[list[CatalogProblem]], None] | None = None,
    on_stale: Callable[[Path], None] | None = None,
    catalog_digest: str = "",
    previous: PreviousBuild | None = None,
    engine: Engine = local_engine,
) -> BuildResult:
    """Build a bundle at `out`. Written to a temporary directory and renamed at the end,
    so a failed build leaves an existing bundle at `out` untouched; `on_stale` hears of
    staging folders of interrupted builds that were removed. `rerank`: candidates the index
    proposes for the full vectors to re-rank (None: as `auto` chose, else none; 0: none)."""
    out = Path(out)
    if metric not in METRICS:
        raise BundleError(f"--metric {metric}: choose one of {', '.join(METRICS)}")
    if rerank is not None and rerank < 0:
        raise BundleError(f"--rerank {rerank}: give a number of candidates, or 0 for none")
    if not can_replace(out, lambda path: (path / MANIFEST).is_file()):
        raise BundleError(f"{out}: exists and is not an index bundle; choose another --out")
    catalog = read_catalog(catalog_path)
    featurizer = featurizer or Featurizer(model_dir)
    with staged_dir(out, on_stale=on_stale) as staging:
        # vectors, thumbnails and reuse/ files (see rows.py); engine: local or Ray
        result = featurize_rows(
            catalog, featurizer, staging, previous=previous, engine=engine, progress=progress
        )
        if result.problems and on_problems is not None:
            on_problems(result.problems)
        if result.problems and not skip_bad_rows:
            raise CatalogError(
                f"{catalog.location}: {len(result.problems)} bad row(s); fix them "
                f"or pass --skip-bad-rows to build without them"
            )
        if not result.items:
            raise CatalogError(f"{catalog.location}: no usable items to index")
        if index == "auto":
            choice = choose_index(len(result.items), featurizer.dim, memory_budget)[0]
            factory, params, reason = choice.factory, choice.search_params, choice.reason
            rerank = choice.rerank if rerank is None else rerank
        else:
            factory, params, reason = index, "", "chosen with --index"
        rerank = rerank or 0
        if search_params is not None:
            params = search_params
        faiss_index = build_faiss_index(result.vectors, factory, metric)
        search = None
        if rerank:
            count, dim = result.vectors.shape
            write_rerank_vectors(staging / RERANK_FILE, chunks_of(result.vectors), count, dim)
            reranker = RerankVectors.open(staging / RERANK_FILE, count, dim)
            search = reranked_search(faiss_index, reranker, rerank, metric)
        if index == "auto" and search_params is None:
            tuned, note = tune_on_catalog(faiss_index, factory, result.vectors, metric, search=search)
            params, reason = tuned or params, reason + note
        try:
            set_search_params(faiss_index, params)
        except RuntimeError as exc:
            raise BundleError(f"--search-params {params!r} do not apply to {factory}: {exc}") from None
        faiss.write_index(faiss_index, str(staging / INDEX_FILE))
        write_items(staging / ITEMS_FILE, item_rows(result.items, result.thumbnails))
        manifest = write_manifest(
            staging,
            {
                "index_version": index_version or _next_version(out),
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "item_count": len(result.items),
                "product_count": len({item.id for item in result.items}),
                "metric": metric,
                "index": {
                    "factory": factory,
                    "search_params": params,
                    "reason": reason,
                    **(
                        {"rerank": {"file": RERANK_FILE, "candidates": rerank, "dtype": "float16"}}
                        if rerank
                        else {}
                    ),
                },
                "model": {
                    "fingerprint": featurizer.fingerprint,
                    "name": featurizer.spec.name,
                    "arch": featurizer.spec.arch,
                    "input_size": [featurizer.preprocessing.height, featurizer.preprocessing.width],
                    "dim": featurizer.dim,
                },
                "catalog": {
                    "source": catalog.source,
                    "skipped_rows": len(result.problems),
                    **({"digest": catalog_digest} if catalog_digest else {}),
                },
                **calibrated_min_score(featurizer.spec),
            },
        )
    return BuildResult(out, manifest, result.problems, result.counts)


def item_rows(items: list[CatalogItem], thumbnails: list[str]) -> list[dict]:
    """Catalog items as rows of the bundle's items table (row i = faiss id i)."""
    return [
        {
            "item_id": item.id,
            "title": item.title,
            "category": item.category,
            "price": item.price,
            "location": item.location,
            "url": item.url,
            "thumbnail": thumbnail,
            "image": item.image,
            "extra": item.extra,
        }
        for item, thumbnail in zip(items, thumbnails, strict=True)
    ]


def _next_version(out: Path) -> int:
    """Monotonic index version: UTC time as YYYYMMDDHHMMSS, above any bundle already at `out`."""
    version = int(time.strftime("%Y%m%d%H%M%S", time.gmtime()))
    try:
        previous = int(json.loads((out / MANIFEST).read_text())["index_version"])
    except (OSError, ValueError, KeyError, TypeError):
        return version
    return max(version, previous + 1)


def calibrated_min_score(spec) -> dict:
    """The model's calibrated min_score (from `evaluate --calibrate`), for the manifest."""
    calibration = spec.extra.get("calibration") or {}
    if "min_score" not in calibration:
        return {}
    return {"min_score": float(calibration["min_score"]), "calibration": calibration}
