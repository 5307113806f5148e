"""The shared `main` of every component process: settings in, updates checked and applied, clean stop.

One settings lifecycle for all three components (`run_component(name, settings_cls, build)`):

1. Start: the configuration is read over IPC and checked (`check_settings`: unknown keys, types,
   bounds, the settings together; retired keys are logged and ignored). A problem is logged in
   one line and the process exits 1, so the nucleus restarts it and marks it BROKEN after three
   tries. Otherwise `build(ipc, settings)` makes the component, it starts, and RUNNING is reported.
2. A deployment that would change the configuration first asks the component
   (SubscribeToValidateConfigurationUpdates): the proposed configuration is checked the same
   way and answered ACCEPTED, or REJECTED with every problem (SendConfigurationValidityReport).
   A rejected deployment changes nothing on the device; the component runs on as it was.
3. Once the nucleus has applied a configuration (SubscribeToConfigurationUpdate), it is read
   again. If only settings marked `live` changed, the running component takes them
   (`component.apply_settings(new)`). Any other change rebuilds the component in this process:
   the old one is stopped (its subscriptions closed), a new one is built and started. This
   process does not exit for it: on Greengrass, exit 0 means FINISHED (never restarted) and a
   non-zero exit counts as an error (three make it BROKEN). If the new settings cannot be used
   after all (a model or bundle missing), the component is rebuilt with the previous ones.
   A configuration that arrives without validation (a local change) and has problems is
   logged and not applied.
4. SIGTERM or SIGINT: the component is stopped and the process exits 0.
5. The nucleus goes away (it stopped or crashed, closing the IPC connection): the component is
   stopped and the process exits 1, rather than outlive it holding ports and devices; a
   nucleus that comes back starts its components again.

Logs go to stdout (the nucleus keeps them in /greengrass/v2/logs/<ComponentName>.log) and, given
`log_file` (`work_log_file(name)`: `<work dir>/logs/<ComponentName>.log`), to a file of their own
that rotates at LOG_FILE_BYTES, keeping LOG_FILE_BACKUPS old ones: on a device it survives a
nucleus log cleanup, and under `visual-search demo` it is where each component's log is kept.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Callable

from components.common.errors import VisualSearchError
from components.common.settings import SettingsError, changed_settings, check_settings, needs_rebuild

POLL_S = 0.5  # how soon a stop request is seen while waiting for configuration updates
LOG_FILE_BYTES = 5 * 1024 * 1024
LOG_FILE_BACKUPS = 3  # at most 20 MiB of logs per component
WORK_DIR_ENV = "VISUAL_SEARCH_WORK_DIR"  # each recipe sets it to {work:path}


def work_log_file(greengrass_name: str) -> Path:
    """`<work dir>/logs/<ComponentName>.log`, the work dir being $VISUAL_SEARCH_WORK_DIR or the
    current directory (where the nucleus starts a component)."""
    return Path(os.environ.get(WORK_DIR_ENV) or os.getcwd()) / "logs" / f"{greengrass_name}.log"


def run_component(
    name: str,
    settings_cls,
    build: Callable,
    ipc=None,
    stop: threading.Event | None = None,
    log_file: Path | None = None,
) -> int:
    """Run one component until SIGTERM (or until `stop` is set, when given); return the exit code.

    `build(ipc, settings)` returns an object with start() and stop(), and apply_settings(settings)
    for the settings marked live. An expected error (bad setting, missing model or bundle) is
    logged in one line and gives 1.
    """
    log_format = f"%(asctime)s {name} %(levelname)s %(message)s"
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format=log_format)
    log = logging.getLogger(name)
    file_handler = _open_log_file(log_file, log_format, log) if log_file else None
    if stop is None:
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    from components.common.ipc import Ipc

    ipc = ipc or Ipc()
    host = ComponentHost(name, settings_cls, build, ipc)
    try:
        host.start()
        ipc.update_state("RUNNING")
        log.info("running")
        lost = getattr(ipc, "lost", None)
        host.serve(stop, lost)
        if lost is not None and lost.is_set() and not stop.is_set():
            log.error("the nucleus closed the IPC connection (%s); exiting", getattr(ipc, "lost_reason", ""))
            return 1
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
        host.stop()
        ipc.close()
        if file_handler is not None:
            logging.getLogger().removeHandler(file_handler)
            file_handler.close()


def _open_log_file(path: Path, log_format: str, log: logging.Logger):
    """Add a rotating file of the logs to the root logger; a disk that refuses it costs the file,
    never the component."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=LOG_FILE_BYTES, backupCount=LOG_FILE_BACKUPS, encoding="utf-8"
        )
    except OSError as exc:
        log.warning("logging to stdout only: cannot write %s (%s)", path, exc.strerror or exc)
        return None
    handler.setFormatter(logging.Formatter(log_format))
    logging.getLogger().addHandler(handler)
    return handler


