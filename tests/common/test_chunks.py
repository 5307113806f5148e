"""Content-defined chunks: the cuts follow the content, so an edit changes only nearby chunks."""

import hashlib

import numpy as np
import pytest

from components.common.chunks import MAX_CHUNK, MIN_CHUNK, ChunkList, cut, local_chunks, mapped
from components.common.errors import BundleError


def random_bytes(size: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def hashes(data: bytes) -> list[str]:
    return [hashlib.sha256(data[o : o + n]).hexdigest() for o, n in cut(data)]


def test_chunks_cover_the_data_in_order_within_their_size_limits():
    data = random_bytes(3_000_000)
    chunks = cut(data)
    assert chunks[0][0] == 0 and sum(n for _, n in chunks) == len(data)
    assert all(a + n == b for (a, n), (b, _) in zip(chunks, chunks[1:]))
    assert all(MIN_CHUNK <= n <= MAX_CHUNK for _, n in chunks[:-1])
    assert cut(b"") == [] and cut(b"tiny") == [(0, 4)]


def test_removing_or_changing_a_row_changes_only_the_chunks_around_it():
    data = random_bytes(4_000_000, seed=1)
    before = hashes(data)
    removed = data[:2_000_000] + data[2_005_120:]  # one 1280-d float32 row less
    changed = data[:1_000_000] + bytes(8) + data[1_000_008:]
    for edited in (removed, changed):
        after = hashes(edited)
        assert len(set(after) - set(before)) <= 3 and len(before) > 30


def test_a_chunk_list_round_trips_and_a_bad_one_is_refused():
    data = random_bytes(500_000, seed=2)
    listing = ChunkList.of(data)
    assert ChunkList.from_json(listing.to_json(), "x") == listing
    assert listing.sha256 == hashlib.sha256(data).hexdigest() and listing.size == len(data)
    with pytest.raises(BundleError, match="x.chunks: not a chunk list"):
        ChunkList.from_json(b"<html>", "x.chunks")


def test_files_on_disk_are_cut_through_a_mapping_as_their_bytes_are(tmp_path):
    data = random_bytes(3 << 20, seed=4)
    (tmp_path / "big.bin").write_bytes(data)
    (tmp_path / "empty.bin").write_bytes(b"")
    with mapped(tmp_path / "big.bin") as view:
        assert ChunkList.of(view) == ChunkList.of(data)
    with mapped(tmp_path / "empty.bin") as view:
        assert view == b""
    held = local_chunks([tmp_path / "big.bin", tmp_path / "empty.bin", tmp_path / "gone.bin"])
    assert sorted(held) == sorted(sha for sha, _ in ChunkList.of(data).chunks)
    for sha, (path, offset, size) in held.items():
        assert hashlib.sha256(data[offset : offset + size]).hexdigest() == sha and path.name == "big.bin"
