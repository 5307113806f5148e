"""An in-process stand-in of AWS IoT Core, plus the nucleus's in-memory MQTT spooler.

Device -> cloud: the nucleus calls `publish_from_device`. While IoT Core is reachable the
message arrives at once; while it is not, the spooler keeps it (QoS 1; QoS 0 is refused, as
the nucleus does unless keepQos0WhenOffline) and sends everything in order on reconnect.
Cloud -> device: `publish` hands the message to the attached nucleus, which delivers it to
the device subscriptions that match; while unreachable QoS 1 waits (persistent session) and
QoS 0 is lost. Thread-safe; callbacks run in the thread that caused them, outside the lock.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from . import topics

MAX_PUBLISH_BYTES = 128 * 1024  # the nucleus refuses payloads of this size or more
DEFAULT_SPOOL_BYTES = 2_621_440  # aws.greengrass.Nucleus mqtt.spooler.maxSizeInBytes
MAX_TOPIC_LEVELS = 8  # at most 7 slashes, as AWS IoT Core allows
MAX_TOPIC_BYTES = 256


class IoTCoreError(Exception):
    """A device publish the nucleus could not accept (its text becomes the ServiceError)."""


@dataclass(frozen=True)
class MqttMessage:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False

    def json(self) -> Any:
        return json.loads(self.payload)


def _as_bytes(payload: bytes | str | Any) -> bytes:
    if isinstance(payload, (bytes, bytearray)):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode()
    return json.dumps(payload).encode()


def check_device_publish(message: MqttMessage) -> None:
    if len(message.payload) >= MAX_PUBLISH_BYTES:
        raise IoTCoreError(
            f"The publishing message size {len(message.payload)} bytes exceeds the "
            f"configured limit of {MAX_PUBLISH_BYTES} bytes"
        )
    if topics.is_wildcard(message.topic):
        raise IoTCoreError(
            "The topic of publish request should not contain wildcard characters of '#' or '+'"
        )
    if message.topic.count("/") >= MAX_TOPIC_LEVELS or len(message.topic.encode()) > MAX_TOPIC_BYTES:
        raise IoTCoreError(
            f"The topic must have at most {MAX_TOPIC_LEVELS - 1} forward slashes "
            f"and {MAX_TOPIC_BYTES} bytes"
        )


class IoTCore:
    def __init__(
        self, *, spool_max_bytes: int = DEFAULT_SPOOL_BYTES, keep_qos0_when_offline: bool = False
    ) -> None:
        self.spool_max_bytes = spool_max_bytes
        self.keep_qos0_when_offline = keep_qos0_when_offline
        self._cond = threading.Condition()
        self._reachable = True
        self._received: list[MqttMessage] = []
        self._spool: deque[MqttMessage] = deque()
        self._to_device: deque[MqttMessage] = deque()
        self._listeners: list[tuple[str, Callable[[MqttMessage], None]]] = []
        self._devices: list[Callable[[MqttMessage], None]] = []

    # ---- cloud side: what tests and cloud_sync use ----------------------------------------
    @property
    def reachable(self) -> bool:
        return self._reachable

    def set_reachable(self, reachable: bool) -> None:
        """Cut or restore the device's connection; restoring flushes both queues in order."""
        with self._cond:
            self._reachable = bool(reachable)
            if not reachable:
                return
            arrived, self._spool = list(self._spool), deque()
            to_device, self._to_device = list(self._to_device), deque()
            self._received += arrived
            self._cond.notify_all()
        for message in arrived:
            self._notify_listeners(message)
        for message in to_device:
            self._deliver(message)

    @property
    def messages(self) -> list[MqttMessage]:
        """Every device -> cloud message that reached IoT Core, oldest first."""
        with self._cond:
            return list(self._received)

    @property
    def spooled(self) -> list[MqttMessage]:
        """Device -> cloud messages the nucleus holds while IoT Core is unreachable."""
        with self._cond:
            return list(self._spool)

    def messages_on(self, topic_filter: str) -> list[MqttMessage]:
        return [m for m in self.messages if topics.matches(topic_filter, m.topic)]

    def wait_for(self, topic_filter: str = "#", count: int = 1, timeout: float = 5.0) -> list[MqttMessage]:
        """The first `count` arrived messages matching the filter; TimeoutError if too few come."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [m for m in self._received if topics.matches(topic_filter, m.topic)]
                if len(found) >= count:
                    return found[:count]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(found)}/{count} messages on {topic_filter!r} after {timeout}s")
                self._cond.wait(left)

    def subscribe(self, topic_filter: str, callback: Callable[[MqttMessage], None]) -> Callable[[], None]:
        """Cloud-side listener (an IoT rule, a test); returns a function that removes it."""
        return self._register(self._listeners, (topic_filter, callback))

    def publish(self, topic: str, payload: bytes | str | Any, qos: int = 1) -> None:
        """Cloud -> device (dict/list payloads are sent as JSON)."""
        message = MqttMessage(topic, _as_bytes(payload), int(qos))
        with self._cond:
            if not self._reachable:
                if message.qos >= 1:
                    self._to_device.append(message)
                return
        self._deliver(message)

    def clear(self) -> None:
        with self._cond:
            self._received.clear()

    # ---- device side: used by the nucleus ---------------------------------------------------
    def attach_device(self, deliver: Callable[[MqttMessage], None]) -> Callable[[], None]:
        return self._register(self._devices, deliver)

    def _register(self, registry: list, entry) -> Callable[[], None]:
        """Add `entry` to `registry`; returns the function that removes it again."""
        with self._cond:
            registry.append(entry)

        def remove() -> None:
            with self._cond:
                if entry in registry:
                    registry.remove(entry)

        return remove

    def publish_from_device(self, message: MqttMessage) -> None:
        check_device_publish(message)
        with self._cond:
            if self._reachable:
                self._received.append(message)
                self._cond.notify_all()
            else:
                self._spool_message(message)
                return
        self._notify_listeners(message)

    def _spool_message(self, message: MqttMessage) -> None:
        if message.qos == 0 and not self.keep_qos0_when_offline:
            raise IoTCoreError("Device is offline. Dropping QoS 0 message.")
        size = len(message.payload)
        used = sum(len(m.payload) for m in self._spool)
        while used + size > self.spool_max_bytes and any(m.qos == 0 for m in self._spool):
            oldest_qos0 = next(m for m in self._spool if m.qos == 0)
            self._spool.remove(oldest_qos0)
            used -= len(oldest_qos0.payload)
        if used + size > self.spool_max_bytes:
            raise IoTCoreError("spooler queue is full and new message would not be added into spooler")
        self._spool.append(message)

    def _notify_listeners(self, message: MqttMessage) -> None:
        with self._cond:
            listeners = [cb for flt, cb in self._listeners if topics.matches(flt, message.topic)]
        for callback in listeners:
            callback(message)

    def _deliver(self, message: MqttMessage) -> None:
        with self._cond:
            devices = list(self._devices)
        for deliver in devices:
            deliver(message)
