"""`python -u -m components.local_search`: the component's process under the nucleus."""

import sys

from components.common.component_main import run_component, work_log_file
from components.local_search.component import LocalSearchComponent
from components.local_search.settings import COMPONENT, GREENGRASS_NAME, LocalSearchSettings


def build(ipc, settings: LocalSearchSettings) -> LocalSearchComponent:
    """Serve at once what is on disk: the last bundle synced from S3, else the bundle_dir
    seed, else (with index_bucket set) nothing until the first sync."""
    import logging
    import os

    from components.common.errors import BundleError
    from components.common.settings import SettingsError
    from components.local_search.bundle_store import BundleStore, resolve_index_dir, work_dir
    from components.local_search.search import IndexBundle
    from components.local_search.telemetry import Telemetry

    if settings.problems():
        raise SettingsError("; ".join(settings.problems()))
    store = BundleStore(resolve_index_dir(settings.index_dir)) if settings.index_bucket else None
    bundle, source = (store.open_current(), "s3") if store else (None, "")
    if bundle is None and settings.bundle_dir:
        try:
            bundle, source = IndexBundle.open(settings.bundle_dir), "bundle_dir"
        except BundleError as exc:
            if store is None:
                raise
            logging.getLogger(COMPONENT).error("%s; waiting for the first index from S3 instead", exc)
    component = LocalSearchComponent(ipc, settings, bundle, index_source=source, store=store)

    def index_info():  # the bundle served now (read once: it may be swapped meanwhile)
        served = component.bundle
        return (served.version, served.model_fingerprint) if served is not None else (None, "")

    telemetry = Telemetry(
        ipc,
        thing_name=os.environ.get("AWS_IOT_THING_NAME", "unknown-thing"),
        db_path=work_dir() / "telemetry.sqlite",
        interval_s=settings.telemetry_interval_s,
        queue_max=settings.telemetry_queue_max,
        index_info=index_info,
    )
    component.query_listeners.append(telemetry.record)
    component.background.append(telemetry)
    return component


if __name__ == "__main__":
    sys.exit(run_component(COMPONENT, LocalSearchSettings, build, log_file=work_log_file(GREENGRASS_NAME)))
