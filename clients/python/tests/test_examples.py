"""The examples against a real server, so they keep working as the SDK changes."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import natter

from conftest import Server
from live import chat_events, connect, ignore_events, users, wait_for

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_echo_bot_answers_ping_with_pong(server: Server) -> None:
    echo_bot = example("echo_bot")

    async def scenario() -> None:
        bot_id, alice_id = users("bot", "alice")
        bot = await connect(server, bot_id)
        running = asyncio.ensure_future(echo_bot.run(bot))
        alice = await connect(server, alice_id)
        chat = alice.direct_conversation(bot_id)
        for text, expected in [("ping", "pong"), ("hello", "hello")]:
            await alice.send_text(chat, text)
            reply = await wait_for(
                alice, lambda e: isinstance(e, natter.Message) and e.sender == bot_id
            )
            assert isinstance(reply, natter.Message) and reply.text == expected
        await bot.close()
        await asyncio.wait_for(running, 5)
        await alice.close()

    asyncio.run(scenario())


def test_the_sensor_bridge_forwards_each_reading_once(server: Server, tmp_path: Path) -> None:
    bridge = example("sensor_bridge")
    source = tmp_path / "readings.txt"
    source.write_text("21.5\n21.75\n\n22\n")

    async def scenario() -> None:
        sensor_id, alice_id = users("sensor", "alice")
        sensor = await connect(server, sensor_id)
        ignore_events(sensor)
        alice = await connect(server, alice_id)
        chat = sensor.direct_conversation(alice_id)
        with source.open() as readings:
            acks = await bridge.bridge(sensor, chat, sensor_id, bridge.file_readings(readings))
        assert [ack.seq for ack in acks] == [1, 2, 3]
        got = await chat_events(alice, chat, 3)
        assert [e.content_type for e in got] == ["application/json"] * 3
        assert [json.loads(e.body)["value"] for e in got] == [21.5, 21.75, 22.0]

        simulated = await bridge.bridge(sensor, chat, sensor_id, bridge.simulated_readings(5, 0.0))
        assert [ack.seq for ack in simulated] == [4, 5, 6, 7, 8]
        await sensor.close()
        await alice.close()

    asyncio.run(scenario())
