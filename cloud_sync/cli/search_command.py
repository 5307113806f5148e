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
    "--json",
    "as_json",
    is_flag=True,
    help="Print a JSON list: one {image, no_match, matches: [{id, score, title, category, ...}]} per image.",
)
@expected_errors
def search_image(images, bundle, model_dir, k, min_score, as_json):
    """Search IMAGE... as local_search would (min_score applied); for engineers and checks."""
    from cloud_sync.evaluation.search_images import search_images

    results, threshold = search_images(list(images), bundle, model_dir, k=k, min_score=min_score)
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    for result in results:
        click.echo(f"{result['image']}:" + (" no good match" if result["no_match"] else ""))
        for rank, match in enumerate(result["matches"], start=1):
            click.echo(
                f"  {rank}. {match['score']:.3f}  {match['id']}  {match['title']}  [{match['category']}]"
            )
    click.echo(f"(min_score {threshold:.3f})")
