"""IPC authorisation from a recipe's `accessControl`, matched the way the nucleus matches it.

`accessControl.<service>.<policyId> = {policyDescription, operations, resources}`; a policy
in component X's configuration grants X itself. Rules (nucleus 2.6+):
- an operation matches when listed, or when the policy lists `*`;
- a resource `*` matches everything; `*` inside a resource matches any characters, `/` included;
- `${*}`, `${?}`, `${$}` stand for the literal character; an unescaped `?` or any other
  `${...}` makes that resource invalid (the nucleus logs it and ignores it);
- for `aws.greengrass.ipc.mqttproxy` only, MQTT wildcards in resources are honoured when used
  as whole levels: `+` one level, a final `/#` the rest (`a/#` also matches `a`);
- `{iot:thingName}` is replaced by the device's thing name.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Mapping

log = logging.getLogger(__name__)

PUBSUB = "aws.greengrass.ipc.pubsub"
MQTTPROXY = "aws.greengrass.ipc.mqttproxy"
THING_NAME_VARIABLE = "{iot:thingName}"
_ESCAPES = {"${*}": "*", "${?}": "?", "${$}": "$"}


class InvalidResource(ValueError):
    pass


def _tokens(resource: str) -> list[tuple[bool, str]]:
    """(is_special, text) pieces: escapes become literal text, `*`, `+`, `#` stay special."""
    out: list[tuple[bool, str]] = []
    index = 0
    while index < len(resource):
        chunk = resource[index : index + 4]
        if resource.startswith("${", index):
            if chunk not in _ESCAPES:
                raise InvalidResource(f"invalid escape in {resource!r}: use ${{*}}, ${{?}} or ${{$}}")
            out.append((False, _ESCAPES[chunk]))
            index += 4
            continue
        char = resource[index]
        if char == "?":
            raise InvalidResource(f"unescaped '?' in {resource!r}: use ${{?}}")
        out.append((char in "*+#", char))
        index += 1
    return out


def compile_resource(resource: str, *, mqtt: bool) -> re.Pattern[str]:
    """A regular expression that fully matches the resources this policy resource allows."""
    if resource == "*" or (mqtt and resource == "#"):
        return re.compile(r".*", re.DOTALL)
    tokens = _tokens(resource)
    parts: list[str] = []
    for index, (special, text) in enumerate(tokens):
        before = tokens[index - 1][1] if index else "/"
        after = tokens[index + 1][1] if index + 1 < len(tokens) else "/"
        whole_level = before == "/" and after == "/"
        if special and text == "*":
            parts.append(".*")
        elif special and mqtt and text == "+" and whole_level:
            parts.append("[^/]*")
        elif special and mqtt and text == "#" and index == len(tokens) - 1 and before == "/":
            parts[-1:] = ["(?:/.*)?"]  # drop the "/" before it: `a/#` covers `a` too
        else:
            parts.append(re.escape(text))
    return re.compile("".join(parts), re.DOTALL)


class AccessPolicy:
    """The permissions of one component, built from its `accessControl` mapping."""

    def __init__(self, access_control: Mapping[str, Any] | None, thing_name: str = "") -> None:
        self._grants: dict[str, list[tuple[frozenset[str], list[re.Pattern[str]]]]] = {}
        for service, policies in (access_control or {}).items():
            if not isinstance(policies, Mapping):
                log.warning("accessControl.%s is not a mapping; ignored", service)
                continue
            for policy_id, policy in policies.items():
                grant = self._parse(service, policy_id, policy, thing_name)
                if grant:
                    self._grants.setdefault(service, []).append(grant)

    @staticmethod
    def _parse(service: str, policy_id: str, policy: Any, thing_name: str):
        if not isinstance(policy, Mapping):
            log.warning("policy %s of %s is not a mapping; ignored", policy_id, service)
            return None
        operations = frozenset(str(op) for op in policy.get("operations") or ())
        patterns = []
        for resource in policy.get("resources") or ():
            text = str(resource).replace(THING_NAME_VARIABLE, thing_name)
            try:
                patterns.append(compile_resource(text, mqtt=service == MQTTPROXY))
            except InvalidResource as exc:
                log.warning("policy %s of %s: %s; resource ignored", policy_id, service, exc)
        return operations, patterns

    def allows(self, service: str, operation: str, resource: str) -> bool:
        for operations, patterns in self._grants.get(service, ()):
            if operation in operations or "*" in operations:
                if any(pattern.fullmatch(resource) for pattern in patterns):
                    return True
        return False
