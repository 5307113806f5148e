"""The issue's check, with the real local_search process under the local nucleus stand-in.

IoT Core is unreachable and the nucleus's spooler holds only about ten records, so most of
the 1,000+ records made must wait in the component's SQLite queue. The component is killed
in the middle (a crash: the runner restarts it), then connectivity comes back: every record
made arrives, and after de-duplication by record_id each arrives once.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from cloud_sync.indexing.build_index import build_bundle
from components.common import messages
from components.common.telemetry import UsageRecord
from devkit.nucleus.runner import KioskRunner
from tests.conftest import DEMO_CATALOG
from tests.kiosk_helpers import LOCAL_SEARCH, RECIPES, REPO
from tests.support.waiting import wait_until

THING = "telemetry-e2e-kiosk"
TOPIC = messages.IOT_TELEMETRY.format(thing_name=THING)
WANTED = 1000


@pytest.fixture(scope="module")
def bundle_dir(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("telemetry") / "bundle"
    build_bundle(DEMO_CATALOG, tiny_model, out, progress=False)
    return out


def overrides(bundle_dir: Path) -> dict:
    """The recipe as it is (its accessControl must allow the telemetry topic), records every 20 ms."""
    return {"bundle_dir": str(bundle_dir), "telemetry_interval_s": 0.02, "telemetry_queue_max": 5000}


def find_queue(work_dir: Path) -> Path | None:
    """The SQLite file in the component's work directory, whatever main named it."""
    files = [Path(d) / f for d, _, names in os.walk(work_dir) for f in names]  # not into the venv link
    found = [p for p in files if p.is_file() and _header(p) == b"SQLite format 3\x00"]
    return found[0] if len(found) == 1 else None


def _header(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(16)


def ids_on_disk(db_path: Path) -> set[str]:
    db = sqlite3.connect(db_path, timeout=30)
    try:
        return {row[0] for row in db.execute("SELECT record_id FROM records")}
    finally:
        db.close()


def ids_spooled(iot) -> set[str]:
    return {UsageRecord.from_json(m.payload).record_id for m in iot.spooled if m.topic == TOPIC}


@pytest.mark.timeout(900)  # above the waits' own deadlines, so a slow run fails with their message
def test_records_made_offline_across_a_crash_all_arrive_once(bundle_dir, tmp_path):
    work = tmp_path / "gg"
    runner = KioskRunner(
        RECIPES,
        REPO,
        work,
        only=[LOCAL_SEARCH],
        thing_name=THING,
        overrides={LOCAL_SEARCH: overrides(bundle_dir)},
    )
    iot = runner.nucleus.iot_core
    iot.spool_max_bytes = 4096  # about ten records: the rest must wait on disk
    iot.set_reachable(False)
    with runner:
        runner.wait_until_running(timeout=120)
        component_work = work / "work" / LOCAL_SEARCH  # {work:path}
        wait_until(
            lambda: find_queue(component_work) is not None, 60, f"the telemetry queue in {component_work}"
        )
        db_path = find_queue(component_work)

        def made() -> int:
            return len(ids_on_disk(db_path) | ids_spooled(iot))

        wait_until(lambda: made() >= WANTED // 2, 300, f"{WANTED // 2} records")
        first_pid = runner.states()[LOCAL_SEARCH]["pid"]
        runner.kill(LOCAL_SEARCH)  # a crash in the middle; the runner starts it again
        wait_until(
            lambda: runner.states()[LOCAL_SEARCH]["restarts"] == 1
            and runner.states()[LOCAL_SEARCH]["pid"] != first_pid,
            60,
            "the restart",
        )
        wait_until(lambda: made() >= WANTED, 300, f"{WANTED} records")

        # Everything made so far: read the disk first, then the spooler, which only grows while
        # offline, so a record moving from one to the other between the reads is still counted.
        on_disk = ids_on_disk(db_path)
        spooled = ids_spooled(iot)
        produced = on_disk | spooled
        assert len(produced) >= WANTED and len(spooled) < len(produced) // 10
        assert iot.messages_on(TOPIC) == []

        iot.set_reachable(True)
        wait_until(
            lambda: produced <= {UsageRecord.from_json(m.payload).record_id for m in iot.messages_on(TOPIC)},
            300,
            "every record made offline to arrive",
        )

    arrived = [UsageRecord.from_json(m.payload) for m in iot.messages_on(TOPIC)]
    unique = {r.record_id: r for r in arrived}
    duplicates = len(arrived) - len(unique)
    print(
        f"\ntelemetry e2e: produced {len(produced)} ({len(on_disk)} on disk, {len(spooled)} in the nucleus "
        f"spooler) before reconnecting; arrived {len(arrived)} messages, {len(unique)} unique, "
        f"{duplicates} duplicate(s), {len(unique) - len(produced & set(unique))} made after the snapshot"
    )
    assert produced - set(unique) == set()
    # A duplicate is the record in flight at the crash (or one whose publish timed out after the
    # nucleus queued it); a sender that re-sent what it had already handed over would show many.
    assert duplicates <= 5
    assert all(r.thing_name == THING and r.queries == 0 and r.dropped_records == 0 for r in unique.values())
    assert all(m.qos == 1 for m in iot.messages_on(TOPIC))
    lifetimes = 1 + sum(1 for a, b in zip(arrived, arrived[1:]) if b.uptime_s < a.uptime_s)
    assert lifetimes >= 2  # records of both processes arrived
