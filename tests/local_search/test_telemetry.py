"""Usage telemetry: aggregation, the bounded SQLite queue, and the sender over real IPC."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import pytest
from awsiot.greengrasscoreipc.model import ServiceError

from components.common import messages
from components.common.ipc import Ipc
from components.common.telemetry import UsageRecord
from components.local_search.telemetry import Telemetry, backoff_cap, percentiles
from components.local_search.telemetry_queue import TelemetryQueue
from devkit.nucleus import ComponentSpec, LocalNucleus
from devkit.nucleus.iot_core import IoTCore
from tests.support.waiting import wait_until

THING = "telemetry-test-1"
TOPIC = messages.IOT_TELEMETRY.format(thing_name=THING)
NAME = "com.visualsearch.LocalSearch"
T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


@dataclass(frozen=True)
class Event:
    """Shaped like local_search's QueryEvent."""

    latency_ms: float | None = 1.0
    matched: bool = True
    item_ids: tuple = ()
    error: str | None = None
    index_version: int | None = 7
    model_fingerprint: str = "f" * 64


class Clock:
    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def spec() -> ComponentSpec:
    return ComponentSpec(
        NAME,
        {
            "accessControl": {
                "aws.greengrass.ipc.mqttproxy": {
                    f"{NAME}:mqttproxy:1": {
                        "policyDescription": "telemetry",
                        "operations": ["aws.greengrass#PublishToIoTCore"],
                        "resources": ["visualsearch/{iot:thingName}/telemetry"],
                    }
                }
            }
        },
    )


@pytest.fixture
def make(tmp_path):
    """make(**overrides) -> a Telemetry on tmp_path/telemetry.db; all are stopped at teardown."""
    made = []

    def _make(ipc=None, **overrides):
        kwargs = dict(
            thing_name=THING,
            db_path=tmp_path / "telemetry.db",
            interval_s=3600.0,
            queue_max=100,
            index_info=lambda: (3, "a" * 64),
            clock=Clock(),
        )
        kwargs.update(overrides)
        telemetry = Telemetry(ipc, **kwargs)
        made.append(telemetry)
        return telemetry

    yield _make
    for telemetry in made:
        telemetry.stop()


@pytest.fixture
def nucleus():
    with LocalNucleus(thing_name=THING, components=[spec()], iot_core=IoTCore(spool_max_bytes=0)) as running:
        yield running


@pytest.fixture
def ipc(nucleus):
    client = Ipc(nucleus.connect(NAME))
    yield client
    client.close()


def queued(telemetry: Telemetry) -> list[UsageRecord]:
    return [UsageRecord.from_json(q.payload) for q in telemetry.queue.oldest(10_000)]


# ---- aggregation ---------------------------------------------------------------------------
def test_a_period_of_queries_becomes_one_record_with_its_figures(make):
    clock = Clock()
    telemetry = make(clock=clock)
    clock.now = T0 + 5
    for n in range(1, 21):  # latencies 1..20 ms; rank-1 items: hat x12, mug x6, sock x2
        top = "hat-001" if n <= 12 else "mug-002" if n <= 18 else "sock-003"
        telemetry.record(Event(latency_ms=float(n), matched=n % 4 != 0, item_ids=(top, "other")))
    telemetry.record(Event(latency_ms=None, matched=False, error="wrong model", item_ids=()))
    telemetry.record(
        Event(latency_ms=3.0, matched=False, item_ids=(), index_version=8, model_fingerprint="b" * 64)
    )
    clock.now = T0 + 60
    record = telemetry.close_period()

    assert record.thing_name == THING and len(record.record_id) == 32
    assert (
        record.period_start == "2027-01-15T08:00:00Z" and record.period_s == 60.0 and record.uptime_s == 60.0
    )
    assert (record.queries, record.matched, record.errors) == (22, 15, 1)
    assert record.latency_ms_p50 == 10.0  # median of 1..20 and 3
    assert record.latency_ms_p95 == 19.0  # inclusive percentile of the 21 latencies
    assert record.top_items == [["hat-001", 12], ["mug-002", 6], ["sock-003", 2]]
    assert (record.index_version, record.model_fingerprint) == (8, "b" * 64)  # the latest query's bundle
    assert record.dropped_records == 0 and queued(telemetry) == [record]
    assert b"vector" not in record.to_json() and b"image" not in record.to_json()


def test_top_items_keep_the_ten_most_shown_most_first():
    from components.local_search.telemetry import Period

    period = Period(T0)
    for n in range(15):
        for _ in range(n + 1):
            period.add(Event(item_ids=(f"item-{n:02d}",)))
    assert period.top_items() == [[f"item-{n:02d}", n + 1] for n in range(14, 4, -1)]


