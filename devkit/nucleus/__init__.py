"""A local stand-in of the Greengrass nucleus's IPC server, for the demo runner and the tests.

Components run unchanged against it: they use the real `GreengrassCoreIPCClientV2`, which
reads the socket path and SVCUID from the environment (`LocalNucleus.component_env`).
Served: local pub/sub, IoT Core publish/subscribe (to the in-process `IoTCore` stand-in,
with the nucleus's spooler), GetConfiguration, SubscribeToConfigurationUpdate,
SubscribeToValidateConfigurationUpdates, SendConfigurationValidityReport, UpdateState;
every other operation answers ServiceError as the nucleus does for unsupported ones.
`LocalNucleus.deploy` changes a configuration as a deployment does: validated first by
the component, applied only when it accepts.
"""

from .config import ComponentSpec
from .iot_core import IoTCore, MqttMessage
from .nucleus import LocalNucleus
from .validation import DeploymentResult

__all__ = ["ComponentSpec", "DeploymentResult", "IoTCore", "LocalNucleus", "MqttMessage"]
