"""Store-and-forward usage telemetry for local_search.

Every `interval_s` the queries seen are folded into one `UsageRecord` (aggregates only: never
images or feature vectors), which is written to a bounded SQLite queue on disk
(`telemetry_queue.py`). A record is written even for a period without queries: it is also
the device's heartbeat. A sender thread publishes the queue oldest first to IoT Core on
`visualsearch/<thingName>/telemetry` with QoS 1 and deletes a record only once the nucleus
has accepted it. Delivery is therefore at-least-once: a crash between the publish and the
delete sends that record again after the restart, and the cloud drops the duplicate by its
`record_id`. When a publish fails (the nucleus refuses it: offline with its spooler full, a
missing policy; or it times out) the record stays queued and the sender backs off
exponentially with jitter (`components/common/backoff.py`), capped at
min(30 s, max(1 s, interval_s)).

What the queue does and does not cover: while IoT Core is unreachable the nucleus accepts
QoS 1 publishes into its MQTT spooler until it is full, and those records have then left
this queue. The default spooler is in memory (`mqtt.spooler` of `aws.greengrass.Nucleus`,
2.5 MB), so they survive a restart of this component but not a restart of the nucleus or
of the device. A fleet that must not lose records across nucleus restarts should deploy the
disk spooler plugin component `aws.greengrass.DiskSpooler` (nucleus 2.11.0 or later) and set
the nucleus configuration `mqtt.spooler.storageType: Disk` and
`mqtt.spooler.pluginName: aws.greengrass.DiskSpooler`, keeping `mqtt.spooler.maxSizeInBytes`
within the free disk space.

Publishing never blocks query handling: `record` only updates counters under a lock.

Search never depends on telemetry: when the queue cannot be opened (work directory not
writable, disk full at start) the component serves anyway, `fault` (and the status field
`telemetry_fault`) says why, and every period tries to open it again. A record that could
not be queued is counted in `dropped_records` of the next one that is.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from components.common import messages
from components.common.backoff import Backoff
from components.common.ipc import PUBLISH_TIMEOUT_S
from components.common.telemetry import UsageRecord
from components.local_search.telemetry_queue import TelemetryQueue

log = logging.getLogger("local_search.telemetry")

TOP_ITEMS = 10
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
SEND_BATCH = 100
MAX_RECORD_BYTES = 64 * 1024  # well under IoT Core's 128 KB


def backoff_cap(interval_s: float) -> float:
    """The longest wait between failed publishes: short when records come fast."""
    return min(MAX_BACKOFF_S, max(1.0, interval_s))


def iso_utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Period:
    """The usage seen since `start`: what one record will hold.

    `top_items` counts, per item id, the queries that showed it at rank 1 (the item the
    shopper most likely held), most shown first, at most ten. The latency percentiles are over
    the period's queries that completed: a failed or refused query has no search latency.
    """

    def __init__(self, start: float):
        self.start = start
        self.queries = self.matched = self.errors = 0
        self.latencies: list[float] = []
        self.top: Counter[str] = Counter()
        self.index: tuple[int | None, str] | None = None  # (version, fingerprint) of the latest query

    def add(self, event) -> None:
        self.queries += 1
        self.matched += bool(event.matched)
        if event.error:
            self.errors += 1
        elif event.latency_ms is not None:
            self.latencies.append(float(event.latency_ms))
        if event.item_ids:
            self.top[str(event.item_ids[0])] += 1
        if event.model_fingerprint:
            self.index = (event.index_version, event.model_fingerprint)

    def top_items(self) -> list[list]:
        ranked = sorted(self.top.items(), key=lambda kv: (-kv[1], kv[0]))
        return [[item, count] for item, count in ranked[:TOP_ITEMS]]


def percentiles(values: list[float]) -> tuple[float | None, float | None]:
    """(median, 95th percentile); linear interpolation between the closest ranks."""
    if not values:
        return None, None
    if len(values) == 1:
        return round(values[0], 3), round(values[0], 3)
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return round(statistics.median(values), 3), round(cuts[94], 3)


class Telemetry:
    """Aggregates queries into one UsageRecord per interval and forwards them to IoT Core.

    `index_info()` gives (index_version, model_fingerprint) of the bundle served now; it names
    the bundle in records of periods without queries.
    """

    def __init__(
        self,
        ipc,
        *,
        thing_name: str,
        db_path: Path,
        interval_s: float,
        queue_max: int,
        index_info: Callable[[], tuple[int | None, str]],
        clock=time.time,
    ):
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, not {interval_s}")
        self.ipc = ipc
        self.thing_name = thing_name
        self.topic = messages.IOT_TELEMETRY.format(thing_name=thing_name)
        self.interval_s = float(interval_s)
        self.index_info = index_info
        self.clock = clock
        self.db_path, self.queue_max = Path(db_path), queue_max
        self.queue: TelemetryQueue | None = None  # None while it cannot be opened
        self.fault = ""  # why telemetry is not working now ("" when it is)
        self.unqueued = 0  # records made since the last one queued that could not be queued
        self.started_at = clock()
        self.backoff_cap_s = backoff_cap(self.interval_s)
        self.backoff = Backoff(FIRST_BACKOFF_S, self.backoff_cap_s)
        self.sent = 0
        self.publish_failures = 0
        self._lock = threading.Lock()
        self._period = Period(self.started_at)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._stopped = False
        self._aggregator = threading.Thread(
            target=self._aggregate_loop, name="telemetry-aggregate", daemon=True
        )
        self._sender = threading.Thread(target=self._send_loop, name="telemetry-send", daemon=True)
        self._open_queue()

    # ---- called by the component -------------------------------------------------------
    def record(self, event) -> None:
        """Count one query (called from IPC handler threads; no I/O, never blocks on publishing).

        `event` has latency_ms, matched, item_ids (rank order; the rank-1 id counts towards
        top_items), error, index_version and model_fingerprint.
        """
        with self._lock:
            self._period.add(event)

    def status_fields(self) -> dict:
        """For the component's status: what is wrong with telemetry now ("" when nothing)."""
        return {"telemetry_fault": self.fault}

    def start(self) -> None:
        self._aggregator.start()
        self._sender.start()

    def stop(self) -> None:
        """Close the current partial period into a record, stop the threads, close the queue."""
        if self._stopped:
            return
        self._stopped = True
        self._stop.set()
        self._wake.set()
        if self._aggregator.is_alive():
            self._aggregator.join(timeout=10)
        try:
            self.close_period()
        except Exception as exc:
            log.error("telemetry: last period lost (%s: %s)", type(exc).__name__, exc)
        if self._sender.is_alive():  # a publish in flight ends within its timeout
            self._sender.join(timeout=PUBLISH_TIMEOUT_S + 5)
        if self.queue is not None:
            self.queue.close()

    # ---- the two steps the threads repeat (also called directly by tests) -----------------
    def close_period(self) -> UsageRecord | None:
        """Turn the usage since the last call into a queued record and start a new period.

        Returns the record as stored, or None when there is no queue to keep it in (counted).
        """
        with self._lock:
            now = self.clock()
            period, self._period = self._period, Period(now)
        index_version, fingerprint = period.index or self._served_index()
        p50, p95 = percentiles(period.latencies)
        record = UsageRecord(
            record_id=uuid.uuid4().hex,
            thing_name=self.thing_name,
            period_start=iso_utc(period.start),
            period_s=round(max(0.0, now - period.start), 3),
            queries=period.queries,
            matched=period.matched,
            errors=period.errors,
            latency_ms_p50=p50,
            latency_ms_p95=p95,
            top_items=period.top_items(),
            index_version=index_version,
            model_fingerprint=fingerprint,
            uptime_s=round(max(0.0, now - self.started_at), 3),
        )
        if len(record.to_json()) > MAX_RECORD_BYTES:  # IoT Core would refuse it for ever, blocking the queue
            log.warning("telemetry: top_items left out of a %d-byte record", len(record.to_json()))
            record = dataclasses.replace(record, top_items=[])
        queue = self.queue or self._open_queue()
        if queue is None:
            self.unqueued += 1
            return None
        try:
            stored = queue.put(record, lost=self.unqueued)
        except Exception as exc:  # e.g. a full disk: the record is lost, and counted
            self.unqueued += 1
            self._set_fault(
                f"telemetry cannot queue records in {self.db_path} ({type(exc).__name__}: {exc}); "
                f"{self.unqueued} record(s) lost so far, counted in dropped_records once one is "
                f"queued again"
            )
            return None
        self.unqueued = 0
        self._set_fault("")
        self._wake.set()
        return stored

    def send_queued(self) -> int:
        """Publish queued records oldest first until the queue is empty or a publish fails.

        Returns how many were sent; a failed publish raises (the record stays queued).
        """
        sent = 0
        while not self._stop.is_set() and self.queue is not None:
            batch = self.queue.oldest(SEND_BATCH)
            if not batch:
                return sent
            for queued in batch:
                if self._stop.is_set():
                    return sent
                self.ipc.publish_iot_core(self.topic, queued.payload, qos="1")
                self.queue.delete(queued)
                sent += 1
                self.sent += 1
        return sent

    # ---- threads ---------------------------------------------------------------------
    def _aggregate_loop(self) -> None:
        deadline = time.monotonic() + self.interval_s
        while not self._stop.wait(max(0.0, deadline - time.monotonic())):
            deadline += self.interval_s
            if deadline < time.monotonic():  # fell behind (slow disk): do not write a burst
                deadline = time.monotonic() + self.interval_s
            try:
                self.close_period()
            except Exception as exc:
                log.error("telemetry: could not queue a record (%s: %s)", type(exc).__name__, exc)

    def _send_loop(self) -> None:
        """Never ends on an error: each new kind of failure is logged with its type, repeats of
        it during one outage only at debug level, and the recovery once."""
        failing = ""
        while not self._stop.is_set():
            self._wake.clear()
            try:
                sent = self.send_queued()
            except Exception as exc:
                self.publish_failures += 1
                if self._stop.is_set():
                    return
                failure, delay = f"{type(exc).__name__}: {exc}", self.backoff.next_delay()
                log.log(
                    logging.DEBUG if failure == failing else logging.WARNING,
                    "telemetry: sending failed, %d record(s) kept, retrying in %.1f s (%s)",
                    self._queued(),
                    delay,
                    failure,
                )
                failing = failure
                self._stop.wait(delay)
                continue
            if failing:
                log.info("telemetry: sending again (%d record(s) sent)", sent)
            self.backoff.reset()
            failing = ""
            self._wake.wait(self.backoff_cap_s)

    # ---- helpers ---------------------------------------------------------------------
    def _open_queue(self) -> TelemetryQueue | None:
        """Open the queue; on failure note the fault (logged once per kind) and return None."""
        try:
            self.queue = TelemetryQueue(self.db_path, self.queue_max)
        except Exception as exc:
            self._set_fault(
                f"telemetry cannot open its queue {self.db_path} ({type(exc).__name__}: {exc}); "
                f"search goes on, and telemetry tries again every {self.interval_s:g} s"
            )
            return None
        return self.queue

    def _set_fault(self, fault: str) -> None:
        """Say a new fault once (not every period it lasts), and its end."""
        if fault and fault.split(";")[0] != self.fault.split(";")[0]:
            log.error("%s", fault)
        elif not fault and self.fault:
            log.info("telemetry: records are queued again in %s", self.db_path)
        self.fault = fault

    def _served_index(self) -> tuple[int | None, str]:
        try:
            version, fingerprint = self.index_info()
            return version, fingerprint or ""
        except Exception as exc:
            log.warning("telemetry: index_info failed (%s: %s)", type(exc).__name__, exc)
            return None, ""

    def _queued(self) -> int:
        try:
            return len(self.queue) if self.queue is not None else 0
        except Exception:  # the queue closed while stopping
            return -1
