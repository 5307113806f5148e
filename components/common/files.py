"""Writing directories so a reader never sees half of one."""
from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable


def can_replace(target: Path, is_same_kind: Callable[[Path], bool]) -> bool:
    """True if `target` is absent, empty, or the same kind of output (never a user's folder)."""
    target = Path(target)
    if not target.exists():
        return True
    return target.is_dir() and (not any(target.iterdir()) or is_same_kind(target))


@contextmanager
def staged_dir(target: Path):
    """Yield an empty staging directory beside `target`; on success it replaces `target`.

    The old `target` is removed only once the new one is complete; on any error the staging
    directory is removed and `target` is left as it was. Check `can_replace` first.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; other users (ggc_user) must read it
    try:
        yield staging
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            target.rename(old / "previous")
        staging.rename(target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
