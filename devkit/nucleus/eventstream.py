"""Event-stream frame codec (application/vnd.amazon.eventstream), pure and synchronous.

A frame is: total length (u32 BE), headers length (u32 BE), CRC32 of those 8 bytes,
headers, payload, CRC32 of everything before it. A header is: name length (u8), name,
value type (u8), value. Everything here is big-endian.
"""

from __future__ import annotations

import datetime as dt
import struct
import uuid
import zlib
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Iterable

PRELUDE_SIZE = 12
CRC_SIZE = 4
MIN_FRAME_SIZE = PRELUDE_SIZE + CRC_SIZE
MAX_FRAME_SIZE = 16 * 1024 * 1024  # the awscrt transport's own limit
MAX_HEADERS_SIZE = 128 * 1024

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


class FrameError(ValueError):
    """Bytes that are not a valid event-stream frame: the stream cannot be trusted after it."""


class HeaderType(IntEnum):
    BOOL_TRUE = 0
    BOOL_FALSE = 1
    BYTE = 2
    INT16 = 3
    INT32 = 4
    INT64 = 5
    BYTES = 6
    STRING = 7
    TIMESTAMP = 8
    UUID = 9


_INT_FORMATS = {HeaderType.BYTE: ">b", HeaderType.INT16: ">h", HeaderType.INT32: ">i", HeaderType.INT64: ">q"}


@dataclass(frozen=True)
class Header:
    """One header. Values: bool, int, bytes, str, timezone-aware datetime, uuid.UUID."""

    name: str
    value: Any
    type: HeaderType

    @classmethod
    def int32(cls, name: str, value: int) -> Header:
        return cls(name, int(value), HeaderType.INT32)

    @classmethod
    def string(cls, name: str, value: str) -> Header:
        return cls(name, value, HeaderType.STRING)

    @classmethod
    def boolean(cls, name: str, value: bool) -> Header:
        return cls(name, bool(value), HeaderType.BOOL_TRUE if value else HeaderType.BOOL_FALSE)


@dataclass(frozen=True)
class Message:
    headers: tuple[Header, ...] = ()
    payload: bytes = b""

    def header(self, name: str, type_: HeaderType | None = None) -> Any:
        """The value of the first header called `name` (case-insensitive), or None."""
        lowered = name.lower()
        for header in self.headers:
            if header.name.lower() == lowered and (type_ is None or header.type == type_):
                return header.value
        return None


def _encode_value(header: Header) -> bytes:
    kind = HeaderType(header.type)
    value = header.value
    if kind in (HeaderType.BOOL_TRUE, HeaderType.BOOL_FALSE):
        return b""
    if kind in _INT_FORMATS:
        try:
            return struct.pack(_INT_FORMATS[kind], value)
        except struct.error as exc:
            raise ValueError(f"header {header.name!r}: {value!r} does not fit {kind.name}") from exc
    if kind in (HeaderType.BYTES, HeaderType.STRING):
        raw = value.encode("utf-8") if kind is HeaderType.STRING else bytes(value)
        if len(raw) > 0xFFFF:
            raise ValueError(f"header {header.name!r}: value longer than 65535 bytes")
        return struct.pack(">H", len(raw)) + raw
    if kind is HeaderType.TIMESTAMP:
        if isinstance(value, dt.datetime):
            value = (value - _EPOCH) // dt.timedelta(milliseconds=1)
        return struct.pack(">q", value)
    return uuid.UUID(str(value)).bytes  # HeaderType.UUID


def encode_headers(headers: Iterable[Header]) -> bytes:
    out = bytearray()
    for header in headers:
        name = header.name.encode("utf-8")
        if not 0 < len(name) < 256:
            raise ValueError(f"header name {header.name!r} must be 1-255 bytes")
        out += struct.pack(">B", len(name)) + name + struct.pack(">B", header.type) + _encode_value(header)
    return bytes(out)


