"""The console's guards under load: the session cap and the per-source throttle
of failed logins, while the appliance keeps serving."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import asyncssh
import pytest
from console_helpers import ConsoleApp, client
from proc import BOUND, line_exchange

pytestmark = pytest.mark.slow

#: the console's defaults (runtime/console/ssh.py, throttle.py)
MAX_SESSIONS = 8
MAX_FAILURES = 5
FLOOD = 60
#: a second loopback source, so that the flooding address is not the operator's
FLOODER = "127.0.0.2"


async def test_session_cap(console: ConsoleApp) -> None:
    async with AsyncExitStack() as stack:
        sessions = [
            await stack.enter_async_context(client(console.port, console.keys.alice))
            for _ in range(MAX_SESSIONS)
        ]
        # One more is told no (RFC 4253 §11.1 TOO_MANY_CONNECTIONS), and is not
        # a failed login: it does not count towards the throttle.
        for _ in range(MAX_FAILURES + 1):
            with pytest.raises(asyncssh.DisconnectError) as refused:
                async with client(console.port, console.keys.alice):
                    pass
            assert refused.value.code == asyncssh.DISC_TOO_MANY_CONNECTIONS
        # The sessions in place still work; once one leaves, a new one gets in.
        assert (await sessions[0].run("status", timeout=BOUND)).exit_status == 0
        sessions[-1].close()
        await sessions[-1].wait_closed()
        count = 0
        while count < BOUND * 10:  # the server sees the close a moment later
            try:
                async with client(console.port, console.keys.alice) as conn:
                    assert (await conn.run("status", timeout=BOUND)).exit_status == 0
                break
            except asyncssh.DisconnectError as exc:
                assert exc.code == asyncssh.DISC_TOO_MANY_CONNECTIONS
                count += 1
        else:
            pytest.fail("no session after one closed")
    assert line_exchange(console.service, "echo served") == "served"


async def _bad_login(port: int, key: Path) -> str:
    """``denied`` (the key was refused) or ``refused`` (closed before any SSH)."""
    try:
        async with client(port, key, local_addr=(FLOODER, 0)):
            return "accepted"
    except asyncssh.PermissionDenied:
        return "denied"
    except (asyncssh.ConnectionLost, asyncssh.DisconnectError, ConnectionError):
        return "refused"


async def test_failed_login_flood_is_throttled_and_service_answers(console: ConsoleApp) -> None:
    outcomes: list[str] = []
    answered = 0
    for i in range(FLOOD):
        outcomes.append(await _bad_login(console.port, console.keys.mallory))
        # The appliance's own service, between every two attempts.
        if line_exchange(console.service, f"echo {i}") == str(i):
            answered += 1
        console.app.read_logs(0)
    assert answered == FLOOD
    assert "accepted" not in outcomes
    # The first MAX_FAILURES are real SSH logins that fail; from then on the source
    # is blocked.  A client that retries at once may get one or two more logins in
    # before the server has seen the last failure's connection close.
    denied = outcomes.count("denied")
    assert MAX_FAILURES <= denied <= MAX_FAILURES + 3, outcomes
    assert outcomes[:MAX_FAILURES] == ["denied"] * MAX_FAILURES
    assert outcomes[-(FLOOD - denied) :] == ["refused"] * (FLOOD - denied)
    blocked = console.app.wait_log("console source blocked after failed logins")
    assert blocked["peer"].startswith(FLOODER + ":")

    # After the flood: the flooding address is refused even with a good key...
    assert await _bad_login(console.port, console.keys.alice) == "refused"
    # ...while an operator elsewhere gets in, and the service still answers.
    async with client(console.port, console.keys.alice) as conn:
        result = await conn.run("status", timeout=BOUND)
        assert result.exit_status == 0
    assert line_exchange(console.service, "echo still serving") == "still serving"
    assert console.app.proc.poll() is None
