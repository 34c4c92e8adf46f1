"""MQTT devices and natter users in one chat (spec chapter 14), with real MQTT clients.

Each check prints one line; the last line is 'N passed, N failed'.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Callable, List

import natter
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

NATTER = sys.argv[1]
SECRET = "mqtt-test-secret"
PATIENCE = 15.0


def token(user: str, device: str) -> str:
    return subprocess.check_output(
        [NATTER, "token", "--secret", SECRET, "--user", user, "--device", device]
    ).decode().strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`natter serve` on fixed loopback ports, so a restart keeps them."""

    def __init__(self, data_dir: str) -> None:
        self.data_dir = data_dir
        self.tcp = f"127.0.0.1:{free_port()}"
        self.http = f"127.0.0.1:{free_port()}"
        self.mqtt_port = free_port()
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        log = open(os.path.join(self.data_dir, "natter.log"), "a")
        self.proc = subprocess.Popen(
            [NATTER, "serve", "--print-ready", "--token-secret", SECRET, "--tcp", self.tcp,
             "--http", self.http, "--mqtt", f"127.0.0.1:{self.mqtt_port}",
             "--data-dir", os.path.join(self.data_dir, "data")],
            stdout=subprocess.PIPE, stderr=log, env={**os.environ, "RUST_LOG": "warn"},
        )
        assert self.proc.stdout is not None
        ready = json.loads(self.proc.stdout.readline())
        assert ready["mqtt"] == f"127.0.0.1:{self.mqtt_port}", ready

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Device:
    """A paho-mqtt 2.x device; received messages queue up in `inbox`."""

    def __init__(self, server: Server, user: str, device: str, v5: bool = True,
                 clean: bool = True, password: str | None = None, inflight: int = 20) -> None:
        self.inbox: "queue.Queue[mqtt.MQTTMessage]" = queue.Queue()
        self.connack: "queue.Queue[int]" = queue.Queue()
        self.acks: "queue.Queue[tuple[int, int]]" = queue.Queue()
        self.subacks: "queue.Queue[list[int]]" = queue.Queue()
        protocol = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
        kwargs = {} if v5 else {"clean_session": clean}
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device,
                                  protocol=protocol, **kwargs)
        self.client.username_pw_set(user, password if password is not None else token(user, device))
        self.client.on_message = lambda c, u, m: self.inbox.put(m)
        self.client.on_connect = lambda c, u, f, rc, p: self.connack.put(rc.value)
        self.client.on_publish = lambda c, u, mid, rc, p: self.acks.put((mid, rc.value))
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.put([r.value for r in rcs])
        self.client.reconnect_delay_set(0.2, 1)
        self.client.max_inflight_messages_set(inflight)
        props = None
        if v5 and not clean:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", server.mqtt_port, keepalive=30,
                            clean_start=clean if v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
                            properties=props)
        self.client.loop_start()
        self.code = self.connack.get(timeout=PATIENCE)

    def subscribe(self, *filters: str) -> List[int]:
        self.client.subscribe([(f, 1) for f in filters])
        return self.subacks.get(timeout=PATIENCE)

    def publish(self, topic: str, payload: bytes, qos: int = 1, props=None) -> int:
        info = self.client.publish(topic, payload, qos=qos, properties=props)
        if qos == 0:
            return 0
        while True:
            mid, rc = self.acks.get(timeout=PATIENCE)
            if mid == info.mid:
                return rc

    def received(self, count: int, timeout: float = PATIENCE) -> List[mqtt.MQTTMessage]:
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            got.append(self.inbox.get(timeout=max(0.01, deadline - time.monotonic())))
        return got

    def nothing_more(self, wait: float = 1.0) -> bool:
        try:
            extra = self.inbox.get(timeout=wait)
        except queue.Empty:
            return True
        print(f"    unexpected: {extra.topic} {extra.payload!r}")
        return False

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def user(server: Server, name: str) -> natter.Client:
    config = natter.Config(f"tcp://{server.tcp}", token(name, "phone"))
    return await natter.Client.connect(config)


async def next_message(client: natter.Client) -> natter.ChatEvent:
    """The next message someone else sent (a user's own messages come back to it too)."""
    while True:
        event = await asyncio.wait_for(client.events.__anext__(), PATIENCE)
        if isinstance(event, natter.Message) and event.sender != client.user:
            return event


def props(values: dict) -> Properties:
    p = Properties(PacketTypes.PUBLISH)
    for key, value in values.items():
        setattr(p, key, value)
    return p


