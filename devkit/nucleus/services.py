"""The IPC operations the stand-in serves, with the nucleus's shapes, checks and errors.

Everything here runs on the server's event-loop thread; other threads come in through
`LocalNucleus`, which posts onto that loop.
"""

from __future__ import annotations

import base64
import copy
import logging
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from . import config, topics
from .access import MQTTPROXY, PUBSUB, AccessPolicy
from .errors import NS, IpcError, invalid, not_found, unauthorized
from .iot_core import IoTCore, IoTCoreError, MqttMessage
from .validation import Validators

log = logging.getLogger(__name__)
RECEIVE_ALL = "RECEIVE_ALL_MESSAGES"
RECEIVE_FROM_OTHERS = "RECEIVE_MESSAGES_FROM_OTHERS"
STATES = ("RUNNING", "ERRORED")


class Stream(Protocol):
    def send_event(self, model_type: str, body: Any) -> None: ...
    def on_close(self, callback: Callable[[], None]) -> None: ...


@dataclass
class Operation:
    handler: Callable[[str, dict, Stream], dict]
    event_type: str | None = None  # set for streaming operations


@dataclass(eq=False)
class _Subscription:
    component: str
    stream: Stream
    target: Any  # (topic filter, receive mode) | IoT Core topic filter | (component, key path)


