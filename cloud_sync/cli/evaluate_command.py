"""`visual-search evaluate`: retrieval quality per metric, a random baseline, index fidelity."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cloud_sync.cli.options import comma_list, expected_errors, model_option

METRIC_NAMES = ("cosine", "l2", "l1", "hamming")


def _metrics(ctx, param, value):
    names = comma_list(str)(ctx, param, value)
    unknown = [name for name in names if name not in METRIC_NAMES]
    if unknown:
        raise click.BadParameter(
            f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRIC_NAMES)}"
        )
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
@click.option(
    "--catalog",
    required=True,
    type=click.Path(path_type=Path),
    help="Catalog folder (catalog.csv, catalog.jsonl or <category>/<image>).",
)
@click.option(
    "--queries",
    required=True,
    type=click.Path(path_type=Path),
    help="Query set in the same formats; an item_id column on every row means exact-item ground truth.",
)
@model_option
@click.option(
    "--metric",
    "metrics",
    default=",".join(METRIC_NAMES),
    show_default=True,
    callback=_metrics,
    help="Comma-separated metrics. The index's metric is always added.",
)
@click.option(
    "--k", "ks", default="1,5,10", show_default=True, callback=_ks, help="Comma-separated cut-offs k."
)
@click.option(
    "--bundle",
    type=click.Path(path_type=Path),
    default=None,
    help="Index bundle built from this catalog and model (default: an index built in memory).",
)
@click.option(
    "--json", "json_out", type=click.Path(path_type=Path), default=None, help="Write the figures as JSON."
)
@click.option(
    "--report",
    "report_out",
    type=click.Path(path_type=Path),
    default=None,
    help="Write a self-contained HTML report (chart, table, example queries).",
)
@click.option(
    "--seed", default=0, show_default=True, type=int, help="Seed of the random baseline and re-shots."
)
@click.option(
    "--reshots",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="Also re-shoot this many catalog photos as a kiosk camera would and report exact-item "
    "recall@1/@5 against the whole catalog.",
)
@click.option(
    "--calibrate",
    is_flag=True,
    help="Choose min_score: keep --keep of the genuine best matches, report the 'nothing' queries "
    "rejected; record it in the model's featurizer.json and in --bundle's manifest.",
)
@click.option(
    "--keep",
    default=0.95,
    show_default=True,
    type=click.FloatRange(0.5, 1.0),
    help="Share of genuine best matches that --calibrate keeps.",
)
@click.option(
    "--nothing",
    "nothing_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Photos that must get no match (the store's empty counter, things it does not "
    "sell), added to the built-in ones: black, grey, noise, text, demo-video empty scenes.",
)
@expected_errors
def evaluate(
    catalog,
    queries,
    model_dir,
    metrics,
    ks,
    bundle,
    json_out,
    report_out,
    seed,
    reshots,
    calibrate,
    keep,
    nothing_dir,
):
    """Same-category retrieval quality per metric (P@1, P@k, R@k, mAP@k) against a random
    ranking, and recall@k and latency of the index against exact search. Read-only: bad
    catalog or query rows are reported and left out."""
    from cloud_sync.evaluation.caveats import evaluation_caveats
    from cloud_sync.evaluation.evaluate import run_evaluation
    from cloud_sync.evaluation.report import format_table, html_report

    skipped = {}

    def report(what, problems):
        skipped[what] = len(problems)
        for problem in problems:
            click.echo(f"bad row: {what} {problem}", err=True)

    evaluation = run_evaluation(
        catalog, queries, model_dir, metrics=metrics, ks=ks, bundle_path=bundle, seed=seed, on_problems=report
    )
    if skipped:
        click.echo(
            "skipped "
            + " and ".join(f"{n} {what} row(s)" for what, n in skipped.items())
            + " (see 'bad row' above)",
            err=True,
        )
    click.echo(format_table(evaluation))
    results = dict(evaluation.results)
    warnings = evaluation_caveats(evaluation)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    if warnings:
        results["warnings"] = warnings
    if reshots or calibrate or _recorded_min_score(evaluation) is not None:
        results.update(_checks(evaluation, model_dir, bundle, seed, reshots, calibrate, keep, nothing_dir))
    if json_out is not None:
        _write(json_out, json.dumps(results, indent=2) + "\n")
        click.echo(f"wrote {json_out}")
    if report_out is not None:
        _write(report_out, html_report(evaluation))
        click.echo(f"wrote {report_out}")


def _checks(evaluation, model_dir, bundle, seed, reshots, calibrate, keep, nothing_dir) -> dict:
    """Exact-item re-shots and min_score calibration, printed and returned for the JSON."""
    from cloud_sync.evaluation.calibration import (
        DEMO_TIMELINE,
        DEMO_VIDEO,
        at_threshold,
        best_scores,
        nothing_queries,
        record_calibration,
    )
    from cloud_sync.evaluation.calibration import calibrate as calibrate_scores
    from cloud_sync.evaluation.reshots import reshot_recall

    featurizer = evaluation.featurizer
    out = {}
    if reshots:
        out["reshots"] = reshot_recall(
            evaluation.catalog, evaluation.catalog_root, featurizer, reshots, seed=seed
        )
        recall = out["reshots"]["recall_at_k"]
        click.echo(
            f"exact item, {out['reshots']['queries']} camera-like re-shots: "
            f"recall@1 {recall['1']:.3f}, recall@5 {recall['5']:.3f}"
        )
    recorded = _recorded_min_score(evaluation)
    if calibrate or recorded is not None:
        nothing = nothing_queries(nothing_dir, DEMO_VIDEO, DEMO_TIMELINE)
        genuine, nothing_scores = best_scores(evaluation, featurizer, nothing, seed)
    if recorded is not None and not calibrate:  # how the model's threshold does on these queries
        result = at_threshold(float(recorded), genuine, nothing_scores)
        out["threshold"] = result.as_dict()
        click.echo(f"at the model's recorded min_score {result.summary()}")
    if calibrate:
        result = calibrate_scores(genuine, nothing_scores, keep)
        out["calibration"] = result.as_dict()
        click.echo(f"calibrated min_score {result.summary()}")
        for written in record_calibration(result, model_dir, bundle):
            click.echo(f"recorded min_score in {written}")
    return out


def _recorded_min_score(evaluation) -> float | None:
    return evaluation.featurizer.spec.extra.get("calibration", {}).get("min_score")
