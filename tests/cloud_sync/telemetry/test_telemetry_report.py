"""telemetry-report over records stored where the IoT rule puts them, on a real moto S3 server."""

import json
import re
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from click.testing import CliRunner

from cloud_sync.cli.main import main
from cloud_sync.telemetry.report import parse_when
from cloud_sync.telemetry.stats import choose_bucket
from components.common.telemetry import UsageRecord

PREFIX = "store-12"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def record(thing, start, queries, matched, p50, p95, top, version, dropped, errors=0):
    return UsageRecord(
        record_id=f"{thing}-{start}",
        thing_name=thing,
        period_start=start,
        period_s=3600,
        queries=queries,
        matched=matched,
        errors=errors,
        latency_ms_p50=p50,
        latency_ms_p95=p95,
        top_items=top,
        index_version=version,
        model_fingerprint="ab" * 32,
        uptime_s=100.0,
        dropped_records=dropped,
    )


def rule_key(rec: UsageRecord, arrival_day: str = "2026-11-20") -> str:
    """Where the topic rule's S3 action writes a record (see telemetry_report's docstring)."""
    return f"{PREFIX}/telemetry/{rec.thing_name}/{arrival_day}/{rec.record_id}.json"


@pytest.fixture
def fleet_bucket(s3_bucket):
    """Two kiosks; one record delivered twice (the copy arrived the next day); two bad objects."""
    s3 = boto3.client("s3")
    a1 = record("kiosk-a", "2026-11-20T10:00:00Z", 10, 8, 20.0, 40.0, [["dress-1", 5], ["hat-2", 3]], 6, 0)
    a2 = record("kiosk-a", "2026-11-20T11:00:00Z", 30, 15, 10.0, 30.0, [["dress-1", 10]], 7, 2, errors=1)
    a3 = record("kiosk-a", "2026-11-20T12:00:00Z", 0, 0, None, None, [], 7, 2)
    b1 = record("kiosk-b", "2026-11-20T10:00:00Z", 20, 20, 30.0, 60.0, [["hat-2", 9]], 6, 5, errors=2)
    for rec in (a1, a2, a3, b1):
        s3.put_object(Bucket=s3_bucket, Key=rule_key(rec), Body=rec.to_json())
    s3.put_object(Bucket=s3_bucket, Key=rule_key(b1, "2026-11-21"), Body=b1.to_json())
    s3.put_object(
        Bucket=s3_bucket, Key=f"{PREFIX}/telemetry/kiosk-b/2026-11-20/corrupt.json", Body=b"\x00{garbage"
    )
    bad_type = {**json.loads(a1.to_json()), "record_id": "typed-wrong", "queries": "many"}
    s3.put_object(
        Bucket=s3_bucket,
        Key=f"{PREFIX}/telemetry/kiosk-a/2026-11-20/typed-wrong.json",
        Body=json.dumps(bad_type).encode(),
    )
    return s3_bucket


