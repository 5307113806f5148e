"""`/metrics` in the Prometheus text format, read as a scraper (or `curl`) reads it: over HTTP from
localhost, through the display's request guard, and parsed by a strict reader of the format."""

from __future__ import annotations

import math
import re
import urllib.error
import urllib.request

import pytest

from components.display.server import WebServer
from tests.display.app_helpers import make_display, matches_for, status

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(rf"^({NAME})(?:\{{((?:{LABEL})(?:,{LABEL})*)?\}})? (\S+)$")
KINDS = {"counter", "gauge", "histogram", "summary", "untyped"}


def parse_exposition(text: str) -> dict[str, dict]:
    """{family: {"type", "help", "samples": [(name, labels, value)]}}; AssertionError on anything
    that is not the text format 0.0.4 (unknown lines, a sample before its TYPE, a family declared
    twice, bad numbers, histogram buckets that are not cumulative or do not end at +Inf = count)."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    families: dict[str, dict] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"line {number}: {line!r}"
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert name not in families, f"{where}: family declared twice"
            families[name] = {"help": line.split(" ", 3)[3], "type": None, "samples": []}
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in KINDS and name in families and families[name]["type"] is None, where
            families[name]["type"] = kind
        else:
            match = SAMPLE.match(line)
            assert match, f"{where}: not a sample"
            name, labels, value = match.groups()
            family = next((f for f in families if name in (f, f + "_bucket", f + "_sum", f + "_count")), None)
            assert family is not None and families[family]["type"], f"{where}: sample without a TYPE"
            parsed = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', labels or ""))
            families[family]["samples"].append((name, parsed, float(value)))
    for name, family in families.items():
        if family["type"] == "histogram":
            buckets = [(s[1]["le"], s[2]) for s in family["samples"] if s[0] == name + "_bucket"]
            counts = [value for _, value in buckets]
            assert counts == sorted(counts), f"{name}: buckets are not cumulative"
            assert buckets[-1][0] == "+Inf", f"{name}: the last bucket is not +Inf"
            total = next(s[2] for s in family["samples"] if s[0] == name + "_count")
            assert buckets[-1][1] == total, f"{name}: +Inf bucket {buckets[-1][1]} != count {total}"
            assert all(math.isfinite(float(le)) for le, _ in buckets[:-1])
    return families


def value(families, family, name=None, **labels) -> float:
    name = name or family
    found = [v for n, ls, v in families[family]["samples"] if n == name and ls == labels]
    assert len(found) == 1, f"{name}{labels}: {found}"
    return found[0]


@pytest.fixture
def served(tmp_path, demo_bundle):
    display = make_display(tmp_path, demo_bundle)
    server = WebServer(display.app, "127.0.0.1", 0, threads=2)
    server.start()
    yield display, server.port
    display.state.hub.close()
    server.stop()


def scrape(port: int, host: str | None = None) -> tuple[str, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    if host:
        request.add_header("Host", host)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers["Content-Type"], response.read().decode()


def test_metrics_count_searches_and_say_what_is_served_and_what_is_up(served, demo_bundle):
    display, port = served
    display.state.handle_status(status("featurizer", "camera_lost", detail="unplugged"))
    display.state.handle_status(
        status("local_search", index_version=20261130072724, items=len(demo_bundle), online=False)
    )
    for n, (faiss_ids, latency_ms) in enumerate([([1, 2], 80.0), ([3], 450.0), ([], 120.0)]):
        message = matches_for(demo_bundle, faiss_ids, query_id=f"q{n}")
        message.timings_ms["capture_to_publish"] = latency_ms
        display.metrics.observe(message)
    display.metrics.observe(matches_for(demo_bundle, [4], query_id="u", source="upload"))

    content_type, text = scrape(port)
    assert content_type.startswith("text/plain; version=0.0.4")
    families = parse_exposition(text)
    assert value(families, "visualsearch_searches_total", source="camera") == 3
    assert value(families, "visualsearch_searches_total", source="upload") == 1
    assert value(families, "visualsearch_matched_searches_total", source="camera") == 2
    assert value(families, "visualsearch_no_match_total", source="camera") == 1
    latency = "visualsearch_search_latency_seconds"
    assert value(families, latency, latency + "_bucket", le="0.1") == 2  # 80 ms camera and upload
    assert value(families, latency, latency + "_bucket", le="0.5") == 4
    assert value(families, latency, latency + "_count") == 4
    assert value(families, latency, latency + "_sum") == pytest.approx(0.08 + 0.45 + 0.12 + 0.08)
    info = families["visualsearch_index_info"]["samples"]
    assert info == [
        (
            "visualsearch_index_info",
            {"index_version": "20261130072724", "catalog_date": "2026-11-30"},
            1.0,
        )
    ]
    assert value(families, "visualsearch_component_up", component="featurizer") == 0
    assert value(families, "visualsearch_component_up", component="local_search") == 1
    assert value(families, "visualsearch_cloud_online") == 0
    assert value(families, "visualsearch_index_items") == len(demo_bundle)


def test_metrics_answer_localhost_and_refuse_other_host_names(served):
    _, port = served
    assert "visualsearch_searches_total" in scrape(port, host=f"localhost:{port}")[1]
    with pytest.raises(urllib.error.HTTPError) as refused:
        scrape(port, host="attacker.example")
    assert refused.value.code == 400


def test_the_strict_reader_refuses_what_a_scraper_would():
    for bad in [
        "visualsearch_x 1\n",  # no TYPE
        "# HELP a x\n# TYPE a counter\na{b=1} 1\n",  # unquoted label value
        "# HELP a x\n# TYPE a gauge\na 1",  # no final newline
        '# HELP h x\n# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_count 1\n',
    ]:
        with pytest.raises(AssertionError):
            parse_exposition(bad)
