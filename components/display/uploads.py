"""Checking and saving an uploaded photo or clip. The content decides, never the file name:
images must decode (JPEG, PNG, WebP), clips must be MP4 with at least one decodable frame.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2

from components.common.errors import ImageError, VisualSearchError
from components.common.images import decode_image

ACCEPTED = "JPEG, PNG or WebP images and MP4 video clips"
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
    kind: str           # "image" or "video"
    media: str          # "jpeg", "png", "webp" or "mp4"
    width: int
    height: int
    duration_s: float   # 0 for images, -1 when the clip does not say


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


def save_upload(data: bytes, query_id: str, upload_dir: Path, *, max_bytes: int, max_clip_s: float,
                keep: int) -> SavedUpload:
    """Check `data` by its content and save it as `<upload_dir>/<query_id>.<ext>` (UploadError if refused)."""
    if not data:
        raise UploadError(400, "the uploaded file is empty")
    if len(data) > max_bytes:
        raise UploadError(413, f"the file is {len(data) / 2**20:.1f} MiB; the limit is {max_bytes / 2**20:.1f} MiB")
    media = sniff(data[:16])
    if media is None:
        raise UploadError(415, f"unsupported file type: the display accepts {ACCEPTED}")
    upload_dir.mkdir(parents=True, exist_ok=True)
    path = upload_dir / f"{query_id}{EXTENSIONS[media]}"
    if media == "mp4":
        saved = _save_clip(data, query_id, path, max_clip_s)
    else:
        try:
            image = decode_image(data, "the uploaded file")
        except ImageError as exc:
            raise UploadError(400, f"{exc} (corrupt or truncated {media.upper()})") from None
        path.write_bytes(data)
        saved = SavedUpload(query_id, path, "image", media, image.shape[1], image.shape[0], 0.0)
    os.chmod(path, 0o644)  # the featurizer reads it
    prune(upload_dir, keep, protect=path)
    return saved


def _save_clip(data: bytes, query_id: str, path: Path, max_clip_s: float) -> SavedUpload:
    path.write_bytes(data)  # OpenCV decodes video from files only
    capture = cv2.VideoCapture(str(path))
    try:
        ok, frame = capture.read() if capture.isOpened() else (False, None)
        fps = capture.get(cv2.CAP_PROP_FPS)
        frames = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    finally:
        capture.release()
    if not ok or frame is None:
        path.unlink(missing_ok=True)
        raise UploadError(400, "the video has no decodable frames (corrupt, truncated or an unsupported codec)")
    duration = frames / fps if fps > 0 and frames > 0 else -1.0
    if duration > max_clip_s:
        path.unlink(missing_ok=True)
        raise UploadError(400, f"the clip is {duration:.0f} s long; the limit is {max_clip_s:.0f} s")
    return SavedUpload(query_id, path, "video", "mp4", frame.shape[1], frame.shape[0], round(duration, 2))


def prune(upload_dir: Path, keep: int, protect: Path | None = None) -> None:
    """Delete all but the `keep` newest uploads (never `protect`), so the directory stays bounded."""
    files = sorted((p for p in upload_dir.iterdir() if p.is_file() and p != protect),
                   key=lambda p: p.stat().st_mtime, reverse=True)
    for old in files[max(0, keep - 1):]:
        old.unlink(missing_ok=True)


def find_upload(upload_dir: Path, query_id: str) -> Path | None:
    if not query_id.isalnum():
        return None
    for ext in EXTENSIONS.values():
        path = upload_dir / f"{query_id}{ext}"
        if path.is_file():
            return path
    return None