def report_json(bucket, *extra):
    result = run("telemetry-report", "--bucket", bucket, "--prefix", PREFIX, "--json", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result


def test_each_record_counts_once_and_figures_match_hand_computed_values(fleet_bucket):
    report, _ = report_json(fleet_bucket)
    assert (report["objects"], report["duplicates"], len(report["unreadable"])) == (7, 1, 2)
    fleet = report["fleet"]
    assert (fleet["records"], fleet["devices"], fleet["queries"]) == (4, 2, 60)
    assert (fleet["matched"], fleet["errors"]) == (43, 3)
    assert fleet["match_rate"] == pytest.approx(43 / 60)
    assert fleet["latency_ms_p50"] == 10.0  # weighted median of 10 (x30), 20 (x10), 30 (x20)
    assert fleet["latency_ms_p95"] == pytest.approx(2500 / 60)  # (40*10 + 30*30 + 60*20) / 60
    assert fleet["latency_ms_p95_max"] == 60.0
    assert fleet["top_items"] == [["dress-1", 15], ["hat-2", 12]]
    assert fleet["index_versions"] == {"6": 1, "7": 1}  # devices per current version
    assert fleet["dropped_records"] == 7  # 2 (kiosk-a's counter) + 5
    a, b = report["devices"]
    assert (a["name"], a["queries"], a["matched"], a["errors"], a["index_version"]) == (
        "kiosk-a",
        40,
        23,
        1,
        7,
    )
    assert a["latency_ms_p50"] == 10.0 and a["latency_ms_p95"] == pytest.approx(32.5)
    assert a["index_versions"] == {"6": 1, "7": 2} and a["dropped_records"] == 2
    assert (a["first_seen"], a["last_seen"]) == ("2026-11-20T10:00:00Z", "2026-11-20T13:00:00Z")
    assert (b["name"], b["queries"], b["match_rate"]) == ("kiosk-b", 20, 1.0)
    assert (b["index_version"], b["dropped_records"]) == (6, 5)
    assert report["bucket"] == "hour"
    assert report["times"] == ["2026-11-20T10:00Z", "2026-11-20T11:00Z", "2026-11-20T12:00Z"]
    assert a["series"]["queries"] == [10, 30, 0] and b["series"]["queries"] == [20, 0, 0]
    assert fleet["series"]["match_rate"] == [pytest.approx(28 / 30), 0.5, None]


def test_unreadable_objects_are_skipped_and_named(fleet_bucket):
    report, result = report_json(fleet_bucket)
    reasons = dict(report["unreadable"])
    assert "not valid JSON" in reasons[f"{PREFIX}/telemetry/kiosk-b/2026-11-20/corrupt.json"]
    assert (
        "queries must be a whole number" in reasons[f"{PREFIX}/telemetry/kiosk-a/2026-11-20/typed-wrong.json"]
    )
    assert "warning: skipped 2 unreadable object(s): " in result.stderr and "corrupt.json" in result.stderr


def test_text_report_shows_devices_fleet_and_how_latency_is_combined(fleet_bucket):
    result = run("telemetry-report", "--bucket", fleet_bucket, "--prefix", PREFIX)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith(
        f"4 records from 2 device(s) under s3://{fleet_bucket}/{PREFIX}/telemetry/ "
        f"(7 objects, 1 duplicate(s) dropped, 2 unreadable"
    )
    rows = {
        line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("kiosk-", "fleet "))
    }
    assert rows["kiosk-a"][1:5] == ["40", "23", "57.5%", "1"]
    assert rows["fleet"][1:8] == ["60", "43", "71.7%", "3", "10.0", "41.7", "60.0"]
    assert "index versions in use: 6 on 1 device(s), 7 on 1 device(s)" in out
    assert "2026-11-20T11:00Z" in out and "dress-1 (15), hat-2 (12)" in out
    assert "p50 = query-weighted median of the records' p50s" in out


def test_since_and_until_filter_on_period_start(fleet_bucket):
    report, _ = report_json(fleet_bucket, "--since", "2026-11-20T11:00Z")
    assert report["fleet"]["records"] == 2 and report["outside_window"] == 2
    assert [d["name"] for d in report["devices"]] == ["kiosk-a"] and report["fleet"]["queries"] == 30
    report, _ = report_json(fleet_bucket, "--until", "2026-11-20T11:00Z")
    assert report["fleet"]["records"] == 2 and report["fleet"]["queries"] == 30
    empty = run("telemetry-report", "--bucket", fleet_bucket, "--prefix", PREFIX, "--since", "2026-12-01")
    assert empty.exit_code == 1 and "no telemetry records under" in empty.output
    assert "since 2026-12-01T00:00:00+00:00 (4 record(s) outside that window)" in empty.output


def test_html_report_is_self_contained_with_charts(fleet_bucket, tmp_path):
    out = tmp_path / "reports" / "usage.html"
    result = run("telemetry-report", "--bucket", fleet_bucket, "--prefix", PREFIX, "--html", out)
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert html.count("<svg") == 3 and "kiosk-a" in html and "kiosk-b" in html
    assert "Queries per hour" in html and "Match rate per hour" in html and "latency" in html
    assert "http" not in html and "<script" not in html  # nothing fetched when opened offline
    assert "corrupt.json" in html


