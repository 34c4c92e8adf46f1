"""Forwards a sensor's readings to a conversation, one JSON message per reading.

    natter token --user sensor1 --device bridge > sensor.token
    seq 1 10 | python examples/sensor_bridge.py --token-file sensor.token --to alice --source -
    python examples/sensor_bridge.py --token-file sensor.token --to alice --count 20

Readings come from a file or stdin (`--source`, one number per line), or from a simulated
sensor. Sends are pipelined; the client repeats any the server has not acknowledged after a
reconnect, with the same client_msg_id, so each reading is stored exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sys
import time
from typing import AsyncIterator, List, Optional, TextIO

import natter

log = logging.getLogger("sensor_bridge")


async def file_readings(source: TextIO) -> AsyncIterator[float]:
    """Numbers from a file or a pipe, one per line, read without blocking the loop."""
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, source.readline)
        if not line:
            return
        if line.strip():
            yield float(line)


async def simulated_readings(count: int, interval: float) -> AsyncIterator[float]:
    """A temperature that drifts."""
    value = 20.0
    for _ in range(count):
        value += random.uniform(-0.5, 0.5)
        yield round(value, 2)
        await asyncio.sleep(interval)


async def bridge(
    client: natter.Client, conversation: str, sensor: str, readings: AsyncIterator[float]
) -> List[natter.Sent]:
    """Sends every reading and waits until all are durable; returns their acks in order."""
    answers = []
    async for value in readings:
        body = json.dumps({"sensor": sensor, "value": value, "at": time.time()})
        message = natter.OutgoingMessage(
            conversation, body.encode(), content_type="application/json"
        )
        answers.append(await client.enqueue(message))
    replies = await asyncio.gather(*answers)
    return [reply for reply in replies if isinstance(reply, natter.Sent)]


async def watch(client: natter.Client) -> None:
    """Reads the client's events, which it must: the bridge's own messages come back to it."""
    async for event in client.events:
        if isinstance(event, (natter.Disconnected, natter.Connected)):
            log.info("%s", event)


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--url", default="tcp://127.0.0.1:7400")
    parser.add_argument("--token-file", required=True, help="a token from `natter token`")
    parser.add_argument("--to", required=True, help="a user id, or a conversation id")
    parser.add_argument("--source", help="a file of numbers, or - for stdin")
    parser.add_argument("--count", type=int, default=10, help="simulated readings")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between them")
    args = parser.parse_args()
    with open(args.token_file) as file:
        token = file.read().strip()

    async with await natter.Client.connect(natter.Config(args.url, token)) as client:
        watcher = asyncio.ensure_future(watch(client))
        conversation = args.to if "/" in args.to else client.direct_conversation(args.to)
        source: Optional[TextIO] = None
        if args.source == "-":
            source = sys.stdin
        elif args.source:
            source = open(args.source)
        readings = (
            file_readings(source) if source else simulated_readings(args.count, args.interval)
        )
        acks = await bridge(client, conversation, client.user, readings)
        log.info(
            "%d readings stored in %s, seqs %s", len(acks), conversation, [ack.seq for ack in acks]
        )
        watcher.cancel()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    asyncio.run(main())
