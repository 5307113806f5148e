"""The featurizer's settings: one table (key, default, help), read from its Greengrass configuration.

`TriggerSettings` are the thresholds of the search trigger (`trigger.py` takes only those);
`FeaturizerSettings` adds the camera, the model, uploads and status. Settings marked `live`
take effect in the running component on a configuration update; changing any other one
rebuilds the component (camera reopened, model reloaded). See `components/common/settings.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from components.common.settings import setting

COMPONENT = "featurizer"
GREENGRASS_NAME = "com.visualsearch.Featurizer"


@dataclass(frozen=True)
class TriggerSettings:
    max_rate_hz: float = setting(
        2.0, "at most this many camera searches per second", min=0.01, max=30, live=True
    )
    pixel_threshold: float = setting(
        14.0,
        "grey levels (0-255) by which a pixel of the 64x48 view must differ to count as changed",
        min=1,
        max=255,
        live=True,
    )
    present_fraction: float = setting(
        0.04,
        "share of the view that must differ from the empty scene for an item to be present",
        min=0.001,
        max=1,
        live=True,
    )
    motion_fraction: float = setting(
        0.01,
        "share of the view that may change between two frames while the item counts as steady",
        min=0,
        max=1,
        live=True,
    )
    steady_s: float = setting(
        0.4, "seconds the item must be held steady before a search", min=0, max=10, live=True
    )
    change_fraction: float = setting(
        0.25,
        "share of the item's area that must differ from the last searched view to search again",
        min=0.01,
        max=1,
        live=True,
    )
    new_track_fraction: float = setting(
        0.6,
        "share of the item's area that must differ from the last searched view to call it a new item "
        "(new track id) although the scene never emptied",
        min=0.01,
        max=1,
        live=True,
    )
    empty_gap_s: float = setting(
        0.5,
        "seconds the scene must stay empty before the next item gets a new track id",
        min=0,
        max=60,
        live=True,
    )
    background_s: float = setting(
        1.0,
        "seconds watched at start to learn the empty scene (the kiosk must start empty)",
        min=0,
        max=60,
        live=True,
    )
    background_tau_s: float = setting(
        10.0,
        "time constant (s) with which the empty scene follows slow lighting changes",
        min=0.1,
        max=3600,
        live=True,
    )
    absorb_after_s: float = setting(
        30.0,
        "a scene held steady this long becomes background: an item left on the counter stops " "triggering",
        min=1,
        max=86400,
        live=True,
    )


@dataclass(frozen=True)
class FeaturizerSettings(TriggerSettings):
    # Keys of older versions that a device may still hold: old name -> what became of it.
    # They are logged and ignored, never refused. Add one here whenever a key is renamed or dropped.
    RETIRED: ClassVar[dict[str, str]] = {}

    camera: str = setting(
        "0",
        "camera index or device (/dev/video0), video file, folder of images, "
        "or rtsp:// / http(s):// stream URL",
    )
    model_dir: str = setting(
        "models/demo-featurizer",
        "featurizer directory; a relative path is looked up "
        "in the working directory, then in the artifact",
    )
    loop_video: bool = setting(False, "start a video file or image folder again when it ends")
    realtime: bool = setting(
        True, "play video files and folders at their frame rate (false: as fast as read)"
    )
    image_s: float = setting(2.0, "seconds each image of a folder source is shown", min=0.1, max=3600)
    crop_to_item: bool = setting(
        True, "featurize the item's bounding box (plus a margin), not the whole frame", live=True
    )
    thumbnail_px: int = setting(
        96, "longest side of the JPEG thumbnail in feature messages (0: none)", min=0, max=256, live=True
    )
    upload_dir: str = setting(
        "../com.visualsearch.Display/uploads",
        "folder of the display's uploads: query files are read only from there (regular "
        "files, no links out of it); a relative path is under this component's work "
        "directory, and Greengrass gives each component work/<ComponentName>, so the "
        "default is the display's uploads when its work_dir is left empty",
        live=True,
    )
    clip_every_s: float = setting(
        1.0,
        "seconds between the frames of an uploaded video clip that are searched",
        min=0.1,
        max=60,
        live=True,
    )
    clip_max_frames: int = setting(
        30, "most frames of one clip that are featurized", min=1, max=300, live=True
    )
    clip_duplicate_similarity: float = setting(
        0.97,
        "a clip frame whose cosine similarity to the last kept frame is above this is dropped",
        min=0,
        max=1,
        live=True,
    )
    status_interval_s: float = setting(10.0, "seconds between status reports", min=0.5, max=3600, live=True)
    reconnect_initial_s: float = setting(
        0.5, "first wait before reopening a failed camera (doubles on " "each failure)", min=0.01, max=60
    )
    reconnect_max_s: float = setting(30.0, "longest wait between camera reopen attempts", min=0.1, max=3600)

    def problems(self) -> list[str]:
        if self.reconnect_initial_s > self.reconnect_max_s:
            return [
                f"{COMPONENT}.reconnect_initial_s: {self.reconnect_initial_s!r} is more than "
                f"reconnect_max_s ({self.reconnect_max_s!r})"
            ]
        return []
