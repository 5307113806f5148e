"""A raw event-stream socket client, to send what the real client never would."""

from __future__ import annotations

import json
import socket

from devkit.nucleus.eventstream import FrameDecoder, Header, Message, encode
from devkit.nucleus.protocol import VERSION, VERSION_HEADER, MessageType, metadata, rpc_message


class RawClient:
    def __init__(self, socket_path: str, timeout: float = 5.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(socket_path)
        self.decoder = FrameDecoder()
        self.pending: list[Message] = []

    def send(self, message: Message) -> None:
        self.sock.sendall(encode(message))

    def connect(self, token: str) -> tuple[MessageType, int]:
        self.send(
            rpc_message(
                MessageType.CONNECT,
                headers=(Header.string(VERSION_HEADER, VERSION),),
                payload=json.dumps({"authToken": token}).encode(),
            )
        )
        kind, flags, _ = metadata(self.receive())
        return kind, flags

    def receive(self) -> Message:
        """The next message; ConnectionError when the server has closed the socket."""
        while not self.pending:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed by the server")
            self.pending += self.decoder.feed(data)
        return self.pending.pop(0)

    def read_until_closed(self) -> list[Message]:
        """Every message until the server closes the socket (socket.timeout if it does not)."""
        received = []
        try:
            while True:
                received.append(self.receive())
        except ConnectionError:
            return received

    def close(self) -> None:
        self.sock.close()
