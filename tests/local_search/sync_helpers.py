"""Helpers of the index sync tests: bundles of two distinguishable catalogs, a publisher to
the S3 layout (moto), a TCP proxy that can cut S3 off, and waiting on a condition."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from cloud_sync.indexing.build_index import build_bundle
from components.common import messages, s3_layout
from components.common.bundle import MANIFEST, manifest_digest, read_manifest
from components.local_search.index_sync import Backoff
from tests.conftest import demo_image, write_csv_catalog

CATALOGS = {1: ("dress", "shoes"), 2: ("hat", "skirt"), 3: ("pants", "shirt")}


def make_bundle(model_dir: Path, root: Path, version: int) -> Path:
    """Index version `version` of a small catalog whose item ids all start with `v<version>-`."""
    rows, images = [], {}
    for category in CATALOGS[version]:
        for n in range(4):
            rel = f"images/{category}-{n}.jpg"
            images[rel] = demo_image(category, n)
            rows.append(
                {
                    "id": f"v{version}-{category}-{n}",
                    "image": rel,
                    "title": f"{category} {n}",
                    "category": category,
                    "price": "9.99",
                    "location": f"aisle {version}",
                }
            )
    catalog = write_csv_catalog(root / f"catalog-{version}", rows, images)
    out = root / f"bundle-{version}"
    build_bundle(catalog, model_dir, out, index_version=version, progress=False)
    return out


def with_fingerprint(bundle_dir: Path, out: Path, fingerprint: str) -> Path:
    """A copy of a bundle whose manifest claims another model (files untouched)."""
    shutil.copytree(bundle_dir, out)
    manifest = read_manifest(out)
    manifest["model"]["fingerprint"] = fingerprint
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return out


def upload(
    s3,
    bucket: str,
    prefix: str,
    bundle_dir: Path,
    *,
    flip: str | None = None,
    layout: str = s3_layout.CONTENT_LAYOUT,
) -> s3_layout.Pointer:
    """Put every file of the bundle where `layout` stores it (with one byte of `flip` inverted)."""
    manifest = read_manifest(bundle_dir)
    version = manifest["index_version"]
    for path in sorted(p for p in Path(bundle_dir).rglob("*") if p.is_file()):
        rel = path.relative_to(bundle_dir).as_posix()
        data = bytearray(path.read_bytes())
        if rel == flip:
            data[len(data) // 2] ^= 0xFF
        if rel == MANIFEST:
            key = s3_layout.bundle_key(prefix, version, rel)
        else:
            entry = {**manifest.get("reuse", {}), **manifest["files"]}[rel]
            key = s3_layout.file_key(prefix, version, rel, entry["sha256"], layout)
        s3.put_object(Bucket=bucket, Key=key, Body=bytes(data))
    return s3_layout.Pointer(
        index_version=version,
        manifest_sha256=manifest_digest(bundle_dir),
        item_count=manifest["item_count"],
        model_fingerprint=manifest["model"]["fingerprint"],
        layout=layout,
    )


def point_latest(s3, bucket: str, prefix: str, pointer: s3_layout.Pointer) -> None:
    s3.put_object(Bucket=bucket, Key=s3_layout.latest_key(prefix), Body=pointer.to_json())


def publish(s3, bucket: str, prefix: str, bundle_dir: Path, **upload_options) -> s3_layout.Pointer:
    """What publish-index does, in its order: the files first, LATEST last."""
    pointer = upload(s3, bucket, prefix, bundle_dir, **upload_options)
    point_latest(s3, bucket, prefix, pointer)
    return pointer


class SwitchableProxy:
    """A TCP proxy on 127.0.0.1 in front of `target`; `set_up(False)` cuts every connection
    and refuses new ones (closed at once), as when the device loses its network."""

    def __init__(self, target: str):
        host, port = target.rsplit("//", 1)[-1].split(":")
        self.target = (host, int(port))
        self.up = True
        self.refused = 0
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def set_up(self, up: bool) -> None:
        with self._lock:
            self.up = up
            cut, self._sockets = (self._sockets, set()) if not up else (set(), self._sockets)
        for sock in cut:
            _close(sock)

    def close(self) -> None:
        self.set_up(False)
        _close(self._server)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                up = self.up
                if not up:
                    self.refused += 1
            if not up:
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._sockets |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            _close(source)
            _close(sink)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


# --- local_search as on a device: built by __main__.build, real IPC, nucleus stand-in ---------
FAST_BACKOFF = Backoff(base_s=0.05, cap_s=0.5)


def device_nucleus():
    from devkit.nucleus import ComponentSpec, LocalNucleus
    from tests.kiosk_helpers import DISPLAY, FEATURIZER, LOCAL_SEARCH, recipe

    return LocalNucleus(
        components=[ComponentSpec.from_recipe(recipe(n)) for n in (FEATURIZER, LOCAL_SEARCH, DISPLAY)]
    )


@contextmanager
def running_device(nucleus, settings, backoff: Backoff = FAST_BACKOFF):
    """Build local_search as its process does, start it; yields a namespace with `component`,
    `status` and `matches` inboxes, `events` (its QueryEvents) and `ask(vector, query_id)`."""
    from components.common.ipc import Ipc
    from components.common.messages import FeatureMessage
    from components.local_search.__main__ import build
    from tests.kiosk_helpers import DISPLAY, FEATURIZER, LOCAL_SEARCH
    from tests.support.inbox import Inbox

    component = build(Ipc(nucleus.connect(LOCAL_SEARCH)), settings)
    if component.sync is not None:
        component.sync.backoff = backoff
    events: list = []
    component.query_listeners.append(events.append)
    status = Inbox.subscribe(nucleus, DISPLAY, messages.status_topic("local_search"))
    matches = Inbox.subscribe(nucleus, DISPLAY, messages.MATCHES)
    featurizer = Ipc(nucleus.connect(FEATURIZER))

    def send(vector, query_id: str, fingerprint: str | None = None, track_id: str = "") -> None:
        served = component.bundle
        message = FeatureMessage(
            query_id=query_id,
            capture_time=time.time(),
            track_id=track_id,
            model_fingerprint=fingerprint or served.model_fingerprint,
            vector=np.asarray(vector, np.float32),
        )
        featurizer.publish_json(messages.FEATURES, message.to_json())

    def ask(vector, query_id: str, timeout: float = 10.0) -> dict:
        send(vector, query_id)
        return matches.next(timeout=timeout, where=lambda m: m["query_id"] == query_id)

    component.start()
    try:
        yield SimpleNamespace(
            component=component, status=status, matches=matches, events=events, send=send, ask=ask
        )
    finally:
        component.stop()
        for ipc in (featurizer, status.ipc, matches.ipc, component.ipc):
            ipc.close()


def sync_settings(bucket: str, **overrides):
    from components.local_search.component import LocalSearchSettings

    return LocalSearchSettings(
        **{
            "index_bucket": bucket,
            "index_prefix": "fleet/store-7",
            "poll_interval_s": 3600.0,
            "status_interval_s": 1.0,
            "min_score": -1.0,
            "smoothing_window": 1,
            "top_k": 3,
            "fold_duplicates": False,  # the tiny test model puts every photo within cosine 0.94-0.99
            **overrides,
        }
    )
