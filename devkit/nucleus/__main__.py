"""`python -m devkit.nucleus --socket PATH --config FILE`: the stand-in as a process.

The config file is JSON: `{"thingName": "...", "region": "...", "components": {"<name>":
{"token": "...", "configuration": {...}, "accessControl": {...}}}}` (token, configuration and
accessControl optional). When serving, one JSON line is printed on stdout:
`{"event": "ready", "socket": ..., "env": {"<name>": {<environment for that component>}}}`.
Device -> IoT Core messages are appended to `--iot-log` as JSON lines. SIGINT/SIGTERM stop it.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import signal
import sys
import threading
from pathlib import Path

from .nucleus import LocalNucleus


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devkit.nucleus",
        description="Serve Greengrass IPC for local components (a stand-in of the nucleus).",
    )
    parser.add_argument("--socket", help="Unix socket path to serve on (default: a new temporary one)")
    parser.add_argument("--config", required=True, type=Path, help="JSON file: thingName, region, components")
    parser.add_argument("--iot-log", type=Path, help="append device -> IoT Core messages here as JSON lines")
    parser.add_argument("--log-level", default="INFO")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = json.loads(args.config.read_text())
        unknown = set(settings) - {"thingName", "region", "components"}
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}")
        nucleus = LocalNucleus(
            args.socket,
            settings.get("thingName", "local-thing"),
            settings.get("components", {}),
            region=settings.get("region", "us-east-1"),
        )
    except (OSError, ValueError) as exc:
        print(f"error: {args.config}: {exc}", file=sys.stderr)
        return 2
    log_file = args.iot_log.open("a", buffering=1) if args.iot_log else None
    if log_file:
        nucleus.iot_core.subscribe(
            "#",
            lambda m: log_file.write(
                json.dumps({"topic": m.topic, "qos": m.qos, "payload": base64.b64encode(m.payload).decode()})
                + "\n"
            ),
        )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        with nucleus:
            env = {name: nucleus.component_env(name) for name in nucleus.components}
            print(json.dumps({"event": "ready", "socket": nucleus.socket_path, "env": env}), flush=True)
            stop.wait()
    finally:
        if log_file:
            log_file.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
