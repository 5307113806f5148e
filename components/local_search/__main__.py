"""`python -u -m components.local_search`: the component's process under the nucleus."""
import sys

from components.common.component_main import run_component
from components.local_search.component import COMPONENT, LocalSearchComponent, LocalSearchSettings


def build(ipc, settings: LocalSearchSettings) -> LocalSearchComponent:
    from components.common.settings import SettingsError
    from components.local_search.search import IndexBundle

    if not settings.bundle_dir:
        raise SettingsError(f"{COMPONENT}.bundle_dir: not set (the index bundle to serve)")
    return LocalSearchComponent(ipc, settings, IndexBundle.open(settings.bundle_dir))


sys.exit(run_component(COMPONENT, LocalSearchSettings, build))
