"""`python -u -m components.display`: the component's process under the nucleus."""

import sys

from components.common.component_main import run_component, work_log_file
from components.display.component import DisplayComponent
from components.display.settings import COMPONENT, GREENGRASS_NAME, DisplaySettings

sys.exit(run_component(COMPONENT, DisplaySettings, DisplayComponent, log_file=work_log_file(GREENGRASS_NAME)))
