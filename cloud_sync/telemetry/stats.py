"""Aggregates of usage records, for one device or the fleet, overall and per hour or day.

A record carries percentiles of its own period, not raw latencies, so fleet latency is an
estimate: p50 is the query-weighted median of the records' p50s, p95 the query-weighted
mean of their p95s, and max p95 the worst period's p95 (an upper bound).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from components.common.telemetry import UsageRecord

LATENCY_METHOD = (
    "latency: p50 = query-weighted median of the records' p50s; p95 = query-weighted mean "
    "of the records' p95s; max p95 = the worst record's p95"
)
HOURLY_UP_TO = timedelta(days=3)  # longer spans are shown per day
TOP_ITEMS = 10


@dataclass
class Summary:
    name: str
    devices: int
    records: int
    queries: int
    matched: int
    errors: int
    match_rate: float | None
    latency_ms_p50: float | None
    latency_ms_p95: float | None
    latency_ms_p95_max: float | None
    top_items: list  # [[item_id, count], ...] most asked first
    index_version: int | None  # a device: what its latest record reports; the fleet: None
    index_versions: dict  # a device: records per version; the fleet: devices per current version
    model_fingerprint: str
    dropped_records: int  # a device: its cumulative counter (max); the fleet: sum over devices
    first_seen: str
    last_seen: str  # end of the latest period
    series: dict  # name -> one value per report time (queries, match_rate, latency_ms_*)


def utc(when: datetime) -> datetime:
    return when.astimezone(timezone.utc)


def floor(when: datetime, step: str) -> datetime:
    when = utc(when).replace(minute=0, second=0, microsecond=0)
    return when.replace(hour=0) if step == "day" else when


def choose_bucket(starts: list[datetime]) -> tuple[str, list[datetime]]:
    """Per hour for spans up to 3 days, per day beyond; every step from first to last."""
    step = "hour" if max(starts) - min(starts) <= HOURLY_UP_TO else "day"
    delta = timedelta(hours=1) if step == "hour" else timedelta(days=1)
    time, last, times = floor(min(starts), step), floor(max(starts), step), []
    while time <= last:
        times.append(time)
        time += delta
    return step, times


def weighted_median(pairs: list[tuple[float, int]]) -> float | None:
    pairs = sorted(pairs)
    total = sum(weight for _, weight in pairs)
    running = 0
    for value, weight in pairs:
        running += weight
        if running * 2 >= total:
            return float(value)
    return None


def weighted_mean(pairs: list[tuple[float, int]]) -> float | None:
    total = sum(weight for _, weight in pairs)
    return sum(value * weight for value, weight in pairs) / total if total else None


def latency(records: list[UsageRecord]) -> tuple[float | None, float | None, float | None]:
    p50s = [(r.latency_ms_p50, r.queries) for r in records if r.queries and r.latency_ms_p50 is not None]
    p95s = [(r.latency_ms_p95, r.queries) for r in records if r.queries and r.latency_ms_p95 is not None]
    return weighted_median(p50s), weighted_mean(p95s), max((v for v, _ in p95s), default=None)


def iso(when: datetime) -> str:
    return utc(when).isoformat(timespec="seconds").replace("+00:00", "Z")


def start_of(record: UsageRecord) -> datetime:
    """The record's period_start (ISO 8601; UTC when it has no offset). ValueError if not ISO."""
    when = datetime.fromisoformat(str(record.period_start).replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def series(records: list[UsageRecord], step: str, times: list[datetime]) -> dict:
    per_time: dict[datetime, list[UsageRecord]] = {time: [] for time in times}
    for record in records:
        per_time[floor(start_of(record), step)].append(record)
    out = {"queries": [], "match_rate": [], "latency_ms_p50": [], "latency_ms_p95": []}
    for time in times:
        chunk = per_time[time]
        queries, matched = sum(r.queries for r in chunk), sum(r.matched for r in chunk)
        p50, p95, _ = latency(chunk)
        out["queries"].append(queries)
        out["match_rate"].append(matched / queries if queries else None)
        out["latency_ms_p50"].append(p50)
        out["latency_ms_p95"].append(p95)
    return out


def summarise(
    name: str,
    records: list[UsageRecord],
    step: str,
    times: list[datetime],
    devices: list[Summary] | None = None,
) -> Summary:
    """Summary of `records` (sorted by period_start). With `devices` it is the fleet's: versions
    and dropped records then come from each device's own summary."""
    queries, matched = sum(r.queries for r in records), sum(r.matched for r in records)
    p50, p95, p95_max = latency(records)
    items: Counter = Counter()
    for record in records:
        for item_id, count in record.top_items:
            items[str(item_id)] += count
    top = sorted(items.items(), key=lambda pair: (-pair[1], pair[0]))[:TOP_ITEMS]
    latest = records[-1]
    if devices is None:
        versions = Counter(str(r.index_version) for r in records)
        version, fingerprint = latest.index_version, latest.model_fingerprint
        dropped, device_count = max(r.dropped_records for r in records), 1
    else:
        versions = Counter(str(d.index_version) for d in devices)
        version, fingerprint = None, ""
        dropped, device_count = sum(d.dropped_records for d in devices), len(devices)
    ends = [start_of(r) + timedelta(seconds=float(r.period_s)) for r in records]
    return Summary(
        name=name,
        devices=device_count,
        records=len(records),
        queries=queries,
        matched=matched,
        errors=sum(r.errors for r in records),
        match_rate=matched / queries if queries else None,
        latency_ms_p50=p50,
        latency_ms_p95=p95,
        latency_ms_p95_max=p95_max,
        top_items=[[item, count] for item, count in top],
        index_version=version,
        index_versions=dict(sorted(versions.items())),
        model_fingerprint=fingerprint,
        dropped_records=dropped,
        first_seen=iso(start_of(records[0])),
        last_seen=iso(max(ends)),
        series=series(records, step, times),
    )