def test_an_empty_prefix_says_so(s3_bucket):
    result = run("telemetry-report", "--bucket", s3_bucket, "--prefix", "nothing-here")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert (
        result.output.strip() == f"error: no telemetry records under s3://{s3_bucket}/nothing-here/telemetry/"
    )


def test_a_missing_bucket_is_one_line(aws_env):
    result = run("telemetry-report", "--bucket", "no-such-telemetry-bucket", "--prefix", PREFIX)
    assert (
        result.exit_code == 1
        and result.output.strip() == "error: s3://no-such-telemetry-bucket: no such bucket"
    )


def test_times_accept_iso_and_relative_forms():
    now = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
    assert parse_when("7d", now) == now - timedelta(days=7)
    assert parse_when("24h", now) == now - timedelta(hours=24)
    assert parse_when("30m", now) == now - timedelta(minutes=30)
    assert parse_when("2w", now) == now - timedelta(weeks=2)
    assert parse_when("2026-11-19") == datetime(2026, 11, 19, tzinfo=timezone.utc)
    assert parse_when("2026-11-19T08:30Z") == datetime(2026, 11, 19, 8, 30, tzinfo=timezone.utc)
    assert parse_when("2026-11-19T10:30+02:00") == datetime(2026, 11, 19, 8, 30, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="neither an ISO date/time"):
        parse_when("yesterday")
    result = run("telemetry-report", "--bucket", "b", "--since", "yesterday")
    assert result.exit_code == 2 and "Invalid value for '--since'" in result.output


def test_long_spans_are_shown_per_day():
    starts = [datetime(2026, 11, 1, 13, tzinfo=timezone.utc), datetime(2026, 11, 5, 9, tzinfo=timezone.utc)]
    step, times = choose_bucket(starts)
    assert step == "day" and len(times) == 5 and times[0] == datetime(2026, 11, 1, tzinfo=timezone.utc)
    step, times = choose_bucket(starts[:1] + [starts[0] + timedelta(hours=5)])
    assert step == "hour" and len(times) == 6


def test_nan_or_infinity_in_a_record_makes_it_unreadable_not_a_crash(s3_bucket, tmp_path):
    """Issue 14, item 9: NaN crashed --html and made --json invalid JSON."""
    s3 = boto3.client("s3")
    good = record("kiosk-a", "2026-11-20T10:00:00Z", 10, 8, 20.0, 40.0, [["dress-1", 5]], 6, 0)
    s3.put_object(Bucket=s3_bucket, Key=rule_key(good), Body=good.to_json())
    for name, text in (
        ("nan", '"latency_ms_p50": NaN'),
        ("inf", '"period_s": Infinity'),
        ("neg-inf", '"latency_ms_p95": -Infinity'),
        ("big", '"uptime_s": 1e999'),
    ):
        body = (
            good.to_json()
            .decode()
            .replace('"record_id": "kiosk-a-2026-11-20T10:00:00Z"', f'"record_id": "{name}"')
        )
        field_name = text.split(":")[0]
        body = re.sub(f"{field_name}: [^,}}]+", text, body)
        s3.put_object(
            Bucket=s3_bucket, Key=f"{PREFIX}/telemetry/kiosk-a/2026-11-20/{name}.json", Body=body.encode()
        )
    html = tmp_path / "report.html"
    result = run("telemetry-report", "--bucket", s3_bucket, "--prefix", PREFIX, "--json", "--html", html)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout, parse_constant=lambda name: pytest.fail(f"{name} in the JSON output"))
    assert report["fleet"]["records"] == 1 and len(report["unreadable"]) == 4
    assert all("finite" in reason for _, reason in report["unreadable"]), report["unreadable"]
    assert "NaN is not a finite number" in html.read_text()  # listed among the unreadable objects
