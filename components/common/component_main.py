"""The shared `main` of every component process: configuration in, clean stop on SIGTERM."""
from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Callable

from components.common.errors import VisualSearchError
from components.common.settings import parse_settings


def run_component(name: str, settings_cls, build: Callable, ipc=None) -> int:
    """Read and validate configuration, build the component, start it, run until SIGTERM.

    `build(ipc, settings)` returns an object with start() and stop(). An expected error
    (bad setting, missing model or bundle) is logged in one line and exits 1, so the
    nucleus restarts the component and marks it BROKEN after three tries.
    """
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format=f"%(asctime)s {name} %(levelname)s %(message)s")
    log = logging.getLogger(name)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    from components.common.ipc import Ipc

    ipc = ipc or Ipc()
    component = None
    try:
        settings = parse_settings(settings_cls, ipc.get_configuration(), name)
        component = build(ipc, settings)
        component.start()
        ipc.update_state("RUNNING")
        log.info("running")
        stop.wait()
        log.info("stopping")
        return 0
    except VisualSearchError as exc:
        log.error("%s", exc)
        try:
            ipc.update_state("ERRORED")
        except Exception:  # the nucleus may be gone too; the exit code still says it
            pass
        return 1
    finally:
        if component is not None:
            component.stop()
        ipc.close()
