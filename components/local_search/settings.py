"""local_search's settings: one table (key, default, help), read from its Greengrass configuration.

Settings marked `live` take effect in the running component on a configuration update;
changing any other one rebuilds the component (bundle reopened, sync and telemetry
restarted). See `components/common/settings.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from components.common.settings import setting

COMPONENT = "local_search"
GREENGRASS_NAME = "com.visualsearch.LocalSearch"


@dataclass(frozen=True)
class LocalSearchSettings:
    # Keys of older versions that a device may still hold: old name -> what became of it.
    # They are logged and ignored, never refused. Add one here whenever a key is renamed or dropped.
    RETIRED: ClassVar[dict[str, str]] = {}

    bundle_dir: str = setting(
        "",
        "Index bundle served when nothing has been synced from S3 yet (with "
        "index_bucket set, the last synced version wins once there is one).",
    )
    top_k: int = setting(5, "Matches shown per query.", min=1, max=50, live=True)
    min_score: float | None = setting(
        None,
        "Cosine similarity below which a match is not shown; no match "
        "above it is a 'no good match' result. Empty: the index bundle's "
        "calibrated min_score (0.35 for a bundle without one).",
        min=-1.0,
        max=1.0,
        live=True,
    )
    smoothing_window: int = setting(
        3,
        "Queries of the same held item averaged to keep the ranking steady " "(1 = off).",
        min=1,
        max=20,
        live=True,
    )
    fold_duplicates: bool = setting(
        True,
        "Show products whose best-matching pictures are near-identical (one photo under "
        "several ids, e.g. one per size or colour) once, the others listed as its variants.",
        live=True,
    )
    fold_similarity: float = setting(
        0.92,
        "Cosine similarity at or above which two pictures count as near-identical for "
        "fold_duplicates (measured: docs/formats.md#search-products-filters-and-folding).",
        min=0.5,
        max=1.0,
        live=True,
    )
    status_interval_s: float = setting(10.0, "Seconds between status messages.", min=1.0, live=True)
    index_bucket: str = setting(
        "", "S3 bucket that publish-index writes to; empty = no sync, serve bundle_dir only."
    )
    index_prefix: str = setting("", "Key prefix under the bucket (bundles are under <prefix>/indexes/).")
    index_dir: str = setting(
        "indexes",
        "Where synced bundles are kept on the device "
        "(relative paths are under the component's work directory).",
    )
    poll_interval_s: float = setting(
        300.0,
        "Seconds between checks of the LATEST pointer in S3 "
        "(an index-updated message from IoT Core triggers one at once).",
        min=0.1,
        live=True,
    )
    telemetry_interval_s: float = setting(
        60.0, "Seconds of usage aggregated into one telemetry record.", min=0.01
    )
    telemetry_queue_max: int = setting(
        10080,
        "Telemetry records kept on disk while offline (10080 = 7 days "
        "of minutes); beyond it the oldest are dropped and counted.",
        min=10,
    )

    def problems(self) -> list[str]:
        if not self.bundle_dir and not self.index_bucket:
            return [
                f"{COMPONENT}.bundle_dir: not set, and no index_bucket to sync from "
                f"(set one of them: the index bundle to serve)"
            ]
        return []
