"""`build-index`: featurize a catalog into an index bundle."""

from __future__ import annotations

from pathlib import Path

import click

from cloud_sync.cli.options import expected_errors, model_option


@click.command("build-index")
@click.argument("catalog", type=click.Path(path_type=Path))
@model_option
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Bundle directory to write.")
@click.option(
    "--index",
    default="auto",
    show_default=True,
    help="'auto' (chosen from size, dimension and --memory-mb) or a faiss factory string such as HNSW32.",
)
@click.option(
    "--search-params",
    default=None,
    help="faiss search parameters, e.g. efSearch=128 (default: chosen with the index).",
)
@click.option(
    "--rerank",
    type=click.IntRange(0),
    default=None,
    metavar="N",
    help="Re-rank the index's top N from the full vectors, kept on disk at float16 (default: as "
    "'auto' chose, which does for a PCA or PQ index; with a factory string, none; 0: none).",
)
@click.option("--metric", type=click.Choice(["cosine", "l2"]), default="cosine", show_default=True)
@click.option(
    "--memory-mb",
    default=512,
    show_default=True,
    type=click.IntRange(1),
    help="Memory budget of the index on the device.",
)
@click.option(
    "--skip-bad-rows",
    is_flag=True,
    help="Build without bad rows instead of failing (they are still reported).",
)
@click.option(
    "--index-version",
    type=click.IntRange(1),
    default=None,
    help="Version number (default: UTC time YYYYMMDDHHMMSS).",
)
@click.option(
    "--previous",
    metavar="BUNDLE_OR_VERSION",
    default=None,
    help="An earlier bundle (folder, or s3://BUCKET/PREFIX/indexes/VERSION): rows whose image "
    "bytes and model are unchanged keep its vectors and thumbnails; only the others are featurized.",
)
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="Featurize here, or on a Ray cluster (needs the `ray` extra: pip install .[ray]).",
)
@click.option(
    "--ray-address",
    default=None,
    help="Ray cluster to join ('auto': the one this machine belongs to; default: start one here).",
)
@click.option(
    "--ray-actors",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="Featurizer actors (one CPU and one model load each).",
)
@click.option(
    "--shards",
    default=None,
    help="Folder or s3:// prefix for the Ray engine's Parquet shards of vectors "
    "(default: a temporary folder here; on a multi-node cluster give an s3:// prefix).",
)
@expected_errors
def build_index(
    catalog,
    model_dir,
    out,
    index,
    search_params,
    rerank,
    metric,
    memory_mb,
    skip_bad_rows,
    index_version,
    previous,
    engine,
    ray_address,
    ray_actors,
    shards,
):
    """Featurize a catalog and write a versioned index bundle."""
    from cloud_sync.indexing.build_index import build_bundle
    from cloud_sync.indexing.previous_build import open_previous
    from cloud_sync.indexing.rows import local_engine

    if engine == "local" and (ray_address or shards):
        raise click.UsageError("--ray-address and --shards apply to --engine ray")
    if engine == "ray":
        from cloud_sync.indexing.ray_engine import RayEngine

        engine = RayEngine(address=ray_address, actors=ray_actors, shards=shards)
    else:
        engine = local_engine
    previous_build = open_previous(previous) if previous else None

    def report(problems):
        for problem in problems:
            click.echo(f"bad row: {problem}", err=True)

    try:
        result = build_bundle(
            catalog,
            model_dir,
            out,
            index=index,
            search_params=search_params,
            rerank=rerank,
            metric=metric,
            skip_bad_rows=skip_bad_rows,
            memory_budget=memory_mb * 1024 * 1024,
            index_version=index_version,
            previous=previous_build,
            engine=engine,
            on_problems=report,
            on_stale=lambda path: click.echo(f"removed {path} (left by an interrupted build)", err=True),
        )
    except ValueError as exc:  # faiss factory or memory budget
        raise click.UsageError(str(exc)) from None
    m = result.manifest
    if previous_build is not None:
        if result.counts.other_model:
            click.echo(f"{previous}: built with another model; every row featurized", err=True)
        click.echo(str(result.counts))
    click.echo(
        f"wrote {out}: {m['item_count']} items, index {m['index']['factory']} "
        f"({m['index']['search_params'] or 'exact'}"
        + (f", top {m['index']['rerank']['candidates']} re-ranked" if "rerank" in m["index"] else "")
        + f"), metric {m['metric']}, "
        f"version {m['index_version']}"
        + (f", skipped {len(result.problems)} bad row(s)" if result.problems else "")
    )
