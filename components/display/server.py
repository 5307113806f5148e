"""The display's HTTP server: waitress (a production WSGI server), run on a background thread.

Why not werkzeug's development server: it starts one thread per connection, so idle or
half-open connections (a slow or hostile client) cost a thread each without limit. Waitress
reads requests on one event loop and runs the app on a fixed pool of `threads`; connections
waiting for their request cost no thread, at most `CONNECTION_LIMIT` are held open, and one
idle for `IDLE_TIMEOUT_S` is closed. A live-update stream (/events) holds a pool thread for
as long as the page is open, so the pool is sized for those plus the page requests (the
component passes http_threads + max_event_clients). Waitress also tells a stream when its
client has gone (`waitress.client_disconnected`), so the stream's slot is freed at once.
"""

from __future__ import annotations

import logging
import threading

from waitress.server import create_server

log = logging.getLogger("display")
CONNECTION_LIMIT = 256  # connections held open at once; more wait in the listen backlog
IDLE_TIMEOUT_S = 30  # a connection with no request in progress is closed after this


class WebServer:
    def __init__(self, app, host: str, port: int, threads: int = 8):
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "task queue depth" at every burst
        self.threads = threads
        self._server = create_server(
            app,
            host=host,
            port=port,
            threads=threads,
            connection_limit=CONNECTION_LIMIT,
            channel_timeout=IDLE_TIMEOUT_S,
            cleanup_interval=max(1, IDLE_TIMEOUT_S // 3),
            channel_request_lookahead=1,  # keep reading while a stream runs: a closed connection is noticed
            asyncore_use_poll=True,  # poll(), not select(): no limit of 1024 descriptors
            clear_untrusted_proxy_headers=True,
            ident="visual-search display",
        )
        self._thread = threading.Thread(target=self._server.run, name="display-http", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self._server.effective_host}:{self.port}"

    @property
    def port(self) -> int:
        return int(self._server.effective_port)

    def start(self) -> None:
        self._thread.start()
        log.info("serving the kiosk page on %s/", self.url)

    def stop(self) -> None:
        """Close the listening socket and every connection (on the event loop's own thread),
        then the worker pool."""
        server = self._server

        def close_all():
            for dispatcher in list(server._map.values()):
                if dispatcher is not server.trigger:
                    dispatcher.close()
            server.trigger.close()  # the map is empty: the event loop returns

        if self._thread.is_alive():
            try:
                server.trigger.pull_trigger(close_all)
            except OSError:
                # A worker's own wake-up (a stream ending) can run close_all between the thunk
                # being queued and this write: the pipe is closed by then, as asked.
                if not server.trigger._closed:
                    raise
            self._thread.join(timeout=5)
        else:
            close_all()
        server.task_dispatcher.shutdown(timeout=5)
