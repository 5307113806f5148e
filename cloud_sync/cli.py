"""The `visual-search` command."""
from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import click

from components.common.errors import VisualSearchError


def expected_errors(command):
    """Expected failures print one line naming the file and reason, no traceback, exit 1."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except VisualSearchError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
    return wrapper


def comma_list(kind=str):
    def parse(ctx, param, value):
        if value is None:
            return None
        try:
            items = [kind(v.strip()) for v in value.split(",") if v.strip()]
        except ValueError:
            raise click.BadParameter(f"{value!r} is not a comma-separated list of {kind.__name__}") from None
        if not items:
            raise click.BadParameter("needs at least one value")
        return items
    return parse


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edge-visual-search")
def main():
    """Edge visual search: build, check and publish catalog indexes; run the kiosk."""
    os.environ.setdefault("MXNET_STORAGE_FALLBACK_LOG_VERBOSE", "0")


@main.command("export-featurizer")
@click.option("--arch", required=True, help="Gluon model-zoo network, e.g. mobilenet0.5, resnet18_v1.")
@click.option("--pretrained", is_flag=True, help="Download ImageNet weights (needs internet or $MXNET_HOME/models).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Featurizer directory to write.")
@click.option("--image-size", default=224, show_default=True, type=click.IntRange(32, 1024), help="Square input size.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for initialised weights.")
@expected_errors
def export_featurizer(arch, pretrained, out, image_size, seed):
    """Cut a model-zoo network before its classifier and write a featurizer directory."""
    import mxnet as mx

    from components.featurizer.export import export_zoo_featurizer
    from components.featurizer.model import fingerprint

    mx.random.seed(seed)
    spec = export_zoo_featurizer(arch, out, pretrained=pretrained, image_size=image_size)
    click.echo(f"wrote {out}: {arch}, {spec.dim}-d output {spec.output_layer}, "
               f"input {image_size}x{image_size}, fingerprint {fingerprint(out)[:12]}")


@main.command("build-index")
@click.argument("catalog", type=click.Path(path_type=Path))
@click.option("--model", "model_dir", required=True, type=click.Path(path_type=Path), help="Featurizer directory.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Bundle directory to write.")
@click.option("--index", default="auto", show_default=True,
              help="'auto' (chosen from size, dimension and --memory-mb) or a faiss factory string such as HNSW32.")
@click.option("--search-params", default=None, help="faiss search parameters, e.g. efSearch=128 (default: chosen with the index).")
@click.option("--metric", type=click.Choice(["cosine", "l2"]), default="cosine", show_default=True)
@click.option("--memory-mb", default=512, show_default=True, type=click.IntRange(1), help="Memory budget of the index on the device.")
@click.option("--skip-bad-rows", is_flag=True, help="Build without bad rows instead of failing (they are still reported).")
@click.option("--index-version", type=click.IntRange(1), default=None, help="Version number (default: UTC time YYYYMMDDHHMMSS).")
@expected_errors
def build_index(catalog, model_dir, out, index, search_params, metric, memory_mb, skip_bad_rows, index_version):
    """Featurize a catalog and write a versioned index bundle."""
    from cloud_sync.build_index import build_bundle

    def report(problems):
        for problem in problems:
            click.echo(f"bad row: {problem}", err=True)

    try:
        result = build_bundle(catalog, model_dir, out, index=index, search_params=search_params,
                              metric=metric, skip_bad_rows=skip_bad_rows,
                              memory_budget=memory_mb * 1024 * 1024, index_version=index_version,
                              on_problems=report)
    except ValueError as exc:  # faiss factory or memory budget
        raise click.UsageError(str(exc)) from None
    m = result.manifest
    click.echo(f"wrote {out}: {m['item_count']} items, index {m['index']['factory']} "
               f"({m['index']['search_params'] or 'exact'}), metric {m['metric']}, "
               f"version {m['index_version']}"
               + (f", skipped {len(result.problems)} bad row(s)" if result.problems else ""))


@main.group()
def bench():
    """Speed figures (run outside the tests; machines are shared and noisy)."""


@bench.command("featurizer")
@click.option("--model", "model_dir", required=True, type=click.Path(path_type=Path))
@click.option("--seconds", default=5.0, show_default=True, type=float, help="Time spent per batch size.")
@expected_errors
def bench_featurizer(model_dir, seconds):
    """Images per second at batch 1 and batch 8 (preprocessing included)."""
    from cloud_sync.bench import bench_featurizer as run

    for line in run(model_dir, seconds):
        click.echo(line)


@bench.command("search")
@click.option("--bundle", required=True, type=click.Path(path_type=Path))
@click.option("--queries", default=2000, show_default=True, type=click.IntRange(10))
@click.option("--k", default=5, show_default=True, type=click.IntRange(1))
@expected_errors
def bench_search(bundle, queries, k):
    """Query latency percentiles of a bundle's index (metadata join included)."""
    from cloud_sync.bench import bench_search as run

    for line in run(bundle, queries, k):
        click.echo(line)


