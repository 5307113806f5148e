"""Checking and saving an uploaded photo or clip. The content decides, never the file name:
images must decode (JPEG, PNG, WebP), clips must be MP4 with at least one decodable frame.

Several staff may upload at once: `Uploads` keeps the folder bounded while never deleting a
file whose search is still in flight (the featurizer reads it after the query is sent).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2

from components.common.errors import ImageError, VisualSearchError
from components.common.images import (
    MAX_IMAGE_PIXELS,
    MAX_VIDEO_FRAME,
    ImageTooLarge,
    check_video,
    decode_image,
)

ACCEPTED = (
    f"JPEG, PNG or WebP images (up to {MAX_IMAGE_PIXELS / 1e6:g} megapixels) and MP4 video clips "
    f"(frames up to {MAX_VIDEO_FRAME[0]}x{MAX_VIDEO_FRAME[1]})"
)
EXTENSIONS = {"jpeg": ".jpg", "png": ".png", "webp": ".webp", "mp4": ".mp4"}


class UploadError(VisualSearchError):
    """An upload refused with an HTTP status and a message a person can act on."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class SavedUpload:
    query_id: str
    path: Path
    kind: str  # "image" or "video"
    media: str  # "jpeg", "png", "webp" or "mp4"
    width: int
    height: int
    duration_s: float  # 0 for images, -1 when the clip does not say


def sniff(head: bytes) -> str | None:
    """The media type from the first bytes of a file, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp":
        return "mp4"
    return None


class Uploads:
    """The upload folder of one display. A saved upload is held until its search is done
    (`release`); pruning keeps the newest `keep` files, never deletes a held one, and takes in
    its stride files that vanish under it (another request or an operator deleting them)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._held: set[Path] = set()
        self._lock = threading.Lock()

    def save(
        self, data: bytes, query_id: str, *, max_bytes: int, max_clip_s: float, keep: int
    ) -> SavedUpload:
        """Check `data` by its content and save it as `<directory>/<query_id>.<ext>` (UploadError if
        refused). It is held from before its file exists: call `release(saved.path, keep)` after its
        search."""
        media = _check(data, max_bytes)
        path = self.hold(self.directory / f"{query_id}{EXTENSIONS[media]}")
        try:
            saved = _save(data, media, query_id, path, max_clip_s)
        except BaseException:
            self.release(path)
            raise
        self.prune(keep)
        return saved

    def hold(self, path: Path) -> Path:
        with self._lock:
            self._held.add(path)
        return path

    def release(self, path: Path, keep: int | None = None) -> None:
        """Its search is over: pruning may take it from now on (and prunes to `keep` now, if given)."""
        with self._lock:
            self._held.discard(path)
        if keep is not None:
            self.prune(keep)

    def prune(self, keep: int) -> None:
        """Delete the oldest files not held until at most `keep` are left (held ones count)."""
        with self._lock:
            held = set(self._held)
            free = []
            for path in _listing(self.directory):
                if path in held:
                    continue
                try:
                    free.append((path.stat().st_mtime, path))
                except FileNotFoundError:
                    continue
            free.sort(reverse=True)
            for _, old in free[max(0, keep - len(held)) :]:
                old.unlink(missing_ok=True)


def _listing(directory: Path) -> list[Path]:
    try:
        return [p for p in directory.iterdir() if p.is_file()]
    except FileNotFoundError:
        return []


def _check(data: bytes, max_bytes: int) -> str:
    """The media type of an upload by its content (UploadError if refused before decoding)."""
    if not data:
        raise UploadError(400, "the uploaded file is empty")
    if len(data) > max_bytes:
        raise UploadError(
            413, f"the file is {len(data) / 2**20:.1f} MiB; the limit is {max_bytes / 2**20:.1f} MiB"
        )
    media = sniff(data[:16])
    if media is None:
        raise UploadError(415, f"unsupported file type: the display accepts {ACCEPTED}")
    return media


def _save(data: bytes, media: str, query_id: str, path: Path, max_clip_s: float) -> SavedUpload:
    """Check that `data` decodes and save it as `path` (UploadError if refused)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if media == "mp4":
        saved = _save_clip(data, query_id, path, max_clip_s)
    else:
        try:
            image = decode_image(data, "the uploaded file")
        except ImageTooLarge as exc:
            raise UploadError(413, str(exc)) from None
        except ImageError as exc:
            raise UploadError(400, f"{exc} (corrupt or truncated {media.upper()})") from None
        path.write_bytes(data)
        saved = SavedUpload(query_id, path, "image", media, image.shape[1], image.shape[0], 0.0)
    os.chmod(path, 0o644)  # the featurizer reads it
    return saved


def _save_clip(data: bytes, query_id: str, path: Path, max_clip_s: float) -> SavedUpload:
    path.write_bytes(data)  # OpenCV decodes video from files only
    capture = cv2.VideoCapture(str(path))
    try:
        if capture.isOpened():
            check_video(capture, "the uploaded clip")  # before any frame is decoded
        ok, frame = capture.read() if capture.isOpened() else (False, None)
        fps = capture.get(cv2.CAP_PROP_FPS)
        frames = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    except ImageTooLarge as exc:
        path.unlink(missing_ok=True)
        raise UploadError(413, str(exc)) from None
    finally:
        capture.release()
    if not ok or frame is None:
        path.unlink(missing_ok=True)
        raise UploadError(
            400, "the video has no decodable frames (corrupt, truncated or an unsupported codec)"
        )
    duration = frames / fps if fps > 0 and frames > 0 else -1.0
    if duration > max_clip_s:
        path.unlink(missing_ok=True)
        raise UploadError(400, f"the clip is {duration:.0f} s long; the limit is {max_clip_s:.0f} s")
    return SavedUpload(query_id, path, "video", "mp4", frame.shape[1], frame.shape[0], round(duration, 2))


def find_upload(upload_dir: Path, query_id: str) -> Path | None:
    if not query_id.isalnum():
        return None
    for ext in EXTENSIONS.values():
        path = upload_dir / f"{query_id}{ext}"
        if path.is_file():
            return path
    return None
