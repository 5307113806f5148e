"""`visual-search demo`: the whole kiosk, as separate processes over real IPC."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devkit import demo as kiosk
from tests.kiosk_helpers import DISPLAY, FEATURIZER, LOCAL_SEARCH, REPO
from tests.support.network import free_port
from tests.support.waiting import wait_until


@pytest.mark.timeout(600)  # the demo's first run builds its bundle; the run itself is bounded below
def test_headless_demo_writes_every_match_and_scores_the_held_items(tmp_path):
    out = tmp_path / "m.jsonl"
    command = [
        str(Path(sys.executable).with_name("visual-search")),
        "demo",
        "--headless",
        "--duration",
        "25",
        "--out",
        str(out),
        "--port",
        str(free_port()),
        "--work-dir",
        str(tmp_path / "work"),
    ]
    result = subprocess.run(
        command,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=400,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    camera = [r for r in records if r["source"] == "camera"]
    assert camera, result.stdout[-2000:]
    for record in camera:
        assert record["query_id"] and record["capture_time"] <= record["publish_time"]
        assert all(set(m) >= {"item_id", "score"} for m in record["matches"])
        assert [m["score"] for m in record["matches"]] == sorted(
            (m["score"] for m in record["matches"]), reverse=True
        )
    assert "right category at rank 1 for" in result.stdout
    assert f"{len(records)} match messages written to {out}" in result.stdout
    for name in (FEATURIZER, LOCAL_SEARCH, DISPLAY):  # each component's own log, as on a device
        log_file = tmp_path / "work" / "greengrass" / "work" / name / "logs" / f"{name}.log"
        assert " INFO running" in log_file.read_text(), name


def test_killing_one_component_does_not_stop_the_others(tmp_path):
    options = kiosk.DemoOptions(source=str(kiosk.DEMO_VIDEO), port=free_port(), work_dir=tmp_path)
    runner, recorder = kiosk.start_kiosk(options, None, print, show_logs=False)
    try:
        runner.wait_until_running(timeout=180)
        runner.kill(DISPLAY)
        before = len(recorder.records)
        # featurizer -> local_search kept working
        wait_until(lambda: len(recorder.records) > before + 1, 60, "matches while the display restarts")
        states = runner.states()
        assert states[FEATURIZER]["restarts"] == 0 and states[LOCAL_SEARCH]["restarts"] == 0
        assert states[DISPLAY]["restarts"] == 1 and states[DISPLAY]["state"] == "RUNNING"
    finally:
        runner.stop()
        recorder.close()


def test_an_upload_is_answered_across_the_processes_with_the_default_upload_dir(tmp_path):
    """The featurizer reads only its upload_dir (issue 14, item 7); its default must be the folder
    where the display saves, in the work layout the nucleus gives each component."""
    import io
    import urllib.request
    import uuid

    from tests.conftest import demo_image

    options = kiosk.DemoOptions(source=str(kiosk.DEMO_VIDEO), port=free_port(), work_dir=tmp_path)
    runner, recorder = kiosk.start_kiosk(options, None, print, show_logs=False)
    try:
        runner.wait_until_running(timeout=180)
        boundary = uuid.uuid4().hex
        body = io.BytesIO()
        body.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="p.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n".encode()
        )
        body.write(demo_image("hat", 1).read_bytes())
        body.write(f"\r\n--{boundary}--\r\n".encode())
        request = urllib.request.Request(
            f"http://127.0.0.1:{options.port}/api/search",
            data=body.getvalue(),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            result = json.load(response)
        assert result["matches"] and result["query"]["kind"] == "image"
    finally:
        runner.stop()
        recorder.close()


def test_set_gives_typed_settings_and_names_a_bad_key_or_value():
    from components.common.errors import VisualSearchError
    from devkit.demo_settings import configure

    recipes = REPO / "recipes"
    base = {LOCAL_SEARCH: {"bundle_dir": "/b"}}
    done = configure(
        base, ["display.currency=EUR", "local_search.top_k=8", "featurizer.loop_video=false"], recipes
    )
    assert done[DISPLAY] == {"currency": "EUR"} and done[FEATURIZER] == {"loop_video": False}
    assert done[LOCAL_SEARCH] == {"bundle_dir": "/b", "top_k": 8}
    for given, said in [
        ("display.curency=EUR", "display: unknown setting(s) curency"),
        ("local_search.top_k=many", "local_search.top_k: 'many' is not an integer"),
        ("display.currency=euro", "display.currency: 'euro' is not a 3-letter ISO 4217 code"),
        ("display.port=70000", "display.port: '70000' is not at most 65535"),
        ("currency=EUR", "expected component.key=value"),
        ("nucleus.x=1", "no component 'nucleus'"),
    ]:
        with pytest.raises(VisualSearchError, match=re.escape(said)):
            configure(base, [given], recipes)


def test_demo_takes_a_stream_url_as_its_video_and_checks_settings_before_building(monkeypatch):
    from click.testing import CliRunner

    from cloud_sync.cli.main import main as cli

    started = []
    monkeypatch.setattr(kiosk, "start_kiosk", lambda options, *a, **k: started.append(options) or 1 / 0)
    stream = "rtsp://127.0.0.1:8554/counter"
    result = CliRunner().invoke(cli, ["demo", "--video", stream, "--set", "display.currency=EUR"])
    assert started and started[0].source == stream and started[0].settings == ["display.currency=EUR"]
    refused = CliRunner().invoke(cli, ["demo", "--video", "ftp://camera/x"])
    assert refused.exit_code == 2 and "streams are rtsp://" in refused.output
    port = CliRunner().invoke(cli, ["demo", "--set", "display.port=9000"])
    assert port.exit_code == 2 and "with --port" in port.output  # else the printed URL would be wrong
    missing = CliRunner().invoke(cli, ["demo", "--video", "no-such.mp4"])
    assert missing.exit_code == 2 and "no-such.mp4: no such file or folder" in missing.output
    monkeypatch.undo()
    bad = CliRunner().invoke(cli, ["demo", "--set", "display.nope=1", "--work-dir", "/nonexistent/x"])
    assert bad.exit_code == 1 and "error: --set: display: unknown setting(s) nope" in bad.output
    assert result.exit_code != 0  # the stand-in stopped it


def test_demo_catalog_bad_rows_are_reported_and_a_given_bundle_is_checked(tmp_path, tiny_model):
    from components.common.errors import VisualSearchError
    from tests.conftest import demo_image

    catalog = tmp_path / "catalog"
    (catalog / "images").mkdir(parents=True)
    rows = ["id,image,title,category,price"]
    for n, category in enumerate(["hat", "shoes", "dress"]):
        shutil.copy(demo_image(category), catalog / "images" / f"{n}.jpg")
        rows.append(f"item-{n},images/{n}.jpg,{category},{category},9.99")
    rows.append("item-9,images/missing.jpg,ghost,hat,1.00")
    (catalog / "catalog.csv").write_text("\n".join(rows) + "\n")
    said = []
    bundle = kiosk.ensure_bundle(catalog, tiny_model, tmp_path / "bundle", said.append)
    bad = [line for line in said if line.startswith("bad row:")]
    assert len(bad) == 1 and "missing.jpg" in bad[0]
    assert said[-1].endswith("3 items, skipped 1 bad row(s)")
    assert kiosk.given_bundle(bundle, tiny_model) == bundle
    with pytest.raises(VisualSearchError, match="not an index bundle"):
        kiosk.given_bundle(catalog, tiny_model)
    thumbnail = next((bundle / "thumbnails").iterdir())
    thumbnail.write_bytes(thumbnail.read_bytes() + b"x")
    with pytest.raises(VisualSearchError, match=r"--bundle .*: .*size"):
        kiosk.given_bundle(bundle, tiny_model)


def test_headless_runs_pass_on_warnings_errors_and_tracebacks_only():
    said = []
    echo = kiosk.LogEcho(said.append, everything=False)
    echo(DISPLAY, "2026-01-01 10:00:00,000 display INFO running")
    echo(DISPLAY, "2026-01-01 10:00:01,000 display WARNING cannot open bundle")
    echo(FEATURIZER, "2026-01-01 10:00:02,000 featurizer ERROR camera lost")
    echo(FEATURIZER, "Traceback (most recent call last):")
    echo(FEATURIZER, "2026-01-01 10:00:03,000 featurizer INFO camera back")
    echo(LOCAL_SEARCH, "Segmentation fault")
    assert said == [
        "[display] 2026-01-01 10:00:01,000 display WARNING cannot open bundle",
        "[featurizer] 2026-01-01 10:00:02,000 featurizer ERROR camera lost",
        "[featurizer] Traceback (most recent call last):",
        "[local_search] Segmentation fault",
    ]
