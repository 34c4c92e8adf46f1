"""A bot that answers in every conversation it is in: "ping" gets "pong", anything else is
echoed back.

    natter token --user bot --device bot1 > bot.token
    python examples/echo_bot.py --url tcp://127.0.0.1:7400 --token-file bot.token

Its cursor lives in a file, so a restarted bot resumes where it stopped. Each reply's
client_msg_id is derived from the message it answers, so a message answered twice (the bot
crashed between replying and saving its cursor) still gets one reply: the server answers
the repeat with the original seq [NWP-7.2-2].
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
from typing import Optional

import natter

log = logging.getLogger("echo_bot")


def answer(text: Optional[str]) -> Optional[str]:
    """What the bot says to a message; None for bodies that are not text."""
    if text is None:
        return None
    return "pong" if text.strip().lower() == "ping" else text


def reply_id(event: natter.ChatEvent) -> int:
    """A client_msg_id that is the same every time this event is answered."""
    digest = hashlib.sha256(f"{event.conversation}/{event.seq}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % ((1 << 62) - 1) + 1


async def run(client: natter.Client) -> None:
    """Answers messages until the client stops."""
    async for event in client.events:
        if isinstance(event, natter.Message) and event.sender != client.user:
            text = answer(event.text)
            if text is None:
                continue
            reply = natter.OutgoingMessage(
                event.conversation, text.encode(), client_msg_id=reply_id(event)
            )
            # Queue the reply without waiting for its answer: answers come through the same
            # connection as events, so the loop must keep reading events meanwhile.
            pending = await client.enqueue(reply)
            pending.add_done_callback(_log_failure)
        elif isinstance(event, (natter.Disconnected, natter.Closed)):
            log.warning("%s", event)


def _log_failure(answer: "asyncio.Future[natter.Reply]") -> None:
    if not answer.cancelled() and answer.exception() is not None:
        log.warning("a reply failed: %s", answer.exception())


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--url", default="tcp://127.0.0.1:7400")
    parser.add_argument("--token-file", required=True, help="a token from `natter token`")
    parser.add_argument("--cursor", default="echo_bot.cursor", help="where to keep the cursor")
    args = parser.parse_args()
    with open(args.token_file) as file:
        token = file.read().strip()
    config = natter.Config(args.url, token, cursor_store=natter.FileCursorStore(args.cursor))
    async with await natter.Client.connect(config) as client:
        log.info("answering as %s", client.user)
        await run(client)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
