"""The SDK against a real `natter serve`: restarts, resume, dedup, groups, receipts, and the
TLS and WebSocket transports. Each test gets a fresh server (it starts in milliseconds)."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import List

import pytest

import natter
from natter import Direction, ErrorCode, FileCursorStore, OutgoingMessage, Role, ServerError
from natter.frames import EventKind

from conftest import PATIENCE, Server
from live import chat_events, connect, ignore_events, texts, users, wait_for


def numbered(prefix: str, first: int, last: int) -> List[str]:
    return [f"{prefix}{n}" for n in range(first, last + 1)]


def test_sends_across_a_server_crash_are_acked_once_and_received_in_order(server: Server) -> None:
    """SIGKILL the server in the middle of a stream of sends and start it again on the same
    data and ports: every send is acknowledged exactly once, with the seq it is stored at,
    and the receiver gets every message once, in order."""
    total = 80

    async def scenario() -> None:
        alice_id, bob_id = users("alice", "bob")
        alice = await connect(server, alice_id)
        bob = await connect(server, bob_id)
        ignore_events(alice)
        chat = alice.direct_conversation(bob_id)

        messages = [OutgoingMessage.text(chat, text) for text in numbered("m", 1, total)]
        answers = []
        for index, message in enumerate(messages):
            answers.append(await alice.enqueue(message))
            if index == 40:
                # Let the burst reach the server, then crash: some sends are acknowledged,
                # some durable without their ack (resent, they come back duplicate), some
                # lost on the wire, the rest not yet sent.
                await asyncio.sleep(0.003)
                server.kill()
                restart = asyncio.get_running_loop().call_later(0.3, server.restart)
            if index < 20 or index > 40:
                await asyncio.sleep(0.01)  # paced before and after a burst of 20
        acks = await asyncio.wait_for(asyncio.gather(*answers), PATIENCE)
        restart.cancel()

        assert [ack.seq for ack in acks] == list(range(1, total + 1)), "one seq each, in order"
        got = await chat_events(bob, chat, total)
        assert texts(got) == numbered("m", 1, total), "all, once, in order"
        page = await bob.history(chat, 0, Direction.FORWARD, 200)
        assert not page.more
        assert [e.client_msg_id for e in page.events] == [m.client_msg_id for m in messages]
        assert server.runs == 2
        await alice.close()
        await bob.close()

    asyncio.run(scenario())


def test_offline_messages_arrive_on_reconnect_from_the_persisted_cursor(
    server: Server, tmp_path: Path
) -> None:
    async def scenario() -> None:
        alice_id, bob_id = users("alice", "bob")
        alice = await connect(server, alice_id)
        ignore_events(alice)
        chat = alice.direct_conversation(bob_id)
        cursor_file = tmp_path / "bob.cursor"

        bob = await connect(server, bob_id, store=FileCursorStore(cursor_file))
        await alice.send_text(chat, "m1")
        assert texts(await chat_events(bob, chat, 1)) == ["m1"]
        await bob.close()
        saved = FileCursorStore(cursor_file).load()
        assert saved.inbox is not None and saved.conversations[chat] == 1

        # Bob is away (his process is gone): messages wait in his inbox.
        for text in numbered("m", 2, 5):
            await alice.send_text(chat, text)

        # A new process resumes from the file and gets exactly what it missed, in order.
        bob = await connect(server, bob_id, store=FileCursorStore(cursor_file))
        assert texts(await chat_events(bob, chat, 4)) == numbered("m", 2, 5)
        await alice.send_text(chat, "m6")
        assert texts(await chat_events(bob, chat, 1)) == ["m6"]
        await bob.close()
        assert FileCursorStore(cursor_file).load().conversations[chat] == 6

        # A device without a cursor starts at the inbox head [NWP-6.1.2-2].
        fresh = await connect(server, bob_id, device="py2")
        await alice.send_text(chat, "m7")
        assert texts(await chat_events(fresh, chat, 1)) == ["m7"]
        await fresh.close()
        await alice.close()

    asyncio.run(scenario())


def test_a_repeated_client_msg_id_gets_the_original_seq(server: Server) -> None:
    async def scenario() -> None:
        alice_id, bob_id = users("alice", "bob")
        alice = await connect(server, alice_id)
        bob = await connect(server, bob_id)
        ignore_events(alice)
        chat = alice.direct_conversation(bob_id)

        message = OutgoingMessage.text(chat, "only once")
        first = await alice.send(message)
        assert not first.duplicate
        again = await alice.send(message)
        assert again.duplicate and (again.seq, again.timestamp) == (first.seq, first.timestamp)

        changed = OutgoingMessage(chat, b"something else", client_msg_id=message.client_msg_id)
        with pytest.raises(ServerError) as refused:
            await alice.send(changed)
        assert refused.value.code == ErrorCode.DUPLICATE_MISMATCH

        await alice.send_text(chat, "next")
        got = await chat_events(bob, chat, 2)
        assert [(e.seq, e.text) for e in got] == [(first.seq, "only once"), (first.seq + 1, "next")]
        await alice.close()
        await bob.close()

    asyncio.run(scenario())


def test_groups_create_add_remove_and_messages(server: Server) -> None:
    async def scenario() -> None:
        alice_id, bob_id, carol_id = users("alice", "bob", "carol")
        alice = await connect(server, alice_id)
        bob = await connect(server, bob_id)
        carol = await connect(server, carol_id)
        ignore_events(alice)

        group = await alice.create_group("Climbing", [bob_id])
        assert group.conversation.startswith("g/") and group.title == "Climbing"
        roles = {member.user: member.role for member in group.members}
        assert roles == {alice_id: Role.OWNER, bob_id: Role.MEMBER}
        conv = group.conversation

        # [NWP-7.7-1]: GROUP_CREATED, then the owner, then the members.
        created = await chat_events(bob, conv, 3)
        assert [e.kind for e in created] == [
            EventKind.GROUP_CREATED,
            EventKind.MEMBER_ADDED,
            EventKind.MEMBER_ADDED,
        ]
        assert created[0].text == "Climbing"
        assert [e.member_change() for e in created[1:]] == [
            (alice_id, Role.OWNER),
            (bob_id, Role.MEMBER),
        ]

        added = await alice.add_member(conv, carol_id)
        assert added.seq == 4
        change = (await chat_events(carol, conv, 1))[0]
        assert isinstance(change, natter.Membership)
        assert (change.seq, change.member_change()) == (4, (carol_id, Role.MEMBER))
        info = await carol.group_info(conv)
        assert {m.user for m in info.members} == {alice_id, bob_id, carol_id}

        hello = await alice.send_text(conv, "hello all")
        for member in (bob, carol):
            got = await wait_for(member, lambda e: isinstance(e, natter.Message))
            assert isinstance(got, natter.Message)
            assert (got.conversation, got.seq, got.text) == (conv, hello.seq, "hello all")

        removed = await alice.remove_member(conv, bob_id)
        gone = await wait_for(bob, lambda e: isinstance(e, natter.Membership))
        assert isinstance(gone, natter.Membership) and gone.seq == removed.seq
        assert (gone.kind, gone.member_change()) == (EventKind.MEMBER_REMOVED, (bob_id, 0))
        with pytest.raises(ServerError) as refused:
            await bob.history(conv)
        assert refused.value.code in (ErrorCode.NOT_FOUND, ErrorCode.FORBIDDEN)

        after = await alice.send_text(conv, "bob has left")
        got = await wait_for(carol, lambda e: isinstance(e, natter.Message) and e.seq > hello.seq)
        assert isinstance(got, natter.Message) and got.seq == after.seq
        with pytest.raises(ServerError) as refused:
            await carol.add_member(conv, bob_id)  # a MEMBER may not add [NWP-7.7-2]
        assert refused.value.code in (ErrorCode.FORBIDDEN, ErrorCode.NOT_FOUND)
        for client in (alice, bob, carol):
            await client.close()

    asyncio.run(scenario())


def test_a_read_mark_reaches_the_sender_as_a_receipt(server: Server) -> None:
    async def scenario() -> None:
        alice_id, bob_id = users("alice", "bob")
        alice = await connect(server, alice_id)
        bob = await connect(server, bob_id)
        chat = alice.direct_conversation(bob_id)

        sent = await alice.send_text(chat, "did you read this?")
        (got,) = await chat_events(bob, chat, 1)
        await bob.mark_read(chat, got.seq)
        receipt = await wait_for(
            alice,
            lambda e: isinstance(e, natter.Receipt) and e.user == bob_id and e.read >= sent.seq,
            "bob's read receipt",
        )
        assert isinstance(receipt, natter.Receipt) and receipt.conversation == chat

        # Typing and presence ride the same connection.
        await bob.typing(chat, True)
        typing = await wait_for(alice, lambda e: isinstance(e, natter.Typing))
        assert typing == natter.Typing(chat, bob_id, True)
        await alice.subscribe_presence(chat, ttl=60)
        presence = await wait_for(alice, lambda e: isinstance(e, natter.Presence))
        assert isinstance(presence, natter.Presence) and presence.user == bob_id
        await alice.close()
        await bob.close()

    asyncio.run(scenario())


def test_edit_delete_history_and_the_conversation_list(server: Server) -> None:
    async def scenario() -> None:
        alice_id, bob_id = users("alice", "bob")
        alice = await connect(server, alice_id)
        ignore_events(alice)
        chat = alice.direct_conversation(bob_id)
        first = await alice.send_text(chat, "frist")
        second = await alice.send_text(chat, "second")
        await alice.edit(chat, first.seq, "first")
        await alice.delete(chat, second.seq)
        page = await alice.history(chat, 0, Direction.BACKWARD, 10)
        kinds = [type(e) for e in page.events]
        assert kinds == [natter.Message, natter.Message, natter.Edit, natter.Delete]
        assert page.events[1].flags & natter.EventFlags.DELETED and page.events[1].body == b""
        assert page.events[2].target == first.seq and page.events[2].text == "first"
        listing = await alice.conversations()
        (summary,) = [c for c in listing.conversations if c.conversation == chat]
        assert summary.last_seq == 4
        await alice.close()

    asyncio.run(scenario())


def test_a_refused_token_fails_connect_and_is_not_retried(server: Server) -> None:
    async def scenario() -> None:
        config = natter.Config(server.url, "not-a-token", backoff_initial=0.05)
        with pytest.raises(ServerError) as refused:
            await natter.Client.connect(config)
        assert refused.value.code == ErrorCode.UNAUTHENTICATED

    asyncio.run(scenario())


def test_websocket_transport(server: Server) -> None:
    async def scenario() -> None:
        alice_id, bob_id = users("alice", "bob")
        url = f"ws://{server.http}/ws"
        alice = await connect(server, alice_id, url=url)
        bob = await connect(server, bob_id, url=url)
        ignore_events(alice)
        chat = alice.direct_conversation(bob_id)
        # A body above 126 and 65,535 bytes would need the longer WebSocket lengths.
        await alice.send(OutgoingMessage(chat, b"x" * 1000))
        await alice.send_text(chat, "over a websocket")
        got = await chat_events(bob, chat, 2)
        assert got[0].body == b"x" * 1000 and got[1].text == "over a websocket"
        await alice.close()
        await bob.close()

    asyncio.run(scenario())


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to make a cert")
def test_tls_transport(natter_bin: str, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    tls_args = ["--tls", "127.0.0.1:0", "--tls-cert", str(cert), "--tls-key", str(key)]
    server = Server(natter_bin, tmp_path, tls_args)
    server.start()

    async def scenario() -> None:
        alice_id, bob_id = users("alice", "bob")
        context = ssl.create_default_context(cafile=str(cert))
        url = f"tls://{server.addresses['tls']}"
        alice = await connect(server, alice_id, url=url, ssl_context=context)
        bob = await connect(server, bob_id, url=url, ssl_context=context)
        ignore_events(alice)
        chat = alice.direct_conversation(bob_id)
        await alice.send_text(chat, "over tls")
        assert texts(await chat_events(bob, chat, 1)) == ["over tls"]
        await alice.close()
        await bob.close()

        # Without the CA the server's certificate is refused.
        with pytest.raises(natter.TransportError):
            await connect(server, alice_id, url=url, ssl_context=ssl.create_default_context())

    try:
        asyncio.run(scenario())
    finally:
        server.kill()
