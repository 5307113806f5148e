"""The featurizer's settings applied live: the camera thread hands new thresholds to the same trigger."""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from components.common.settings import live_keys, needs_rebuild
from components.featurizer import component as featurizer_component
from components.featurizer.camera import Frame
from components.featurizer.settings import FeaturizerSettings, TriggerSettings
from tests.support.waiting import wait_until


class QuietIpc:
    def subscribe_json(self, topic, handler):
        pass

    def publish_json(self, topic, message):
        pass

    def publish_json_wait(self, topic, message, timeout=None):
        pass


class StubFeaturizer:
    fingerprint = "f" * 64

    def featurize(self, images):
        return np.zeros((len(images), 4), np.float32)


class EmptyScene:
    """A camera looking at an empty counter, 100 frames a second."""

    spec = "empty"

    def read(self) -> Frame:
        time.sleep(0.01)
        return Frame(np.full((48, 64, 3), 90, np.uint8), time.time())

    def close(self) -> None:
        pass


def test_trigger_thresholds_reach_the_running_trigger_without_a_new_scene(monkeypatch):
    triggers = []

    class RecordedTrigger(featurizer_component.SearchTrigger):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            triggers.append(self)

    monkeypatch.setattr(featurizer_component, "SearchTrigger", RecordedTrigger)
    settings = FeaturizerSettings(background_s=0.05, status_interval_s=60)
    component = featurizer_component.FeaturizerComponent(
        QuietIpc(), settings, StubFeaturizer(), open_source=lambda *a, **k: EmptyScene()
    )
    component.start()
    try:
        wait_until(lambda: triggers and triggers[-1]._empty is not None, 10, "the empty scene learned")
        running, made = triggers[-1], len(triggers)
        new = dataclasses.replace(settings, pixel_threshold=40.0, thumbnail_px=32)
        assert needs_rebuild(settings, new) == []
        component.apply_settings(new)
        wait_until(lambda: running.settings is new, 10, "the new thresholds in the trigger")
        # the same trigger: the learned scene is kept
        assert len(triggers) == made and running._empty is not None
        assert component.settings is new
    finally:
        component.stop()


def test_every_trigger_threshold_is_live_and_the_camera_is_not():
    trigger_keys = {f.name for f in dataclasses.fields(TriggerSettings)}
    assert trigger_keys <= live_keys(FeaturizerSettings)
    old = FeaturizerSettings()
    assert needs_rebuild(old, dataclasses.replace(old, camera="/dev/video1", steady_s=1.0)) == ["camera"]
