"""The index being served, swapped atomically while queries run.

A query takes a lease on the bundle served at that moment and keeps using that same bundle
until it is done, even if a new one is swapped in meanwhile; a bundle taken out of service
is closed only when its last lease ends. A new bundle is swapped in only once it is fully
opened (verified and loaded), so no query ever sees a half-loaded index.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from typing import Iterator

from components.local_search.search import IndexBundle

log = logging.getLogger("local_search")


class _Entry:
    __slots__ = ("bundle", "leases", "retired")

    def __init__(self, bundle: IndexBundle | None):
        self.bundle = bundle
        self.leases = 0
        self.retired = False


class ServingIndex:
    """Holds the served IndexBundle (or None before the first one arrives). Thread-safe."""

    def __init__(self, bundle: IndexBundle | None = None):
        self._lock = threading.Lock()
        self._entry = _Entry(bundle)

    @property
    def bundle(self) -> IndexBundle | None:
        """The bundle served now, for reading its manifest (searches should take a lease)."""
        with self._lock:
            return self._entry.bundle

    @contextmanager
    def lease(self) -> Iterator[IndexBundle | None]:
        """The bundle served now, kept open until the block ends (None: no index yet)."""
        with self._lock:
            entry = self._entry
            entry.leases += 1
        try:
            yield entry.bundle
        finally:
            with self._lock:
                entry.leases -= 1
                close = entry.retired and entry.leases == 0
            if close:
                _close(entry.bundle)

    def swap(self, bundle: IndexBundle) -> IndexBundle | None:
        """Serve `bundle` from now on; returns the one it replaces (closed once no query uses it)."""
        with self._lock:
            old = self._entry
            if bundle is old.bundle:
                return None  # already served: nothing to swap, nothing to close
            self._entry = _Entry(bundle)
            old.retired = True
            close = old.leases == 0
        if close:
            _close(old.bundle)
        return old.bundle


def _close(bundle: IndexBundle | None) -> None:
    if bundle is None:
        return
    try:
        bundle.close()
    except Exception as exc:  # closing must never break a query or a swap
        log.warning("closing index bundle %s: %s: %s", bundle.path, type(exc).__name__, exc)
