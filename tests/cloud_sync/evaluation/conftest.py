import shutil

import pytest


@pytest.fixture
def copy_model():
    """A writable copy of a featurizer directory (calibration writes into it)."""

    def copy(source, target):
        shutil.copytree(source, target)
        return target

    return copy
