"""`telemetry-report`: usage of the fleet from the records the IoT rule stored in S3."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from cloud_sync.cli.options import expected_errors

UNREADABLE_SHOWN = 3


def _when(ctx, param, value):
    from cloud_sync.telemetry.report import parse_when

    if value is None:
        return None
    try:
        return parse_when(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("telemetry-report")
@click.option("--bucket", required=True, help="S3 bucket the telemetry IoT rule writes to.")
@click.option(
    "--prefix", default="", show_default=True, help="Key prefix (records are under <prefix>/telemetry/)."
)
@click.option(
    "--since",
    callback=_when,
    default=None,
    help="Only periods starting at or after this: 2026-11-20, 2026-11-20T10:00Z, or 30m, 24h, 7d, 2w ago.",
)
@click.option("--until", callback=_when, default=None, help="Only periods starting before this (same forms).")
@click.option(
    "--html",
    "html_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write a self-contained HTML report with charts.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@expected_errors
def telemetry_report(bucket, prefix, since, until, html_out, as_json):
    """Queries, match rate, latency, top items, index versions and errors per device and for
    the fleet. Records delivered twice are counted once; unreadable objects are skipped and listed."""
    from cloud_sync.aws import client
    from cloud_sync.telemetry.report import build_report

    report = build_report(client("s3"), bucket, prefix, since, until)
    if report.unreadable:
        shown = "; ".join(f"{key} ({reason})" for key, reason in report.unreadable[:UNREADABLE_SHOWN])
        hidden = len(report.unreadable) - UNREADABLE_SHOWN
        more = f" and {hidden} more" if hidden > 0 else ""
        click.echo(f"warning: skipped {len(report.unreadable)} unreadable object(s): {shown}{more}", err=True)
    click.echo(json.dumps(asdict(report), indent=2) if as_json else format_text(report))
    if html_out is not None:
        from cloud_sync.telemetry.html import html_report

        try:
            html_out.parent.mkdir(parents=True, exist_ok=True)
            html_out.write_text(html_report(report), encoding="utf-8")
        except OSError as exc:
            raise click.FileError(str(html_out), hint=exc.strerror or str(exc)) from None
        click.echo(f"wrote {html_out}", err=as_json)


def _cell(value, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def format_text(report) -> str:
    from cloud_sync.telemetry.stats import LATENCY_METHOD

    fleet, devices = report.fleet, report.devices
    width = max(8, *(len(d.name) for d in devices))
    lines = [
        f"{fleet.records} records from {len(devices)} device(s) under {report.location} "
        f"({report.objects} objects, {report.duplicates} duplicate(s) dropped, "
        f"{len(report.unreadable)} unreadable, {report.outside_window} outside the time window)",
        f"{fleet.first_seen} to {fleet.last_seen}, per {report.bucket}",
        "",
        f"{'device':<{width}}{'queries':>9}{'matched':>9}{'match':>8}{'errors':>8}{'p50 ms':>9}"
        f"{'p95 ms':>9}{'max p95':>9}  {'index':<16}{'dropped':>8}  last seen",
    ]
    for s in devices + [fleet]:
        lines.append(
            f"{s.name:<{width}}{s.queries:>9}{s.matched:>9}{_cell(s.match_rate, '.1%'):>8}{s.errors:>8}"
            f"{_cell(s.latency_ms_p50, '.1f'):>9}{_cell(s.latency_ms_p95, '.1f'):>9}"
            f"{_cell(s.latency_ms_p95_max, '.1f'):>9}  {_cell(s.index_version, ''):<16}"
            f"{s.dropped_records:>8}  {s.last_seen}"
        )
    in_use = ", ".join(f"{v} on {n} device(s)" for v, n in fleet.index_versions.items())
    lines += [
        "",
        f"index versions in use: {in_use}",
        "",
        f"queries per {report.bucket}:",
        f"{'time':<18}" + "".join(f"{d.name:>{width + 2}}" for d in devices) + f"{'fleet':>{width + 2}}",
    ]
    for i, time in enumerate(report.times):
        lines.append(
            f"{time:<18}" + "".join(f"{s.series['queries'][i]:>{width + 2}}" for s in devices + [fleet])
        )
    lines += ["", "top items:"]
    for s in [fleet] + devices:
        top = ", ".join(f"{item} ({count})" for item, count in s.top_items) or "-"
        lines.append(f"  {s.name:<{width}}  {top}")
    return "\n".join(lines + ["", LATENCY_METHOD])
