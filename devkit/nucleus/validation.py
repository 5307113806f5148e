"""Dynamic configuration validation, as the nucleus does it during a deployment.

A component that called SubscribeToValidateConfigurationUpdates is sent, before a deployment
changes its configuration, a `ValidateConfigurationUpdateEvents` event holding the whole
proposed configuration and the deployment id; it answers with SendConfigurationValidityReport
`{status: ACCEPTED | REJECTED, deploymentId, message}`. The nucleus keeps one validator per
component (the first subscription; it goes when that stream closes), and asks nothing of a
component without one. Neither operation needs an `accessControl` policy: a component always
may validate its own configuration.

Everything here runs on the server's event-loop thread except waiting on the futures `ask`
returns, which `LocalNucleus.deploy` does from its caller's thread.
"""

from __future__ import annotations

import concurrent.futures
import copy
from dataclasses import dataclass
from typing import Any

from .errors import NS, invalid

EVENT_TYPE = NS + "ValidateConfigurationUpdateEvents"
ACCEPTED, REJECTED = "ACCEPTED", "REJECTED"
SUCCEEDED, FAILED = "SUCCEEDED", "FAILED_NO_STATE_CHANGE"


@dataclass(frozen=True)
class DeploymentResult:
    """What became of a configuration change made through `LocalNucleus.deploy`."""

    deployment_id: str
    status: str  # SUCCEEDED, or FAILED_NO_STATE_CHANGE (nothing on the device changed)
    detail: str = ""  # why it failed, with the component's own message when it refused

    @property
    def succeeded(self) -> bool:
        return self.status == SUCCEEDED


class Validators:
    def __init__(self) -> None:
        self._listeners: dict[str, Any] = {}  # component -> its validation stream
        self._pending: dict[tuple[str, str], concurrent.futures.Future] = {}

    def components(self) -> list[str]:
        return sorted(self._listeners)

    # ---- the two IPC operations ------------------------------------------------------------
    def subscribe(self, caller: str, request: dict, stream) -> dict:
        if caller in self._listeners:
            return {}  # the nucleus keeps the first validator of a component

        def closed() -> None:
            if self._listeners.get(caller) is stream:
                del self._listeners[caller]

        self._listeners[caller] = stream
        stream.on_close(closed)
        return {}

    def report(self, caller: str, request: dict, stream) -> dict:
        report = request.get("configurationValidityReport")
        if not isinstance(report, dict):
            raise invalid("configurationValidityReport is required")
        deployment_id = report.get("deploymentId")
        if deployment_id is None:
            raise invalid("Cannot accept configuration validity report, the deployment ID provided was null")
        if report.get("status") not in (ACCEPTED, REJECTED):
            raise invalid(f"Invalid status {report.get('status')!r}: expected {ACCEPTED} or {REJECTED}")
        waiting = self._pending.pop((caller, str(deployment_id)), None)
        if waiting is None:
            raise invalid("Validation request either timed out or was never made")
        if not waiting.done():
            waiting.set_result({"status": report["status"], "message": report.get("message") or ""})
        return {}

    # ---- what a deployment does ----------------------------------------------------------------
    def ask(
        self, component: str, deployment_id: str, configuration: dict
    ) -> concurrent.futures.Future | None:
        """Send the proposed configuration to the component's validator; None if it has none.
        The future gets `{"status", "message"}` once the component reports."""
        stream = self._listeners.get(component)
        if stream is None:
            return None
        answer: concurrent.futures.Future = concurrent.futures.Future()
        self._pending[(component, deployment_id)] = answer
        stream.send_event(
            EVENT_TYPE,
            {
                "validateConfigurationUpdateEvent": {
                    "configuration": copy.deepcopy(configuration),
                    "deploymentId": deployment_id,
                }
            },
        )
        return answer

    def discard(self, component: str, deployment_id: str) -> None:
        """Stop waiting (a timed-out deployment): a late report is then refused."""
        self._pending.pop((component, deployment_id), None)
