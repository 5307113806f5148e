"""`/metrics`: the kiosk's figures in the Prometheus text exposition format (version 0.0.4).

Counted from every matches message the display hears (camera searches and staff uploads):
searches, searches with a match, "no good match" answers, and the time from capture to the
match being published. Read from the kiosk state when scraped: the index served, the
components' health, the cloud link and the live pages. Written by hand: the format is a few
lines of text, not worth a dependency on the device.
"""

from __future__ import annotations

import bisect
import math
import threading

from components.common.messages import MatchesMessage

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS_S = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0)
SOURCES = ("camera", "upload")
PREFIX = "visualsearch"


class DisplayMetrics:
    def __init__(self):
        self._lock = threading.Lock()
        self._searches = dict.fromkeys(SOURCES, 0)
        self._matched = dict.fromkeys(SOURCES, 0)
        self._no_match = dict.fromkeys(SOURCES, 0)
        self._buckets = [0] * len(LATENCY_BUCKETS_S)  # per bucket, not yet cumulative
        self._latency_sum = 0.0
        self._latency_count = 0

    def observe(self, message: MatchesMessage) -> None:
        """One matches message (one search, or one part of a clip)."""
        latency_ms = (message.timings_ms or {}).get("capture_to_publish")
        with self._lock:
            source = message.source if message.source in SOURCES else "other"
            for table in (self._searches, self._matched, self._no_match):
                table.setdefault(source, 0)
            self._searches[source] += 1
            if message.no_match:
                self._no_match[source] += 1
            else:
                self._matched[source] += 1
            if isinstance(latency_ms, (int, float)) and math.isfinite(latency_ms) and latency_ms >= 0:
                seconds = latency_ms / 1000
                slot = bisect.bisect_left(LATENCY_BUCKETS_S, seconds)
                if slot < len(self._buckets):
                    self._buckets[slot] += 1
                self._latency_sum += seconds
                self._latency_count += 1

    def render(self, snapshot: dict, live_pages: int) -> str:
        """The exposition, with what the kiosk state `snapshot` says now."""
        with self._lock:
            lines = [
                *_family("searches_total", "counter", "Searches answered, by source.", self._searches),
                *_family(
                    "matched_searches_total", "counter", "Searches with at least one match.", self._matched
                ),
                *_family("no_match_total", "counter", "Searches answered 'no good match'.", self._no_match),
                *self._latency_lines(),
            ]
        index_labels = {
            "index_version": str(snapshot.get("index_version") or ""),
            "catalog_date": (snapshot.get("catalog_date") or "")[:10],
        }
        lines += _header("index_info", "gauge", "The index served (always 1; the version is a label).")
        lines.append(_sample("index_info", index_labels, 1))
        lines += _header("index_items", "gauge", "Items in the index served.")
        lines.append(_sample("index_items", {}, snapshot.get("items") or 0))
        lines += _header("component_up", "gauge", "1 while a watched component reports itself healthy.")
        for component in snapshot.get("components", []):
            lines.append(_sample("component_up", {"component": component["name"]}, int(component["healthy"])))
        if snapshot.get("online") is not None:
            lines += _header("cloud_online", "gauge", "1 when the last call to the cloud worked.")
            lines.append(_sample("cloud_online", {}, int(bool(snapshot["online"]))))
        lines += _header("live_pages", "gauge", "Kiosk pages connected for live updates.")
        lines.append(_sample("live_pages", {}, live_pages))
        return "\n".join(lines) + "\n"

    def _latency_lines(self) -> list[str]:
        name = "search_latency_seconds"
        lines = _header(
            name, "histogram", "Time from capture (camera frame or upload) to the match published."
        )
        cumulative = 0
        for bound, count in zip(LATENCY_BUCKETS_S, self._buckets):
            cumulative += count
            lines.append(_sample(f"{name}_bucket", {"le": _number(bound)}, cumulative))
        lines.append(_sample(f"{name}_bucket", {"le": "+Inf"}, self._latency_count))
        lines.append(_sample(f"{name}_sum", {}, self._latency_sum))
        lines.append(_sample(f"{name}_count", {}, self._latency_count))
        return lines


def _family(name: str, kind: str, help: str, by_source: dict[str, int]) -> list[str]:
    return _header(name, kind, help) + [
        _sample(name, {"source": source}, count) for source, count in by_source.items()
    ]


def _header(name: str, kind: str, help: str) -> list[str]:
    return [f"# HELP {PREFIX}_{name} {help}", f"# TYPE {PREFIX}_{name} {kind}"]


def _sample(name: str, labels: dict[str, str], value) -> str:
    text = ",".join(f'{key}="{_escape(str(val))}"' for key, val in labels.items())
    return f"{PREFIX}_{name}{{{text}}} {_number(value)}" if text else f"{PREFIX}_{name} {_number(value)}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    return repr(float(value))
