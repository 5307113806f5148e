"""Frame sources: folders, video files written here, looping, pacing, clips, failures and backoff."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from components.common.backoff import Backoff
from components.featurizer.camera import (
    CameraError,
    CaptureSource,
    ClipError,
    Frame,
    Pacer,
    ReconnectingSource,
    SourceEnded,
    open_source,
    sample_clip,
)

FPS = 10


class FakeClock:
    """A monotonic clock that only moves when something sleeps (or the test says so)."""

    def __init__(self):
        self.now, self.sleeps = 100.0, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def write_video(path, frames: int, fps: int = FPS) -> str:
    """Frame n is a flat grey of level 10 + 8n, so its number can be read back after compression."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (64, 48))
    assert writer.isOpened()
    for n in range(frames):
        writer.write(np.full((48, 64, 3), 10 + 8 * n, np.uint8))
    writer.release()
    return str(path)


def frame_number(frame: Frame) -> int:
    return round((float(frame.image.mean()) - 10) / 8)


@pytest.fixture
def video(tmp_path) -> str:
    return write_video(tmp_path / "clip.mp4", 20)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    for name, level in (("b.jpg", 120), ("a.png", 40), ("c.jpg", 200)):
        cv2.imwrite(str(root / name), np.full((30, 40, 3), level, np.uint8))
    (root / "notes.txt").write_text("not an image")
    return root


def test_a_folder_shows_each_image_in_order_for_image_s_then_ends(folder):
    source = open_source(str(folder), realtime=False, image_s=0.2)  # 2 frames per image at 10 fps
    frames = [source.read() for _ in range(6)]
    assert [int(f.image.mean()) for f in frames] == [40, 40, 120, 120, 200, 200]
    assert [f.still for f in frames] == [0, 0, 1, 1, 2, 2]
    assert {f.source_time for f in frames} == {-1.0}
    with pytest.raises(SourceEnded):
        source.read()


def test_a_looping_folder_starts_again_and_skips_an_unreadable_image(folder):
    (folder / "b2.jpg").write_bytes(b"broken")
    source = open_source(str(folder), loop=True, realtime=False, image_s=0.1)
    levels = [int(source.read().image.mean()) for _ in range(7)]
    assert levels == [40, 120, 200, 40, 120, 200, 40]


def test_a_video_file_gives_every_frame_with_its_position_then_ends(video):
    source = open_source(video, realtime=False)
    assert isinstance(source, CaptureSource) and source.fps == FPS
    frames = [source.read() for _ in range(20)]
    assert [frame_number(f) for f in frames] == list(range(20))
    assert [f.source_time for f in frames] == pytest.approx([n / FPS for n in range(20)])
    assert np.diff([f.capture_time for f in frames]) == pytest.approx([1 / FPS] * 19, abs=1e-5)
    assert {f.still for f in frames} == {-1}
    with pytest.raises(SourceEnded, match="end of video"):
        source.read()


def test_a_looping_video_starts_again_and_its_source_time_with_it(video):
    source = open_source(video, loop=True, realtime=False)
    frames = [source.read() for _ in range(45)]
    assert [frame_number(f) for f in frames] == [n % 20 for n in range(45)]
    assert [f.source_time for f in frames] == pytest.approx([(n % 20) / FPS for n in range(45)])
    assert np.all(np.diff([f.capture_time for f in frames]) > 0)  # the trigger sees time go on