class ComponentHost:
    """Owns the running component and its settings; applies configuration updates."""

    def __init__(self, name: str, settings_cls, build: Callable, ipc):
        self.name, self.settings_cls, self.build, self.ipc = name, settings_cls, build, ipc
        self.log = logging.getLogger(name)
        self.settings = None
        self.component = None
        self._scope = None
        self._updated = threading.Event()

    def start(self) -> None:
        self._subscribe()  # first, so that no update between reading and subscribing is missed
        self._start(self._read())

    def serve(self, stop: threading.Event, lost: threading.Event | None = None) -> None:
        """Apply configuration updates (on this thread) until `stop` (or `lost`) is set."""
        while not stop.is_set() and not (lost is not None and lost.is_set()):
            if self._updated.wait(POLL_S) and not stop.is_set():
                self._updated.clear()
                self.reload()

    def stop(self) -> None:
        if self.component is not None:
            self.component.stop()
            self.component = None
        if self._scope is not None:
            self._scope.close()
            self._scope = None

    # ---- configuration updates ---------------------------------------------------------------
    def validate(self, configuration: dict) -> str | None:
        """A deployment's proposed configuration: None if acceptable, else every problem."""
        checked = check_settings(self.settings_cls, configuration, self.name)
        if checked.retired:
            self.log.warning(
                "proposed configuration: ignoring retired setting(s): %s", "; ".join(checked.retired)
            )
        if checked.problems:
            self.log.warning("refused a configuration update: %s", "; ".join(checked.problems))
            return "; ".join(checked.problems)
        self.log.info("accepted a configuration update")
        return None

    def reload(self) -> None:
        """Read the configuration again and apply what changed: live, or by rebuilding."""
        try:
            new = self._read()
        except Exception as exc:  # problems (SettingsError), or the nucleus did not answer
            reason = str(exc) if isinstance(exc, SettingsError) else f"{type(exc).__name__}: {exc}"
            self.log.error(
                "configuration update not applied, running on with the previous settings: %s", reason
            )
            return
        changed = changed_settings(self.settings, new)
        if not changed:
            return
        summary = ", ".join(
            f"{key} {getattr(self.settings, key)!r} -> {getattr(new, key)!r}" for key in changed
        )
        rebuild = needs_rebuild(self.settings, new)
        if not rebuild and hasattr(self.component, "apply_settings"):
            self.component.apply_settings(new)
            self.settings = new
            self.log.info("applied live: %s", summary)
            return
        self.log.info("rebuilding the component for %s: %s", ", ".join(rebuild or changed), summary)
        previous = self.settings
        self.stop()
        try:
            self._start(new)
        except VisualSearchError as exc:
            self.log.error("%s; starting again with the previous settings", exc)
            self._start(previous)  # an error here ends the process: the nucleus restarts it

    # ---- helpers -------------------------------------------------------------------------------
    def _subscribe(self) -> None:
        try:
            self.ipc.on_validate_configuration(self.validate)
        except Exception as exc:  # a nucleus without it: updates are still checked when they arrive
            self.log.warning(
                "configuration updates will not be validated before they are applied (%s: %s)",
                type(exc).__name__,
                exc,
            )
        self.ipc.on_configuration_update(lambda key_path: self._updated.set())

    def _read(self):
        checked = check_settings(self.settings_cls, self.ipc.get_configuration(), self.name)
        if checked.retired:
            self.log.warning("ignoring retired setting(s): %s", "; ".join(checked.retired))
        if checked.problems:
            raise SettingsError("; ".join(checked.problems))
        return checked.settings

    def _start(self, settings) -> None:
        scope, component = self.ipc.scoped(), None
        try:
            component = self.build(scope, settings)
            component.start()
        except BaseException:
            if component is not None:
                self._stop_quietly(component)
            scope.close()
            raise
        self.settings, self.component, self._scope = settings, component, scope

    def _stop_quietly(self, component) -> None:
        try:
            component.stop()
        except Exception as exc:  # a half-started component: the error that stopped it matters more
            self.log.warning("stopping a component that failed to start: %s: %s", type(exc).__name__, exc)
