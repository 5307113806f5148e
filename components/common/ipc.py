"""A thin wrapper over the real Greengrass IPC client, created by each component's main.

Nothing here connects at import. Publishes are asynchronous with a timeout so a slow or
absent nucleus never blocks the caller (the camera loop), and a subscription handler that
raises never closes its stream: the error is logged with its type and the next message
is handled.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Callable

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 5.0
CALL_TIMEOUT_S = 10.0


class Ipc:
    """`lost` is set when the nucleus closes the connection it made (the nucleus stopped or
    crashed): a component's main then exits rather than outlive it (`component_main.py`)."""

    def __init__(self, client=None, *, owns_client: bool = True):
        from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

        self.lost = threading.Event()
        self.lost_reason = ""
        self._closing = False
        if client is None:
            client = GreengrassCoreIPCClientV2(client=_connect(self._on_disconnect))
        self.client = client
        self._owns_client = owns_client
        self._operations = []
        self._lock = threading.Lock()
        self.publish_failures = 0

    def _on_disconnect(self, reason) -> None:
        if not self._closing:
            self.lost_reason = (
                f"{type(reason).__name__}: {reason}" if reason is not None else "closed by the nucleus"
            )
            self.lost.set()

    def scoped(self) -> Ipc:
        """The same connection, with subscriptions of its own: its `close()` ends only those
        (a component rebuilt in the same process drops the old instance's subscriptions)."""
        return Ipc(self.client, owns_client=False)

    # --- local pub/sub -------------------------------------------------------
    def publish_json(self, topic: str, message: dict) -> None:
        """Fire and forget: returns at once; a failure is logged and counted."""
        from awsiot.greengrasscoreipc.model import JsonMessage, PublishMessage

        future = self.client.publish_to_topic_async(
            topic=topic, publish_message=PublishMessage(json_message=JsonMessage(message=message))
        )
        future.add_done_callback(lambda f: self._log_failure(f, topic))

    def publish_json_wait(self, topic: str, message: dict, timeout: float = PUBLISH_TIMEOUT_S) -> None:
        from awsiot.greengrasscoreipc.model import JsonMessage, PublishMessage

        self.client.publish_to_topic_async(
            topic=topic, publish_message=PublishMessage(json_message=JsonMessage(message=message))
        ).result(timeout)

    def subscribe_json(self, topic: str, handler: Callable[[dict], None]) -> None:
        """Call `handler(message_dict)` for each message on `topic` (JSON or JSON in binary)."""

        def on_event(event) -> None:
            try:
                handler(decode_event(event))
            except Exception as exc:  # one bad message must not close the subscription
                log.warning("%s: dropped a message (%s: %s)", topic, type(exc).__name__, exc)

        def on_error(error: Exception) -> bool:
            log.error("%s: subscription error (%s: %s)", topic, type(error).__name__, error)
            return False  # keep the stream open

        _, operation = self.client.subscribe_to_topic(
            topic=topic, on_stream_event=on_event, on_stream_error=on_error
        )
        with self._lock:
            self._operations.append(operation)

    # --- IoT Core ------------------------------------------------------------
    def publish_iot_core(
        self, topic: str, payload: bytes, qos: str = "1", timeout: float = PUBLISH_TIMEOUT_S
    ) -> None:
        """Returns once the nucleus has queued the message (not a delivery receipt)."""
        self.client.publish_to_iot_core_async(topic_name=topic, qos=qos, payload=payload).result(timeout)

    def subscribe_iot_core(self, topic: str, handler: Callable[[bytes], None]) -> None:
        def on_event(event) -> None:
            try:
                handler(bytes(event.message.payload))
            except Exception as exc:
                log.warning("%s: dropped an IoT Core message (%s: %s)", topic, type(exc).__name__, exc)

        _, operation = self.client.subscribe_to_iot_core(
            topic_name=topic, qos="1", on_stream_event=on_event, on_stream_error=lambda e: False
        )
        with self._lock:
            self._operations.append(operation)

    # --- component lifecycle -------------------------------------------------
    def get_configuration(self, key_path: list[str] | None = None) -> dict:
        response = self.client.get_configuration_async(key_path=key_path or []).result(CALL_TIMEOUT_S)
        return response.value or {}

    def on_configuration_update(self, handler: Callable[[list[str]], None]) -> None:
        def on_event(event) -> None:
            try:
                handler(list(event.configuration_update_event.key_path or []))
            except Exception as exc:
                log.warning("configuration update: %s: %s", type(exc).__name__, exc)

        _, operation = self.client.subscribe_to_configuration_update(
            key_path=[], on_stream_event=on_event, on_stream_error=lambda e: False
        )
        with self._lock:
            self._operations.append(operation)

    def on_validate_configuration(self, validate: Callable[[dict], str | None]) -> None:
        """Answer every deployment's proposed configuration: `validate(configuration)` returns
        None to accept it, or the reason it is refused (sent back, and the deployment fails
        without changing anything). The nucleus asks only one subscriber per component."""
        from awsiot.greengrasscoreipc.model import ConfigurationValidityReport, ConfigurationValidityStatus

        def on_event(event) -> None:
            proposal = event.validate_configuration_update_event
            try:
                reason = validate(dict(proposal.configuration or {}))
            except Exception as exc:  # refuse what could not be checked, and say why
                log.exception("configuration validation failed")
                reason = f"validation failed ({type(exc).__name__}: {exc})"
            status = (
                ConfigurationValidityStatus.ACCEPTED
                if reason is None
                else ConfigurationValidityStatus.REJECTED
            )
            report = ConfigurationValidityReport(
                status=status, deployment_id=proposal.deployment_id, message=reason or ""
            )
            try:
                self.client.send_configuration_validity_report_async(
                    configuration_validity_report=report
                ).result(CALL_TIMEOUT_S)
            except Exception as exc:  # e.g. the deployment timed out waiting: it failed already
                log.warning("configuration validity report not taken (%s: %s)", type(exc).__name__, exc)

        _, operation = self.client.subscribe_to_validate_configuration_updates(
            on_stream_event=on_event, on_stream_error=lambda e: False
        )
        with self._lock:
            self._operations.append(operation)

    def update_state(self, state: str) -> None:
        self.client.update_state_async(state=state).result(CALL_TIMEOUT_S)

    def close(self) -> None:
        self._closing = True
        with self._lock:
            operations, self._operations = self._operations, []
        for operation in operations:
            try:
                operation.close()
            except Exception:  # closing a stream the nucleus already dropped
                pass
        if self._owns_client:
            self.client.close()

    def _log_failure(self, future, topic: str) -> None:
        error = future.exception()
        if error is not None:
            self.publish_failures += 1
            log.warning("publish to %s failed (%s: %s)", topic, type(error).__name__, error)


def _connect(on_disconnect: Callable[[Exception | None], None]):
    """The nucleus connection (socket and token from the environment), telling `on_disconnect`."""
    import awsiot.greengrasscoreipc
    from awsiot.eventstreamrpc import LifecycleHandler

    class Watch(LifecycleHandler):
        def on_disconnect(self, reason):
            on_disconnect(reason)

    return awsiot.greengrasscoreipc.connect(lifecycle_handler=Watch())


def decode_event(event) -> dict:
    """SubscriptionResponseMessage -> dict, whether it was published as JSON or as binary."""
    if event.json_message is not None:
        return event.json_message.message
    if event.binary_message is not None:
        return json.loads(bytes(event.binary_message.message).decode("utf-8"))
    raise ValueError("message is neither JSON nor binary")
