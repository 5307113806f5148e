"""When to search: an item is present, held steady, and the scene changed since the last search.

Pure: `SearchTrigger.update(frame, t)` looks only at the frame and its capture time, so
tests drive it with synthetic sequences. It works on a small blurred greyscale view of
each frame (64x48), compared after removing a global brightness gain (the median ratio
of the two views), so lighting drift alone does not count as a change.

`StillTrigger` is the trigger of a folder of photos: each image shown is one item, searched
once (no empty scene to learn, nothing held by hand).

Assumptions: the camera is fixed and the kiosk starts EMPTY; the first `background_s`
seconds are learned as the empty scene. If it starts with an item in view, that item is
taken for background, the empty counter looks "present" once it is taken away, and it
becomes background again after `absorb_after_s`. An item covering more than about half
of the view makes the gain estimate unreliable.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from components.featurizer.settings import TriggerSettings

VIEW_SIZE = (64, 48)  # width, height of the view the trigger compares
_NEIGHBOURS = np.ones((3, 3), np.uint8)


@dataclass(frozen=True)
class Decision:
    search: bool
    track_id: str  # "" until the present item's first search
    reason: str
    present: bool = False
    steady: bool = False
    box: tuple[float, float, float, float] | None = None  # item (x, y, w, h) as fractions of the frame


def small_view(frame: np.ndarray) -> np.ndarray:
    """Any BGR or grey frame -> the blurred 64x48 float32 grey view the trigger compares."""
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    if grey.shape[1] != VIEW_SIZE[0] or grey.shape[0] != VIEW_SIZE[1]:
        grey = cv2.resize(grey, VIEW_SIZE, interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(grey.astype(np.float32), (5, 5), 1.0)


def changed_mask(
    view: np.ndarray, reference: np.ndarray, threshold: float, shift_tolerant: bool = False
) -> np.ndarray:
    """Pixels that differ from `reference` once a global brightness gain is taken out.

    `shift_tolerant`: a pixel only counts as changed when it matches none of the reference's
    3x3 neighbours, so a hand-held item that wobbled by a pixel of the view is not a change.
    """
    gain = float(np.median((view + 1.0) / (reference + 1.0)))
    view = view / max(gain, 1e-3)
    if not shift_tolerant:
        return np.abs(view - reference) > threshold
    low, high = cv2.erode(reference, _NEIGHBOURS), cv2.dilate(reference, _NEIGHBOURS)
    return (view < low - threshold) | (view > high + threshold)


def item_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """Bounding box of the largest changed blob, as fractions of the view."""
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count < 2:
        return None
    x, y, w, h, _ = stats[1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))]
    height, width = mask.shape
    return x / width, y / height, w / width, h / height


class SearchTrigger:
    def __init__(
        self,
        settings: TriggerSettings = TriggerSettings(),
        new_track_id: Callable[[], str] = lambda: uuid.uuid4().hex[:12],
    ):
        self.settings = settings
        self._new_track_id = new_track_id
        self._learning: list[np.ndarray] = []
        self._learn_start: float | None = None
        self._empty: np.ndarray | None = None  # the empty scene
        self._absorbed: np.ndarray | None = None  # a scene left steady long enough to ignore
        self._previous: np.ndarray | None = None
        self._previous_t = 0.0
        self._last_motion_t = 0.0
        self._last_present_t = -math.inf
        self._track_id = ""
        self._searched: tuple[np.ndarray, np.ndarray] | None = None  # view and item mask
        self._last_search_t = -math.inf

    def update(self, frame: np.ndarray, t: float) -> Decision:
        view = small_view(frame)
        if self._empty is None:
            return self._learn(view, t)
        s = self.settings
        motion = changed_mask(view, self._previous, s.pixel_threshold).mean()
        dt = max(t - self._previous_t, 0.0)
        self._previous, self._previous_t = view, t
        if motion > s.motion_fraction:
            self._last_motion_t = t
        steady_for = t - self._last_motion_t
        steady = steady_for >= s.steady_s

        item_mask = changed_mask(view, self._empty, s.pixel_threshold)
        present = item_mask.mean() > s.present_fraction
        if present and self._absorbed is not None:
            present = changed_mask(view, self._absorbed, s.pixel_threshold).mean() > s.present_fraction
            if not present and motion <= s.motion_fraction:
                self._absorbed += _follow(dt, s.background_tau_s) * (view - self._absorbed)
        if not present:
            return self._empty_scene(view, t, dt, motion, item_mask)

        self._last_present_t = t
        if steady_for >= s.absorb_after_s:
            self._absorbed = view.copy()
            return Decision(
                False,
                self._track_id,
                f"steady for {steady_for:.0f} s: now background",
                present=True,
                steady=True,
            )
        if not steady:
            reason = "moving" if motion > s.motion_fraction else "settling"
            return Decision(False, self._track_id, reason, present=True)

        new_track = not self._track_id
        reason = "new item"
        if not new_track:
            searched_view, searched_mask = self._searched
            differs = changed_mask(view, searched_view, s.pixel_threshold, shift_tolerant=True).sum()
            change = differs / max(int((item_mask | searched_mask).sum()), 1)
            if change < s.change_fraction:
                return Decision(
                    False, self._track_id, "unchanged since last search", present=True, steady=True
                )
            new_track = change >= s.new_track_fraction
            reason = f"{'different item' if new_track else 'item changed'} ({change:.0%} of it differs)"
        if t - self._last_search_t < 1.0 / s.max_rate_hz:
            return Decision(False, self._track_id, "rate limited", present=True, steady=True)
        if new_track:
            self._track_id = self._new_track_id()
        self._searched = (view, item_mask)
        self._last_search_t = t
        return Decision(True, self._track_id, reason, present=True, steady=True, box=item_box(item_mask))

    def _learn(self, view: np.ndarray, t: float) -> Decision:
        if self._learn_start is None:
            self._learn_start = t
        self._learning.append(view)
        if t - self._learn_start >= self.settings.background_s:
            self._empty = np.mean(self._learning, axis=0).astype(np.float32)
            self._learning = []
            self._previous, self._previous_t, self._last_motion_t = view, t, t
        return Decision(False, "", "learning the empty scene")

    def _empty_scene(self, view, t, dt, motion, item_mask) -> Decision:
        s = self.settings
        if self._absorbed is not None and item_mask.mean() <= s.present_fraction:
            self._absorbed = None  # the item that became background was taken away
        if motion <= s.motion_fraction and item_mask.mean() <= s.present_fraction:
            self._empty += _follow(dt, s.background_tau_s) * (view - self._empty)
        if self._track_id and t - self._last_present_t > s.empty_gap_s:
            self._track_id, self._searched = "", None
        return Decision(False, self._track_id, "empty")


def _follow(dt: float, tau: float) -> float:
    """Share of the way a background moves toward the current view in `dt` seconds."""
    return 1.0 - math.exp(-dt / tau)


class StillTrigger:
    """Each photo of a folder source is one item: search it once, at most `max_rate_hz`."""

    def __init__(self, max_rate_hz: float, new_track_id: Callable[[], str] = lambda: uuid.uuid4().hex[:12]):
        self.period = 1.0 / max_rate_hz
        self._new_track_id = new_track_id
        self._searched_still = -1
        self._track_id = ""
        self._last_search_t = -math.inf

    def update(self, still: int, t: float) -> Decision:
        if still == self._searched_still:
            return Decision(False, self._track_id, "unchanged since last search", present=True, steady=True)
        if t - self._last_search_t < self.period:
            return Decision(False, self._track_id, "rate limited", present=True, steady=True)
        self._searched_still, self._track_id, self._last_search_t = still, self._new_track_id(), t
        return Decision(True, self._track_id, "new image", present=True, steady=True)
