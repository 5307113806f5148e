"""Event-stream RPC server over a Unix domain socket (asyncio), one task per connection.

A connection must open with CONNECT `{"authToken": ...}`; the token names the component.
Each operation then runs on its own stream id. A frame that cannot be decoded, or a message
that breaks the RPC rules, closes that connection only (after a PROTOCOL_ERROR when possible).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any, Callable

from . import eventstream
from .eventstream import Header, HeaderType, Message
from .protocol import (
    CONTENT_TYPE,
    JSON,
    OPERATION,
    VERSION,
    VERSION_HEADER,
    Flag,
    MessageType,
    ProtocolError,
    json_message,
    metadata,
    rpc_message,
)
from .services import IpcError, Services

log = logging.getLogger(__name__)


class ServerStream:
    """One operation's stream id on one connection."""

    def __init__(self, connection: Connection, stream_id: int, operation: str) -> None:
        self.connection = connection
        self.id = stream_id
        self.operation = operation
        self.open = True
        self._on_close: list[Callable[[], None]] = []

    def send(self, kind: MessageType, model_type: str, body: Any, flags: int = Flag.NONE) -> None:
        if self.open:
            self.connection.send(json_message(kind, self.id, model_type, body, flags))

    def send_event(self, model_type: str, body: Any) -> None:
        self.send(MessageType.APPLICATION_MESSAGE, model_type, body)

    def on_close(self, callback: Callable[[], None]) -> None:
        self._on_close.append(callback)

    def close(self) -> None:
        if not self.open:
            return
        self.open = False
        self.connection.streams.pop(self.id, None)
        for callback in self._on_close:
            callback()