async def checks(server: Server) -> List[tuple[str, Callable]]:
    alice = await user(server, "alice")
    dm = "natter/send/d/alice/bob"

    async def both_directions_v5() -> None:
        bob = Device(server, "bob", "sensor")
        assert bob.code == 0
        assert bob.subscribe("natter/in/#") == [1]
        await alice.send_text("d/alice/bob", "hello sensor")
        [got] = bob.received(1)
        assert got.topic == "natter/in/d/alice/bob" and got.payload == b"hello sensor", got
        user_props = dict(got.properties.UserProperty)
        assert user_props["sender"] == "alice" and int(user_props["seq"]) >= 1, user_props
        rc = bob.publish(dm, b"21.5 C", props=props({"ContentType": "text/x-reading"}))
        assert rc == 0, rc
        message = await next_message(alice)
        assert (message.sender, message.body, message.content_type) == (
            "bob", b"21.5 C", "text/x-reading"), message
        bob.close()

    async def mosquitto_one_liners() -> None:
        sub = subprocess.Popen(
            ["mosquitto_sub", "-p", str(server.mqtt_port), "-i", "cli", "-u", "bob",
             "-P", token("bob", "cli"), "-t", "natter/in/#", "-C", "1", "-v", "-W", "15"],
            stdout=subprocess.PIPE)
        time.sleep(0.5)
        await alice.send_text("d/alice/bob", "hi from the SDK")
        out, _ = await asyncio.to_thread(sub.communicate)
        assert out.decode().startswith("natter/in/d/alice/bob/"), out
        assert out.decode().rstrip().endswith(" hi from the SDK"), out
        subprocess.run(["mosquitto_pub", "-p", str(server.mqtt_port), "-i", "cli", "-u", "bob",
                        "-P", token("bob", "cli"), "-t", dm, "-q", "1", "-m", "hi from mosquitto"],
                       check=True)
        message = await next_message(alice)
        assert message.body == b"hi from mosquitto", message

    async def groups() -> None:
        group = await alice.create_group("plant", ["bob"])
        bob = Device(server, "bob", "gateway", v5=False)
        assert bob.subscribe(f"natter/in/{group.conversation}/#") == [1]
        assert bob.publish(f"natter/send/{group.conversation}", b"valve open") == 0
        message = await next_message(alice)
        assert (message.conversation, message.body) == (group.conversation, b"valve open")
        await alice.send_text(group.conversation, "close it")
        got = [m for m in bob.received(2) if m.payload == b"close it"]
        assert got and got[0].topic.endswith("/alice"), got
        bob.close()

    async def wrong_token() -> None:
        bad = Device(server, "bob", "sensor", password="not-a-token")
        assert bad.code == 0x86, bad.code
        bad.client.loop_stop()
        out = subprocess.run(["mosquitto_pub", "-p", str(server.mqtt_port), "-i", "x", "-u", "bob",
                              "-P", "nope", "-t", dm, "-m", "x"], capture_output=True)
        assert out.returncode != 0 and b"password" in out.stderr.lower(), out

    async def forbidden_topic() -> None:
        bob = Device(server, "bob", "sensor")
        assert bob.publish("natter/send/d/carol/dave", b"x") == 0x87
        assert bob.publish("$SYS/broker/load", b"x") == 0x90
        assert bob.publish(dm, b"still connected") == 0
        bob.close()

    async def wildcards_do_not_leak() -> None:
        carol = await user(server, "carol")
        bob = Device(server, "bob", "snoop")
        codes = bob.subscribe("#", "+/+/#", "$SYS/#", "natter/in/d/carol/dave/#", "natter/in/#")
        assert codes == [0x87, 0x87, 0x87, 1, 1], codes
        await carol.send_text("d/carol/dave", "secret")
        await alice.send_text("d/alice/bob", "for bob")
        got = bob.received(1)
        assert got[0].payload == b"for bob", got
        assert bob.nothing_more()
        bob.close()
        await carol.close()

    async def offline_catch_up() -> None:
        bob = Device(server, "bob", "meter", clean=False)
        bob.subscribe("natter/in/#")
        bob.close()
        for i in range(3):
            await alice.send_text("d/alice/bob", f"offline {i}")
        bob = Device(server, "bob", "meter", clean=False)
        got = [m.payload for m in bob.received(3)]
        assert got == [b"offline 0", b"offline 1", b"offline 2"], got
        time.sleep(0.3)
        bob.close()
        bob = Device(server, "bob", "meter", clean=False)
        assert bob.nothing_more(), "delivered twice"
        bob.close()

    async def qos1_across_a_restart() -> None:
        nonlocal alice
        bob = Device(server, "bob", "logger", v5=False, clean=False, inflight=10)
        infos = []
        for i in range(40):
            infos.append(bob.client.publish(dm, f"reading {i}".encode(), qos=1))
            if i == 15:
                server.kill()
                server.start()
        for info in infos:
            info.wait_for_publish(timeout=30)
        bob.close()
        await alice.close()
        alice = await user(server, "alice")
        page = await alice.history("d/alice/bob", limit=200)
        bodies = [e.body for e in page.events if e.body.startswith(b"reading ")]
        assert bodies == [f"reading {i}".encode() for i in range(40)], bodies

    return [
        ("both directions, MQTT 5 with properties", both_directions_v5),
        ("mosquitto_pub / mosquitto_sub one-liners", mosquitto_one_liners),
        ("a group, MQTT 3.1.1 topic suffix", groups),
        ("a wrong token", wrong_token),
        ("a forbidden topic", forbidden_topic),
        ("wildcards do not leak", wildcards_do_not_leak),
        ("an offline device catches up, once", offline_catch_up),
        ("QoS 1 across a server restart: nothing lost, nothing twice", qos1_across_a_restart),
    ]


async def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(tmp)
        passed = failed = 0
        try:
            for name, check in await checks(server):
                try:
                    await asyncio.wait_for(check(), 90)
                    passed += 1
                    print(f"ok   {name}")
                except Exception as error:  # noqa: BLE001 - report every check
                    failed += 1
                    print(f"FAIL {name}: {type(error).__name__}: {error}")
        finally:
            server.stop()
        print(f"mqtt: {passed} passed, {failed} failed")
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
