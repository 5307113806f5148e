"""Waiting for something another thread or process changes, with one overall deadline."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T], timeout: float = 30.0, what: str | None = None, every: float = 0.05
) -> T:
    """Call `condition` until it returns something truthy and return that.

    Fails the test (AssertionError) once `timeout` seconds have passed in all, naming `what`
    (by default, where the condition was written) and the condition's last value.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for {what or _where(condition)}"
                f" (last value: {value!r})"
            )
        time.sleep(every)


def _where(condition: Callable) -> str:
    code = getattr(condition, "__code__", None)
    if code is None:
        return repr(condition)
    return f"the condition at {code.co_filename.rsplit('/', 1)[-1]}:{code.co_firstlineno}"
