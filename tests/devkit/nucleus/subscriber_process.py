"""Runs as a component process would: the environment names the socket and the SVCUID.

Usage: python subscriber_process.py TOPIC. Prints READY once subscribed, then the first
message as a JSON line, and exits 0 (or prints TIMEOUT and exits 1 after 10 s).
"""

import json
import sys
import threading

from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2


def main() -> int:
    client = GreengrassCoreIPCClientV2()  # reads the environment, exactly as on a device
    received, arrived = [], threading.Event()

    def on_event(event) -> None:
        received.append(event)
        arrived.set()

    client.subscribe_to_topic(topic=sys.argv[1], on_stream_event=on_event)
    print("READY", flush=True)
    if not arrived.wait(10):
        print("TIMEOUT", flush=True)
        return 1
    message = received[0].json_message
    print(json.dumps({"topic": message.context.topic, "message": message.message}), flush=True)
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
