"""`search-image`: ask a bundle what the kiosk would show for some photos."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cloud_sync.cli.options import expected_errors, model_option


@click.command("search-image")
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--bundle", required=True, type=click.Path(path_type=Path), help="Index bundle to search.")
@model_option
@click.option("--k", default=5, show_default=True, type=click.IntRange(1, 50), help="Matches per image.")
@click.option(
    "--min-score",
    type=click.FloatRange(-1, 1),
    default=None,
    help="Similarity below which a match is dropped [default: the bundle's calibrated min_score, "
    "as local_search uses it].",
)
@click.option(
    "--keywords",
    default="",
    help="Hard filter: search only products whose title, category, location, description or tags "
    "hold every word (plurals match: 'dresses' finds 'dress').",
)
@click.option(
    "--filter",
    "labels",
    default="",
    help='Hard filter on catalog columns, e.g. "category=hat" or '
    '"(colour=red OR colour=blue) AND brand=X" (= and !=, AND, OR, brackets; case-insensitive).',
)
@click.option(
    "--no-fold",
    is_flag=True,
    help="Show near-identical products one by one instead of folding them into the first "
    "(local_search's fold_duplicates).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print a JSON list: one {image, no_match, matches: [{id, score, title, category, ...}]} per image.",
)
@expected_errors
def search_image(images, bundle, model_dir, k, min_score, keywords, labels, no_fold, as_json):
    """Search IMAGE... as local_search would (min_score applied, one result per product,
    near-identical products folded); for engineers and checks."""
    from cloud_sync.evaluation.search_images import search_images

    results, threshold = search_images(
        list(images),
        bundle,
        model_dir,
        k=k,
        min_score=min_score,
        keywords=keywords,
        labels=labels,
        fold=not no_fold,
    )
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    for result in results:
        click.echo(f"{result['image']}:" + (" no good match" if result["no_match"] else ""))
        for rank, match in enumerate(result["matches"], start=1):
            click.echo(
                f"  {rank}. {match['score']:.3f}  {match['id']}  {match['title']}  [{match['category']}]"
                + "".join(f"\n       also: {v['id']}  {v['title']}" for v in match["variants"])
            )
    click.echo(f"(min_score {threshold:.3f})")
