"""SearchTrigger on synthetic kiosk scenes (10 fps) and on the committed demo video."""

from __future__ import annotations

import itertools
import json

import cv2
import numpy as np
import pytest

from components.featurizer.trigger import (
    VIEW_SIZE,
    SearchTrigger,
    StillTrigger,
    TriggerSettings,
    changed_mask,
)
from tests.conftest import REPO

W, H, FPS = 320, 240, 10
CENTRE = (110, 50)  # where items are held (top-left corner of a 100x140 item)


def make_background() -> np.ndarray:
    rng = np.random.default_rng(1)
    wall = cv2.resize(rng.uniform(90, 130, (6, 8)).astype(np.float32), (W, H), interpolation=cv2.INTER_CUBIC)
    xs = np.linspace(0.9, 1.1, W, dtype=np.float32)[None, :]
    return wall * xs


def make_item(seed: int) -> np.ndarray:
    """A 100x140 patch of big blocks: structure that survives the trigger's 64x48 view."""
    rng = np.random.default_rng(seed)
    return cv2.resize(
        rng.uniform(20, 235, (4, 3)).astype(np.float32), (100, 140), interpolation=cv2.INTER_NEAREST
    )


BACKGROUND = make_background()
ITEM_A, ITEM_B = make_item(10), make_item(11)


def render(placed, gain: float = 1.0) -> np.ndarray:
    frame = BACKGROUND.copy()
    for patch, (x, y) in placed:
        x, y = int(round(x)), int(round(y))
        h, w = patch.shape
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
        if x0 < x1 and y0 < y1:
            frame[y0:y1, x0:x1] = patch[y0 - y : y1 - y, x0 - x : x1 - x]
    grey = np.clip(frame * gain, 0, 255).astype(np.uint8)
    return cv2.merge([grey, grey, grey])


class Kiosk:
    """Plays scenes into a SearchTrigger at 10 fps and keeps every decision."""

    def __init__(self, **settings):
        counter = itertools.count(1)
        self.trigger = SearchTrigger(
            TriggerSettings(**settings), new_track_id=lambda: f"track-{next(counter)}"
        )
        self.t = 0.0
        self.show(1.5)  # the kiosk starts empty: the trigger learns the empty scene

    def show(self, seconds: float, *placed, gain=1.0) -> list:
        return [
            self._step(render(placed, gain(i) if callable(gain) else gain))
            for i in range(int(round(seconds * FPS)))
        ]

    def slide(self, seconds: float, patch, start, end) -> list:
        steps = int(round(seconds * FPS))
        return [
            self._step(
                render(
                    [
                        (
                            patch,
                            (
                                start[0] + (end[0] - start[0]) * i / steps,
                                start[1] + (end[1] - start[1]) * i / steps,
                            ),
                        )
                    ]
                )
            )
            for i in range(steps)
        ]

    def hold_jittery(self, seconds: float, patch) -> list:
        """Hand-held: wobbling by up to 2 px of a 320 px frame."""
        return [
            self._step(render([(patch, (CENTRE[0] + 2 * np.sin(i / 3), CENTRE[1] + 2 * np.cos(i / 4)))]))
            for i in range(int(round(seconds * FPS)))
        ]

    def _step(self, frame):
        decision = self.trigger.update(frame, self.t)
        self.t += 1 / FPS
        return decision


def searches(decisions) -> list:
    return [d for d in decisions if d.search]


def show_item(kiosk: Kiosk, patch, hold_s: float = 2.0) -> list:
    """An item slides in from the left, is held, and nothing else."""
    return kiosk.slide(1.0, patch, (-100, 60), CENTRE) + kiosk.hold_jittery(hold_s, patch)


def test_empty_scene_never_searches():
    kiosk = Kiosk()
    decisions = kiosk.show(10)
    assert not searches(decisions)
    assert {d.reason for d in decisions} == {"empty"}


def test_learning_first_then_empty():
    decisions = [SearchTrigger().update(render([]), t / FPS) for t in range(3)]
    assert all(d.reason == "learning the empty scene" and not d.search for d in decisions)


def test_no_search_while_moving_then_exactly_one_when_held():
    kiosk = Kiosk()
    moving = kiosk.slide(1.5, ITEM_A, (-100, 60), CENTRE)
    assert not searches(moving)
    assert any(d.present and d.reason == "moving" for d in moving)
    held = kiosk.hold_jittery(1.5, ITEM_A)
    found = searches(held)
    assert len(found) == 1 and found[0].reason == "new item"
    assert found[0].track_id == "track-1"
    assert held.index(found[0]) <= 0.6 * FPS  # steady_s after it stopped, plus a frame or two
    x, y, w, h = found[0].box
    assert x == pytest.approx(CENTRE[0] / W, abs=0.05) and w == pytest.approx(100 / W, abs=0.06)
    longer = kiosk.hold_jittery(6, ITEM_A)
    assert not searches(longer)
    assert {d.track_id for d in longer} == {"track-1"}
    assert {d.reason for d in longer} <= {"unchanged since last search", "settling", "moving"}


def test_swapped_item_is_searched_as_a_new_track():
    kiosk = Kiosk()
    first = searches(show_item(kiosk, ITEM_A))
    swapped = kiosk.show(2, (ITEM_B, CENTRE))
    second = searches(swapped)
    assert len(first) == 1 and len(second) == 1
    assert second[0].reason.startswith("different item")
    assert second[0].track_id != first[0].track_id


