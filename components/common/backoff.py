"""Waits between retries: exponential, capped, with jitter. One helper for every retry loop.

    backoff = Backoff(base_s=0.5, cap_s=30.0)
    while not stopped:
        try:
            work()
        except SomeFailure:
            stop_event.wait(backoff.next_delay())   # 0.5, 1, 2, 4 ... 30 s (each times the jitter)
            continue
        backoff.reset()                             # a success starts the sequence again

After `n` failures in a row the wait is `min(cap_s, base_s * factor**(n-1))`, multiplied by a
jitter drawn from [1 - jitter, 1]: with the default 0.5, a fleet that lost its network at the
same moment does not come back at the same moment. `jitter=0` gives exact waits (the camera,
where nothing is shared). `rand` and `clock` are injectable, so tests need no sleeping.
Used by camera reconnects (featurizer), index sync from S3 and telemetry sending (local_search).
"""

from __future__ import annotations

import random
import time
from typing import Callable

_MAX_EXPONENT = 64  # far past any cap; keeps factor**n finite


class Backoff:
    def __init__(
        self,
        base_s: float = 1.0,
        cap_s: float = 60.0,
        *,
        factor: float = 2.0,
        jitter: float = 0.5,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ):
        if base_s <= 0 or cap_s < base_s:
            raise ValueError(f"need 0 < base_s <= cap_s, not base_s={base_s}, cap_s={cap_s}")
        if factor < 1 or not 0 <= jitter <= 1:
            raise ValueError(f"need factor >= 1 and 0 <= jitter <= 1, not factor={factor}, jitter={jitter}")
        self.base_s, self.cap_s, self.factor, self.jitter = base_s, cap_s, factor, jitter
        self._rand, self._clock = rand, clock
        self.failures = 0  # in a row, since the last reset()
        self.retry_at: float | None = None  # clock() time of the next try, while failing

    def delay(self, failures: int, rand: Callable[[], float] | None = None) -> float:
        """The wait after `failures` failures in a row (1 or more); changes nothing."""
        exponent = min(max(failures, 1) - 1, _MAX_EXPONENT)
        ceiling = min(self.cap_s, self.base_s * self.factor**exponent)
        return ceiling * (1.0 - self.jitter + self.jitter * (rand or self._rand)())

    def next_delay(self) -> float:
        """Count one more failure and return how long to wait before the next try."""
        self.failures += 1
        wait = self.delay(self.failures)
        self.retry_at = self._clock() + wait
        return wait

    def remaining(self) -> float | None:
        """Seconds until the next try is due (0 when overdue); None when not failing."""
        if self.retry_at is None:
            return None
        return max(0.0, self.retry_at - self._clock())

    def reset(self) -> None:
        """A success: the next failure waits `base_s` again."""
        self.failures = 0
        self.retry_at = None

    def __repr__(self) -> str:
        return (
            f"Backoff(base_s={self.base_s:g}, cap_s={self.cap_s:g}, factor={self.factor:g}, "
            f"jitter={self.jitter:g}, failures={self.failures})"
        )
