"""The XMPP appliance as a real process: accounts managed from the command line
while it runs, and an offline message acknowledged before ``kill -9`` delivered
after the restart."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import select
import signal
import subprocess
import sys
import termios
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from xmpp_helpers import WAIT, Client, RawClient

from runtime import Address

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")


async def command(state: Path, *args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "appliances.xmpp",
        *args,
        "--state-dir",
        str(state),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=ENV,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), WAIT)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


class Server:
    """``python -m appliances.xmpp`` with its JSON log read as it comes (so a
    full pipe can never block the server)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.records: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            try:
                self.records.append(json.loads(line))
            except ValueError:
                self.records.append({"msg": line.decode(errors="replace")})
            self._changed.set()
        self._changed.set()

    async def wait_log(self, msg: str) -> dict[str, Any]:
        async with asyncio.timeout(WAIT):
            while True:
                for record in self.records:
                    if record.get("msg") == msg:
                        return record
                if self._reader.done():
                    raise AssertionError(f"exited before {msg!r}: {self.records}")
                self._changed.clear()
                await self._changed.wait()

    async def address(self) -> Address:
        ready = await self.wait_log("ready")
        host, _, port = ready["listening"].split(",")[0].partition("/")[2].rpartition(":")
        return Address(host.strip("[]"), int(port))


@asynccontextmanager
async def server(state: Path) -> AsyncIterator[Server]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "appliances.xmpp",
        "--state-dir",
        str(state),
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=ENV,
    )
    running = Server(proc)
    try:
        yield running
    finally:
        if proc.returncode is None:
            proc.kill()
        await asyncio.wait_for(proc.wait(), WAIT)
        await asyncio.wait_for(running._reader, WAIT)


async def test_accounts_from_the_command_line_and_kill_9(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert (await command(state, "user", "add", "alice@localhost", "--password", "alice-pw"))[0] == 0
    # the password from stdin (its first line)
    code, out, _ = await command(state, "user", "add", "bob@localhost", stdin=b"bob-pw\nignored\n")
    assert (code, out.strip()) == (0, "added bob@localhost")
    code, _, err = await command(state, "user", "add", "bob@localhost", "--password", "x")
    assert code == 1 and "exists already" in err

    async with server(state) as first:
        address = await first.address()
        alice = Client("alice@localhost/desk", "alice-pw")
        assert await alice.login(address)
        alice.send_message(mto="bob@localhost", mbody="stored before the crash", mtype="chat")
        # stanzas of a connection are handled in order, each to its end: the
        # ping's answer means the message was written to the store
        await asyncio.wait_for(alice.plugin["xep_0199"].ping("localhost", timeout=WAIT), WAIT)
        first.proc.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(first.proc.wait(), WAIT) == -signal.SIGKILL
        alice.abort()

    async with server(state) as second:
        address = await second.address()
        # account changes while the server runs count at once
        code, out, _ = await command(state, "user", "passwd", "bob@localhost", "--password", "new-pw")
        assert (code, out.strip()) == (0, "password of bob@localhost changed")
        code, out, _ = await command(state, "user", "add", "carol@localhost", "--password", "c")
        assert code == 0
        code, out, _ = await command(state, "user", "list", "--json")
        assert code == 0 and json.loads(out)["accounts"] == [
            "alice@localhost",
            "bob@localhost",
            "carol@localhost",
        ]
        old = Client("bob@localhost/phone", "bob-pw")
        assert not await old.login(address)
        old.abort()
        bob = Client("bob@localhost/phone", "new-pw")
        bob.register_plugin("xep_0203")
        assert await bob.login(address)
        message = await bob.next_message("stored before the crash")
        assert str(message["from"]) == "alice@localhost/desk"
        assert message["delay"]["stamp"] is not None
        # deleted from another process: the server closes carol's session
        # when it reads the change from the store (every few seconds)
        carol = await RawClient.open(address)
        await carol.login("carol", "c", "x")
        code, out, _ = await command(state, "user", "del", "carol@localhost")
        assert (code, out.strip()) == (0, "deleted carol@localhost")
        closed = await carol.read_to_close()
        assert b"<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in closed
        await bob.close()
        second.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.proc.wait(), WAIT) == 0


def test_user_add_at_a_terminal_asks_twice_without_echo(tmp_path: Path) -> None:
    """At a terminal the password is read with the echo off, twice."""

    def run(*answers: str) -> tuple[int, str]:
        main_fd, tty_fd = pty.openpty()

        def controlling_terminal() -> None:
            os.setsid()
            fcntl.ioctl(tty_fd, termios.TIOCSCTTY, 0)

        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "appliances.xmpp",
                "user",
                "add",
                "dora@localhost",
                "--state-dir",
                str(tmp_path),
            ],
            stdin=tty_fd,
            stdout=tty_fd,
            stderr=tty_fd,
            env=ENV,
            preexec_fn=controlling_terminal,
        )
        os.close(tty_fd)
        seen, pending = b"", list(answers)
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main_fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(main_fd, 4096)
                except OSError:  # the terminal closed: the process is done
                    break
                if not chunk:
                    break
                seen += chunk
                if pending and seen.rstrip().endswith(b":"):
                    os.write(main_fd, pending.pop(0).encode() + b"\n")
                    seen += b"|"  # the answer given (never echoed back)
            elif proc.poll() is not None:
                break
        os.close(main_fd)
        return proc.wait(WAIT), seen.decode(errors="replace")

    code, text = run("one", "two")
    assert code != 0 and "the two passwords differ" in text
    code, text = run("s3cret-pass", "s3cret-pass")
    assert code == 0 and "added dora@localhost" in text
    assert "s3cret-pass" not in text  # not echoed
    assert "password for dora@localhost:" in text and "the same again:" in text
