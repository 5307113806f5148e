"""Bad clients: wrong tokens, garbage bytes and protocol violations hurt only themselves."""

from __future__ import annotations

import struct
import zlib

import awsiot.greengrasscoreipc
import pytest
from awsiot.eventstreamrpc import AccessDeniedError
from awsiot.greengrasscoreipc.model import JsonMessage, PublishMessage

from devkit.nucleus.eventstream import Header, Message, encode
from devkit.nucleus.protocol import Flag, MessageType, metadata, rpc_message
from tests.devkit.nucleus.conftest import FEATURES
from tests.devkit.nucleus.raw import RawClient
from tests.support.inbox import Inbox
from tests.support.waiting import wait_until

FEATURIZER, SEARCH = "com.example.Featurizer", "com.example.LocalSearch"
T = 5


@pytest.fixture
def raw(nucleus):
    client = RawClient(nucleus.socket_path)
    yield client
    client.close()


@pytest.fixture
def live_subscription(connect):
    """LocalSearch subscribed to features, and a function that proves it still receives."""
    featurizer, search = connect(FEATURIZER), connect(SEARCH)
    inbox = Inbox()
    search.subscribe_to_topic_async(topic=FEATURES, on_stream_event=inbox)[0].result(T)

    def still_receives() -> bool:
        count = len(inbox.events)
        featurizer.publish_to_topic_async(
            topic=FEATURES, publish_message=PublishMessage(json_message=JsonMessage(message={"n": count}))
        ).result(T)
        return inbox.wait(count + 1)[-1].json_message.message == {"n": count}

    assert still_receives()
    return still_receives


def test_unknown_token_is_refused_by_the_real_client(nucleus):
    with pytest.raises(AccessDeniedError):
        awsiot.greengrasscoreipc.connect(ipc_socket=nucleus.socket_path, authtoken="wrong", timeout=T)


def test_raw_connect_ack_flags(nucleus, raw):
    assert raw.connect("featurizer-token") == (MessageType.CONNECT_ACK, Flag.CONNECTION_ACCEPTED)
    refused = RawClient(nucleus.socket_path)
    try:
        assert refused.connect("nobody") == (MessageType.CONNECT_ACK, Flag.NONE)
        op = Header.string("operation", "aws.greengrass#GetConfiguration")
        refused.send(rpc_message(MessageType.APPLICATION_MESSAGE, stream_id=1, headers=(op,), payload=b"{}"))
        assert refused.read_until_closed() == []  # closed without answering the request
    finally:
        refused.close()


def test_ping_gets_a_ping_response(raw):
    raw.connect("featurizer-token")
    raw.send(rpc_message(MessageType.PING, payload=b"are you there"))
    reply = raw.receive()
    assert metadata(reply)[0] is MessageType.PING_RESPONSE and reply.payload == b"are you there"


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\x00\x00\x20" + b"\xde\xad\xbe\xef" * 8,  # a prelude whose CRC is wrong
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # not event-stream at all
    ],
)
def test_garbage_closes_only_that_connection(nucleus, raw, live_subscription, garbage):
    raw.connect("featurizer-token")
    raw.sock.sendall(garbage)
    assert [metadata(m)[0] for m in raw.read_until_closed()] == [MessageType.PROTOCOL_ERROR]
    assert live_subscription()
    assert (SEARCH, "pubsub", FEATURES) in nucleus.subscriptions()


def test_bad_message_crc_closes_only_that_connection(raw, live_subscription):
    raw.connect("featurizer-token")
    frame = bytearray(encode(rpc_message(MessageType.PING, payload=b"x")))
    frame[-1] ^= 0xFF
    raw.sock.sendall(bytes(frame))
    assert [metadata(m)[0] for m in raw.read_until_closed()] == [MessageType.PROTOCOL_ERROR]
    assert live_subscription()


def test_wrong_header_type_is_a_protocol_error(raw, live_subscription):
    raw.connect("featurizer-token")
    raw.send(
        Message(
            (
                Header.string(":message-type", "2"),  # a string where an int32 belongs
                Header.int32(":message-flags", 0),
                Header.int32(":stream-id", 0),
            )
        )
    )
    (reply,) = raw.read_until_closed()
    assert metadata(reply)[0] is MessageType.PROTOCOL_ERROR
    assert live_subscription()


def test_unknown_header_value_type_closes_the_connection(raw, live_subscription):
    raw.connect("featurizer-token")
    headers = b"\x01h\x0c"
    body = struct.pack(">II", 16 + len(headers), len(headers))
    body += struct.pack(">I", zlib.crc32(body)) + headers
    raw.sock.sendall(body + struct.pack(">I", zlib.crc32(body)))
    assert [metadata(m)[0] for m in raw.read_until_closed()] == [MessageType.PROTOCOL_ERROR]
    assert live_subscription()


def test_operation_before_connect_and_stream_without_operation(nucleus, raw):
    raw.send(rpc_message(MessageType.APPLICATION_MESSAGE, stream_id=1, payload=b"{}"))
    assert [metadata(m)[0] for m in raw.read_until_closed()] == [MessageType.PROTOCOL_ERROR]
    second = RawClient(nucleus.socket_path)
    try:
        second.connect("featurizer-token")
        second.send(rpc_message(MessageType.APPLICATION_MESSAGE, stream_id=1, payload=b"{}"))
        assert [metadata(m)[0] for m in second.read_until_closed()] == [MessageType.PROTOCOL_ERROR]
    finally:
        second.close()


def test_request_that_is_not_json_is_an_error_on_that_stream_only(raw):
    raw.connect("featurizer-token")
    op = Header.string("operation", "aws.greengrass#GetConfiguration")
    raw.send(rpc_message(MessageType.APPLICATION_MESSAGE, stream_id=1, headers=(op,), payload=b"{nope"))
    reply = raw.receive()
    kind, flags, stream_id = metadata(reply)
    assert (kind, flags, stream_id) == (MessageType.APPLICATION_ERROR, Flag.TERMINATE_STREAM, 1)
    assert reply.header("service-model-type") == "aws.greengrass#InvalidArgumentsError"
    raw.send(rpc_message(MessageType.APPLICATION_MESSAGE, stream_id=2, headers=(op,), payload=b"{}"))
    reply = raw.receive()
    assert metadata(reply)[2] == 2
    assert reply.header("service-model-type") == "aws.greengrass#GetConfigurationResponse"


def test_subscriber_killed_mid_stream_is_cleaned_up(nucleus, connect):
    raw = RawClient(nucleus.socket_path)
    raw.connect("local-search-token")
    op = Header.string("operation", "aws.greengrass#SubscribeToTopic")
    raw.send(
        rpc_message(
            MessageType.APPLICATION_MESSAGE,
            stream_id=1,
            headers=(op,),
            payload=b'{"topic": "visualsearch/features"}',
        )
    )
    assert raw.receive().header("service-model-type") == "aws.greengrass#SubscribeToTopicResponse"
    raw.close()  # no TERMINATE_STREAM: the process just went away
    wait_until(lambda: nucleus.subscriptions() == [], what="no subscription left")
    featurizer = connect(FEATURIZER)
    featurizer.publish_to_topic_async(
        topic=FEATURES, publish_message=PublishMessage(json_message=JsonMessage(message={}))
    ).result(T)
