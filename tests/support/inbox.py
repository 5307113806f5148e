"""Collecting what a subscription delivers, and waiting on it with one overall deadline."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable


class Inbox:
    """Everything a subscription delivered, in order of arrival.

    Pass an Inbox as the stream handler of a raw IPC client (`on_stream_event=inbox`), or use
    `Inbox.subscribe(nucleus, component, topic)` to subscribe as that component and collect the
    decoded JSON messages. `wait` looks at everything received; `next` and `drain` read on from
    where the last read stopped. Every wait has ONE deadline for the whole call: messages that
    arrive but do not match never extend it, so a message that never comes fails the test.
    """

    def __init__(self, name: str = "inbox") -> None:
        self.name = name
        self.events: list = []
        self.ipc = None
        self._read = 0
        self._cond = threading.Condition()

    @classmethod
    def subscribe(cls, nucleus, component: str, topic: str) -> "Inbox":
        """Subscribe to `topic` as `component` (its recipe's grants apply) over real IPC."""
        from components.common.ipc import Ipc

        inbox = cls(topic)
        inbox.ipc = Ipc(nucleus.connect(component))
        inbox.ipc.subscribe_json(topic, inbox)
        return inbox

    def __call__(self, event: Any) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def wait(self, count: int = 1, timeout: float = 10.0) -> list:
        """All events received, once there are at least `count`."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.events) >= count, timeout):
                raise AssertionError(f"{self.name}: {len(self.events)} of {count} events after {timeout:g} s")
            return list(self.events)

    def next(self, timeout: float = 10.0, where: Callable[[Any], bool] = lambda m: True) -> Any:
        """The next unread event for which `where` is true; the unread ones before it are read too."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                while self._read < len(self.events):
                    event = self.events[self._read]
                    self._read += 1
                    if where(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    recent = self.events[-3:]
                    raise AssertionError(
                        f"{self.name}: nothing that matches within {timeout:g} s "
                        f"({len(self.events)} received; the last: {recent!r})"
                    )
                self._cond.wait(left)

    def drain(self, quiet_s: float = 1.0, timeout: float = 60.0) -> list:
        """The unread events, once none has arrived for `quiet_s` (or `timeout` passed in all)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while time.monotonic() < deadline:
                seen = len(self.events)
                self._cond.wait(min(quiet_s, max(0.0, deadline - time.monotonic())))
                if len(self.events) == seen:
                    break
            found, self._read = self.events[self._read :], len(self.events)
            return found

    def close(self) -> None:
        if self.ipc is not None:
            self.ipc.close()
