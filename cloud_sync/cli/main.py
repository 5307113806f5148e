"""The `visual-search` command: the group, and every subcommand added to it."""

from __future__ import annotations

import os

import click

from cloud_sync.cli.components_commands import build_components, publish_components
from cloud_sync.cli.config_commands import validate_config
from cloud_sync.cli.evaluate_command import evaluate
from cloud_sync.cli.index_commands import list_indexes, prune_indexes, publish_index, rollback_index
from cloud_sync.cli.indexing_commands import build_index
from cloud_sync.cli.kiosk_commands import bench, demo
from cloud_sync.cli.search_command import search_image
from cloud_sync.cli.telemetry_commands import telemetry_report
from cloud_sync.cli.training_commands import (
    assemble_featurizer,
    export_featurizer,
    fine_tune,
    import_featurizer,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edge-visual-search")
def main():
    """Edge visual search: build, check and publish catalog indexes; run the kiosk."""
    os.environ.setdefault("MXNET_STORAGE_FALLBACK_LOG_VERBOSE", "0")
    # MXNet 1.x uses half the processors when this is unset (one of two cores here)
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    # idle OpenMP threads sleep: spinning ones stall MXNet 20x when another process shares the cores
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


for command in (
    import_featurizer,
    assemble_featurizer,
    export_featurizer,
    fine_tune,
    build_index,
    evaluate,
    publish_index,
    list_indexes,
    rollback_index,
    prune_indexes,
    telemetry_report,
    search_image,
    build_components,
    publish_components,
    demo,
    bench,
):
    main.add_command(command)
main.add_command(validate_config)
