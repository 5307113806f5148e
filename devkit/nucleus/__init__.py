"""A local stand-in of the Greengrass nucleus's IPC server, for the demo runner and the tests.

Components run unchanged against it: they use the real `GreengrassCoreIPCClientV2`, which
reads the socket path and SVCUID from the environment (`LocalNucleus.component_env`).
Served: local pub/sub, IoT Core publish/subscribe (to the in-process `IoTCore` stand-in,
with the nucleus's spooler), GetConfiguration, SubscribeToConfigurationUpdate, UpdateState;
every other operation answers ServiceError as the nucleus does for unsupported ones.
"""
from .config import ComponentSpec
from .iot_core import IoTCore, MqttMessage
from .nucleus import LocalNucleus

__all__ = ["ComponentSpec", "IoTCore", "LocalNucleus", "MqttMessage"]
