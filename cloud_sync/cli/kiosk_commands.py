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
@click.option(
    "--runtime",
    "runtime_choice",
    type=click.Choice(["mxnet", "onnxruntime", "int8", "all"]),
    default="all",
    show_default=True,
    help="Runtime(s) to time; `all`: every one the model carries and this machine has. MXNet, the "
    "reference, is always timed too.",
)
@click.option(
    "--seconds", default=5.0, show_default=True, type=float, help="Time spent per runtime and batch size."
)
@click.option(
    "--json", "as_json", is_flag=True, help='Print {"<runtime>": {"1": images_per_s, "8": ...}, ...}.'
)
@click.option(
    "--agreement",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Instead of timing: featurize every image under this folder on each runtime and print the "
    "lowest cosine to MXNet's vector.",
)
@expected_errors
def bench_featurizer(model_dir, runtime_choice, seconds, as_json, agreement):
    """Images per second of each runtime at batch 1 and 8, and its ratio to MXNet fp32.

    The same model on every runtime, in one run; preprocessing of camera-sized frames included."""
    from devkit.bench import available_runtimes, bench_featurizer, featurizer_speeds, runtime_agreement

    if runtime_choice == "all":
        runtimes, notes = available_runtimes(model_dir)
    else:
        runtimes, notes = list(dict.fromkeys(["mxnet", runtime_choice])), []
    if agreement is not None:
        for line in (*notes, *runtime_agreement(model_dir, runtimes, agreement)):
            click.echo(line)
        return
    if as_json:
        click.echo(json.dumps(featurizer_speeds(model_dir, runtimes, seconds)[0]))
        return
    for line in (*notes, *bench_featurizer(model_dir, runtimes, seconds)):
        click.echo(line)


@bench.command("search")
@click.option("--bundle", type=click.Path(path_type=Path), help="Bundle whose index is timed.")
@click.option(
    "--synthetic",
    type=click.IntRange(1000),
    help="Instead of --bundle: build the index `auto` picks for this many synthetic vectors shaped "
    "like real ones, and print build time, index size, recall@10 and latency.",
)
@click.option(
    "--real-vectors",
    type=click.Path(path_type=Path),
    help="With --synthetic: a bundle built from photos with --index Flat, whose vectors seed the "
    "synthetic ones (default: demo/catalog, built now with --model).",
)
@model_option
@click.option(
    "--memory-budget-mb", default=512, show_default=True, type=click.IntRange(1), help="For --synthetic."
)
@click.option("--queries", default=2000, show_default=True, type=click.IntRange(10))
@click.option("--k", default=5, show_default=True, type=click.IntRange(1), help="For --bundle.")
@expected_errors
def bench_search(bundle, synthetic, real_vectors, model_dir, memory_budget_mb, queries, k):
    """Query latency percentiles of a bundle's index (metadata join included), or, with
    --synthetic N, of the index `auto` builds for an N-item catalog."""
    if (bundle is None) == (synthetic is None):
        raise click.UsageError("give either --bundle or --synthetic")
    if bundle is not None:
        from devkit.bench import bench_search as run

        lines = run(bundle, queries, k)
    else:
        from devkit.bench_index import bench_synthetic, seed_vectors

        vectors = seed_vectors(real_vectors, model_dir)
        lines = bench_synthetic(vectors, synthetic, memory_budget=memory_budget_mb * 2**20, queries=queries)
    for line in lines:
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


def _video_source(ctx, param, value):
    """A stream URL as given (the featurizer opens it); a file or folder must exist."""
    from components.featurizer.camera import STREAM_PREFIXES

    if value is None or value.lower().startswith(STREAM_PREFIXES):
        return value
    if "://" in value:
        raise click.BadParameter(f"{value}: streams are {', '.join(STREAM_PREFIXES)} URLs")
    path = Path(value)
    if not path.exists():
        raise click.BadParameter(f"{value}: no such file or folder")
    return str(path.resolve())


@click.command()
@click.option(
    "--video",
    callback=_video_source,
    default=None,
    help="Video file, image folder or stream URL (rtsp://, rtsps://, http://, https://) to use as "
    "the camera (default: the committed demo video).",
)
@click.option("--camera", type=int, default=None, help="Camera index (e.g. 0) instead of a video.")
@click.option(
    "--catalog",
    type=click.Path(path_type=Path),
    default=None,
    help="Catalog folder to build the index from (default: demo/catalog); bad rows are reported "
    "and left out.",
)
@click.option(
    "--bundle",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Serve this index bundle, already built with --model (instead of building one from --catalog).",
)
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="COMPONENT.KEY=VALUE",
    help="A component setting (docs/settings.md), e.g. display.currency=EUR or local_search.top_k=8; "
    "repeatable; checked as a deployment would be.",
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
@click.option(
    "--headless",
    is_flag=True,
    help="Run unattended: only the components' warnings and errors are printed; stop after --duration.",
)
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
def demo(video, camera, catalog, bundle, settings, model_dir, port, headless, duration, out, work_dir):
    """Run the whole kiosk on this machine: nucleus stand-in, featurizer, local_search, display."""
    import signal
    import threading

    from devkit import demo as kiosk

    if video is not None and camera is not None:
        raise click.UsageError("give --video or --camera, not both")
    if headless and duration is None:
        raise click.UsageError("--headless needs --duration")
    if bundle is not None and catalog is not None:
        raise click.UsageError("give --catalog (to build an index) or --bundle (one already built), not both")
    if any(text.partition("=")[0].strip() == "display.port" for text in settings):
        raise click.UsageError("set the display's port with --port (the demo prints and checks it)")
    source = str(camera) if camera is not None else (video or str(kiosk.DEMO_VIDEO.resolve()))
    options = kiosk.DemoOptions(
        source=source,
        port=port,
        catalog=(catalog or kiosk.DEMO_CATALOG).resolve(),
        model=(model_dir or kiosk.DEMO_MODEL).resolve(),
        work_dir=(work_dir or Path("demo-output")).resolve(),
        bundle=bundle.resolve() if bundle else None,
        settings=list(settings),
    )
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    runner, recorder = kiosk.start_kiosk(options, out, click.echo, show_logs=not headless)
    try:
        click.echo(f"kiosk display: http://127.0.0.1:{port}/   (Ctrl-C stops everything)")
        click.echo(f"component logs: {kiosk.log_files(options.work_dir)}/<component>/logs/")

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
