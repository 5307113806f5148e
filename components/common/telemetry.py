"""The usage telemetry record: what a device sends to IoT Core once per interval.

local_search writes these (device side) and `telemetry-report` reads them back from S3
(cloud side). A record holds aggregates only, never images or feature vectors.
`record_id` is unique per record: delivery is at-least-once, so the cloud drops duplicates
by it. `dropped_records` counts, over the device's whole life, records its bounded queue
had to drop while offline, so a loss is itself reported.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from components.common.errors import VisualSearchError

SCHEMA = 1


class TelemetryError(VisualSearchError):
    """A telemetry record that does not follow this schema."""


@dataclass(frozen=True)
class UsageRecord:
    record_id: str  # uuid4 hex
    thing_name: str
    period_start: str  # ISO 8601 UTC, e.g. 2026-11-20T10:00:00Z
    period_s: float
    queries: int = 0
    matched: int = 0  # queries with at least one match at or above min_score
    errors: int = 0  # queries that failed or were refused (wrong model)
    latency_ms_p50: float | None = None  # search latency on the device; None when no query
    latency_ms_p95: float | None = None
    top_items: list = field(default_factory=list)  # [[item_id, count], ...] most asked first, <= 10
    index_version: int | None = None
    model_fingerprint: str = ""
    uptime_s: float = 0.0
    dropped_records: int = 0

    def to_json(self) -> bytes:
        return json.dumps({"schema": SCHEMA, **asdict(self)}, sort_keys=True).encode()

    @classmethod
    def from_dict(cls, raw: dict, where: str = "record") -> "UsageRecord":
        if not isinstance(raw, dict):
            raise TelemetryError(f"{where}: expected a JSON object")
        if raw.get("schema") != SCHEMA:
            raise TelemetryError(f"{where}: schema {raw.get('schema')!r} is not supported (reads {SCHEMA})")
        for key in ("record_id", "thing_name", "period_start", "period_s"):
            if not raw.get(key) and raw.get(key) != 0:
                raise TelemetryError(f"{where}: missing {key!r}")
        known = {f for f in cls.__dataclass_fields__}
        try:
            return cls(**{k: v for k, v in raw.items() if k in known})
        except TypeError as exc:
            raise TelemetryError(f"{where}: {exc}") from None

    @classmethod
    def from_json(cls, data: bytes | str, where: str = "record") -> "UsageRecord":
        def not_finite(name: str):  # NaN, Infinity: Python's json reads them, JSON does not have them
            raise TelemetryError(f"{where}: {name} is not a finite number (not valid JSON)")

        try:
            raw = json.loads(data, parse_constant=not_finite)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise TelemetryError(f"{where}: not valid JSON ({exc})") from None
        return cls.from_dict(raw, where)
