"""`visual-search evaluate`: retrieval quality per metric, a random baseline, index fidelity.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from cloud_sync.cli.options import comma_list, expected_errors

METRIC_NAMES = ("cosine", "l2", "l1", "hamming")


def _metrics(ctx, param, value):
    names = comma_list(str)(ctx, param, value)
    unknown = [name for name in names if name not in METRIC_NAMES]
    if unknown:
        raise click.BadParameter(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRIC_NAMES)}")
    return list(dict.fromkeys(names))


def _ks(ctx, param, value):
    ks = comma_list(int)(ctx, param, value)
    if min(ks) < 1:
        raise click.BadParameter("every k must be 1 or more")
    return sorted(set(ks))


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise click.FileError(str(path), hint=exc.strerror or str(exc)) from None


@click.command()
@click.option("--catalog", required=True, type=click.Path(path_type=Path),
              help="Catalog folder (catalog.csv, catalog.jsonl or <category>/<image>).")
@click.option("--queries", required=True, type=click.Path(path_type=Path),
              help="Query set in the same formats; an item_id column on every row means exact-item ground truth.")
@click.option("--model", "model_dir", required=True, type=click.Path(path_type=Path), help="Featurizer directory.")
@click.option("--metric", "metrics", default=",".join(METRIC_NAMES), show_default=True, callback=_metrics,
              help="Comma-separated metrics. The index's metric is always added.")
@click.option("--k", "ks", default="1,5,10", show_default=True, callback=_ks, help="Comma-separated cut-offs k.")
@click.option("--bundle", type=click.Path(path_type=Path), default=None,
              help="Index bundle built from this catalog and model (default: an index built in memory).")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None, help="Write the figures as JSON.")
@click.option("--report", "report_out", type=click.Path(path_type=Path), default=None,
              help="Write a self-contained HTML report (chart, table, example queries).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the random baseline.")
@expected_errors
def evaluate(catalog, queries, model_dir, metrics, ks, bundle, json_out, report_out, seed):
    """Same-category retrieval quality per metric (P@1, P@k, R@k, mAP@k) against a random
    ranking, and recall@k and latency of the index against exact search. Read-only: bad
    catalog or query rows are reported and left out."""
    from cloud_sync.evaluation.evaluate import run_evaluation
    from cloud_sync.evaluation.report import format_table, html_report

    skipped = {}

    def report(what, problems):
        skipped[what] = len(problems)
        for problem in problems:
            click.echo(f"bad row: {what} {problem}", err=True)

    evaluation = run_evaluation(catalog, queries, model_dir, metrics=metrics, ks=ks, bundle_path=bundle,
                                seed=seed, on_problems=report)
    if skipped:
        click.echo("skipped " + " and ".join(f"{n} {what} row(s)" for what, n in skipped.items())
                   + " (see 'bad row' above)", err=True)
    click.echo(format_table(evaluation))
    if json_out is not None:
        _write(json_out, json.dumps(evaluation.results, indent=2) + "\n")
        click.echo(f"wrote {json_out}")
    if report_out is not None:
        _write(report_out, html_report(evaluation))
        click.echo(f"wrote {report_out}")
