"""The index bundle as the display uses it: catalog thumbnails and keyword search.

The bundle directory comes from the `bundle_dir` setting or, when that is empty, from
local_search's status messages; when local_search announces another bundle, it is opened
and replaces the old one. A bundle that does not open is logged and the previous one kept.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from components.common.bundle import THUMBNAIL_DIR
from components.common.errors import VisualSearchError
from components.common.items import ItemStore

log = logging.getLogger("display")


class CatalogUnavailable(VisualSearchError):
    """No index bundle is known yet (local_search has not announced one)."""


class Catalog:
    def __init__(self, bundle_dir: str = ""):
        self._lock = threading.Lock()
        self._bundle: ItemStore | None = None
        self._previous: ItemStore | None = None  # matches in flight during a swap still show pictures
        self._fixed = bool(bundle_dir)
        self._failed: tuple | None = None  # the announcement that did not open: said once, not every status
        if bundle_dir and not self._open(bundle_dir):
            raise CatalogUnavailable(
                f"display.bundle_dir: {bundle_dir} does not open as an index bundle "
                f"(see the error above); fix it or leave it empty to follow local_search"
            )

    @property
    def bundle(self) -> ItemStore | None:
        with self._lock:
            return self._bundle

    def follow(self, bundle_dir: str, index_version) -> None:
        """local_search announced `bundle_dir` at `index_version`: open it if it is new."""
        if self._fixed or not bundle_dir:
            return
        current = self.bundle
        if current is not None and str(current.path) == bundle_dir and current.version == index_version:
            return
        if self._failed == (bundle_dir, index_version):
            return
        if not self._open(bundle_dir):
            self._failed = (bundle_dir, index_version)

    def _open(self, bundle_dir: str) -> bool:
        try:
            bundle = ItemStore.open(bundle_dir)
        except VisualSearchError as exc:
            log.error("cannot open index bundle: %s", exc)
            return False
        with self._lock:
            self._previous, self._bundle = self._bundle, bundle
        log.info("catalog: bundle %s version %s, %d items", bundle.path, bundle.version, len(bundle))
        return True

    def require(self) -> ItemStore:
        bundle = self.bundle
        if bundle is None:
            raise CatalogUnavailable(
                "the catalog is not available yet (no index bundle announced by local_search)"
            )
        return bundle

    def items(self, faiss_ids: list[int]) -> dict[int, dict]:
        return self.require().items(faiss_ids)

    def thumbnail_file(self, index_version: int, name: str) -> Path | None:
        """The file behind /catalog/<version>/thumbnails/<name>, or None (other version, bad name)."""
        if "/" in name or "\\" in name or name.startswith("."):
            return None
        with self._lock:
            bundles = [
                b for b in (self._bundle, self._previous) if b is not None and b.version == index_version
            ]
        for bundle in bundles:
            path = bundle.path / THUMBNAIL_DIR / name
            if path.is_file():
                return path
        return None

    def summary(self) -> dict:
        bundle = self.bundle
        if bundle is None:
            return {"index_version": None, "items": None, "created_at": None}
        return {
            "index_version": bundle.version,
            "items": len(bundle),
            "created_at": bundle.manifest.get("created_at"),
        }