def test_percentiles():
    assert percentiles([]) == (None, None)
    assert percentiles([4.0]) == (4.0, 4.0)
    assert percentiles([float(n) for n in range(1, 21)]) == (10.5, 19.05)


def test_an_idle_period_is_a_heartbeat_with_the_served_bundle(make):
    clock = Clock()
    telemetry = make(clock=clock, index_info=lambda: (12, "c" * 64))
    first = telemetry.close_period()
    clock.now += 60
    second = telemetry.close_period()
    for record in (first, second):
        assert (record.queries, record.matched, record.errors, record.top_items) == (0, 0, 0, [])
        assert record.latency_ms_p50 is None and record.latency_ms_p95 is None
        assert (record.index_version, record.model_fingerprint) == (12, "c" * 64)
    assert second.uptime_s == 60.0 and second.period_s == 60.0 and first.record_id != second.record_id


def test_a_failing_index_info_still_gives_a_heartbeat(make):
    def broken():
        raise RuntimeError("no bundle")

    record = make(index_info=broken).close_period()
    assert (record.index_version, record.model_fingerprint) == (None, "")


# ---- the bounded queue ---------------------------------------------------------------------
def test_overflow_drops_the_oldest_and_reports_the_lifetime_count(make, tmp_path):
    telemetry = make(queue_max=3)
    records = [telemetry.close_period() for _ in range(5)]
    assert [r.record_id for r in queued(telemetry)] == [r.record_id for r in records[2:]]
    assert [r.dropped_records for r in records] == [0, 0, 0, 1, 2]
    assert telemetry.queue.dropped == 2
    telemetry.stop()  # its last (empty) period is queued too: a third drop

    reopened = make(queue_max=3)
    assert reopened.queue.dropped == 3 and len(reopened.queue) == 3
    assert reopened.close_period().dropped_records == 4


def test_records_and_the_partial_period_survive_a_restart(make):
    clock = Clock()
    telemetry = make(clock=clock)
    first = telemetry.close_period()
    telemetry.record(Event(latency_ms=2.0, item_ids=("hat-001",)))
    clock.now += 10
    telemetry.stop()  # closes the partial period: the query is not lost

    reopened = make()
    restored = queued(reopened)
    assert restored[0] == first and len(restored) == 2
    assert (restored[1].queries, restored[1].top_items, restored[1].period_s) == (1, [["hat-001", 1]], 10.0)


def test_the_queue_is_sqlite_in_wal_mode(tmp_path):
    queue = TelemetryQueue(tmp_path / "q.db", 10)
    try:
        import sqlite3

        with sqlite3.connect(tmp_path / "q.db") as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        queue.close()
    with pytest.raises(ValueError):
        TelemetryQueue(tmp_path / "q.db", 0)


def test_an_unreadable_queue_file_is_moved_aside_and_a_new_one_started(tmp_path, caplog):
    path = tmp_path / "telemetry.db"
    path.write_bytes(b"not a database" * 100)
    with caplog.at_level(logging.ERROR, logger="local_search.telemetry"):
        queue = TelemetryQueue(path, 10)
    try:
        assert len(queue) == 0 and "DatabaseError" in caplog.text
        (aside,) = tmp_path.glob("telemetry.db.corrupt-*")
        assert aside.read_bytes().startswith(b"not a database")
    finally:
        queue.close()


def test_a_record_too_big_for_iot_core_goes_without_its_top_items(make):
    telemetry = make()
    for n in range(10):
        telemetry.record(Event(item_ids=(f"{n}" + "x" * 10_000,)))
    record = telemetry.close_period()
    assert record.queries == 10 and record.top_items == [] and len(record.to_json()) < 128 * 1024


# ---- the sender ----------------------------------------------------------------------------
def test_records_stay_queued_while_publish_fails_and_go_after_success(make, ipc, nucleus):
    iot = nucleus.iot_core
    iot.set_reachable(False)  # and the spooler holds nothing: the nucleus refuses
    telemetry = make(ipc)
    records = [telemetry.close_period() for _ in range(3)]
    with pytest.raises(ServiceError):
        telemetry.send_queued()
    assert len(telemetry.queue) == 3 and iot.messages == []

    iot.set_reachable(True)
    assert telemetry.send_queued() == 3
    assert len(telemetry.queue) == 0
    arrived = [UsageRecord.from_json(m.payload) for m in iot.messages_on(TOPIC)]
    assert arrived == records and all(m.qos == 1 for m in iot.messages)


