"""A real threaded WSGI server (werkzeug) for the display app, run on a background thread."""
from __future__ import annotations

import logging
import threading

from werkzeug.serving import make_server

log = logging.getLogger("display")


class WebServer:
    def __init__(self, app, host: str, port: int):
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a log line per request and thumbnail
        self._server = make_server(host, port, app, threaded=True)
        self._server.daemon_threads = True  # open live-update streams never hold up a stop
        self._thread = threading.Thread(target=self._server.serve_forever, name="display-http", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def port(self) -> int:
        return self._server.server_port

    def start(self) -> None:
        self._thread.start()
        log.info("serving the kiosk page on %s/", self.url)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
