"""display component: wires IPC (matches, status) to the kiosk state, and serves the pages."""

from __future__ import annotations

import logging
import threading

from components.common import messages
from components.common.errors import VisualSearchError
from components.common.messages import MatchesMessage, StatusMessage
from components.display.app import build_display_app
from components.display.server import WebServer
from components.display.settings import COMPONENT, DisplaySettings

log = logging.getLogger("display")
TICK_S = 1.0


class DisplayComponent:
    def __init__(self, ipc, settings: DisplaySettings):
        self.ipc = ipc
        self.settings = settings
        self.web = build_display_app(settings, ipc.publish_json_wait)
        self.state, self.searches, self.hub = self.web.state, self.web.searches, self.web.state.hub
        try:
            self.server = WebServer(
                self.web.app,
                settings.host,
                settings.port,
                threads=settings.http_threads + settings.max_event_clients,
            )
        except OSError as exc:
            raise VisualSearchError(
                f"{COMPONENT}: cannot serve on {settings.host}:{settings.port} "
                f"({exc.strerror or exc}); change host or port"
            ) from None
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="display-ticker", daemon=True)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> None:
        self.ipc.subscribe_json(messages.MATCHES, self.handle_match)
        for name in self.settings.watched():
            self.ipc.subscribe_json(messages.status_topic(name), self.handle_status)
        self.server.start()
        self._ticker.start()
        self.publish_status()

    def stop(self) -> None:
        self._stop.set()
        self.hub.close()
        self.server.stop()

    def apply_settings(self, settings: DisplaySettings) -> None:
        """Take new `live` settings (see settings.py) while serving: the kiosk state, the staff
        search and the ticker read them from here on; a search already waiting keeps its timeout."""
        self.settings = self.state.settings = self.web.search.settings = settings
        self.searches.timeout_s = settings.upload_timeout_s

    def handle_match(self, data: dict) -> None:
        """Answers to uploads go to their waiting search; camera results to the kiosk."""
        message = MatchesMessage.from_json(data)  # MessageError: logged and dropped by Ipc
        self.web.metrics.observe(message)
        if self.searches.deliver(message):
            return
        if message.source == "upload":
            log.info("late answer to upload %s dropped (its search had timed out)", message.query_id)
            return
        self.state.handle_match(message)

    def handle_status(self, data: dict) -> None:
        self.state.handle_status(StatusMessage.from_json(data))

    def publish_status(self, state: str = "running", detail: str = "") -> None:
        snapshot = self.state.snapshot()
        self.ipc.publish_json(
            messages.status_topic(COMPONENT),
            StatusMessage.of(
                COMPONENT,
                state,
                detail,
                url=self.url,
                live_pages=self.hub.client_count,
                index_version=snapshot["index_version"],
                warnings=snapshot["warnings"],
            ).to_json(),
        )

    def _tick(self) -> None:
        since_status = 0.0
        while not self._stop.wait(TICK_S):
            self.state.refresh()
            since_status += TICK_S
            if since_status >= self.settings.status_interval_s:
                since_status = 0.0
                self.publish_status()
