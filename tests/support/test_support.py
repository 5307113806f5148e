"""The shared test helpers: one overall deadline for every wait, and failures that say what."""

import socket
import threading

import pytest

from tests.support.inbox import Inbox
from tests.support.network import free_port
from tests.support.waiting import wait_until


def test_wait_until_returns_the_truthy_value_and_fails_naming_what_never_came():
    values = iter([0, None, "ready"])
    assert wait_until(lambda: next(values), 5, "the third value", every=0.001) == "ready"
    with pytest.raises(
        AssertionError, match=r"timed out after 0.05 s waiting for the index swap \(last value: 0\)"
    ):
        wait_until(lambda: 0, 0.05, "the index swap", every=0.01)


def test_wait_until_without_what_names_where_the_condition_is():
    with pytest.raises(AssertionError, match=r"the condition at test_support\.py:\d+"):
        wait_until(lambda: False, 0.01)


def test_next_reads_on_in_order_and_skips_what_does_not_match():
    inbox = Inbox("matches")
    for n in range(5):
        inbox({"n": n})
    assert inbox.next(where=lambda m: m["n"] >= 2) == {"n": 2}
    assert inbox.next() == {"n": 3}
    assert inbox.drain(quiet_s=0.01) == [{"n": 4}] and inbox.drain(quiet_s=0.01) == []
    assert len(inbox.wait(5)) == 5  # wait looks at everything received


def test_a_stream_of_other_messages_does_not_keep_a_wait_alive():
    inbox, stop = Inbox("status"), threading.Event()

    def chatter():  # a status every 10 ms, none of them the one awaited
        while not stop.wait(0.01):
            inbox({"state": "running"})

    thread = threading.Thread(target=chatter, daemon=True)
    thread.start()
    try:
        with pytest.raises(AssertionError, match=r"status: nothing that matches within 0.2 s \(\d+ received"):
            inbox.next(timeout=0.2, where=lambda m: m["state"] == "error")
        with pytest.raises(AssertionError, match=r"status: \d+ of 1000000 events after 0.2 s"):
            inbox.wait(1_000_000, timeout=0.2)
        assert inbox.drain(quiet_s=0.05, timeout=0.2)  # returns although messages keep coming
    finally:
        stop.set()
        thread.join()


def test_a_message_that_arrives_while_waiting_is_returned():
    inbox = Inbox()
    threading.Timer(0.05, inbox, args=({"state": "error"},)).start()
    assert inbox.next(timeout=30, where=lambda m: m["state"] == "error") == {"state": "error"}


def test_free_port_can_be_bound_on_localhost():
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