def test_realtime_paces_a_file_at_its_frame_rate_and_can_be_turned_off(video):
    clock = FakeClock()
    paced = open_source(video, realtime=True, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        paced.read()
    assert sum(clock.sleeps) == pytest.approx(4 / FPS) and len(clock.sleeps) == 4
    clock = FakeClock()
    unpaced = open_source(video, realtime=False, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        unpaced.read()
    assert clock.sleeps == []


def test_a_realtime_reader_that_falls_behind_skips_frames(video):
    clock = FakeClock()
    source = open_source(video, realtime=True, clock=clock, sleep=clock.sleep)
    assert frame_number(source.read()) == 0
    clock.now += 0.55  # the caller was busy for five and a half frames
    late = source.read()
    assert frame_number(late) == 5 and late.source_time == pytest.approx(0.5)


def test_pacer_gives_capture_times_at_the_frame_rate():
    clock = FakeClock()
    pacer = Pacer(4.0, realtime=False, clock=clock, sleep=clock.sleep, wall_clock=lambda: 1000.0)
    assert [pacer.wait() for _ in range(3)] == [1000.0, 1000.25, 1000.5]


@pytest.mark.parametrize(
    "spec, message",
    [
        ("/no/such/video.mp4", "video file not found"),
        ("/dev/video-that-is-not-there", "camera device not found"),
        ("97", "cannot open camera"),
        ("", "camera setting is empty"),
    ],
)
def test_a_source_that_cannot_be_opened_gives_a_clear_camera_error(spec, message):
    with pytest.raises(CameraError, match=message):
        open_source(spec)


def test_a_file_that_is_not_a_video_or_a_folder_without_images_is_refused(tmp_path):
    (tmp_path / "junk.mp4").write_text("not a video")
    with pytest.raises(CameraError, match="cannot open video file"):
        open_source(str(tmp_path / "junk.mp4"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CameraError, match="no images in folder"):
        open_source(str(tmp_path / "empty"))


class FlakySource:
    """Opens on the third try, gives two frames, then fails as an unplugged camera does."""

    def __init__(self, opens: list):
        self.spec, self.reads = "flaky", 0
        opens.append(self)
        if len(opens) < 3:
            raise CameraError("flaky: cannot open camera")

    def read(self) -> Frame:
        self.reads += 1
        if self.reads > 2:
            raise CameraError("flaky: no frame")
        return Frame(np.zeros((4, 4, 3), np.uint8), float(self.reads))

    def close(self) -> None:
        pass


def test_reconnecting_source_retries_with_backoff_reports_and_resumes():
    opens, waits, changes = [], [], []
    source = ReconnectingSource(
        lambda: FlakySource(opens),
        Backoff(0.1, 0.3, jitter=0),
        wait=lambda s: waits.append(s) or False,
        on_change=lambda state, detail: changes.append(state),
    )
    frames = [source.read() for _ in range(3)]
    assert all(isinstance(f, Frame) for f in frames)
    assert waits == pytest.approx([0.1, 0.2, 0.1])  # reset after frames came again
    assert changes == ["reconnecting", "reconnecting", "connected", "reconnecting", "connected"]
    assert source.connections == 2 and len(opens) == 4


def test_reconnecting_source_stops_when_told_while_waiting():
    def never_opens():
        raise CameraError("gone")

    source = ReconnectingSource(never_opens, Backoff(0.1, 0.3, jitter=0), wait=lambda s: True)
    assert source.read() is None


def test_reconnecting_source_passes_the_end_of_a_video_through(video):
    source = ReconnectingSource(lambda: open_source(video, realtime=False), Backoff(), wait=lambda s: False)
    for _ in range(20):
        source.read()
    with pytest.raises(SourceEnded):
        source.read()


def test_a_clip_is_sampled_once_per_second(tmp_path):
    clip = write_video(tmp_path / "clip.mp4", 25)
    frames = sample_clip(clip)
    assert [f.source_time for f in frames] == [0.0, 1.0, 2.0]
    assert [frame_number(f) for f in frames] == [0, 10, 20]
    assert len(sample_clip(clip, every_s=0.5, max_frames=2)) == 2


def test_a_clip_without_frames_gives_a_clip_error(tmp_path):
    with pytest.raises(ClipError, match="clip file not found"):
        sample_clip(str(tmp_path / "missing.mp4"))
    (tmp_path / "junk.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(ClipError, match="junk.mp4"):
        sample_clip(str(tmp_path / "junk.mp4"))
