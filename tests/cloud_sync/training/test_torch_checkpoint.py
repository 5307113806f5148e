"""The torch-free `.pth` reader: tensors round-trip, and a crafted pickle never runs code."""

from __future__ import annotations

import collections
import io
import pickle
import struct
import sys
import types
import zipfile

import numpy as np
import pytest

from cloud_sync.training.torch_checkpoint import LEGACY_MAGIC_NUMBER, LEGACY_PROTOCOL_VERSION, load_state_dict
from components.common.errors import ModelError


class FakeStorage:
    def __init__(self, key, values):
        self.key, self.values = key, np.ascontiguousarray(values)


class FakeTensor:
    def __init__(self, storage, offset, shape, stride):
        self.args = (storage, offset, tuple(shape), tuple(stride), False, collections.OrderedDict())

    def __reduce__(self):
        return sys.modules["torch._utils"]._rebuild_tensor_v2, self.args


@pytest.fixture
def fake_torch(monkeypatch):
    """Just enough of a `torch` module for pickle to write the globals a real checkpoint names."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")
    storage_types = {}
    for name in ("FloatStorage", "LongStorage", "HalfStorage"):
        storage_types[name] = type(name, (), {"__module__": "torch"})
        setattr(torch, name, storage_types[name])

    def _rebuild_tensor_v2(*args):
        raise AssertionError("only written, never called")

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch._utils = utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return storage_types


def storage_type_of(values, storage_types):
    return storage_types[
        {
            np.dtype(np.float32): "FloatStorage",
            np.dtype(np.int64): "LongStorage",
            np.dtype(np.float16): "HalfStorage",
        }[values.dtype]
    ]


def pickle_state_dict(state, storage_types, legacy: bool) -> tuple[bytes, list[FakeStorage]]:
    buffer, storages = io.BytesIO(), []

    class Writer(pickle.Pickler):
        def persistent_id(self, obj):
            if not isinstance(obj, FakeStorage):
                return None
            if obj not in storages:
                storages.append(obj)
            pid = ("storage", storage_type_of(obj.values, storage_types), obj.key, "cpu", obj.values.size)
            return pid + (None,) if legacy else pid

    Writer(buffer, protocol=2).dump(state)
    return buffer.getvalue(), storages


def write_legacy(path, state, storage_types):
    body, storages = pickle_state_dict(state, storage_types, legacy=True)
    with open(path, "wb") as handle:
        for header in (
            LEGACY_MAGIC_NUMBER,
            LEGACY_PROTOCOL_VERSION,
            {
                "protocol_version": 1001,
                "little_endian": True,
                "type_sizes": {"short": 2, "int": 4, "long": 4},
            },
        ):
            pickle.dump(header, handle, protocol=2)
        handle.write(body)
        pickle.dump([s.key for s in storages], handle, protocol=2)
        for storage in storages:
            handle.write(
                struct.pack("<q", storage.values.size)
                + storage.values.astype(storage.values.dtype.newbyteorder("<")).tobytes()
            )


def write_zip(path, state, storage_types):
    body, storages = pickle_state_dict(state, storage_types, legacy=False)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model/data.pkl", body)
        archive.writestr("model/byteorder", "little")
        for storage in storages:
            archive.writestr(f"model/data/{storage.key}", storage.values.tobytes())


def sample_state():
    weights = np.arange(24, dtype=np.float32) * 0.5 - 3
    shared = FakeStorage("0", weights)
    counter = FakeStorage("1", np.array([7], dtype=np.int64))
    halves = FakeStorage("2", np.array([1.5, -2.25, 8.0], dtype=np.float16))
    state = collections.OrderedDict(
        [
            ("conv.weight", FakeTensor(shared, 0, (2, 3, 2, 2), (12, 4, 2, 1))),
            ("conv.weight_t", FakeTensor(shared, 0, (4, 6), (1, 4))),  # a transposed (non-contiguous) view
            ("tail", FakeTensor(shared, 20, (4,), (1,))),  # offset into the same storage
            ("bn.num_batches_tracked", FakeTensor(counter, 0, (), ())),
            ("half", FakeTensor(halves, 1, (2,), (1,))),
        ]
    )
    expected = {
        "conv.weight": weights.reshape(2, 3, 2, 2),
        "conv.weight_t": weights.reshape(6, 4).T,
        "tail": weights[20:],
        "bn.num_batches_tracked": np.array(7, np.int64),
        "half": np.array([-2.25, 8.0], np.float16),
    }
    return state, expected


@pytest.mark.parametrize("writer", [write_legacy, write_zip], ids=["legacy", "zip"])
def test_tensors_round_trip_with_shape_stride_offset_and_dtype(tmp_path, fake_torch, writer):
    state, expected = sample_state()
    path = tmp_path / "model.pth"
    writer(path, state, fake_torch)
    loaded = load_state_dict(path)
    assert list(loaded) == list(expected)
    for name, value in expected.items():
        assert loaded[name].dtype == value.dtype, name
        assert loaded[name].shape == value.shape, name
        np.testing.assert_array_equal(loaded[name], value)
    assert loaded["conv.weight_t"].flags.c_contiguous


def legacy_headers() -> bytes:
    return b"".join(pickle.dumps(v, protocol=2) for v in (LEGACY_MAGIC_NUMBER, LEGACY_PROTOCOL_VERSION, {}))


def crafted(module: str, name: str, argument: str) -> bytes:
    """A protocol-0 pickle that calls module.name(argument) when loaded by plain `pickle`."""
    return f"c{module}\n{name}\n(V{argument}\ntR.".encode()


@pytest.mark.parametrize(
    "module,name,argument",
    [
        ("os", "system", "touch {marker}"),
        ("builtins", "eval", "__import__('pathlib').Path({marker!r}).touch()"),
        ("posix", "system", "touch {marker}"),
    ],
)
@pytest.mark.parametrize("where", ["state dict", "header", "zip"])
def test_crafted_checkpoint_is_refused_before_anything_runs(tmp_path, module, name, argument, where):
    marker = str(tmp_path / "ran")
    payload = crafted(module, name, argument.format(marker=marker))
    path = tmp_path / "evil.pth"
    if where == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("evil/data.pkl", payload)
    else:
        path.write_bytes(payload if where == "header" else legacy_headers() + payload)
    with pytest.raises(ModelError) as error:
        load_state_dict(path)
    assert str(path) in str(error.value) and f"{module}.{name}" in str(error.value)
    assert not (tmp_path / "ran").exists()


def test_the_crafted_payload_is_live_under_plain_pickle(tmp_path):
    """Control for the test above: the same bytes do run code when loaded without restrictions."""
    marker = tmp_path / "ran"
    pickle.loads(crafted("builtins", "eval", f"__import__('pathlib').Path({str(marker)!r}).touch()"))
    assert marker.exists()


def test_pickled_module_and_non_tensor_entries_are_refused(tmp_path):
    class WholeModelWriter(pickle.Pickler):  # torch.save(model) stores module source as ('module', ...)
        def persistent_id(self, obj):
            return ("module", "Linear", "linear.py", "source code") if obj == "the model" else None

    body = io.BytesIO()
    WholeModelWriter(body, protocol=2).dump("the model")
    path = tmp_path / "module.pth"
    path.write_bytes(legacy_headers() + body.getvalue())
    with pytest.raises(ModelError, match="persistent id"):
        load_state_dict(path)
    path.write_bytes(legacy_headers() + pickle.dumps({"lr": 0.1}, protocol=2) + pickle.dumps([], protocol=2))
    with pytest.raises(ModelError, match="'lr' is a float, not a tensor"):
        load_state_dict(path)


def test_truncated_or_foreign_files_give_one_line_errors(tmp_path, fake_torch):
    state, _ = sample_state()
    path = tmp_path / "cut.pth"
    write_legacy(path, state, fake_torch)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ModelError, match="truncated"):
        load_state_dict(path)
    path.write_bytes(b"\x89PNG not a checkpoint")
    with pytest.raises(ModelError, match="not a readable PyTorch checkpoint"):
        load_state_dict(path)
    with pytest.raises(ModelError, match="not found"):
        load_state_dict(tmp_path / "absent.pth")
