"""Request/reply over pub/sub, with a timeout: publish a query, collect its match message(s).

A photo is answered by one match message; a clip by `parts` of them (one per distinct
frame). The waiter is registered before the query is published, so a fast answer is never
missed; answers that come after the timeout are dropped.

At most `max_pending` queries are out at once (the featurizer keeps as many upload jobs and
drops the oldest beyond them): a search beyond that waits for a slot, up to its timeout,
and only then is refused as busy (503).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from components.common import messages
from components.common.errors import VisualSearchError
from components.common.messages import MatchesMessage, QueryMessage


class SearchBusy(VisualSearchError):
    """Too many upload searches are waiting at once."""


class QueryNotSent(VisualSearchError):
    """The nucleus did not take the query (IPC down, or no publish permission)."""


@dataclass
class SearchOutcome:
    query_id: str
    answers: list[MatchesMessage] = field(default_factory=list)  # by part
    parts: int = 0  # 0 until the first answer says
    timed_out: bool = False
    waited_s: float = 0.0

    @property
    def complete(self) -> bool:
        return self.parts > 0 and len(self.answers) >= self.parts


class _Waiter:
    def __init__(self, query_id: str):
        self.outcome = SearchOutcome(query_id)
        self.parts_seen: set[int] = set()
        self.done = threading.Event()


class UploadSearches:
    def __init__(self, publish: Callable[[str, dict], None], timeout_s: float, max_pending: int = 8):
        self._publish = publish
        self.timeout_s = timeout_s
        self.max_pending = max_pending
        self._waiters: dict[str, _Waiter] = {}
        self._lock = threading.Lock()
        self._slot_free = threading.Condition(self._lock)
        self.waiting_for_slot = 0

    def search(self, query: QueryMessage) -> SearchOutcome:
        """Publish `query` (once a slot is free) and wait for all its answers or the timeout
        (answers so far are kept)."""
        waiter = _Waiter(query.query_id)
        with self._lock:
            self.waiting_for_slot += 1
            try:
                free = self._slot_free.wait_for(lambda: len(self._waiters) < self.max_pending, self.timeout_s)
            finally:
                self.waiting_for_slot -= 1
            if not free:
                raise SearchBusy(f"{len(self._waiters)} searches are already waiting; try again in a moment")
            self._waiters[query.query_id] = waiter
        start = time.monotonic()
        try:
            try:
                self._publish(messages.QUERIES, query.to_json())
            except Exception as exc:  # any IPC failure: the page says so, the display goes on
                raise QueryNotSent(
                    f"could not send the query to the featurizer over IPC " f"({type(exc).__name__}: {exc})"
                ) from None
            finished = waiter.done.wait(self.timeout_s)
        finally:
            with self._lock:
                self._waiters.pop(query.query_id, None)
                self._slot_free.notify()
        with self._lock:
            outcome = waiter.outcome
            outcome.answers = sorted(outcome.answers, key=lambda m: m.part)
            outcome.timed_out = not finished
            outcome.waited_s = round(time.monotonic() - start, 3)
        return outcome

    def deliver(self, message: MatchesMessage) -> bool:
        """A matches message from IPC; True if a waiting search took it."""
        with self._lock:
            waiter = self._waiters.get(message.query_id)
            if waiter is None:
                return False
            if message.part in waiter.parts_seen:
                return True
            waiter.parts_seen.add(message.part)
            waiter.outcome.answers.append(message)
            waiter.outcome.parts = message.parts
            if waiter.outcome.complete:
                waiter.done.set()
        return True

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._waiters)
