"""`telemetry-report`: read the usage records the fleet sent, drop duplicates, aggregate.

Devices publish one `UsageRecord` per interval to IoT Core topic `visualsearch/<thingName>/telemetry`
(QoS 1: at least once, so a record can arrive twice). This IoT topic rule stores each one in S3:

    SQL:            SELECT * FROM 'visualsearch/+/telemetry'
    S3 action key:  <prefix>/telemetry/${topic(2)}/${parse_time("yyyy-MM-dd", timestamp())}/${record_id}.json

`topic(2)` is the thing name (the device's IoT policy only lets it publish on its own topic) and
the date is the arrival day, so a duplicate that arrives on another day lands under another key;
the report therefore drops duplicates by `record_id`, not by key.
"""

from __future__ import annotations

import math
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from botocore.exceptions import ClientError

from cloud_sync.aws import aws_errors, is_not_found, list_objects, s3_url
from cloud_sync.telemetry.stats import Summary, choose_bucket, start_of, summarise
from components.common.errors import VisualSearchError
from components.common.telemetry import TelemetryError, UsageRecord

READ_WORKERS = 16
MAX_RECORD_BYTES = 256 * 1024  # a record is a few hundred bytes; anything huge is not one
RELATIVE = re.compile(r"^(\d+)\s*([mhdw])$")
UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class NoTelemetry(VisualSearchError):
    """Nothing to report: no records under the prefix, or none in the time window."""


@dataclass
class TelemetryReport:
    location: str
    since: str | None
    until: str | None
    bucket: str  # "hour" or "day": the step of the time series
    times: list[str]  # start of each step
    fleet: Summary
    devices: list[Summary]
    objects: int  # objects read under the prefix
    duplicates: int  # records dropped because their record_id was already seen
    outside_window: int  # records left out by --since/--until
    unreadable: list[list[str]] = field(default_factory=list)  # [key, reason]


def telemetry_prefix(prefix: str) -> str:
    return "/".join(p.strip("/") for p in (prefix, "telemetry") if p.strip("/")) + "/"


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """`7d`, `24h`, `30m`, `2w` (before now), an ISO date (midnight UTC) or date-time (UTC if
    no offset is given)."""
    now = now or datetime.now(timezone.utc)
    relative = RELATIVE.match(text.strip().lower())
    if relative:
        return now - timedelta(**{UNITS[relative.group(2)]: int(relative.group(1))})
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an ISO date/time (2026-11-20, 2026-11-20T10:00Z) "
            f"nor a relative time (30m, 24h, 7d, 2w)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def check_record(record: UsageRecord, where: str) -> UsageRecord:
    """Field types a report relies on; from_json checks only presence and schema."""

    def whole(name):
        value = getattr(record, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise TelemetryError(f"{where}: {name} must be a whole number >= 0, got {value!r}")

    for name in ("queries", "matched", "errors", "dropped_records"):
        whole(name)
    for name in ("latency_ms_p50", "latency_ms_p95"):
        value = getattr(record, name)
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
            raise TelemetryError(f"{where}: {name} must be a number or null, got {value!r}")
    if not isinstance(record.thing_name, str) or not isinstance(record.period_s, (int, float)):
        raise TelemetryError(f"{where}: thing_name must be text and period_s a number")
    for name in ("period_s", "uptime_s", "latency_ms_p50", "latency_ms_p95"):
        value = getattr(record, name)
        if isinstance(value, float) and not math.isfinite(value):  # 1e999 reads as infinity
            raise TelemetryError(f"{where}: {name} must be a finite number, got {value!r}")
    if not isinstance(record.top_items, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and isinstance(pair[1], int) for pair in record.top_items
    ):
        raise TelemetryError(f"{where}: top_items must be a list of [item_id, count]")
    try:
        start_of(record)
    except ValueError:
        raise TelemetryError(
            f"{where}: period_start {record.period_start!r} is not an ISO date-time"
        ) from None
    return record


def read_records(s3, bucket: str, prefix: str) -> tuple[list[UsageRecord], list[list[str]], int]:
    """The record in every readable object under <prefix>/telemetry/, in key order; the
    unreadable objects as [key, reason]; and how many objects there were."""
    objects = sorted(list_objects(s3, bucket, telemetry_prefix(prefix)), key=lambda obj: obj["Key"])

    def read(obj) -> tuple[str, UsageRecord | str]:
        key = obj["Key"]
        if obj["Size"] > MAX_RECORD_BYTES:
            return key, f"{obj['Size']} bytes, too large for a telemetry record"
        try:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            return key, check_record(UsageRecord.from_json(body, where=key), key)
        except TelemetryError as exc:
            return key, str(exc).removeprefix(f"{key}: ")
        except ClientError as exc:
            if is_not_found(exc):  # deleted between the listing and the read
                return key, "deleted while reading"
            raise

    with ThreadPoolExecutor(READ_WORKERS) as pool:
        results = list(pool.map(read, objects))
    records = [got for _, got in results if isinstance(got, UsageRecord)]
    unreadable = [[key, got] for key, got in results if isinstance(got, str)]
    return records, unreadable, len(objects)


def build_report(
    s3, bucket: str, prefix: str, since: datetime | None = None, until: datetime | None = None
) -> TelemetryReport:
    location = s3_url(bucket, telemetry_prefix(prefix))
    with aws_errors(location):
        records, unreadable, objects = read_records(s3, bucket, prefix)
    unique: dict[str, UsageRecord] = {}
    for record in records:
        unique.setdefault(record.record_id, record)
    in_window = [
        r
        for r in unique.values()
        if (since is None or start_of(r) >= since) and (until is None or start_of(r) < until)
    ]
    window = " ".join(
        part
        for part in (since and f"since {since.isoformat()}", until and f"until {until.isoformat()}")
        if part
    )
    if not in_window:
        found = f" ({len(unique)} record(s) outside that window)" if unique else ""
        bad = f"; {len(unreadable)} unreadable object(s)" if unreadable else ""
        raise NoTelemetry(
            f"no telemetry records under {location}{' ' + window if window else ''}{found}{bad}"
        )
    in_window.sort(key=lambda r: (start_of(r), r.thing_name, r.record_id))
    step, times = choose_bucket([start_of(r) for r in in_window])
    by_device: dict[str, list[UsageRecord]] = {}
    for record in in_window:
        by_device.setdefault(record.thing_name, []).append(record)
    devices = [
        summarise(name, device_records, step, times) for name, device_records in sorted(by_device.items())
    ]
    return TelemetryReport(
        location=location,
        since=since.isoformat() if since else None,
        until=until.isoformat() if until else None,
        bucket=step,
        times=[t.strftime("%Y-%m-%dT%H:%MZ" if step == "hour" else "%Y-%m-%d") for t in times],
        fleet=summarise("fleet", in_window, step, times, devices=devices),
        devices=devices,
        objects=objects,
        duplicates=len(records) - len(unique),
        outside_window=len(unique) - len(in_window),
        unreadable=unreadable,
    )