def test_the_sender_thread_retries_until_iot_core_is_back(make, ipc, nucleus, caplog):
    iot = nucleus.iot_core
    iot.set_reachable(False)
    telemetry = make(ipc, interval_s=0.05)  # cap of the back-off: 1 s
    telemetry.record(Event(item_ids=("hat-001",)))
    with caplog.at_level(logging.WARNING, logger="local_search.telemetry"):
        telemetry.start()
        wait_until(
            lambda: telemetry.publish_failures >= 2 and len(telemetry.queue) >= 3, what="failed publishes"
        )
    assert "ServiceError" in caplog.text and iot.messages == []

    iot.set_reachable(True)
    iot.wait_for(TOPIC, count=3, timeout=30)
    wait_until(lambda: len(telemetry.queue) <= 1, what="queue drained")
    first = UsageRecord.from_json(iot.messages_on(TOPIC)[0].payload)
    assert first.queries == 1 and first.top_items == [["hat-001", 1]]  # oldest first


def test_heartbeats_are_published_while_idle(make, ipc, nucleus):
    telemetry = make(ipc, interval_s=0.05)
    telemetry.start()
    beats = [UsageRecord.from_json(m.payload) for m in nucleus.iot_core.wait_for(TOPIC, count=3, timeout=30)]
    assert all(b.queries == 0 and (b.index_version, b.model_fingerprint) == (3, "a" * 64) for b in beats)
    assert len({b.record_id for b in beats}) == 3


class FlakyIpc:
    """Fails the first `failures` publishes with an unexpected error, then records them."""

    def __init__(self, failures: int):
        self.failures = failures
        self.published: list[tuple[str, bytes, str]] = []

    def publish_iot_core(self, topic, payload, qos="1"):
        if self.failures:
            self.failures -= 1
            raise RuntimeError("socket closed")
        self.published.append((topic, payload, qos))


def test_an_unexpected_error_is_logged_with_its_type_and_the_sender_goes_on(make, caplog):
    ipc = FlakyIpc(failures=2)
    telemetry = make(ipc, interval_s=0.05)
    telemetry.close_period()
    with caplog.at_level(logging.INFO, logger="local_search.telemetry"):
        telemetry.start()
        wait_until(lambda: len(ipc.published) >= 2 and "sending again" in caplog.text, what="recovery")
    assert caplog.text.count("RuntimeError: socket closed") == 1  # repeats of one failure: debug level
    assert ipc.published[0][0] == TOPIC and ipc.published[0][2] == "1"


def test_a_stuck_publish_does_not_block_recording(make):
    release = threading.Event()

    class StuckIpc:
        def publish_iot_core(self, topic, payload, qos="1"):
            release.wait(30)

    telemetry = make(StuckIpc(), interval_s=0.02)
    telemetry.start()
    wait_until(lambda: len(telemetry.queue) >= 3, what="records while the publish hangs")
    done = threading.Event()

    def query_handler():
        for _ in range(100):
            telemetry.record(Event())
        done.set()

    threading.Thread(target=query_handler).start()
    assert done.wait(10)
    release.set()


def test_the_back_off_cap_follows_the_interval():
    assert backoff_cap(60.0) == 30.0 and backoff_cap(10.0) == 10.0 and backoff_cap(0.02) == 1.0


# ---- a queue that cannot be opened (issue 14, item 2) --------------------------------------
def test_a_queue_that_cannot_be_opened_is_a_reported_fault_retried_each_period(make, tmp_path, caplog):
    blocked = tmp_path / "work"
    blocked.write_text("a file where the work directory should be")  # mkdir fails, even as root
    with caplog.at_level(logging.ERROR, logger="local_search.telemetry"):
        telemetry = make(db_path=blocked / "telemetry.sqlite")
    assert telemetry.queue is None
    assert "cannot open its queue" in telemetry.fault and str(blocked) in telemetry.fault
    assert telemetry.status_fields() == {"telemetry_fault": telemetry.fault}
    assert caplog.text.count("cannot open its queue") == 1
    telemetry.record(Event(item_ids=("hat-001",)))  # queries are still counted
    assert telemetry.close_period() is None  # no queue: the record could not be kept
    telemetry.close_period()
    assert caplog.text.count("cannot open its queue") == 1  # the same fault is not logged per period

    blocked.unlink()
    blocked.mkdir()  # the disk has room again / the directory is fixed
    record = telemetry.close_period()
    assert telemetry.fault == "" and telemetry.status_fields() == {"telemetry_fault": ""}
    assert record is not None and record.dropped_records == 2 and queued(telemetry) == [record]