class Services:
    def __init__(self, specs: dict[str, config.ComponentSpec], thing_name: str, iot_core: IoTCore) -> None:
        self.specs = specs
        self.thing_name = thing_name
        self.iot_core = iot_core
        self.states: dict[str, str] = {}
        self.state_changed = threading.Condition()
        self._local: list[_Subscription] = []
        self._iot: list[_Subscription] = []
        self._config: list[_Subscription] = []
        self.validators = Validators()
        # every authorization asked for: (component, service, operation, resource, allowed) -> count
        self.access_requests: Counter[tuple[str, str, str, str, bool]] = Counter()
        self.operations = {
            NS + "PublishToTopic": Operation(self.publish_to_topic),
            NS + "SubscribeToTopic": Operation(self.subscribe_to_topic, NS + "SubscriptionResponseMessage"),
            NS + "PublishToIoTCore": Operation(self.publish_to_iot_core),
            NS + "SubscribeToIoTCore": Operation(self.subscribe_to_iot_core, NS + "IoTCoreMessage"),
            NS + "GetConfiguration": Operation(self.get_configuration),
            NS + "SubscribeToConfigurationUpdate": Operation(
                self.subscribe_to_configuration_update, NS + "ConfigurationUpdateEvents"
            ),
            NS + "SubscribeToValidateConfigurationUpdates": Operation(
                self.validators.subscribe, NS + "ValidateConfigurationUpdateEvents"
            ),
            NS + "SendConfigurationValidityReport": Operation(self.validators.report),
            NS + "UpdateState": Operation(self.update_state),
        }

    def subscriptions(self) -> list[tuple[str, str, Any]]:
        """(component, "pubsub" | "iotcore" | "configuration", topic filter or key path)."""
        return (
            [(s.component, "pubsub", s.target[0]) for s in self._local]
            + [(s.component, "iotcore", s.target) for s in self._iot]
            + [(s.component, "configuration", s.target) for s in self._config]
        )

    def component_for_token(self, token: Any) -> str | None:
        for spec in self.specs.values():
            if token and spec.token == token:
                return spec.name
        return None

    def _authorize(self, caller: str, service: str, operation: str, resource: str) -> None:
        policy = AccessPolicy(self.specs[caller].policy_source(), self.thing_name)
        allowed = policy.allows(service, NS + operation, resource)
        self.access_requests[(caller, service, NS + operation, resource, allowed)] += 1
        if not allowed:
            if service == MQTTPROXY:
                raise unauthorized("Not Authorized")
            raise unauthorized(
                f"Principal {caller} is not authorized to perform "
                f"{service}:{NS}{operation} on resource {resource}"
            )

    @staticmethod
    def _add(registry: list[_Subscription], subscription: _Subscription) -> None:
        registry.append(subscription)

        def remove() -> None:
            if subscription in registry:
                registry.remove(subscription)

        subscription.stream.on_close(remove)

    # ---- local pub/sub -------------------------------------------------------------------
    def publish_to_topic(self, caller: str, request: dict, stream: Stream) -> dict:
        topic = request.get("topic")
        if not isinstance(topic, str):
            raise invalid("Publish topic must not be null")
        self._authorize(caller, PUBSUB, "PublishToTopic", topic)
        if topics.is_wildcard(topic) or "*" in topic:
            raise invalid("Publish topic must not contain a wildcard.")
        message = request.get("publishMessage") or {}
        kinds = [key for key in ("jsonMessage", "binaryMessage") if isinstance(message.get(key), dict)]
        if len(kinds) != 1:
            raise invalid("publishMessage must hold exactly one of jsonMessage, binaryMessage")
        body = message[kinds[0]].get("message")
        if kinds[0] == "binaryMessage":
            try:
                base64.b64decode(body or "", validate=True)
            except (ValueError, TypeError) as exc:
                raise invalid("binaryMessage.message is not base64") from exc
        self.deliver_local(topic, kinds[0], body, caller)
        return {}

    def deliver_local(self, topic: str, kind: str, body: Any, source: str | None) -> None:
        inner = (
            {"context": {"topic": topic}} if body is None else {"message": body, "context": {"topic": topic}}
        )
        event = {kind: inner}
        for sub in list(self._local):
            filter_, mode = sub.target
            if mode == RECEIVE_FROM_OTHERS and sub.component == source:
                continue
            if topics.matches(filter_, topic):
                sub.stream.send_event(NS + "SubscriptionResponseMessage", event)

    def subscribe_to_topic(self, caller: str, request: dict, stream: Stream) -> dict:
        topic = request.get("topic")
        if not isinstance(topic, str) or not topic:
            raise invalid("Subscribe topic must not be empty")
        self._authorize(caller, PUBSUB, "SubscribeToTopic", topic)
        mode = request.get("receiveMode") or (
            RECEIVE_FROM_OTHERS if topics.is_wildcard(topic) else RECEIVE_ALL
        )
        if mode not in (RECEIVE_ALL, RECEIVE_FROM_OTHERS):
            raise invalid(f"Invalid receiveMode {mode}")
        self._add(self._local, _Subscription(caller, stream, (topic, mode)))
        return {}

    # ---- IoT Core (MQTT proxy) -----------------------------------------------------------
    @staticmethod
    def _qos(request: dict) -> int:
        qos = request.get("qos")
        if qos is None:
            raise invalid("QoS is required")
        if str(qos) not in ("0", "1"):
            raise invalid(f"Invalid QoS value: {qos}")
        return int(qos)

    def publish_to_iot_core(self, caller: str, request: dict, stream: Stream) -> dict:
        topic = request.get("topicName")
        if not isinstance(topic, str):
            raise invalid("Topic is required")
        self._authorize(caller, MQTTPROXY, "PublishToIoTCore", topic)
        if request.get("payload") is None:
            raise invalid("Payload is required")
        try:
            payload = base64.b64decode(request["payload"], validate=True)
        except (ValueError, TypeError) as exc:
            raise invalid("payload is not base64") from exc
        message = MqttMessage(topic, payload, self._qos(request), bool(request.get("retain")))
        try:
            self.iot_core.publish_from_device(message)
        except IoTCoreError as exc:
            raise IpcError("ServiceError", f"Publish to topic {topic} failed: {exc}") from exc
        return {}

    def subscribe_to_iot_core(self, caller: str, request: dict, stream: Stream) -> dict:
        topic = request.get("topicName")
        if not isinstance(topic, str):
            raise invalid("Topic is required")
        self._authorize(caller, MQTTPROXY, "SubscribeToIoTCore", topic)
        self._qos(request)
        if not topics.is_valid_filter(topic):
            raise IpcError("ServiceError", f"Subscribe to topic {topic} failed: invalid topic filter")
        self._add(self._iot, _Subscription(caller, stream, topic))
        return {}

    def deliver_from_cloud(self, message: MqttMessage) -> None:
        event = {
            "message": {"topicName": message.topic, "payload": base64.b64encode(message.payload).decode()}
        }
        for sub in list(self._iot):
            if topics.matches(sub.target, message.topic):
                sub.stream.send_event(NS + "IoTCoreMessage", event)

    # ---- configuration and lifecycle ------------------------------------------------------
    def _component(self, caller: str, request: dict) -> config.ComponentSpec:
        name = request.get("componentName") or caller
        if name not in self.specs:
            raise not_found()
        return self.specs[name]

    def get_configuration(self, caller: str, request: dict, stream: Stream) -> dict:
        spec = self._component(caller, request)
        path = config.key_path(request.get("keyPath"))
        node = config.lookup(spec.configuration, path)
        if not config.exists(node):
            raise not_found()
        value = copy.deepcopy(node) if isinstance(node, dict) else {path[-1]: node}
        return {"componentName": spec.name, "value": value}

    def subscribe_to_configuration_update(self, caller: str, request: dict, stream: Stream) -> dict:
        spec = self._component(caller, request)
        path = config.key_path(request.get("keyPath"))
        if not config.exists(config.lookup(spec.configuration, path)):
            raise not_found()
        self._add(self._config, _Subscription(caller, stream, (spec.name, path)))
        return {}

    def set_configuration(self, component: str, path: Any, value: Any) -> None:
        if component not in self.specs:
            raise KeyError(f"unknown component {component!r}")
        changes = config.assign(self.specs[component].configuration, config.key_path(path), value)
        for changed in changes:
            for sub in list(self._config):
                name, subscribed = sub.target
                if name == component and config.related(subscribed, changed):
                    event = {"configurationUpdateEvent": {"componentName": component, "keyPath": changed}}
                    sub.stream.send_event(NS + "ConfigurationUpdateEvents", event)

    def propose(self, component: str, deployment_id: str, merge: Any, reset: Any):
        """A deployment's first step: the configuration it would give `component`, and the
        validator's future answer (None: no validator). (None, None) when nothing would change."""
        if component not in self.specs:
            raise KeyError(f"unknown component {component!r}")
        spec = self.specs[component]
        proposed = config.apply_update(spec.configuration, spec.defaults, merge, reset)
        if proposed == spec.configuration:
            return None, None
        return proposed, self.validators.ask(component, deployment_id, proposed)

    def update_state(self, caller: str, request: dict, stream: Stream) -> dict:
        state = request.get("state")
        if state not in STATES:
            raise invalid(f"Invalid state {state!r}: expected one of {', '.join(STATES)}")
        with self.state_changed:
            self.states[caller] = state
            self.state_changed.notify_all()
        return {}