@bench.command("kiosk")
@click.option("--seconds", default=60.0, show_default=True, type=click.FloatRange(10), help="How long to run.")
@click.option("--video", type=click.Path(exists=True, path_type=Path), default=None,
              help="Video to play as the camera (default: the demo video).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@expected_errors
def bench_kiosk(seconds, video, port):
    """Frame-to-match latency (capture to match published) and frames searched per second."""
    import threading

    from cloud_sync import demo as kiosk

    options = kiosk.DemoOptions(source=str((video or kiosk.DEMO_VIDEO).resolve()), port=port,
                                work_dir=Path("demo-output").resolve())
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
    click.echo(f"{figures['searches']} camera searches in {seconds:.0f} s: {figures['searches_per_s']:.2f} "
               f"frames searched/s; capture to match published: median {figures['median_ms']:.1f} ms, "
               f"p95 {figures['p95_ms']:.1f} ms")

@bench.command("sync")
@click.option("--catalog", type=click.Path(exists=True, path_type=Path), default=Path("demo/catalog"),
              show_default=True, help="Catalog both index versions are built from.")
@click.option("--model", "model_dir", type=click.Path(exists=True, path_type=Path),
              default=Path("models/demo-featurizer"), show_default=True)
@expected_errors
def bench_sync(catalog, model_dir):
    """Publish two index versions to a local S3 (moto on 127.0.0.1) and time the device's
    download, verification and swap while searches run without pause."""
    from cloud_sync.bench_sync import bench_sync as run

    for line in run(catalog, model_dir):
        click.echo(line)


def _register_optional_commands():
    from cloud_sync.components_cli import build_components, publish_components
    from cloud_sync.evaluate_cli import evaluate
    from cloud_sync.fine_tune_cli import fine_tune
    from cloud_sync.index_cli import list_indexes, publish_index, rollback_index
    from cloud_sync.telemetry_cli import telemetry_report

    main.add_command(build_components)
    main.add_command(publish_components)
    main.add_command(evaluate)
    main.add_command(fine_tune)
    main.add_command(publish_index)
    main.add_command(list_indexes)
    main.add_command(rollback_index)
    main.add_command(telemetry_report)


_register_optional_commands()


@main.command()
@click.option("--video", type=click.Path(exists=True, dir_okay=True, path_type=Path), default=None,
              help="Video file or image folder to use as the camera (default: the committed demo video).")
@click.option("--camera", type=int, default=None, help="Camera index (e.g. 0) instead of a video.")
@click.option("--catalog", type=click.Path(path_type=Path), default=None, help="Catalog folder (default: demo/catalog).")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None,
              help="Featurizer directory (default: models/demo-featurizer).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535), help="Display port on 127.0.0.1.")
@click.option("--headless", is_flag=True, help="Run unattended: no log echo; stop after --duration.")
@click.option("--duration", type=click.FloatRange(1), default=None, help="Seconds to run (default: until Ctrl-C).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write every published match message here, one JSON per line.")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the demo bundle and component work dirs go (default: demo-output/).")
@expected_errors
def demo(video, camera, catalog, model_dir, port, headless, duration, out, work_dir):
    """Run the whole kiosk on this machine: nucleus stand-in, featurizer, local_search, display."""
    import signal
    import threading

    from cloud_sync import demo as kiosk

    if video is not None and camera is not None:
        raise click.UsageError("give --video or --camera, not both")
    if headless and duration is None:
        raise click.UsageError("--headless needs --duration")
    source = str(camera) if camera is not None else str((video or kiosk.DEMO_VIDEO).resolve())
    options = kiosk.DemoOptions(source=source, port=port,
                                catalog=(catalog or kiosk.DEMO_CATALOG).resolve(),
                                model=(model_dir or kiosk.DEMO_MODEL).resolve(),
                                work_dir=(work_dir or Path("demo-output")).resolve())
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    runner, recorder = kiosk.start_kiosk(options, out, click.echo, show_logs=not headless)
    try:
        click.echo(f"kiosk display: http://127.0.0.1:{port}/   (Ctrl-C stops everything)")

        def show_states():
            states = ", ".join(f"{kiosk.SHORT_NAMES.get(n, n)} {s['state'].lower()}"
                               + (f" ({s['restarts']} restarts)" if s["restarts"] else "")
                               for n, s in runner.states().items())
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
        click.echo(f"capture to match published: median {latency['median_ms']:.0f} ms, "
                   f"p95 {latency['p95_ms']:.0f} ms; {latency['searches_per_s']:.2f} searches/s")
    if Path(source) == kiosk.DEMO_VIDEO.resolve() and kiosk.DEMO_TIMELINE.is_file():
        right, held, _ = kiosk.score_held_items(records, json.loads(kiosk.DEMO_TIMELINE.read_text()))
        click.echo(f"right category at rank 1 for {right} of {held} held items ({right / max(held, 1):.0%})")
