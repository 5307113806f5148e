"""The README documents every component setting, and the recipes default to the code's defaults."""
import pytest

from components.common.settings import defaults, describe
from components.display.settings import DisplaySettings
from components.featurizer.component import FeaturizerSettings
from components.local_search.component import LocalSearchSettings
from tests.kiosk_helpers import DISPLAY, FEATURIZER, LOCAL_SEARCH, REPO, recipe

COMPONENTS = [(FEATURIZER, FeaturizerSettings), (LOCAL_SEARCH, LocalSearchSettings), (DISPLAY, DisplaySettings)]


@pytest.mark.parametrize("name,settings", COMPONENTS)
def test_every_setting_is_in_the_readme_and_the_recipe(name, settings):
    readme = (REPO / "README.md").read_text()
    for key, _, meaning in describe(settings):
        assert f"| `{key}` |" in readme, f"README lacks setting {key} of {name}"
        assert meaning, f"setting {key} of {name} has no help text"
    configuration = recipe(name)["ComponentConfiguration"]["DefaultConfiguration"]
    assert {k: v for k, v in configuration.items() if k != "accessControl"} == defaults(settings)
