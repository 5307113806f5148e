"""Featurizing a catalog overlaps decoding and the model, yet answers as one image at a time would."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from cloud_sync.indexing.catalog import read_catalog
from cloud_sync.indexing.embed import featurize_catalog
from components.featurizer.model import Featurizer
from components.featurizer.preprocess import read_image
from tests.conftest import demo_image, write_csv_catalog


@pytest.mark.parametrize("runtime", ["mxnet", "onnxruntime"])
def test_vectors_come_back_in_catalog_order_with_bad_images_reported(tiny_model, tmp_path, runtime):
    images = {f"img/{c}{n}.jpg": demo_image(c, n) for c in ("dress", "hat", "shoes") for n in range(5)}
    rows = [{"id": rel[4:-4], "image": rel, "title": rel} for rel in images]
    rows.insert(7, {"id": "broken", "image": "img/broken.jpg", "title": "corrupt"})
    root = write_csv_catalog(tmp_path / "catalog", rows, images)
    (root / "img" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    featurizer = Featurizer(tiny_model, batch_size=2, runtime=runtime)  # many batches in flight
    seen: dict[str, tuple] = {}
    threads = set()

    def on_image(item, image):
        seen[item.id] = image.shape
        threads.add(threading.current_thread().name)

    result = featurize_catalog(read_catalog(root), featurizer, progress=False, on_image=on_image)
    assert [item.id for item in result.items] == [row["id"] for row in rows if row["id"] != "broken"]
    assert len(result.problems) == 1 and "broken.jpg" in result.problems[0].reason
    assert set(seen) == {item.id for item in result.items}
    one_by_one = np.concatenate([featurizer.featurize([read_image(path)]) for path in images.values()])
    np.testing.assert_allclose(result.vectors, one_by_one, atol=1e-5)
    assert threading.current_thread().name not in threads  # decoding ran beside the caller
