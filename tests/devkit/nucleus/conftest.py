"""A LocalNucleus with three components shaped like the product's, and real IPC clients."""

from __future__ import annotations

from typing import Callable

import pytest

from devkit.nucleus import LocalNucleus

THING = "kiosk-test-1"
FEATURES = "visualsearch/features"
MATCHES = "visualsearch/matches"


def pubsub(policy_id: str, operations: list[str], resources: list[str]) -> dict:
    return {
        "aws.greengrass.ipc.pubsub": {
            policy_id: {"policyDescription": "test", "operations": operations, "resources": resources}
        }
    }


COMPONENTS = {
    "com.example.Featurizer": {
        "token": "featurizer-token",
        "configuration": {
            "camera": {"device": 0, "fps": 5},
            "model": "mobilenet",
            "accessControl": pubsub(
                "com.example.Featurizer:pubsub:1", ["aws.greengrass#PublishToTopic"], [FEATURES]
            ),
        },
    },
    "com.example.LocalSearch": {
        "token": "local-search-token",
        "configuration": {
            "topK": 5,
            "accessControl": {
                **pubsub("com.example.LocalSearch:pubsub:1", ["aws.greengrass#SubscribeToTopic"], [FEATURES]),
                "aws.greengrass.ipc.mqttproxy": {
                    "com.example.LocalSearch:mqttproxy:1": {
                        "policyDescription": "telemetry up, index updates down",
                        "operations": [
                            "aws.greengrass#PublishToIoTCore",
                            "aws.greengrass#SubscribeToIoTCore",
                        ],
                        "resources": ["visualsearch/{iot:thingName}/telemetry", "visualsearch/index/#"],
                    }
                },
            },
        },
    },
    "com.example.Display": {
        "token": "display-token",
        "configuration": {
            "port": 8080,
            "accessControl": pubsub("com.example.Display:pubsub:1", ["*"], ["visualsearch/*"]),
        },
    },
}


@pytest.fixture
def nucleus():
    with LocalNucleus(thing_name=THING, components=COMPONENTS) as running:
        yield running


@pytest.fixture
def connect(nucleus) -> Callable:
    """connect(component) -> a real GreengrassCoreIPCClientV2; all are closed at teardown."""
    clients = []

    def _connect(component: str):
        client = nucleus.connect(component)
        clients.append(client)
        return client

    yield _connect
    for client in clients:
        client.close()
