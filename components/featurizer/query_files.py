"""The files that query messages name: only regular files inside the display's upload folder.

A query's `image_path` comes over IPC; the featurizer reads it only if, once every link is
resolved, it is a file directly inside `upload_dir`, and only if it is a regular file (a FIFO
would block the worker for good, a device would never end). The file is opened without
following a link at its last step and without blocking, then checked by its open handle.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from components.common.errors import VisualSearchError

WORK_DIR_ENV = "VISUAL_SEARCH_WORK_DIR"  # the recipe sets it to {work:path}, as for every component


class QueryFileRefused(VisualSearchError):
    """A query names a file the featurizer must not read."""


def resolve_upload_dir(upload_dir: str) -> Path:
    """`upload_dir` as configured; a relative path is under this component's work directory."""
    path = Path(upload_dir).expanduser()
    if not path.is_absolute():
        path = Path(os.environ.get(WORK_DIR_ENV) or os.getcwd()) / path
    return Path(os.path.realpath(path))


def confined_path(image_path: str, upload_dir: Path) -> Path:
    """The real path of `image_path` if it is a regular file directly inside `upload_dir`
    (QueryFileRefused otherwise, naming why)."""
    if not os.path.isabs(image_path):
        raise QueryFileRefused(f"{image_path}: not an absolute path; queries name files in {upload_dir}")
    real = Path(os.path.realpath(image_path))  # every link resolved: a link out of the folder is refused
    if real.parent != upload_dir:
        raise QueryFileRefused(f"{image_path}: outside the upload folder {upload_dir}; not read")
    with _open_regular(real, image_path):
        pass
    return real


def read_query_file(image_path: str, upload_dir: Path) -> bytes:
    """The bytes of the regular file `image_path` names inside `upload_dir`."""
    real = confined_path(image_path, upload_dir)
    with _open_regular(real, image_path) as handle:
        return handle.read()


def _open_regular(real: Path, shown: str):
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise QueryFileRefused(f"{shown}: file not found (deleted before it was read?)") from None
    except OSError as exc:
        raise QueryFileRefused(f"{shown}: cannot open it ({exc.strerror or exc})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise QueryFileRefused(f"{shown}: not a regular file (a {_kind(mode)}); not read")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    return "special file"
