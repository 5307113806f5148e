"""What every `visual-search` subcommand shares: one-line expected errors, list options."""

from __future__ import annotations

import functools
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
        except OSError as exc:  # the file system said no: an unwritable --out, a full disk, a missing folder
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"error: {where}{exc.strerror or exc}", err=True)
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


DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "demo-featurizer"


def _assembled(ctx, param, value):
    """The default model is assembled from its committed head on first use (see training/assemble.py)."""
    from cloud_sync.training.recipe import RECIPE, is_assembled

    if value is not None and (Path(value) / RECIPE).is_file() and not is_assembled(Path(value)):
        from cloud_sync.training.assemble import ensure_assembled  # imports MXNet: only when needed

        ensure_assembled(Path(value), echo=lambda line: click.echo(line, err=True))
    return value


model_option = click.option(
    "--model",
    "model_dir",
    type=click.Path(path_type=Path),
    default=DEFAULT_MODEL,
    callback=_assembled,
    help="Featurizer directory [default: the project's models/demo-featurizer, EfficientNet-Lite0 "
    "pretrained on ImageNet with a head fine-tuned on clothing].",
)
