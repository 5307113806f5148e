"""MQTT topic filters (`+` one level, `#` the rest), as local pub/sub and IoT Core use them."""

from __future__ import annotations


def is_wildcard(topic_filter: str) -> bool:
    return "+" in topic_filter or "#" in topic_filter


def is_valid_filter(topic_filter: str) -> bool:
    """`#` only as the whole last level, `+` only as a whole level, no empty filter."""
    if not topic_filter:
        return False
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def matches(topic_filter: str, topic: str) -> bool:
    """Whether `topic` (no wildcards) is covered by `topic_filter`.

    As in MQTT, `a/#` also matches `a`, and a wildcard in the first level does not match a
    topic starting with `$` (reserved topics such as `$aws/...`).
    """
    if topic_filter == topic:
        return True
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    want, have = topic_filter.split("/"), topic.split("/")
    for index, level in enumerate(want):
        if level == "#":
            return index == len(want) - 1
        if index >= len(have):
            return False
        if level != "+" and level != have[index]:
            return False
    return len(want) == len(have)
