"""The frame codec alone: round trips, every header type, and rejected corruptions."""

from __future__ import annotations

import datetime as dt
import struct
import uuid
import zlib

import pytest

from devkit.nucleus.eventstream import (
    FrameDecoder,
    FrameError,
    Header,
    HeaderType,
    Message,
    decode,
    decode_prelude,
    encode,
)

ALL_TYPES = (
    Header("t", True, HeaderType.BOOL_TRUE),
    Header("f", False, HeaderType.BOOL_FALSE),
    Header("byte", -7, HeaderType.BYTE),
    Header("i16", -30000, HeaderType.INT16),
    Header(":stream-id", 2**31 - 1, HeaderType.INT32),
    Header("i64", -(2**62), HeaderType.INT64),
    Header("bytes", b"\x00\xffraw", HeaderType.BYTES),
    Header("operation", "aws.greengrass#PublishToTopic", HeaderType.STRING),
    Header("when", dt.datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=dt.timezone.utc), HeaderType.TIMESTAMP),
    Header("id", uuid.UUID("12345678-1234-5678-1234-567812345678"), HeaderType.UUID),
)


def test_round_trip_every_header_type():
    message = Message(ALL_TYPES, b'{"hello": "world"}')
    assert decode(encode(message)) == message


def test_empty_message_is_the_minimum_frame():
    frame = encode(Message())
    assert len(frame) == 16
    assert decode(frame) == Message()


def test_layout_matches_the_spec():
    frame = encode(Message((Header.string("a", "b"),), b"xy"))
    total, headers_len, prelude_crc = struct.unpack(">III", frame[:12])
    assert total == len(frame) and headers_len == 1 + 1 + 1 + 2 + 1
    assert prelude_crc == zlib.crc32(frame[:8])
    assert frame[12:18] == b"\x01a\x07\x00\x01b" and frame[18:20] == b"xy"
    assert struct.unpack(">I", frame[-4:])[0] == zlib.crc32(frame[:-4])


def test_header_lookup_is_case_insensitive_and_typed():
    message = Message((Header.string(":Content-Type", "application/json"), Header.int32("n", 3)))
    assert message.header(":content-type") == "application/json"
    assert message.header("n", HeaderType.INT32) == 3
    assert message.header("n", HeaderType.STRING) is None and message.header("missing") is None


def test_bad_message_crc_is_rejected():
    frame = bytearray(encode(Message((Header.int32("x", 1),), b"payload")))
    frame[-6] ^= 0x01  # flip a payload bit
    with pytest.raises(FrameError, match="message CRC"):
        decode(bytes(frame))


def test_bad_prelude_crc_is_rejected():
    frame = bytearray(encode(Message(payload=b"abc")))
    frame[3] += 1  # total length no longer matches the prelude CRC
    with pytest.raises(FrameError, match="prelude CRC"):
        decode(bytes(frame))


def test_truncated_frame_is_rejected():
    frame = encode(Message((Header.string("k", "v"),), b"0123456789"))
    with pytest.raises(FrameError):
        decode(frame[:-3])
    with pytest.raises(FrameError, match="truncated prelude"):
        decode_prelude(frame[:8])


def test_out_of_range_lengths_are_rejected():
    prelude = struct.pack(">II", 8, 0)
    with pytest.raises(FrameError, match="out of range"):
        decode_prelude(prelude + struct.pack(">I", zlib.crc32(prelude)))
    prelude = struct.pack(">II", 20, 10)  # headers longer than the frame can hold
    with pytest.raises(FrameError, match="out of range"):
        decode_prelude(prelude + struct.pack(">I", zlib.crc32(prelude)))


def test_unknown_header_type_is_rejected():
    headers = b"\x01h\x0a"  # type 10 does not exist
    body = struct.pack(">II", 16 + len(headers), len(headers))
    body += struct.pack(">I", zlib.crc32(body)) + headers
    with pytest.raises(FrameError, match="unknown value type"):
        decode(body + struct.pack(">I", zlib.crc32(body)))


def test_header_running_past_its_section_is_rejected():
    headers = b"\x01h\x07\x00\x09abc"  # claims 9 bytes of string, has 3
    body = struct.pack(">II", 16 + len(headers), len(headers))
    body += struct.pack(">I", zlib.crc32(body)) + headers
    with pytest.raises(FrameError, match="runs past"):
        decode(body + struct.pack(">I", zlib.crc32(body)))


def test_values_that_do_not_fit_are_refused_on_encode():
    with pytest.raises(ValueError):
        encode(Message((Header("b", 300, HeaderType.BYTE),)))
    with pytest.raises(ValueError):
        encode(Message((Header.string("", "no name"),)))


def test_incremental_decoder_splits_and_joins_frames():
    first, second = Message(payload=b"one"), Message((Header.int32("n", 2),), b"two")
    data = encode(first) + encode(second)
    decoder = FrameDecoder()
    got = []
    for index in range(0, len(data), 5):  # arrive in 5-byte pieces
        got += decoder.feed(data[index : index + 5])
    assert got == [first, second] and decoder.pending == 0
    assert decoder.feed(encode(first)[:10]) == [] and decoder.pending == 10
