"""The one retry backoff: exponential, capped, jittered, reset on success; clock and random injected."""

from __future__ import annotations

import pytest

from components.common.backoff import Backoff


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_without_jitter_it_doubles_up_to_the_cap_and_starts_over_after_reset():
    backoff = Backoff(0.5, 3.0, jitter=0)
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert backoff.failures == 6
    backoff.reset()
    assert backoff.failures == 0 and backoff.next_delay() == 0.5


def test_jitter_shortens_each_wait_by_at_most_its_share():
    highest, lowest = Backoff(2.0, 300.0, rand=lambda: 1.0), Backoff(2.0, 300.0, rand=lambda: 0.0)
    assert [highest.next_delay() for _ in range(5)] == [2, 4, 8, 16, 32]
    assert [lowest.next_delay() for _ in range(5)] == [1, 2, 4, 8, 16]  # default jitter: down to half
    full = Backoff(1.0, 8.0, jitter=1.0, rand=lambda: 0.25)
    assert [full.next_delay() for _ in range(5)] == [0.25, 0.5, 1.0, 2.0, 2.0]


def test_real_jitter_stays_within_its_bounds():
    backoff = Backoff(1.0, 4.0)
    waits = [backoff.delay(3) for _ in range(200)]
    assert all(2.0 <= wait <= 4.0 for wait in waits) and len(set(waits)) > 100


def test_delay_is_pure_and_survives_huge_failure_counts():
    backoff = Backoff(2.0, 300.0, factor=3.0, rand=lambda: 1.0)
    assert [backoff.delay(n) for n in (0, 1, 2, 3, 10_000)] == [2, 2, 6, 18, 300]
    assert backoff.failures == 0 and backoff.retry_at is None
    assert backoff.delay(1, rand=lambda: 0.0) == 1.0  # a per-call random overrides the injected one


def test_remaining_counts_down_on_the_injected_clock():
    clock = Clock()
    backoff = Backoff(4.0, 60.0, jitter=0, clock=clock)
    assert backoff.remaining() is None
    backoff.next_delay()
    assert backoff.retry_at == 104.0 and backoff.remaining() == 4.0
    clock.now = 103.0
    assert backoff.remaining() == 1.0
    clock.now = 110.0
    assert backoff.remaining() == 0.0
    backoff.reset()
    assert backoff.remaining() is None


@pytest.mark.parametrize(
    "kwargs", [dict(base_s=0), dict(base_s=5, cap_s=1), dict(factor=0.5), dict(jitter=1.5)]
)
def test_nonsense_is_refused_at_construction(kwargs):
    with pytest.raises(ValueError):
        Backoff(**kwargs)
