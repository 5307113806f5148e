"""`demo` and `bench`: the whole kiosk on this machine, and speed figures."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cloud_sync.cli.options import expected_errors, model_option


@click.group()
def bench():
    """Speed figures (run outside the tests; machines are shared and noisy)."""


@bench.command("featurizer")
@model_option
@click.option("--seconds", default=5.0, show_default=True, type=float, help="Time spent per batch size.")
@expected_errors
def bench_featurizer(model_dir, seconds):
    """Images per second at batch 1 and batch 8 (preprocessing included)."""
    from devkit.bench import bench_featurizer as run

    for line in run(model_dir, seconds):
        click.echo(line)


@bench.command("search")
@click.option("--bundle", required=True, type=click.Path(path_type=Path))
@click.option("--queries", default=2000, show_default=True, type=click.IntRange(10))
@click.option("--k", default=5, show_default=True, type=click.IntRange(1))
@expected_errors
def bench_search(bundle, queries, k):
    """Query latency percentiles of a bundle's index (metadata join included)."""
    from devkit.bench import bench_search as run

    for line in run(bundle, queries, k):
        click.echo(line)


@bench.command("kiosk")
@click.option(
    "--seconds", default=60.0, show_default=True, type=click.FloatRange(10), help="How long to run."
)
@click.option(
    "--video",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Video to play as the camera (default: the demo video).",
)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@expected_errors
def bench_kiosk(seconds, video, port):
    """Frame-to-match latency (capture to match published) and frames searched per second."""
    import threading

    from devkit import demo as kiosk

    options = kiosk.DemoOptions(
        source=str((video or kiosk.DEMO_VIDEO).resolve()), port=port, work_dir=Path("demo-output").resolve()
    )
    runner, recorder = kiosk.start_kiosk(options, None, click.echo, show_logs=False)
    try:
        click.echo(f"kiosk running; measuring for {seconds:.0f} s ...")
        kiosk.wait_for(threading.Event(), seconds, lambda: None)
    finally:
        runner.stop()
        recorder.close()
    figures = kiosk.kiosk_latency(recorder.records)
    if not figures:
        raise click.ClickException("no camera matches were published; see the component logs with `demo`")
    click.echo(
        f"{figures['searches']} camera searches in {seconds:.0f} s: {figures['searches_per_s']:.2f} "
        f"frames searched/s; capture to match published: median {figures['median_ms']:.1f} ms, "
        f"p95 {figures['p95_ms']:.1f} ms"
    )


@bench.command("sync")
@click.option(
    "--catalog",
    type=click.Path(exists=True, path_type=Path),
    default=Path("demo/catalog"),
    show_default=True,
    help="Catalog both index versions are built from.",
)
@model_option
@expected_errors
def bench_sync(catalog, model_dir):
    """Publish two index versions to a local S3 (moto on 127.0.0.1) and time the device's
    download, verification and swap while searches run without pause."""
    from devkit.bench_sync import bench_sync as run

    for line in run(catalog, model_dir):
        click.echo(line)


@click.command()
@click.option(
    "--video",
    type=click.Path(exists=True, dir_okay=True, path_type=Path),
    default=None,
    help="Video file or image folder to use as the camera (default: the committed demo video).",
)
@click.option("--camera", type=int, default=None, help="Camera index (e.g. 0) instead of a video.")
@click.option(
    "--catalog", type=click.Path(path_type=Path), default=None, help="Catalog folder (default: demo/catalog)."
)
@click.option(
    "--model",
    "model_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Featurizer directory (default: models/demo-featurizer).",
)
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Display port on 127.0.0.1.",
)
@click.option("--headless", is_flag=True, help="Run unattended: no log echo; stop after --duration.")
@click.option(
    "--duration", type=click.FloatRange(1), default=None, help="Seconds to run (default: until Ctrl-C)."
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write every published match message here, one JSON per line.",
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the demo bundle and component work dirs go (default: demo-output/).",
)
@expected_errors
def demo(video, camera, catalog, model_dir, port, headless, duration, out, work_dir):
    """Run the whole kiosk on this machine: nucleus stand-in, featurizer, local_search, display."""
    import signal
    import threading

    from devkit import demo as kiosk

    if video is not None and camera is not None:
        raise click.UsageError("give --video or --camera, not both")
    if headless and duration is None:
        raise click.UsageError("--headless needs --duration")
    source = str(camera) if camera is not None else str((video or kiosk.DEMO_VIDEO).resolve())
    options = kiosk.DemoOptions(
        source=source,
        port=port,
        catalog=(catalog or kiosk.DEMO_CATALOG).resolve(),
        model=(model_dir or kiosk.DEMO_MODEL).resolve(),
        work_dir=(work_dir or Path("demo-output")).resolve(),
    )
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    runner, recorder = kiosk.start_kiosk(options, out, click.echo, show_logs=not headless)
    try:
        click.echo(f"kiosk display: http://127.0.0.1:{port}/   (Ctrl-C stops everything)")

        def show_states():
            states = ", ".join(
                f"{kiosk.SHORT_NAMES.get(n, n)} {s['state'].lower()}"
                + (f" ({s['restarts']} restarts)" if s["restarts"] else "")
                for n, s in runner.states().items()
            )
            click.echo(f"components: {states}; {len(recorder.records)} matches so far")

        kiosk.wait_for(stop, duration, show_states)
    finally:
        runner.stop()
        recorder.close()
    _summarise(kiosk, recorder.records, source, out)


def _summarise(kiosk, records, source, out):
    click.echo(f"{len(records)} match messages" + (f" written to {out}" if out else ""))
    latency = kiosk.kiosk_latency(records)
    if latency:
        click.echo(
            f"capture to match published: median {latency['median_ms']:.0f} ms, "
            f"p95 {latency['p95_ms']:.0f} ms; {latency['searches_per_s']:.2f} searches/s"
        )
    if Path(source) == kiosk.DEMO_VIDEO.resolve() and kiosk.DEMO_TIMELINE.is_file():
        right, held, _ = kiosk.score_held_items(records, json.loads(kiosk.DEMO_TIMELINE.read_text()))
        click.echo(f"right category at rank 1 for {right} of {held} held items ({right / max(held, 1):.0%})")
