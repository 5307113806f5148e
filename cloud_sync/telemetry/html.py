"""The telemetry report as one self-contained HTML file: inline SVG line charts and tables,
no scripts and no external resources, so it opens offline and can be mailed around."""

from __future__ import annotations

import math
from html import escape

from cloud_sync.telemetry.report import TelemetryReport
from cloud_sync.telemetry.stats import LATENCY_METHOD, Summary

COLORS = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#9c755f", "#e15759")
WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 760, 220, 60, 40, 28, 40
MAX_X_LABELS = 8


def line_chart(
    times: list[str], lines: list[tuple[str, list, str]], *, percent: bool = False, unit: str = ""
) -> str:
    """One polyline per (name, values, color); None values leave a gap."""
    values = [v for _, series, _ in lines for v in series if v is not None]
    top_value = 1.0 if percent else nice_ceiling(max(values, default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + (plot_w * i / (len(times) - 1) if len(times) > 1 else plot_w / 2)

    def y(value: float) -> float:
        return TOP + plot_h * (1 - value / top_value)

    parts = [f'<svg width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="11" role="img">']
    for tick in (0, 0.25, 0.5, 0.75, 1):
        label = f"{tick:.0%}" if percent else f"{tick * top_value:.3g}{unit}"
        parts.append(
            f'<line x1="{LEFT}" y1="{y(tick * top_value):.1f}" x2="{WIDTH - RIGHT}" '
            f'y2="{y(tick * top_value):.1f}" stroke="#ddd"/><text x="{LEFT - 4}" '
            f'y="{y(tick * top_value) + 4:.1f}" text-anchor="end">{label}</text>'
        )
    every = max(1, -(-len(times) // MAX_X_LABELS))
    for i in range(0, len(times), every):
        parts.append(
            f'<text x="{x(i):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">'
            f"{escape(axis_label(times[i]))}</text>"
        )
    for name, series, color in lines:
        segment: list[str] = []
        for i, value in enumerate([*series, None]):
            if value is None:
                if len(segment) > 1:
                    parts.append(
                        f'<polyline fill="none" stroke="{color}" stroke-width="2" '
                        f'points="{" ".join(segment)}"/>'
                    )
                segment = []
                continue
            segment.append(f"{x(i):.1f},{y(value):.1f}")
            shown = f"{value:.1%}" if percent else f"{value:.4g}{unit}"
            parts.append(
                f'<circle cx="{x(i):.1f}" cy="{y(value):.1f}" r="2.5" fill="{color}">'
                f"<title>{escape(name)} {escape(times[i])}: {shown}</title></circle>"
            )
    for n, (name, _, color) in enumerate(lines):
        parts.append(
            f'<rect x="{LEFT + n * 130}" y="6" width="10" height="10" fill="{color}"/>'
            f'<text x="{LEFT + n * 130 + 14}" y="15">{escape(name)}</text>'
        )
    return "\n".join(parts + ["</svg>"])


def axis_label(time: str) -> str:
    """`2026-11-20T10:00Z` -> `11-20 10:00`; days stay `2026-11-20`."""
    return time[5:].replace("T", " ").rstrip("Z") if "T" in time else time


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k at or above `value`, so axis ticks are round numbers."""
    if value <= 0:
        return 1.0
    scale = 10 ** math.floor(math.log10(value))
    return next(step * scale for step in (1, 2, 2.5, 5, 10) if step * scale >= value)


def _number(value, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def summary_rows(summaries: list[Summary]) -> str:
    rows = []
    for s in summaries:
        version = (
            s.index_version
            if s.name != "fleet"
            else ", ".join(f"{v} on {n}" for v, n in s.index_versions.items())
        )
        cells = [
            s.name,
            s.queries,
            s.matched,
            _number(s.match_rate, ".1%"),
            s.errors,
            _number(s.latency_ms_p50, ".1f"),
            _number(s.latency_ms_p95, ".1f"),
            _number(s.latency_ms_p95_max, ".1f"),
            version,
            s.dropped_records,
            s.last_seen,
        ]
        rows.append("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in cells) + "</tr>")
    return "\n".join(rows)


def html_report(report: TelemetryReport) -> str:
    step = report.bucket
    color = {d.name: COLORS[n % len(COLORS)] for n, d in enumerate(report.devices)}
    per_device = [(d.name, d.series["queries"], color[d.name]) for d in report.devices]
    queries = line_chart(report.times, per_device + [("fleet", report.fleet.series["queries"], "#222")])
    match = line_chart(
        report.times,
        [(d.name, d.series["match_rate"], color[d.name]) for d in report.devices]
        + [("fleet", report.fleet.series["match_rate"], "#222")],
        percent=True,
    )
    latency = line_chart(
        report.times,
        [
            ("fleet p50", report.fleet.series["latency_ms_p50"], COLORS[0]),
            ("fleet p95", report.fleet.series["latency_ms_p95"], COLORS[1]),
        ],
        unit=" ms",
    )
    unreadable = "".join(
        f"<li><code>{escape(key)}</code>: {escape(reason)}</li>" for key, reason in report.unreadable[:20]
    )
    heads = (
        "device",
        "queries",
        "matched",
        "match rate",
        "errors",
        "p50 ms",
        "p95 ms",
        "max p95 ms",
        "index version",
        "dropped records",
        "last seen",
    )
    top_items = "".join(
        f"<tr><td>{escape(s.name)}</td><td>"
        + escape(", ".join(f"{item} ({count})" for item, count in s.top_items) or "-")
        + "</td></tr>"
        for s in [report.fleet] + report.devices
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Visual search usage</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
td, th {{ white-space: nowrap; }} td:first-child, th:first-child, td:last-child {{ text-align: left; }}
</style></head><body>
<h1>Visual search usage</h1>
<p>{report.fleet.records} records from {len(report.devices)} device(s)
under <code>{escape(report.location)}</code>,
{escape(report.fleet.first_seen)} to {escape(report.fleet.last_seen)};
{report.duplicates} duplicate(s) dropped, {len(report.unreadable)} unreadable object(s) skipped.</p>
<table><tr>{"".join(f"<th>{h}</th>" for h in heads)}</tr>
{summary_rows(report.devices + [report.fleet])}</table>
<p>{escape(LATENCY_METHOD)}. Dropped records: records a device's offline queue had to drop
(its lifetime counter; the fleet figure is the sum over devices).</p>
<h2>Top items (times asked)</h2>
<table>{top_items}</table>
<h2>Queries per {step}</h2>
{queries}
<h2>Match rate per {step}</h2>
{match}
<h2>Search latency per {step} (fleet)</h2>
{latency}
{f"<h2>Unreadable objects</h2><ul>{unreadable}</ul>" if unreadable else ""}
</body></html>
"""
