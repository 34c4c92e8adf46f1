"""Helpers for live tests: connect clients and wait for events with a deadline."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any, Callable, List, Optional

import natter
from natter import Client, Config, CursorStore, MemoryCursorStore

from conftest import PATIENCE, Server


def users(*names: str) -> List[str]:
    """User ids unique to one test run (lower case: [NWP-2.3-5])."""
    suffix = secrets.token_hex(3)
    return [f"{name}-{suffix}" for name in names]


async def connect(
    server: Server,
    user: str,
    device: str = "py1",
    store: Optional[CursorStore] = None,
    url: Optional[str] = None,
    **options: Any,
) -> Client:
    config = Config(
        url or server.url,
        server.token(user, device),
        cursor_store=store or MemoryCursorStore(),
        backoff_initial=0.05,
        backoff_max=0.5,
        **options,
    )
    return await asyncio.wait_for(Client.connect(config), PATIENCE)


async def wait_for(
    client: Client, predicate: Callable[[natter.Event], bool], what: str = "an event"
) -> natter.Event:
    """Reads the client's events until one matches; fails after PATIENCE."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE
    while True:
        left = deadline - loop.time()
        try:
            event = await client.events.next(timeout=max(left, 0.001))
        except asyncio.TimeoutError:
            raise AssertionError(f"waited {PATIENCE}s for {what}") from None
        assert event is not None, f"the event stream ended while waiting for {what}"
        if predicate(event):
            return event


async def chat_events(client: Client, conversation: str, count: int) -> List[natter.ChatEvent]:
    """The next `count` conversation events of `conversation`, in the order they came."""
    seen: List[natter.ChatEvent] = []
    while len(seen) < count:
        event = await wait_for(
            client,
            lambda e: isinstance(e, natter.ChatEvent) and e.conversation == conversation,
            f"event {len(seen) + 1} of {count} in {conversation} (got {texts(seen)})",
        )
        assert isinstance(event, natter.ChatEvent)
        seen.append(event)
    return seen


def texts(events: List[natter.ChatEvent]) -> List[Optional[str]]:
    return [event.text for event in events]


def ignore_events(client: Client) -> "asyncio.Task[None]":
    """Reads and drops a client's events: an application must keep reading them."""

    async def drain() -> None:
        async for _ in client.events:
            pass

    return asyncio.ensure_future(drain())