def test_item_removed_and_shown_again_after_a_gap_gets_a_new_track():
    kiosk = Kiosk()
    first = searches(show_item(kiosk, ITEM_A))
    leaving = kiosk.slide(0.8, ITEM_A, CENTRE, (W + 10, 60))
    gap = kiosk.show(1.5)
    again = searches(show_item(kiosk, ITEM_A))
    assert not searches(leaving + gap)
    assert gap[-1].track_id == ""
    assert len(first) == 1 and len(again) == 1
    assert again[0].track_id == "track-2" and again[0].reason == "new item"


def test_a_short_flicker_keeps_the_track():
    kiosk = Kiosk()
    first = searches(show_item(kiosk, ITEM_A))
    kiosk.show(0.2)  # shorter than empty_gap_s: an occlusion glitch, not a new customer
    again = searches(kiosk.hold_jittery(2, ITEM_A))
    assert not again
    assert first[0].track_id == "track-1"


def test_rate_limit_delays_the_next_search():
    kiosk = Kiosk(max_rate_hz=0.25, steady_s=0.2)
    first = kiosk.show(1, (ITEM_A, CENTRE))
    swapped = kiosk.show(5, (ITEM_B, CENTRE))
    decisions = first + swapped
    times = [i / FPS for i, d in enumerate(decisions) if d.search]
    assert len(times) == 2
    assert times[1] - times[0] == pytest.approx(4.0, abs=0.11)
    assert "rate limited" in {d.reason for d in swapped}


def test_lighting_drift_alone_never_searches():
    kiosk = Kiosk()
    steps = 30 * FPS
    drift = kiosk.show(30, gain=lambda i: 1.0 + 0.35 * i / steps + 0.04 * np.sin(i / 7))
    assert not searches(drift) and not any(d.present for d in drift)


def test_lighting_drift_while_held_does_not_search_again():
    kiosk = Kiosk()
    assert len(searches(show_item(kiosk, ITEM_A))) == 1
    dimming = kiosk.show(5, (ITEM_A, CENTRE), gain=lambda i: 1.0 - 0.25 * i / (5 * FPS))
    assert not searches(dimming)


def test_item_left_on_the_counter_becomes_background():
    kiosk = Kiosk(absorb_after_s=3)
    assert len(searches(show_item(kiosk, ITEM_A))) == 1
    left = kiosk.show(6, (ITEM_A, CENTRE))
    assert not searches(left)
    assert any("now background" in d.reason for d in left) and not left[-1].present
    removed = kiosk.show(2)  # taking it away shows the empty counter: not an item either
    assert not searches(removed) and not any(d.present for d in removed)
    assert len(searches(show_item(kiosk, ITEM_B))) == 1


def test_changed_mask_ignores_gain_and_one_pixel_shifts():
    blocks = np.random.default_rng(3).uniform(20, 235, (12, 16)).astype(np.float32)
    view = cv2.resize(blocks, VIEW_SIZE, interpolation=cv2.INTER_NEAREST)
    assert not changed_mask(view * 1.3, view, 14).any()
    shifted = np.roll(view, 1, axis=1)
    assert changed_mask(shifted, view, 14).mean() > 0.05
    assert changed_mask(shifted[:, 1:], view[:, 1:], 14, shift_tolerant=True).mean() < 0.01


def test_demo_video_searches_each_held_item_and_rarely_an_empty_scene():
    timeline = json.loads((REPO / "demo" / "video" / "timeline.json").read_text())
    capture = cv2.VideoCapture(str(REPO / "demo" / "video" / "demo.mp4"))
    trigger = SearchTrigger()
    found = []
    for n in itertools.count():
        ok, frame = capture.read()
        if not ok:
            break
        view = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), VIEW_SIZE, interpolation=cv2.INTER_AREA)
        t = n / timeline["fps"]
        if trigger.update(view, t).search:
            found.append(t)
    capture.release()
    assert n == timeline["frames"]
    items = timeline["items"]
    assert len(items) >= 10 and len({item["category"] for item in items}) == 10
    for item in items:
        assert any(item["hold_start_s"] <= t <= item["hold_end_s"] for t in found), item
    in_view = [t for t in found if any(i["enter_s"] <= t <= i["leave_s"] for i in items)]
    assert len(found) - len(in_view) <= 2
    assert len(found) <= 2 * len(items)


def test_each_photo_of_a_folder_is_searched_once_within_the_rate_limit():
    counter = itertools.count(1)
    trigger = StillTrigger(max_rate_hz=2.0, new_track_id=lambda: f"photo-{next(counter)}")
    shown = [0, 0, 0, 1, 1, 1, 1, 2, 3, 3, 3, 3]  # which photo each frame at 10 fps shows
    decisions = [trigger.update(still, n / FPS) for n, still in enumerate(shown)]
    searched = [(n, d.track_id) for n, d in enumerate(decisions) if d.search]
    assert searched == [(0, "photo-1"), (5, "photo-2"), (10, "photo-3")]  # photo 2 came too soon after 1
    assert decisions[7].reason == "rate limited" and decisions[11].reason == "unchanged since last search"
