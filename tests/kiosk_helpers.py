"""Helpers for tests that run components against the local nucleus stand-in."""

from __future__ import annotations

from pathlib import Path

from components.common import messages
from devkit.nucleus import ComponentSpec
from devkit.nucleus.runner import load_recipe

REPO = Path(__file__).resolve().parent.parent
RECIPES = REPO / "recipes"
FEATURIZER = "com.visualsearch.Featurizer"
LOCAL_SEARCH = "com.visualsearch.LocalSearch"
DISPLAY = "com.visualsearch.Display"


def recipe(name: str) -> dict:
    return load_recipe(RECIPES / f"{name}.yaml")


OBSERVER = "com.visualsearch.TestObserver"


def observer_spec() -> ComponentSpec:
    """A test-only component allowed to read matches and every component's status."""
    topics = [messages.MATCHES] + [
        messages.status_topic(n) for n in ("featurizer", "local_search", "display")
    ]
    return ComponentSpec(
        OBSERVER,
        {
            "accessControl": {
                "aws.greengrass.ipc.pubsub": {
                    f"{OBSERVER}:pubsub:1": {
                        "policyDescription": "observe",
                        "resources": topics,
                        "operations": ["aws.greengrass#SubscribeToTopic"],
                    }
                }
            }
        },
    )
