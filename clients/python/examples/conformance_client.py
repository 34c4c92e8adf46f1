"""The conformance client of the Python SDK: what `natter-conformance client` runs to check the
SDK against the rules a client must follow. It implements the contract of
conformance/README.md and nothing more; the SDK does the protocol.

    natter-conformance client --cmd '.venv/bin/python examples/conformance_client.py'
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any, Dict

import natter


def emit(line: Dict[str, Any]) -> None:
    """Prints one line of the contract, whole, before anything that follows it."""
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def show(event: natter.ChatEvent) -> None:
    emit(
        {
            "event": "message",
            "conversation": event.conversation,
            "seq": event.seq,
            "kind": event.kind,
            "sender": event.sender,
            "content_type": event.content_type,
            "body": event.body.decode("utf-8", errors="replace"),
        }
    )


async def type_then_stop(client: natter.Client, conversation: str) -> None:
    """The user types for two seconds, then stops; the SDK paces the TYPING frames."""
    for _ in range(20):
        await client.typing(conversation, True)
        await asyncio.sleep(0.1)
    await client.typing(conversation, False)


async def stdin_closed() -> None:
    """Returns at the end of stdin, without a thread that would outlive the loop."""
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(256):
        pass


async def main() -> int:
    parser = argparse.ArgumentParser(description="natter-conformance's client contract")
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--cursor-file", required=True)
    parser.add_argument("--conversation", required=True)
    parser.add_argument("--send", type=int, default=0)
    parser.add_argument("--big", type=int, default=0)
    parser.add_argument("--typing", action="store_true")
    args = parser.parse_args()
    config = natter.Config(
        args.url, args.token, cursor_store=natter.FileCursorStore(args.cursor_file)
    )
    try:
        client = await natter.Client.connect(config)
    except natter.ServerError as error:
        print(f"conformance_client: connecting: {error}", file=sys.stderr)
        if error.code in (0x03, 0x04, 0x05):
            emit({"event": "fatal", "code": error.code})
            return 3
        return 1
    except natter.NatterError as error:
        print(f"conformance_client: connecting: {error}", file=sys.stderr)
        return 1
    tasks = []
    bodies = (["x" * args.big] if args.big else []) + [f"m{n}" for n in range(1, args.send + 1)]
    for body in bodies:
        # Queued in order, answered whenever: the SDK pipelines them.
        message = natter.OutgoingMessage(args.conversation, body.encode())
        tasks.append(asyncio.ensure_future(report(client, args.conversation, body, message)))
        await asyncio.sleep(0)
    if args.typing:
        tasks.append(asyncio.ensure_future(type_then_stop(client, args.conversation)))
    end = asyncio.ensure_future(stdin_closed())
    while True:
        upcoming = asyncio.ensure_future(client.events.next())
        await asyncio.wait({upcoming, end}, return_when=asyncio.FIRST_COMPLETED)
        if end.done():
            # The contract's end: acknowledge what was shown, save the cursor, exit.
            upcoming.cancel()
            await client.close()
            return 0
        event = upcoming.result()
        if event is None:
            return 1
        if isinstance(event, natter.ChatEvent):
            show(event)
        elif isinstance(event, natter.Gap):
            gap = {"event": "gap", "conversation": event.conversation}
            emit({**gap, "from": event.from_, "to": event.to})
        elif isinstance(event, natter.Closed):
            # Stopped for good: a refused token, no common version [NWP-5.5-3].
            why = event.error
            code = why.code if isinstance(why, natter.ServerError) else 0
            emit({"event": "fatal", "code": code})
            return 3
        else:
            print(f"conformance_client: {event}", file=sys.stderr)


async def report(
    client: natter.Client, conversation: str, body: str, message: natter.OutgoingMessage
) -> None:
    """Queues `message`, then prints its outcome once it is known."""
    answer = await client.enqueue(message)
    try:
        reply = await answer
    except natter.NatterError as error:
        code = error.code if isinstance(error, natter.ServerError) else 0
        emit({"event": "send_failed", "conversation": conversation, "body": body, "code": code})
        return
    seq = reply.seq if isinstance(reply, natter.Sent) else None
    emit({"event": "sent", "conversation": conversation, "body": body, "seq": seq})


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
