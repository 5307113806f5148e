"""`python -u -m components.featurizer`: the component's process under the nucleus."""

import os
import sys

# MXNet 1.x computes on half the processors when this is unset (one of two cores on a kiosk);
# it must be set before mxnet is imported. A deployment can still set its own.
os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
# Idle OpenMP threads sleep: spinning ones stall MXNet (1 instead of 18 images/s at batch 1 on
# 2 cores) whenever another process (local_search, display, a catalog build) takes a core.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from pathlib import Path

from components.common.component_main import run_component, work_log_file
from components.featurizer.component import FeaturizerComponent
from components.featurizer.settings import COMPONENT, GREENGRASS_NAME, FeaturizerSettings

ARTIFACT_ROOT = Path(__file__).resolve().parents[2]  # what the artifact zip unpacks to


def build(ipc, settings: FeaturizerSettings) -> FeaturizerComponent:
    from components.featurizer.model import Featurizer

    model_dir = Path(settings.model_dir)
    if not model_dir.is_absolute() and not model_dir.exists():  # the nucleus runs us in the work dir
        model_dir = ARTIFACT_ROOT / model_dir
    return FeaturizerComponent(ipc, settings, Featurizer(model_dir))


sys.exit(run_component(COMPONENT, FeaturizerSettings, build, log_file=work_log_file(GREENGRASS_NAME)))
