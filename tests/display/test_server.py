"""The display's HTTP server as a process-level part: bounded threads, live-update slots freed
when a page goes away (issue 14, item 12). A real server on 127.0.0.1, a free port."""

from __future__ import annotations

import os
import socket
import threading
import urllib.error
import urllib.request

from components.display.server import WebServer
from tests.display.app_helpers import make_display
from tests.support.waiting import wait_until


def serve(display, **options) -> WebServer:
    server = WebServer(display.app, "127.0.0.1", 0, **options)
    server.start()
    return server


def get_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def open_events(server: WebServer) -> socket.socket:
    """A live page: the /events request sent, its first bytes read."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
    assert b"200" in sock.recv(64)
    return sock


def test_a_page_that_goes_away_frees_its_live_update_slot_without_waiting_for_a_write(tmp_path, demo_bundle):
    display = make_display(tmp_path, demo_bundle, max_event_clients=1)
    # nothing is written to the stream: only a closed connection frees it
    display.state.hub.heartbeat_s = 3600
    server = serve(display)
    try:
        page = open_events(server)
        wait_until(lambda: display.state.hub.client_count == 1, 10, "the page to be connected")
        assert get_status(f"{server.url}/events") == 503  # the one slot is taken
        page.close()  # the kiosk browser was closed
        wait_until(lambda: display.state.hub.client_count == 0, 10, "the slot of the page that went away")
        again = open_events(server)
        again.close()
    finally:
        server.stop()


def test_idle_connections_take_no_thread_each_and_the_page_is_still_served(tmp_path, demo_bundle):
    """1,000 half-open connections took 1,011 threads with werkzeug's development server."""
    server = serve(make_display(tmp_path, demo_bundle))
    before = threading.active_count()
    idle = []
    try:
        for _ in range(150):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # headers never finished
            idle.append(sock)
        assert get_status(f"{server.url}/healthz") == 200
        assert threading.active_count() - before <= 2, f"{threading.active_count() - before} threads more"
    finally:
        for sock in idle:
            sock.close()
        server.stop()


def test_the_worker_threads_are_bounded_by_the_settings(tmp_path, demo_bundle):
    display = make_display(tmp_path, demo_bundle, max_event_clients=3, http_threads=2)
    server = serve(display, threads=display.search.settings.http_threads + 3)
    try:
        pages = [open_events(server) for _ in range(3)]
        assert get_status(f"{server.url}/healthz") == 200  # the streams do not starve requests
        assert server.threads == 5
        for page in pages:
            page.close()
    finally:
        server.stop()


def test_stop_when_another_wake_up_runs_the_close_before_its_own(tmp_path, demo_bundle, monkeypatch):
    """A stream ending wakes the event loop too: that wake-up can run the queued close (which
    closes the wake-up pipe) before stop() writes its own. The display restart test hit this."""
    server = serve(make_display(tmp_path, demo_bundle))
    trigger = server._server.trigger
    own_pull = trigger._physical_pull

    def pull_after_another():
        os.write(trigger.trigger, b"x")  # a worker's wake-up, already pending
        wait_until(lambda: trigger._closed, 10, "the close, run by that other wake-up")
        own_pull()

    monkeypatch.setattr(trigger, "_physical_pull", pull_after_another)
    server.stop()
    assert not server._thread.is_alive()
