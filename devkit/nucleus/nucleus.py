"""`LocalNucleus`: the stand-in's Python API, serving IPC from a background thread."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import copy
import os
import shutil
import tempfile
import threading
import time
import uuid
from typing import Any, Callable, Iterable, Mapping

from .config import ComponentSpec, specs_from
from .iot_core import IoTCore, MqttMessage
from .server import IpcServer
from .services import Services
from .validation import ACCEPTED, FAILED, SUCCEEDED, DeploymentResult

SOCKET_ENV = "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"
MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes, the last one a NUL


class LocalNucleus:
    """Serves Greengrass IPC for the given components on a Unix socket.

    Example::

        with LocalNucleus(thing_name="kiosk-1", components={"com.example.A": spec}) as nucleus:
            env = nucleus.component_env("com.example.A")  # for a component's process
            client = nucleus.connect("com.example.A")     # or a client in this process

    `components` maps names to ComponentSpec or to `{"token"?, "configuration"?, "accessControl"?}`.
    """

    def __init__(
        self,
        socket_path: str | os.PathLike | None = None,
        thing_name: str = "local-thing",
        components: Mapping[str, Any] | Iterable[ComponentSpec] = (),
        *,
        region: str = "us-east-1",
        iot_core: IoTCore | None = None,
    ) -> None:
        self.components = specs_from(components)  # first: a bad spec must not leave a directory behind
        self._tempdir = None
        if socket_path is None:
            self._tempdir = tempfile.mkdtemp(prefix="ggipc-", dir="/tmp" if os.path.isdir("/tmp") else None)
            socket_path = os.path.join(self._tempdir, "ipc.socket")
        self.socket_path = os.fspath(socket_path)
        if len(os.fsencode(self.socket_path)) > MAX_SOCKET_PATH:
            raise ValueError(f"Unix socket path longer than {MAX_SOCKET_PATH} bytes: {self.socket_path}")
        self.thing_name = thing_name
        self.region = region
        self.iot_core = iot_core or IoTCore()
        self._services = Services(self.components, thing_name, self.iot_core)
        self._server = IpcServer(self.socket_path, self._services)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._detach: Callable[[], None] | None = None

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> LocalNucleus:
        if self._thread is not None:
            raise RuntimeError("already started")
        if self._tempdir is not None:
            os.makedirs(self._tempdir, exist_ok=True)  # stop() removed it; a restart needs it again
        ready: concurrent.futures.Future = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="local-nucleus", daemon=True)
        self._thread.start()
        try:
            ready.result(timeout)
        except BaseException:
            self.stop()
            raise
        self._detach = self.iot_core.attach_device(self._from_cloud)
        return self

    def _run(self, ready: concurrent.futures.Future) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._server.start())
        except BaseException as exc:
            ready.set_exception(exc)
            loop.close()
            return
        ready.set_result(None)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._server.stop())
            loop.close()

    def stop(self, timeout: float = 10.0) -> None:
        if self._detach is not None:
            self._detach()
            self._detach = None
        loop, thread = self._loop, self._thread
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout)
        self._thread = self._loop = None
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)

    def __enter__(self) -> LocalNucleus:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def _call(self, fn: Callable[..., Any], *args: Any, timeout: float = 10.0) -> Any:
        """Run `fn` on the server's loop (where all IPC state lives) and return its result."""
        loop = self._loop
        if loop is None or not loop.is_running() or threading.current_thread() is self._thread:
            return fn(*args)
        done: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(fn(*args))
            except BaseException as exc:
                done.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return done.result(timeout)

    def _from_cloud(self, message: MqttMessage) -> None:
        loop = self._loop
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(self._services.deliver_from_cloud, message)

    # ---- what a component process needs ---------------------------------------------------
    def token(self, component: str) -> str:
        return self.components[component].token

    def component_env(self, component: str) -> dict[str, str]:
        """The environment the nucleus gives a component's processes."""
        return {
            SOCKET_ENV: self.socket_path,
            "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH": self.socket_path,
            "SVCUID": self.token(component),
            "AWS_IOT_THING_NAME": self.thing_name,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }

    def connect(self, component: str, timeout: float = 10.0):
        """A real `GreengrassCoreIPCClientV2` connected as `component` (close it when done)."""
        import awsiot.greengrasscoreipc
        from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

        client = awsiot.greengrasscoreipc.connect(
            ipc_socket=self.socket_path, authtoken=self.token(component), timeout=timeout
        )
        return GreengrassCoreIPCClientV2(client=client)

    # ---- state, seen and changed from Python -----------------------------------------------
    def configuration(self, component: str) -> dict[str, Any]:
        return self._call(lambda: copy.deepcopy(self.components[component].configuration))

    def set_configuration(self, component: str, path: Any, value: Any) -> None:
        """Set a key path (["a", "b"] or "a/b"; empty for all) and notify its subscribers, with
        no validation (as a component's own UpdateConfiguration); `deploy` validates first."""
        self._call(self._services.set_configuration, component, path, value)

    def deploy(
        self,
        component: str,
        merge: Mapping[str, Any] | str | None = None,
        reset: Iterable[str] = (),
        timeout: float = 30.0,
    ) -> DeploymentResult:
        """Change a configuration as a deployment's `configurationUpdate` does, validation first.

        `reset` (JSON pointers: back to the defaults) then `merge` give the proposed
        configuration. If the component subscribed to SubscribeToValidateConfigurationUpdates it
        is sent the whole proposal and the change is made only when it answers ACCEPTED within
        `timeout` seconds (a deployment's configurationValidationPolicy; 30 s by default);
        REJECTED or no answer fail the deployment (FAILED_NO_STATE_CHANGE, the component's
        message in `detail`) and nothing changes. Then SubscribeToConfigurationUpdate
        subscribers hear each changed key. Call it from any thread but the server's.
        """
        if threading.current_thread() is self._thread:
            raise RuntimeError("deploy() waits for the component's answer: call it from another thread")
        deployment_id = str(uuid.uuid4())
        proposed, answer = self._call(self._services.propose, component, deployment_id, merge, list(reset))
        if proposed is None:
            return DeploymentResult(deployment_id, SUCCEEDED, "the configuration is already so")
        if answer is not None:
            try:
                report = answer.result(timeout)
            except concurrent.futures.TimeoutError:
                self._call(self._services.validators.discard, component, deployment_id)
                return DeploymentResult(
                    deployment_id,
                    FAILED,
                    "Error while waiting for validation report for one "
                    f"or more components: {component} did not answer within {timeout:g} s",
                )
            if report["status"] != ACCEPTED:
                return DeploymentResult(
                    deployment_id,
                    FAILED,
                    "Components reported that their to-be-deployed "
                    f"configuration is invalid {{ name = {component}, "
                    f"message = {report['message']} }}",
                )
        self._call(self._services.set_configuration, component, [], proposed)
        return DeploymentResult(deployment_id, SUCCEEDED)

    def validators(self) -> list[str]:
        """Components subscribed to SubscribeToValidateConfigurationUpdates."""
        return self._call(self._services.validators.components)

    def subscriptions(self) -> list[tuple[str, str, Any]]:
        """Open subscriptions: (component, "pubsub" | "iotcore" | "configuration", target)."""
        return self._call(self._services.subscriptions)

    def access_requests(self) -> dict[tuple[str, str, str, str, bool], int]:
        """Every IPC authorization asked for so far, with its count:
        (component, service, operation, resource, allowed) -> count."""
        return self._call(lambda: dict(self._services.access_requests))

    @property
    def states(self) -> dict[str, str]:
        """Latest UpdateState per component (RUNNING / ERRORED)."""
        with self._services.state_changed:
            return dict(self._services.states)

    def wait_for_state(self, component: str, state: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        with self._services.state_changed:
            while self._services.states.get(component) != state:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{component} did not report {state} within {timeout}s "
                        f"(last: {self._services.states.get(component)})"
                    )
                self._services.state_changed.wait(left)

    def publish_to_topic(self, topic: str, message: Mapping[str, Any] | bytes) -> None:
        """Publish on local pub/sub as the nucleus itself (no policy applies)."""
        if isinstance(message, (bytes, bytearray)):
            kind, body = "binaryMessage", base64.b64encode(bytes(message)).decode()
        else:
            kind, body = "jsonMessage", dict(message)
        self._call(self._services.deliver_local, topic, kind, body, None)
