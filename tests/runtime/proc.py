"""Run an appliance as a real process and talk to it (for signal, crash and
durability tests)."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).with_name("probe_app.py")

#: every wait here is bounded by this many seconds (generous: shared machines)
BOUND = 30.0


class AppProcess:
    def __init__(
        self, args: list[str], *, script: Path = PROBE, env: dict[str, str] | None = None, preexec: Any = None
    ) -> None:
        full_env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, str(script), "--log-format", "json", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            preexec_fn=preexec,
        )
        self.lines: list[dict[str, Any]] = []
        self._partial = b""

    def read_logs(self, timeout: float) -> None:
        """Collect log lines that arrive within ``timeout``."""
        assert self.proc.stderr is not None
        ready, _, _ = select.select([self.proc.stderr], [], [], timeout)
        if not ready:
            return
        chunk = os.read(self.proc.stderr.fileno(), 65536)
        if not chunk:
            time.sleep(min(timeout, 0.05))
            return
        self._partial += chunk
        *complete, self._partial = self._partial.split(b"\n")
        for raw in complete:
            try:
                self.lines.append(json.loads(raw))
            except ValueError:
                self.lines.append({"msg": raw.decode(errors="replace"), "raw": True})

    def wait_log(self, msg: str, count: int = 1) -> dict[str, Any]:
        deadline = time.monotonic() + BOUND
        while time.monotonic() < deadline:
            found = [line for line in self.lines if line.get("msg") == msg]
            if len(found) >= count:
                return found[count - 1]
            if self.proc.poll() is not None:
                self.read_logs(0.1)
                found = [line for line in self.lines if line.get("msg") == msg]
                if len(found) >= count:
                    return found[count - 1]
                raise AssertionError(f"process exited ({self.proc.returncode}) before {msg!r}: {self.lines}")
            self.read_logs(0.2)
        raise AssertionError(f"no {msg!r} log line within {BOUND}s: {self.lines}")

    def ready(self) -> dict[str, tuple[str, int]]:
        """Wait for the ready line; returns {"tcp": (host, port), "udp": ...}."""
        line = self.wait_log("ready")
        found: dict[str, tuple[str, int]] = {}
        for item in line["listening"].split(","):
            kind, _, address = item.partition("/")
            host, _, port = address.rpartition(":")
            found.setdefault(kind, (host.strip("[]"), int(port)))
        return found

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self) -> int:
        try:
            code = self.proc.wait(BOUND)
        finally:
            self.read_logs(0.1)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(BOUND)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def line_exchange(address: tuple[str, int], request: str) -> str:
    with socket.create_connection(address, timeout=BOUND) as sock:
        sock.sendall(request.encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.decode().rstrip("\n")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
