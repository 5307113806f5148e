"""Read PyTorch `.pth` state dicts into numpy arrays, without torch and without running code.

Two formats exist. The legacy one (torch < 1.6) is a sequence of pickles in one file:
magic number, protocol version, system info, the state dict (tensors appear as persistent
ids naming a storage), the list of storage keys, then each storage as an 8-byte
little-endian element count followed by its raw bytes. The zip format (torch >= 1.6)
holds the same state-dict pickle as `<dir>/data.pkl` and each storage as `<dir>/data/<key>`.

A pickle can call any importable function, so the unpickler here resolves only the few
globals a state dict of tensors needs and refuses every other one before anything runs.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.common.errors import ModelError

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


@dataclass(frozen=True)
class _StorageType:
    name: str
    dtype: np.dtype


@dataclass
class _Storage:
    key: str
    dtype: np.dtype
    numel: int
    root: "_Storage | None" = None  # legacy views: a slice of another storage
    view_offset: int = 0
    data: np.ndarray | None = None

    def elements(self) -> np.ndarray:
        if self.root is not None:
            return self.root.elements()[self.view_offset : self.view_offset + self.numel]
        return self.data


@dataclass
class _TensorRef:
    """A tensor whose storage bytes may not have been read yet (legacy files store them last)."""

    storage: _Storage
    offset: int
    shape: tuple
    stride: tuple

    def to_numpy(self, source: str) -> np.ndarray:
        flat = self.storage.elements()
        native = flat.dtype.newbyteorder("=")
        if len(self.shape) != len(self.stride):
            raise ModelError(
                f"{source}: a tensor of storage {self.storage.key} has mismatched shape and stride"
            )
        if 0 in self.shape:
            return np.zeros(self.shape, native)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.shape, self.stride))
        if self.offset < 0 or min(self.stride, default=0) < 0 or last >= len(flat):
            raise ModelError(f"{source}: a tensor reaches past the end of storage {self.storage.key}")
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :],
            shape=self.shape,
            writeable=False,
            strides=tuple(s * flat.itemsize for s in self.stride),
        )
        return np.array(view, dtype=native, order="C")  # a copy: owns its memory, native byte order


def _rebuild_tensor(
    storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, *_metadata
):
    if not isinstance(storage, _Storage):
        raise ValueError(f"a tensor is built from a {type(storage).__name__}, not a storage")
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


class _StateDictUnpickler(pickle.Unpickler):
    def __init__(
        self,
        handle,
        source: str,
        byte_order: str = "<",
        zip_storages: zipfile.ZipFile | None = None,
        zip_prefix: str = "",
    ):
        super().__init__(handle)
        self.source = source
        self.byte_order = byte_order
        self.storages: dict[str, _Storage] = {}
        self._zip = zip_storages
        self._zip_prefix = zip_prefix

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name, np.dtype(STORAGE_DTYPES[name]).newbyteorder(self.byte_order))
        raise ModelError(
            f"{self.source}: refused to load: its pickle references {module}.{name}, "
            f"which a plain state dict of tensors never needs"
        )

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage" or len(pid) not in (5, 6):
            raise ModelError(
                f"{self.source}: unsupported persistent id {str(pid)[:80]} "
                f"(only tensor storages are read, not pickled modules)"
            )
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise ModelError(f"{self.source}: storage {key} has no known element type")
        key = str(key)
        storage = self.storages.get(key)
        if storage is None:
            storage = self.storages[key] = _Storage(key, storage_type.dtype, int(numel))
            if self._zip is not None:
                storage.data = _zip_storage(self._zip, self._zip_prefix, storage, self.source)
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return storage
        view_key, view_offset, view_numel = view
        return self.storages.setdefault(
            str(view_key),
            _Storage(
                str(view_key), storage.dtype, int(view_numel), root=storage, view_offset=int(view_offset)
            ),
        )


def _zip_storage(archive: zipfile.ZipFile, prefix: str, storage: _Storage, source: str) -> np.ndarray:
    name = f"{prefix}data/{storage.key}"
    try:
        raw = archive.read(name)
    except KeyError:
        raise ModelError(f"{source}: storage {name} is missing from the archive") from None
    if len(raw) < storage.numel * storage.dtype.itemsize:
        raise ModelError(f"{source}: storage {name} is truncated")
    return np.frombuffer(raw, storage.dtype, count=storage.numel)


def load_state_dict(path: str | Path) -> "collections.OrderedDict[str, np.ndarray]":
    """A `.pth` state dict as name -> numpy array (shapes, strides and offsets applied)."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise ModelError(f"{source}: checkpoint file not found")
    try:
        if zipfile.is_zipfile(path):
            result = _load_zip(path, source)
        else:
            with open(path, "rb") as handle:
                result = _load_legacy(handle, source)
        return _tensors_of(result, source)
    except ModelError:
        raise
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        OverflowError,
        MemoryError,
        struct.error,
        zipfile.BadZipFile,
    ) as exc:
        raise ModelError(
            f"{source}: not a readable PyTorch checkpoint ({type(exc).__name__}: {str(exc)[:120]})"
        ) from None


