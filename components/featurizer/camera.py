"""Frame sources: a camera (index or device path), a video file, an RTSP/HTTP stream, a folder of images.

`open_source(spec, loop, realtime)` returns a source whose `read()` gives a `Frame` or raises
`CameraError`; `SourceEnded` (a CameraError) means a video file or folder reached its end
without `loop`, so reopening would not help. `ReconnectingSource` keeps a source open
through failures (a camera unplugged, a stream that drops), waiting as its `Backoff`
(components/common/backoff.py) says between attempts. `sample_clip` reads an uploaded
video clip at one frame per second.

Files and folders are paced at their frame rate when `realtime`. Without it they are read
as fast as the caller asks, and `capture_time` is the time the frame would have been taken
at that rate, so time-based trigger thresholds mean the same thing either way.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, NamedTuple

import cv2
import numpy as np

from components.common.backoff import Backoff
from components.common.errors import ImageError, VisualSearchError
from components.common.images import check_video
from components.featurizer.preprocess import read_image

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
STREAM_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://")
STREAM_TIMEOUT_MS = 5000  # open/read timeout, so a dead stream raises instead of hanging
MAX_SKIPPED_FRAMES = 30  # a slow reader of a realtime file drops at most this many per read


class CameraError(VisualSearchError):
    """A frame source that cannot be opened or stopped giving frames."""


class SourceEnded(CameraError):
    """A video file or image folder reached its end (and `loop` is off)."""


class ClipError(VisualSearchError):
    """An uploaded video clip with no frame to search."""


class Frame(NamedTuple):
    image: np.ndarray  # BGR uint8
    capture_time: float  # Unix seconds
    source_time: float = -1.0  # seconds into a video file or clip; -1 for a live camera or a photo
    still: int = -1  # which showing of a folder image this is (-1: moving pictures)


class Pacer:
    """Frame n of a file is due at start + n / fps; `realtime` waits for it, otherwise not."""

    def __init__(
        self, fps: float, realtime: bool, clock=time.monotonic, sleep=time.sleep, wall_clock=time.time
    ):
        self.period = 1.0 / fps
        self.realtime = realtime
        self._clock, self._sleep = clock, sleep
        self._start = clock()
        self._wall_start = wall_clock()
        self.index = 0

    def behind(self) -> int:
        """Frames already overdue beyond the next one (a realtime reader that fell behind)."""
        if not self.realtime:
            return 0
        return max(0, int((self._clock() - self._start) / self.period) - self.index)

    def wait(self) -> float:
        """Wait until the current frame is due; return its capture time and move on."""
        due = self.index * self.period
        if self.realtime:
            delay = self._start + due - self._clock()
            if delay > 0:
                self._sleep(delay)
        self.index += 1
        return self._wall_start + due


def source_kind(spec: str) -> str:
    if spec.isdigit() or spec.startswith("/dev/"):
        return "camera"
    return "stream" if spec.lower().startswith(STREAM_PREFIXES) else "video file"


class CaptureSource:
    """cv2.VideoCapture over a camera, a video file or a stream URL."""

    def __init__(self, spec: str, loop: bool = False, realtime: bool = True, **pacer_clocks):
        self.spec, self.loop, self.kind = spec, loop, source_kind(spec)
        if self.kind == "stream":
            self._capture = cv2.VideoCapture(
                spec,
                cv2.CAP_FFMPEG,
                [
                    cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                    STREAM_TIMEOUT_MS,
                    cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                    STREAM_TIMEOUT_MS,
                ],
            )
        elif not spec.isdigit() and not Path(spec).exists():
            raise CameraError(
                f"{spec}: {'camera device' if self.kind == 'camera' else 'video file'} not found"
            )
        else:
            self._capture = cv2.VideoCapture(int(spec) if spec.isdigit() else spec)
        if not self._capture.isOpened():
            self._capture.release()
            raise CameraError(f"{spec}: cannot open {self.kind}")
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 1 <= fps <= 240 else 25.0
        self._pacer = Pacer(self.fps, realtime, **pacer_clocks) if self.kind == "video file" else None
        self._position = 0  # frames into the file since the last rewind

    def read(self) -> Frame:
        if self._pacer is None:  # live: the device paces us
            ok, image = self._capture.read()
            if not ok or image is None:
                raise CameraError(f"{self.spec}: no frame ({self.kind} gone or dropped)")
            return Frame(image, time.time())
        for _ in range(min(self._pacer.behind(), MAX_SKIPPED_FRAMES)):
            if not self._capture.grab():
                break
            self._pacer.index += 1
            self._position += 1
        ok, image = self._capture.read()
        if not ok and self.loop and self._pacer.index > 0:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self._position = 0
            ok, image = self._capture.read()
        if not ok or image is None:
            if self._pacer.index == 0 or self.loop:
                raise CameraError(f"{self.spec}: cannot decode a frame")
            raise SourceEnded(f"{self.spec}: end of video")
        source_time = self._position / self.fps
        self._position += 1
        return Frame(image, self._pacer.wait(), source_time)

    def close(self) -> None:
        self._capture.release()


class FolderSource:
    """Images of a folder in sorted order, each shown for `image_s` seconds at `fps`."""

    def __init__(
        self,
        folder: str,
        loop: bool = False,
        realtime: bool = True,
        image_s: float = 2.0,
        fps: float = 10.0,
        **pacer_clocks,
    ):
        self.spec, self.loop = folder, loop
        try:
            self.paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        except OSError as exc:
            raise CameraError(f"{folder}: cannot list the folder ({exc.strerror})") from None
        if not self.paths:
            raise CameraError(f"{folder}: no images in folder")
        self.frames_per_image = max(1, round(image_s * fps))
        self._pacer = Pacer(fps, realtime, **pacer_clocks)
        self._current: tuple[int, np.ndarray] | None = None

    def read(self) -> Frame:
        still = self._pacer.index // self.frames_per_image
        if still >= len(self.paths) and not self.loop:
            raise SourceEnded(f"{self.spec}: end of folder")
        position = still % len(self.paths)
        while self._current is None or self._current[0] != position:
            try:
                self._current = (position, read_image(self.paths[position]))
            except ImageError as exc:  # skip it: reopening would stop at the same file again
                log.warning("skipping %s", exc)
                del self.paths[position]
                if not self.paths:
                    raise CameraError(f"{self.spec}: no readable images in folder") from None
                position %= len(self.paths)
        return Frame(self._current[1], self._pacer.wait(), still=still)

    def close(self) -> None:
        self._current = None


def open_source(spec: str, loop: bool = False, realtime: bool = True, image_s: float = 2.0, **pacer_clocks):
    """A camera index ("0") or device ("/dev/video0"), a folder of images, a video file, or a URL."""
    spec = str(spec).strip()
    if not spec:
        raise CameraError("camera setting is empty")
    if source_kind(spec) == "video file" and Path(spec).is_dir():
        return FolderSource(spec, loop, realtime, image_s=image_s, **pacer_clocks)
    return CaptureSource(spec, loop, realtime, **pacer_clocks)


def sample_clip(path: str, every_s: float = 1.0, max_frames: int = 60) -> list[Frame]:
    """One frame per `every_s` seconds of a video clip (at most `max_frames`); ClipError if none."""
    if not Path(path).is_file():
        raise ClipError(f"{path}: clip file not found")
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise ClipError(f"{path}: not a video OpenCV can open")
        check_video(capture, str(path))  # ImageTooLarge before any frame is decoded
        fps = capture.get(cv2.CAP_PROP_FPS)
        fps = fps if 1 <= fps <= 240 else 25.0
        frames, n, next_s, now = [], 0, 0.0, time.time()
        while len(frames) < max_frames and capture.grab():
            if n / fps >= next_s - 1e-6:
                ok, image = capture.retrieve()
                if ok and image is not None:
                    frames.append(Frame(image, now, round(n / fps, 3)))
                    next_s += every_s
            n += 1
    finally:
        capture.release()
    if not frames:
        raise ClipError(f"{path}: no decodable frame in the clip")
    return frames


class ReconnectingSource:
    """Gives frames until stopped, reopening the source after a failure.

    `wait(seconds)` returns True when the caller wants to stop (e.g. `threading.Event.wait`);
    `on_change(state, detail)` hears "connected" and "reconnecting". `SourceEnded` is
    passed through: a finished video is not a fault. `connections` counts successful opens.
    """

    def __init__(
        self,
        opener: Callable[[], object],
        backoff: Backoff,
        wait: Callable[[float], bool],
        on_change: Callable[[str, str], None] = lambda s, d: None,
    ):
        self._opener, self._backoff, self._wait, self._on_change = opener, backoff, wait, on_change
        self._source = None
        self.connections = 0

    def read(self) -> Frame | None:
        """The next frame, or None once `wait` says stop."""
        while True:
            try:
                if self._source is None:
                    self._source = self._opener()
                    self.connections += 1
                    self._on_change("connected", f"{getattr(self._source, 'spec', '')} open")
                frame = self._source.read()
                self._backoff.reset()
                return frame
            except SourceEnded:
                raise
            except CameraError as exc:
                self.close()
                delay = self._backoff.next_delay()
                self._on_change("reconnecting", f"{exc}; retry {self._backoff.failures} in {delay:g} s")
                if self._wait(delay):
                    return None

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
            self._source = None
