"""What many test folders share, one copy each.

- `waiting.wait_until(condition, timeout, what)`: poll something that changes on another thread
  or process, with one overall deadline and a failure that names what never happened.
- `inbox.Inbox`: collects what a subscription delivers (raw IPC stream events, or decoded JSON
  when it subscribes as a component); every wait on it has one overall deadline.
- `network.free_port()`: a TCP port free on 127.0.0.1, for servers a test starts.

Fixtures stay in the `conftest.py` files; this package holds plain functions and classes.
"""
