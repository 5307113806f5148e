"""Writing directories so a reader never sees half of one.

A build writes into `.<name>.tmp-*` beside its target and swaps it in at the end (the old
target passes through `.<name>.old-*`). Each of those folders is locked (flock) by the
process using it, so a process that was killed leaves folders nobody holds: the next
`staged_dir` for that target removes the ones older than itself, and says so.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)


def can_replace(target: Path, is_same_kind: Callable[[Path], bool]) -> bool:
    """True if `target` is absent, empty, or the same kind of output (never a user's folder)."""
    target = Path(target)
    if not target.exists():
        return True
    return target.is_dir() and (not any(target.iterdir()) or is_same_kind(target))


@contextmanager
def staged_dir(target: Path, on_stale: Callable[[Path], None] | None = None):
    """Yield an empty staging directory beside `target`; on success it replaces `target`.

    The old `target` is removed only once the new one is complete; on any error the staging
    directory is removed and `target` is left as it was. Check `can_replace` first.
    Staging folders of earlier builds of `target` that were killed are removed first
    (logged, and passed to `on_stale`).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with ExitStack() as locks:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        locks.enter_context(_locked(staging))
        staging.chmod(0o755)  # mkdtemp makes it private; other users (ggc_user) must read it
        for stale in remove_stale_staging(target, before=started):
            log.warning("removed %s (left by an interrupted build)", stale)
            if on_stale is not None:
                on_stale(stale)
        try:
            yield staging
            old = None
            if target.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
                locks.enter_context(_locked(old))
                target.rename(old / "previous")
            staging.rename(target)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def remove_stale_staging(target: Path, before: float) -> list[Path]:
    """Remove the `.<name>.tmp-*` / `.<name>.old-*` folders beside `target` that no running
    process holds and that are older than `before`; the ones removed."""
    removed = []
    for pattern in (f".{target.name}.tmp-*", f".{target.name}.old-*"):
        for path in sorted(target.parent.glob(pattern)):
            try:
                if not path.is_dir() or path.is_symlink() or path.stat().st_mtime >= before:
                    continue
                with _locked(path, wait=False):
                    shutil.rmtree(path)
            except (BlockingIOError, FileNotFoundError):
                continue  # in use by a running build, or already gone
            except OSError as exc:
                log.warning("cannot remove %s (%s)", path, exc.strerror or exc)
                continue
            removed.append(path)
    return removed


@contextmanager
def _locked(path: Path, wait: bool = True):
    """Hold an exclusive flock on the directory `path` (BlockingIOError at once if not `wait`)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        yield
    finally:
        os.close(fd)
