"""Fixtures: a real `natter serve` on free loopback ports, and tokens from `natter token`,
as an operator would run them. Live tests skip when NATTER_BIN is not set."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the tests' helper modules

SECRET = "python-sdk-test-secret"
PATIENCE = 20.0
"""Seconds a live test waits for one step before failing."""


class Server:
    """A running `natter serve`; killed at the end of the test."""

    def __init__(self, binary: str, root: Path, extra: Optional[List[str]] = None) -> None:
        self.binary = binary
        self.data_dir = root / "data"
        self.extra = extra or []
        self.runs = 0
        self.process: Optional["subprocess.Popen[bytes]"] = None
        self.addresses: Dict[str, Optional[str]] = {}

    @property
    def tcp(self) -> str:
        return self.addresses["tcp"] or ""

    @property
    def http(self) -> str:
        return self.addresses["http"] or ""

    @property
    def url(self) -> str:
        return f"tcp://{self.tcp}"

    def start(self, tcp: str = "127.0.0.1:0", http: str = "127.0.0.1:0") -> None:
        """Starts the server and waits for its ready line; the log goes beside the data."""
        self.runs += 1
        log = open(self.data_dir.with_suffix(f".log.{self.runs}"), "wb")
        args = ["serve", "--print-ready", "--token-secret", SECRET, "--tcp", tcp, "--http", http]
        self.process = subprocess.Popen(
            [self.binary, *args, "--data-dir", str(self.data_dir), *self.extra],
            stdout=subprocess.PIPE,
            stderr=log,
            env={**os.environ, "RUST_LOG": "warn"},
        )
        log.close()
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], PATIENCE)
        line = self.process.stdout.readline() if ready else b""
        if not line:
            self.kill()
            logs = self.data_dir.with_suffix(f".log.{self.runs}").read_text(errors="replace")
            raise AssertionError(f"natter serve printed no ready line; its log:\n{logs}")
        ready_line = json.loads(line)
        assert ready_line["event"] == "ready"
        self.addresses = {key: ready_line.get(key) for key in ("tcp", "http", "tls")}

    def kill(self) -> None:
        """SIGKILL: no drain, no flush, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def restart(self) -> None:
        """Starts again on the same ports and data directory."""
        self.start(self.tcp, self.http)

    def token(self, user: str, device: str) -> str:
        out = subprocess.run(
            [self.binary, "token", "--secret", SECRET, "--user", user, "--device", device],
            check=True,
            capture_output=True,
        )
        return out.stdout.decode().strip()


@pytest.fixture
def natter_bin() -> str:
    binary = os.environ.get("NATTER_BIN")
    if not binary:
        pytest.skip("NATTER_BIN is not set: live tests need a natter binary (scripts/test.sh)")
    assert os.access(binary, os.X_OK), f"NATTER_BIN={binary} is not executable"
    return binary


@pytest.fixture
def server(natter_bin: str, tmp_path: Path) -> Iterator[Server]:
    """A fresh server per test: it starts in tens of milliseconds."""
    running = Server(natter_bin, tmp_path)
    running.start()
    yield running
    running.kill()