def _load_legacy(handle, source: str):
    def plain_pickle():
        return _StateDictUnpickler(handle, source).load()  # plain values: refuses any global

    if plain_pickle() != LEGACY_MAGIC_NUMBER:
        raise ModelError(f"{source}: not a PyTorch checkpoint (wrong magic number)")
    version = plain_pickle()
    if version != LEGACY_PROTOCOL_VERSION:
        raise ModelError(f"{source}: PyTorch legacy protocol {version} is not supported")
    sys_info = plain_pickle()
    byte_order = "<" if not isinstance(sys_info, dict) or sys_info.get("little_endian", True) else ">"
    unpickler = _StateDictUnpickler(handle, source, byte_order)
    result = unpickler.load()
    keys = _StateDictUnpickler(handle, source).load()
    file_size = os.fstat(handle.fileno()).st_size
    for key in keys:
        storage = unpickler.storages.get(str(key))
        if storage is None or storage.root is not None:
            raise ModelError(f"{source}: storage list names unknown storage {key}")
        (numel,) = struct.unpack("<q", handle.read(8))
        if numel != storage.numel:
            raise ModelError(
                f"{source}: storage {key} holds {numel} elements, the state dict says {storage.numel}"
            )
        size = numel * storage.dtype.itemsize
        raw = handle.read(size) if size <= file_size - handle.tell() else b""
        if len(raw) != size:
            raise ModelError(f"{source}: truncated (storage {key} ends early)")
        storage.data = np.frombuffer(raw, storage.dtype)
    missing = [k for k, s in unpickler.storages.items() if s.root is None and s.data is None]
    if missing:
        raise ModelError(f"{source}: storages {', '.join(missing[:5])} have no data")
    return result


def _load_zip(path: Path, source: str):
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise ModelError(f"{source}: a zip but not a PyTorch checkpoint (no <dir>/data.pkl)")
        prefix = pickles[0][: -len("data.pkl")]
        byte_order = "<"
        if f"{prefix}byteorder" in archive.namelist():
            byte_order = "<" if archive.read(f"{prefix}byteorder").strip() == b"little" else ">"
        handle = io.BytesIO(archive.read(pickles[0]))
        return _StateDictUnpickler(handle, source, byte_order, archive, prefix).load()


def _tensors_of(result, source: str) -> "collections.OrderedDict[str, np.ndarray]":
    if isinstance(result, dict) and isinstance(result.get("state_dict"), dict):
        result = result["state_dict"]  # a training checkpoint that wraps the state dict
    if not isinstance(result, dict):
        raise ModelError(f"{source}: holds a {type(result).__name__}, not a state dict")
    tensors = collections.OrderedDict()
    for name, value in result.items():
        if not isinstance(value, _TensorRef):
            raise ModelError(f"{source}: entry {name!r} is a {type(value).__name__}, not a tensor")
        tensors[str(name)] = value.to_numpy(source)
    return tensors
