"""`build-index --engine ray`: the rows of a catalog read, decoded and featurized on a Ray cluster.

    catalog rows -> tasks: read the image (path, s3://, https://), sha256, decode, preprocess,
                    thumbnail (skipped for rows the previous bundle already has)
                 -> actors: each loads the featurizer once and featurizes batches
                 -> Parquet shards at `shards`: row, image, image_sha256, problem (empty if
                    none), vector (float32 bytes; empty for reused rows), thumbnail (JPEG bytes)
                 -> read back here, shard by shard, into rows.RowResults (vectors to a
                    memory-mapped file, in catalog order)

The faiss index is then trained on a sample of that file and filled from it chunk by chunk, by
the same code as a local build, so the driver needs the memory of a few chunks, not of every
vector. Ray is an extra of the catalog side (`pip install .[ray]`); nothing on a device
imports this module.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloud_sync.indexing.catalog import Catalog, read_image_bytes
from cloud_sync.indexing.rows import RowResults
from cloud_sync.indexing.thumbnails import encode_thumbnail
from components.common.errors import BundleError, ImageError
from components.featurizer.model import Featurizer
from components.featurizer.preprocess import decode_image, preprocess

LOCAL_CLUSTER_CPUS = 2  # a cluster started here, without --ray-address
ROWS_PER_READ_TASK = 16
READ_TASK_CPUS = 0.5
MAX_MODEL_BYTES = 512 * 2**20  # the model directory travels to the actors through the object store


def quiet_ray_environment() -> None:
    """Ray reports usage statistics by default: to Anyscale's server from a cluster it starts,
    and, from Ray Data, by querying a Prometheus server it assumes on localhost:9090 long after
    the build. A catalog build sends nothing it was not asked to; RAY_USAGE_STATS_ENABLED=1
    in the environment still opts in."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@dataclass
class RayEngine:
    address: str | None = None  # None: start a local cluster; "auto": the one this machine is in
    actors: int = 1  # featurizer actors, one CPU each
    shards: str | None = None  # where the Parquet shards go (folder or s3://); None: a temp folder

    def __call__(self, catalog: Catalog, featurizer: Featurizer, rows: RowResults, progress: bool) -> None:
        if not self.address:  # a cluster of this machine alone: Ray on 127.0.0.1 only
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        quiet_ray_environment()
        import ray

        if self.address:
            ray.init(address=self.address, log_to_driver=False)
        else:
            ray.init(
                address="local",
                num_cpus=LOCAL_CLUSTER_CPUS,
                include_dashboard=False,
                log_to_driver=False,
                _node_ip_address="127.0.0.1",
            )
        scratch = None if self.shards else tempfile.mkdtemp(prefix="visual-search-shards-")
        try:
            shards = self.shards or scratch
            self._write_shards(ray, catalog, featurizer, rows, shards, progress)
            self._read_shards(ray, rows, shards)
        finally:
            ray.shutdown()
            if scratch:
                shutil.rmtree(scratch, ignore_errors=True)

    def _write_shards(self, ray, catalog, featurizer, rows, shards: str, progress: bool) -> None:
        import ray.data

        ray.data.DataContext.get_current().enable_progress_bars = progress
        model = ray.put(_model_files(featurizer.model_dir))
        listing = [{"row": row, "image": item.image} for row, item in enumerate(catalog.items)]
        dataset = ray.data.from_items(listing, override_num_blocks=max(1, len(listing) // ROWS_PER_READ_TASK))
        prepared = dataset.map_batches(
            _prepare,
            fn_kwargs={
                "root": str(catalog.root),
                "reusable": set(rows.reusable),  # digests only: 64 bytes a row
                "preprocessing": featurizer.preprocessing,
            },
            batch_format="pandas",
            num_cpus=READ_TASK_CPUS,  # differs from the actors': keeps decoding in separate tasks
        )
        featurized = prepared.map_batches(
            _FeaturizeActor,
            fn_constructor_kwargs={
                "model": model,
                "fingerprint": featurizer.fingerprint,
                "runtime": featurizer.runtime,
                "batch_size": featurizer.batch_size,
            },
            batch_size=featurizer.batch_size,
            batch_format="pandas",
            concurrency=self.actors,
            num_cpus=1,
        )
        featurized.write_parquet(shards)

    @staticmethod
    def _read_shards(ray, rows: RowResults, shards: str) -> None:
        import ray.data

        for batch in ray.data.read_parquet(shards).iter_batches(batch_format="pandas"):
            for record in batch.itertuples(index=False):
                row = int(record.row)
                if record.problem:
                    rows.fail(row, record.problem)
                elif not rows.hashed(row, record.image_sha256):
                    vector = np.frombuffer(record.vector, np.float32).copy()
                    rows.featurized(row, vector, bytes(record.thumbnail))


def _model_files(model_dir: Path) -> dict[str, bytes]:
    files = {p.name: p for p in Path(model_dir).iterdir() if p.is_file()}
    if sum(p.stat().st_size for p in files.values()) > MAX_MODEL_BYTES:
        raise BundleError(
            f"{model_dir}: more than {MAX_MODEL_BYTES >> 20} MiB; too large to send to Ray actors"
        )
    return {name: path.read_bytes() for name, path in files.items()}


def _prepare(batch, *, root: str, reusable, preprocessing):
    """A Ray task: read, hash, and (unless reused) decode, preprocess and thumbnail each row.
    Tensors travel as float32 bytes: empty for a reused or bad row."""
    digests, problems, tensors, thumbnails = [], [], [], []
    for image_ref in batch["image"]:
        digest, problem, tensor, thumbnail = "", "", b"", b""
        try:
            data = read_image_bytes(Path(root), image_ref)
            digest = hashlib.sha256(data).hexdigest()
            if digest not in reusable:
                image = decode_image(data, image_ref)
                tensor = preprocess(image, preprocessing).astype(np.float32).tobytes()
                thumbnail = encode_thumbnail(image)
        except ImageError as exc:
            problem = f"image {exc}"
        digests.append(digest)
        problems.append(problem)
        tensors.append(tensor)
        thumbnails.append(thumbnail)
    return batch.assign(image_sha256=digests, problem=problems, tensor=tensors, thumbnail=thumbnails)


class _FeaturizeActor:
    """A Ray actor: writes the model to a temporary folder once and keeps it loaded."""

    def __init__(self, model, fingerprint: str, runtime: str, batch_size: int):
        import ray

        self.folder = Path(tempfile.mkdtemp(prefix="visual-search-model-"))
        for name, data in ray.get(model).items():
            (self.folder / name).write_bytes(data)
        self.featurizer = Featurizer(self.folder, batch_size=batch_size, runtime=runtime)
        if self.featurizer.fingerprint != fingerprint:
            raise BundleError("the model sent to a Ray actor has another fingerprint than the driver's")
        self.shape = (3, self.featurizer.preprocessing.height, self.featurizer.preprocessing.width)

    def __call__(self, batch):
        todo = [i for i, tensor in enumerate(batch["tensor"]) if len(tensor)]
        vectors = [b""] * len(batch)
        if todo:
            tensors = np.stack(
                [np.frombuffer(batch["tensor"].iloc[i], np.float32).reshape(self.shape) for i in todo]
            )
            for i, vector in zip(todo, self.featurizer.featurize_tensors(tensors), strict=True):
                vectors[i] = vector.astype(np.float32).tobytes()
        return batch.drop(columns=["tensor"]).assign(vector=vectors)
