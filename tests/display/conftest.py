"""Fixtures of the display tests: a demo bundle, the app in-process, and the whole kiosk over real IPC."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

import cv2
import pytest

from cloud_sync.indexing.build_index import build_bundle
from components.common.ipc import Ipc
from components.display.component import DisplayComponent
from components.display.settings import DisplaySettings
from components.local_search.component import LocalSearchComponent, LocalSearchSettings
from components.local_search.search import IndexBundle
from devkit.nucleus import ComponentSpec, LocalNucleus
from tests.conftest import DEMO_CATALOG
from tests.display.featurizer_stand_in import FeaturizerStandIn
from tests.kiosk_helpers import DISPLAY, FEATURIZER, LOCAL_SEARCH, recipe


@pytest.fixture(scope="session")
def demo_bundle(tiny_model, tmp_path_factory) -> IndexBundle:
    """The 200-item demo catalog indexed with the tiny test model."""
    out = tmp_path_factory.mktemp("display") / "bundle"
    build_bundle(DEMO_CATALOG, tiny_model, out, progress=False)
    return IndexBundle.open(out)


def catalog_item(bundle: IndexBundle, item_id: str) -> dict:
    faiss_id = bundle._db.execute("SELECT faiss_id FROM items WHERE item_id = ?", (item_id,)).fetchone()[0]
    return {"faiss_id": faiss_id, **bundle.items([faiss_id])[faiss_id]}


def catalog_image(item: dict) -> Path:
    return DEMO_CATALOG / item["image"]


def small_jpeg_b64(path: Path, side: int = 96) -> str:
    image = cv2.imread(str(path))
    scale = side / max(image.shape[:2])
    image = cv2.resize(image, (max(1, int(image.shape[1] * scale)), max(1, int(image.shape[0] * scale))))
    return base64.b64encode(cv2.imencode(".jpg", image)[1].tobytes()).decode()


class Kiosk:
    """The three components on the local nucleus stand-in: real local_search, real display,
    and the featurizer's part played by FeaturizerStandIn (until its component exists)."""

    def __init__(
        self, nucleus: LocalNucleus, bundle: IndexBundle, model_dir: Path, work_dir: Path, **display_settings
    ):
        self.nucleus = nucleus
        self.bundle = bundle
        settings = DisplaySettings(
            **{"port": 0, "work_dir": str(work_dir), "upload_timeout_s": 10.0, **display_settings}
        )
        self.display = DisplayComponent(Ipc(nucleus.connect(DISPLAY)), settings)
        self.display.start()  # first, so it hears local_search announce its bundle
        self.local_search = LocalSearchComponent(
            Ipc(nucleus.connect(LOCAL_SEARCH)),
            # fold_duplicates off: the tiny test model puts every photo within cosine 0.94-0.99
            LocalSearchSettings(
                bundle_dir=str(bundle.path),
                top_k=10,
                min_score=0.0,
                smoothing_window=1,
                fold_duplicates=False,
            ),
            bundle,
        )
        self.local_search.start()
        self.featurizer = FeaturizerStandIn(Ipc(nucleus.connect(FEATURIZER)), model_dir)
        self.featurizer.start()

    @property
    def url(self) -> str:
        return self.display.url

    def restart_display(self) -> None:
        """Stop the display and start a new one on the same port (as the nucleus restarts it)."""
        port, settings = self.display.server.port, self.display.settings
        self.display.stop()
        self.display.ipc.close()
        self.display = DisplayComponent(
            Ipc(self.nucleus.connect(DISPLAY)), dataclasses.replace(settings, port=port)
        )
        self.display.start()
        self.local_search.publish_status("running")

    def close(self) -> None:
        for component in (self.display, self.local_search):
            component.stop()
        for ipc in (self.display.ipc, self.local_search.ipc, self.featurizer.ipc):
            ipc.close()


@pytest.fixture(scope="module")
def kiosk(demo_bundle, tiny_model, tmp_path_factory):
    specs = [ComponentSpec.from_recipe(recipe(name)) for name in (FEATURIZER, LOCAL_SEARCH, DISPLAY)]
    with LocalNucleus(components=specs) as nucleus:
        stack = Kiosk(nucleus, demo_bundle, tiny_model, tmp_path_factory.mktemp("display-work"))
        yield stack
        stack.close()
