#!/usr/bin/env python3
"""Many recipients of a busy group that never read: what does it cost the server?

The scenario independent testers ran: a group of N members (200 by default) whose sessions
connect, RESUME, and then never read a byte, with a small receive buffer so the kernel cannot
absorb what the edge sends; a few senders post large messages to the group as fast as their
rate limit allows. The script samples the server's RSS (from /proc) and its
natter_outbound_queue_bytes gauge every 250 ms and prints a JSON summary:
peak and final RSS, peak queued bytes, connections shed, frames dropped.

    bench/slow_consumers.py [--natter target/release/natter] [--members 200] [--seconds 20]

Needs the Python SDK on the path (it uses clients/python/src directly). Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "clients" / "python" / "src"))

import natter  # noqa: E402
from natter import frames  # noqa: E402

SECRET = "slow-consumers-bench"


def token(binary: str, user: str, device: str) -> str:
    out = subprocess.run(
        [binary, "token", "--secret", SECRET, "--user", user, "--device", device],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) * 1024 if match else 0


def metric(http: str, name: str) -> float:
    with urllib.request.urlopen(f"http://{http}/metrics", timeout=5) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def sleeper(tcp: str, tok: str) -> socket.socket:
    """A member that says HELLO and RESUME, then never reads again."""
    host, port = tcp.rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    hello = frames.Hello(1, 1, 0, 65536, tok.encode(), "slow-consumer")
    sock.sendall(frames.encode(hello))
    buf = bytearray()
    while True:
        frame = frames.decode_frame(buf, 1 << 24)
        if frame is not None:
            if isinstance(frame, frames.Ready):
                sock.sendall(frames.encode(frames.Resume(1, frame.inbox_head)))
                return sock
            raise RuntimeError(f"not READY: {frame}")
        buf += sock.recv(65536)


async def send_loop(url: str, tok: str, group: str, body: str, until: float) -> int:
    """Sends with up to 32 messages in flight, as fast as the rate limit allows."""
    client = await natter.Client.connect(natter.Config(url, tok))
    sent = 0

    async def one() -> None:
        nonlocal sent
        while time.monotonic() < until:
            try:
                await client.send_text(group, body)
                sent += 1
            except natter.ServerError:
                await asyncio.sleep(0.05)

    try:
        await asyncio.gather(*(one() for _ in range(32)))
    finally:
        await client.close()
    return sent


async def run(args: argparse.Namespace) -> dict[str, object]:
    data = tempfile.mkdtemp(prefix="natter-slow-")
    server = subprocess.Popen(
        [
            args.natter,
            "serve",
            "--print-ready",
            "--token-secret",
            SECRET,
            "--data-dir",
            data,
            "--tcp",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        ready = json.loads(server.stdout.readline())
        tcp, http = ready["tcp"], ready["http"]
        url = f"tcp://{tcp}"
        members = [f"r{i}" for i in range(args.members)]
        owner_token = token(args.natter, "owner", "bench")
        owner = await natter.Client.connect(natter.Config(url, owner_token))
        info = await owner.create_group("slow", members)
        await owner.close()
        group = info.conversation
        print(f"group {group} of {len(members)} members created", file=sys.stderr)
        sleepers = [sleeper(tcp, token(args.natter, m, "phone")) for m in members]
        print(f"{len(sleepers)} members connected, not reading", file=sys.stderr)
        base_rss = rss_bytes(server.pid)
        body = "x" * args.body
        until = time.monotonic() + args.seconds
        senders = [
            asyncio.create_task(
                send_loop(url, token(args.natter, "owner", f"s{i}"), group, body, until)
            )
            for i in range(args.senders)
        ]
        peak_rss, peak_queued = base_rss, 0.0
        ticks = 0
        while time.monotonic() < until:
            await asyncio.sleep(0.25)
            peak_rss = max(peak_rss, rss_bytes(server.pid))
            peak_queued = max(peak_queued, metric(http, "natter_outbound_queue_bytes"))
            ticks += 1
            if ticks % 8 == 0:
                print(
                    f"rss {rss_bytes(server.pid) / 2**20:.0f} MiB, peak {peak_rss / 2**20:.0f}, "
                    f"queued peak {peak_queued / 2**20:.0f} MiB",
                    file=sys.stderr,
                )
        sent = sum(await asyncio.gather(*senders))
        await asyncio.sleep(2)
        result = {
            "members": args.members,
            "messages_sent": sent,
            "body_bytes": args.body,
            "rss_before_mib": round(base_rss / 2**20, 1),
            "rss_peak_mib": round(peak_rss / 2**20, 1),
            "rss_end_mib": round(rss_bytes(server.pid) / 2**20, 1),
            "queued_peak_mib": round(peak_queued / 2**20, 1),
            "shed_connections": metric(http, "natter_outbound_shed_connections_total"),
            "slow_consumer_closes": metric(http, 'natter_errors_total{code="SLOW_CONSUMER"}'),
            "dropped_frames": metric(http, "natter_outbound_dropped_frames_total"),
        }
        for sock in sleepers:
            sock.close()
        return result
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--natter", default=str(ROOT / "target" / "release" / "natter"))
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--body", type=int, default=8192)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    if not os.access(args.natter, os.X_OK):
        sys.exit(f"no natter binary at {args.natter}: cargo build --release first")
    print(json.dumps(asyncio.run(run(args)), indent=2))


if __name__ == "__main__":
    main()
