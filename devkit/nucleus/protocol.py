"""Event-stream RPC conventions on top of the frame codec (what awscrt's client expects)."""

from __future__ import annotations

import json
from enum import IntEnum
from typing import Any

from .eventstream import Header, HeaderType, Message

VERSION = "0.1.0"
JSON = "application/json"

MESSAGE_TYPE = ":message-type"
MESSAGE_FLAGS = ":message-flags"
STREAM_ID = ":stream-id"
CONTENT_TYPE = ":content-type"
VERSION_HEADER = ":version"
OPERATION = "operation"
SERVICE_MODEL_TYPE = "service-model-type"


class MessageType(IntEnum):
    APPLICATION_MESSAGE = 0
    APPLICATION_ERROR = 1
    PING = 2
    PING_RESPONSE = 3
    CONNECT = 4
    CONNECT_ACK = 5
    PROTOCOL_ERROR = 6
    INTERNAL_ERROR = 7


class Flag:
    NONE = 0
    CONNECTION_ACCEPTED = 1
    TERMINATE_STREAM = 2


class ProtocolError(Exception):
    """A message that breaks the RPC rules: the connection is closed after it."""


def rpc_message(
    kind: MessageType,
    *,
    stream_id: int = 0,
    flags: int = Flag.NONE,
    headers: tuple[Header, ...] = (),
    payload: bytes = b"",
) -> Message:
    base = (
        Header.int32(MESSAGE_TYPE, kind),
        Header.int32(MESSAGE_FLAGS, flags),
        Header.int32(STREAM_ID, stream_id),
    )
    return Message(base + tuple(headers), payload)


def json_message(
    kind: MessageType, stream_id: int, model_type: str, body: Any, flags: int = Flag.NONE
) -> Message:
    headers = (Header.string(CONTENT_TYPE, JSON), Header.string(SERVICE_MODEL_TYPE, model_type))
    return rpc_message(
        kind, stream_id=stream_id, flags=flags, headers=headers, payload=json.dumps(body).encode()
    )


def metadata(message: Message) -> tuple[MessageType, int, int]:
    """(type, flags, stream id), or ProtocolError when one is missing or wrong."""
    values = []
    for name in (MESSAGE_TYPE, MESSAGE_FLAGS, STREAM_ID):
        value = message.header(name, HeaderType.INT32)
        if value is None:
            raise ProtocolError(f"missing int32 header {name}")
        values.append(value)
    try:
        kind = MessageType(values[0])
    except ValueError as exc:
        raise ProtocolError(f"unknown message type {values[0]}") from exc
    return kind, values[1], values[2]
