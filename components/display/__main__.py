"""`python -u -m components.display`: the component's process under the nucleus."""

import sys

from components.common.component_main import run_component
from components.display.component import DisplayComponent
from components.display.settings import COMPONENT, DisplaySettings

sys.exit(run_component(COMPONENT, DisplaySettings, DisplayComponent))