class Connection:
    def __init__(self, server: IpcServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.component: str | None = None
        self.streams: dict[int, ServerStream] = {}
        self.last_stream_id = 0
        self.closed = False
        self.refused = False

    def send(self, message: Message) -> None:
        if self.closed:
            return
        try:
            self.writer.write(eventstream.encode(message))
        except ValueError as exc:  # larger than a frame may be: the client could not read it either
            log.error("%s: dropped an outgoing message: %s", self.component, exc)

    async def _read(self) -> Message | None:
        try:
            prelude = await self.reader.readexactly(eventstream.PRELUDE_SIZE)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise eventstream.FrameError("truncated frame at end of stream") from exc
            return None
        total, _ = eventstream.decode_prelude(prelude)
        try:
            rest = await self.reader.readexactly(total - eventstream.PRELUDE_SIZE)
        except asyncio.IncompleteReadError as exc:
            raise eventstream.FrameError("truncated frame at end of stream") from exc
        return eventstream.decode(prelude + rest)

    async def run(self) -> None:
        try:
            while not self.closed:
                message = await self._read()
                if message is None:
                    break
                self._handle(message)
                if self.refused:
                    await self._linger()
                    break
        except (eventstream.FrameError, ProtocolError) as exc:
            log.warning("closing IPC connection of %s: %s", self.component or "(not connected)", exc)
            self.send(
                rpc_message(
                    MessageType.PROTOCOL_ERROR,
                    headers=(Header.string(CONTENT_TYPE, JSON),),
                    payload=json.dumps({"message": str(exc)}).encode(),
                )
            )
        except ConnectionError:
            pass
        finally:
            await self.close()

    async def _linger(self, seconds: float = 5.0) -> None:
        """After a refused CONNECT, let the client hang up first so that it reads the refusal
        (anything else it sends, or silence for `seconds`, ends the connection too)."""
        try:
            await asyncio.wait_for(self.reader.read(1), seconds)
        except (asyncio.TimeoutError, ConnectionError):
            pass

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for stream in list(self.streams.values()):
            stream.close()
        self.server.connections.discard(self)
        try:
            self.writer.close()
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass

    def _handle(self, message: Message) -> None:
        kind, flags, stream_id = metadata(message)
        if self.component is None:
            if kind is not MessageType.CONNECT or stream_id != 0:
                raise ProtocolError(f"expected CONNECT, got {kind.name} on stream {stream_id}")
            self._connect(message)
            return
        if stream_id == 0:
            if kind is MessageType.PING:
                self.send(rpc_message(MessageType.PING_RESPONSE, payload=message.payload))
            elif kind is not MessageType.PING_RESPONSE:
                raise ProtocolError(f"{kind.name} is not allowed on stream 0 after CONNECT")
            return
        if kind not in (MessageType.APPLICATION_MESSAGE, MessageType.APPLICATION_ERROR):
            raise ProtocolError(f"{kind.name} is not allowed on stream {stream_id}")
        stream = self.streams.get(stream_id)
        if stream is not None:
            if flags & Flag.TERMINATE_STREAM:
                stream.close()
            return  # no served operation takes client stream events
        if stream_id <= self.last_stream_id:
            return  # a late message for a stream that is already closed
        if stream_id < 0:
            raise ProtocolError(f"invalid stream id {stream_id}")
        operation = message.header(OPERATION, HeaderType.STRING)
        if operation is None:
            raise ProtocolError(f"stream {stream_id} opened without an operation header")
        self.last_stream_id = stream_id
        self._start(ServerStream(self, stream_id, operation), message)

    def _connect(self, message: Message) -> None:
        if message.header(VERSION_HEADER, HeaderType.STRING) != VERSION:
            raise ProtocolError(f"unsupported or missing {VERSION_HEADER}; expected {VERSION}")
        try:
            token = json.loads(message.payload or b"{}").get("authToken")
        except (ValueError, AttributeError):
            token = None
        self.component = self.server.services.component_for_token(token)
        if self.component is None:
            log.warning("IPC CONNECT refused: unknown authToken")
            self.send(rpc_message(MessageType.CONNECT_ACK, flags=Flag.NONE))
            self.refused = True
            return
        self.send(rpc_message(MessageType.CONNECT_ACK, flags=Flag.CONNECTION_ACCEPTED))

    def _start(self, stream: ServerStream, message: Message) -> None:
        operation = self.server.services.operations.get(stream.operation)
        error = MessageType.APPLICATION_ERROR
        if operation is None:
            stream.send(
                error,
                "aws.greengrass#ServiceError",
                {"message": f"Operation {stream.operation} is not supported by Greengrass"},
                Flag.TERMINATE_STREAM,
            )
            return
        self.streams[stream.id] = stream
        try:
            request = json.loads(message.payload or b"{}")
            if not isinstance(request, dict):
                raise IpcError("InvalidArgumentsError", "the request must be a JSON object")
            response = operation.handler(self.component, request, stream)
        except (ValueError, IpcError) as exc:
            if not isinstance(exc, IpcError):
                exc = IpcError("InvalidArgumentsError", f"the request is not valid JSON: {exc}")
            stream.send(error, exc.model_type, exc.body, Flag.TERMINATE_STREAM)
            stream.close()
            return
        except Exception as exc:  # a bug here must not take the connection down
            log.exception("%s failed for %s", stream.operation, self.component)
            stream.send(
                error,
                "aws.greengrass#ServiceError",
                {"message": f"internal error: {exc}"},
                Flag.TERMINATE_STREAM,
            )
            stream.close()
            return
        streaming = operation.event_type is not None
        stream.send(
            MessageType.APPLICATION_MESSAGE,
            stream.operation + "Response",
            response,
            Flag.NONE if streaming else Flag.TERMINATE_STREAM,
        )
        if not streaming:
            stream.close()


class IpcServer:
    def __init__(self, socket_path: str, services: Services) -> None:
        self.socket_path = socket_path
        self.services = services
        self.connections: set[Connection] = set()
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)  # a stale socket from a crashed run
        self._server = await asyncio.start_unix_server(self._accept, path=self.socket_path)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = Connection(self, reader, writer)
        self.connections.add(connection)
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            await connection.run()
        except asyncio.CancelledError:
            pass  # stop(): ending normally keeps asyncio's stream callback from logging it
        finally:
            self._tasks.discard(task)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            await connection.close()  # their readers see EOF and their tasks end
        if self._tasks:
            _, late = await asyncio.wait(list(self._tasks), timeout=2.0)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=2.0)
        if self._server is not None:
            await self._server.wait_closed()
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