def encode(message: Message) -> bytes:
    headers = encode_headers(message.headers)
    total = MIN_FRAME_SIZE + len(headers) + len(message.payload)
    if total > MAX_FRAME_SIZE:
        raise ValueError(f"frame of {total} bytes exceeds {MAX_FRAME_SIZE}")
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + headers + message.payload
    return body + struct.pack(">I", zlib.crc32(body))


def decode_prelude(prelude: bytes) -> tuple[int, int]:
    """(total length, headers length) from the first 12 bytes, checked."""
    if len(prelude) < PRELUDE_SIZE:
        raise FrameError("truncated prelude")
    total, headers_len, crc = struct.unpack(">III", prelude[:PRELUDE_SIZE])
    if zlib.crc32(prelude[:8]) != crc:
        raise FrameError("prelude CRC mismatch")
    if not MIN_FRAME_SIZE <= total <= MAX_FRAME_SIZE:
        raise FrameError(f"frame length {total} out of range")
    if headers_len > min(MAX_HEADERS_SIZE, total - MIN_FRAME_SIZE):
        raise FrameError(f"headers length {headers_len} out of range")
    return total, headers_len


def _decode_headers(raw: bytes) -> tuple[Header, ...]:
    headers, pos = [], 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(raw):
            raise FrameError("header runs past the headers section")
        chunk = raw[pos : pos + n]
        pos += n
        return chunk

    while pos < len(raw):
        name = take(take(1)[0]).decode("utf-8", errors="strict")
        try:
            kind = HeaderType(take(1)[0])
        except ValueError as exc:
            raise FrameError(f"header {name!r}: unknown value type") from exc
        if kind in (HeaderType.BOOL_TRUE, HeaderType.BOOL_FALSE):
            value: Any = kind is HeaderType.BOOL_TRUE
        elif kind in _INT_FORMATS:
            fmt = _INT_FORMATS[kind]
            (value,) = struct.unpack(fmt, take(struct.calcsize(fmt)))
        elif kind in (HeaderType.BYTES, HeaderType.STRING):
            (length,) = struct.unpack(">H", take(2))
            value = take(length)
            if kind is HeaderType.STRING:
                value = value.decode("utf-8")
        elif kind is HeaderType.TIMESTAMP:
            (millis,) = struct.unpack(">q", take(8))
            value = _EPOCH + dt.timedelta(milliseconds=millis)
        else:
            value = uuid.UUID(bytes=take(16))
        headers.append(Header(name, value, kind))
    return tuple(headers)


def decode(frame: bytes) -> Message:
    """Exactly one whole frame -> Message; FrameError on any inconsistency."""
    total, headers_len = decode_prelude(frame)
    if len(frame) != total:
        raise FrameError(f"frame is {len(frame)} bytes, prelude says {total}")
    (crc,) = struct.unpack(">I", frame[-CRC_SIZE:])
    if zlib.crc32(frame[:-CRC_SIZE]) != crc:
        raise FrameError("message CRC mismatch")
    try:
        headers = _decode_headers(frame[PRELUDE_SIZE : PRELUDE_SIZE + headers_len])
    except (UnicodeDecodeError, OverflowError) as exc:
        raise FrameError(f"undecodable header: {exc}") from exc
    return Message(headers, bytes(frame[PRELUDE_SIZE + headers_len : -CRC_SIZE]))


class FrameDecoder:
    """Incremental decoder: feed bytes as they arrive, get whole messages back."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        self._buffer += data
        messages = []
        while len(self._buffer) >= PRELUDE_SIZE:
            total, _ = decode_prelude(bytes(self._buffer[:PRELUDE_SIZE]))
            if len(self._buffer) < total:
                break
            messages.append(decode(bytes(self._buffer[:total])))
            del self._buffer[:total]
        return messages

    @property
    def pending(self) -> int:
        """Bytes held that do not make a whole frame yet (a truncated frame at EOF)."""
        return len(self._buffer)
