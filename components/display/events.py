"""Server-Sent Events fan-out: one bounded queue per connected page, a cap on connections.

A slow page never makes memory grow: when its queue is full the oldest event is dropped
(each event is a full snapshot, so only the newest one matters).
"""

from __future__ import annotations

import json
import queue
import threading
from typing import Callable, Iterator

QUEUE_SIZE = 8
HEARTBEAT_S = 15.0
RETRY_MS = 2000  # how soon EventSource reconnects after the stream drops
GONE_CHECK_S = 1.0  # how often a quiet stream checks that its page is still connected
_CLOSE = object()


class TooManyClients(Exception):
    """Every live-update slot is taken."""


class EventHub:
    def __init__(self, max_clients: int, heartbeat_s: float = HEARTBEAT_S):
        self.max_clients = max_clients
        self.heartbeat_s = heartbeat_s
        self._clients: set[queue.Queue] = set()
        self._lock = threading.Lock()
        self._closed = False

    @property
    def client_count(self) -> int:
        with self._lock:
            return len(self._clients)

    def connect(self) -> queue.Queue:
        """Register a page now (before its stream starts), so no event is missed."""
        with self._lock:
            if self._closed or len(self._clients) >= self.max_clients:
                raise TooManyClients(f"{len(self._clients)} live pages connected (limit {self.max_clients})")
            client: queue.Queue = queue.Queue(maxsize=QUEUE_SIZE)
            self._clients.add(client)
            return client

    def disconnect(self, client: queue.Queue) -> None:
        with self._lock:
            self._clients.discard(client)

    def publish(self, event: str, data: dict) -> None:
        text = format_event(event, data)
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            _put_dropping_oldest(client, text)

    def close(self) -> None:
        """End every stream (the server is stopping)."""
        with self._lock:
            self._closed = True
            clients = list(self._clients)
        for client in clients:
            _put_dropping_oldest(client, _CLOSE)

    def stream(
        self, client: queue.Queue, first: str, gone: Callable[[], bool] | None = None
    ) -> Iterator[str]:
        """The body of one /events response: `first`, then events, heartbeats while quiet.

        `gone()` says whether the page has closed its connection (the server's
        `waitress.client_disconnected`): it is asked every `GONE_CHECK_S`, so the slot of a page
        that went away is freed without waiting for the next write."""
        try:
            yield f"retry: {RETRY_MS}\n\n"
            yield first
            quiet = 0.0
            while True:
                if gone is not None and gone():
                    return
                wait = min(GONE_CHECK_S, self.heartbeat_s - quiet) if gone is not None else self.heartbeat_s
                try:
                    item = client.get(timeout=max(0.0, wait))
                except queue.Empty:
                    quiet += wait
                    if quiet >= self.heartbeat_s:
                        quiet = 0.0
                        yield ": heartbeat\n\n"  # keeps proxies from closing a quiet stream
                    continue
                quiet = 0.0
                if item is _CLOSE:
                    return
                yield item
        finally:
            self.disconnect(client)


def format_event(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _put_dropping_oldest(client: queue.Queue, item) -> None:
    while True:
        try:
            client.put_nowait(item)
            return
        except queue.Full:
            try:
                client.get_nowait()
            except queue.Empty:
                pass