def test_the_threads_run_without_a_queue_and_stop_cleanly(make, tmp_path):
    blocked = tmp_path / "work"
    blocked.write_text("not a directory")
    telemetry = make(FlakyIpc(failures=0), db_path=blocked / "telemetry.sqlite", interval_s=0.02)
    telemetry.start()
    wait_until(lambda: telemetry.unqueued >= 3, what="periods closed without a queue")
    telemetry.stop()
    assert telemetry.fault


# ---- a full disk and a damaged queue (issue 14, item 6) --------------------------------------
def fill_the_disk(queue: TelemetryQueue) -> None:
    """SQLite's own cap on the file: every later write fails with SQLITE_FULL, as on a full disk."""
    pages = queue._db.execute("PRAGMA page_count").fetchone()[0]
    queue._db.execute(f"PRAGMA max_page_count = {pages}")


def free_the_disk(queue: TelemetryQueue) -> None:
    queue._db.execute("PRAGMA max_page_count = 1073741823")


def test_records_that_cannot_be_queued_on_a_full_disk_are_counted_and_said(make, caplog):
    telemetry = make()
    telemetry.close_period()
    fill_the_disk(telemetry.queue)
    with caplog.at_level(logging.WARNING, logger="local_search.telemetry"):
        for n in range(3):
            telemetry.record(Event(item_ids=(f"{n}" + "x" * 5000,)))  # a record needing new pages
            assert telemetry.close_period() is None
    assert "database or disk is full" in telemetry.fault and "3 record(s) lost" in telemetry.fault
    assert "database or disk is full" in caplog.text and "cannot rollback" not in caplog.text
    assert len(telemetry.queue) == 1

    free_the_disk(telemetry.queue)
    record = telemetry.close_period()
    assert record.dropped_records == 3 and telemetry.fault == ""
    assert [r.dropped_records for r in queued(telemetry)] == [0, 3]


def corrupt_records_page(path) -> None:
    """Overwrite the b-tree page of the records table with garbage (the file header stays)."""
    import sqlite3

    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'records'").fetchone()[0]
    size = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    with open(path, "r+b") as handle:
        handle.seek((root - 1) * size)
        handle.write(b"\xa5" * size)


def moved_aside(folder) -> list:
    """The damaged queue files moved aside (not their -wal and -shm companions)."""
    return [p for p in folder.glob("telemetry.db.corrupt-*") if p.name.rsplit("-", 1)[-1].isdigit()]


def test_a_queue_with_a_damaged_page_is_moved_aside_at_start_and_counts_carry_on(make, tmp_path, caplog):
    telemetry = make(queue_max=3)
    for _ in range(5):
        telemetry.close_period()  # 3 queued, 2 dropped
    telemetry.stop()  # a 6th record: 3 dropped
    corrupt_records_page(tmp_path / "telemetry.db")

    with caplog.at_level(logging.ERROR, logger="local_search.telemetry"):
        reopened = make(queue_max=3)
    assert "damaged (DatabaseError" in caplog.text and "moved to telemetry.db.corrupt-" in caplog.text
    assert len(moved_aside(tmp_path)) == 1
    assert len(reopened.queue) == 0
    record = reopened.close_period()
    assert record.dropped_records >= 3  # the old lifetime count, plus what was stuck in the damaged file
    assert [r.record_id for r in queued(reopened)] == [record.record_id]


def test_a_queue_damaged_while_running_is_moved_aside_and_sending_goes_on(
    make, tmp_path, monkeypatch, caplog
):
    import sqlite3

    ipc = FlakyIpc(failures=0)
    telemetry = make(ipc)
    telemetry.close_period()
    real_read = TelemetryQueue._read_oldest
    damaged = {"reads": 1}

    def read_oldest(self, limit):  # the first read finds a malformed page
        if damaged["reads"]:
            damaged["reads"] -= 1
            raise sqlite3.DatabaseError("database disk image is malformed")
        return real_read(self, limit)

    monkeypatch.setattr(TelemetryQueue, "_read_oldest", read_oldest)
    with caplog.at_level(logging.ERROR, logger="local_search.telemetry"):
        assert telemetry.send_queued() == 0  # the damaged queue was replaced by an empty one
    assert "database disk image is malformed" in caplog.text
    assert len(moved_aside(tmp_path)) == 1
    record = telemetry.close_period()
    assert telemetry.send_queued() == 1 and ipc.published
    assert record.dropped_records >= 1  # the record stuck in the damaged queue is counted
