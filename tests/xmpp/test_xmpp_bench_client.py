"""The XMPP benchmark's load generator (``bench/xmpp/client.py``) against the two
servers it compares, briefly: our appliance and Prosody, each as a subprocess
on a free loopback port, set up by ``bench/xmpp/servers.py`` as the benchmark
does.  A few connections log in (STARTTLS, SCRAM from salted passwords made
ahead, bind, presence) and chat for about a second: every login succeeds, and
every message received is the next one its partner sent.  No timing asserts.

Prosody is a test dependency (``scripts/install-deps --test``): missing, the
test fails rather than skips.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from appliances.xmpp.scram import ScramServer, derive
from bench.xmpp import servers
from bench.xmpp.client import (
    SaltedPasswords,
    ScramClient,
    chat,
    choose_mechanism,
    login_all,
    probe_mechanisms,
)

pytestmark = pytest.mark.slow

CONNECTIONS = 4
WAIT = 20.0


def test_scram_client_against_our_server_core() -> None:
    """The generator's SCRAM client and the appliance's sans-IO server agree
    (RFC 5802 §5: proofs both ways), with the salted password computed once."""
    salted = SaltedPasswords()
    credential = derive("pw0", b"0123456789abcdef", 4096, "sha1")
    for attempt in range(2):
        server = ScramServer(
            "SCRAM-SHA-1",
            lookup=lambda user, hash_name: credential if user == "u0" else None,
            secret=b"s" * 32,
            nonce=f"server{attempt}",
            cb_data=None,
            plus_offered=False,
        )
        client = ScramClient("SCRAM-SHA-1", "u0", "pw0", salted)
        server_first = server.first(client.first())
        client.verify(server.final(client.final(server_first)))
    assert salted.computed == 1


@pytest.fixture(params=["ours", "prosody"])
async def server(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[servers.Server, SaltedPasswords]]:
    name = request.param
    cert, key = servers.make_certificate(tmp_path)
    directory = tmp_path / name
    directory.mkdir()
    users = servers.accounts(CONNECTIONS)
    salted = SaltedPasswords()
    if name == "ours":
        await servers.ours_accounts(directory, users, salted, ["sha1"])
        running = servers.ours(directory, cert, key)
    else:
        servers.prosody_accounts(directory, users, salted)
        running = servers.prosody(directory, cert, key)
    try:
        await asyncio.to_thread(running.start)
        yield running, salted
    finally:
        await asyncio.to_thread(running.stop)


async def test_logins_and_chat(server: tuple[servers.Server, SaltedPasswords]) -> None:
    running, salted = server
    offered = await asyncio.wait_for(probe_mechanisms("127.0.0.1", running.port, servers.DOMAIN), WAIT)
    # ours offers both SCRAM hashes, Prosody keeps SHA-1 keys only: the benchmark uses SHA-1 for both
    strongest = {"ours": "SCRAM-SHA-256", "prosody": "SCRAM-SHA-1"}
    assert choose_mechanism([offered]) == strongest[running.name]
    prefilled = salted.computed
    logged = await login_all(
        "127.0.0.1",
        running.port,
        servers.DOMAIN,
        servers.accounts(CONNECTIONS),
        mechanism="SCRAM-SHA-1",
        salted=salted,
        concurrency=2,
    )
    connections = logged.connections
    try:
        assert logged.failures == 0, logged.first_error
        assert [c.jid.partition("/")[0] for c in connections] == [
            f"u{i}@localhost" for i in range(CONNECTIONS)
        ]
        assert all(c.tls.startswith("TLSv1.") for c in connections)
        assert salted.computed == prefilled  # no PBKDF2 at login: the salted passwords were made ahead
        result = await asyncio.wait_for(chat(connections, window=2, warmup=0.2, seconds=0.8), WAIT)
    finally:
        async with asyncio.TaskGroup() as group:
            for connection in connections:
                group.create_task(connection.aclose(timeout=5.0))
    assert running.process is not None and running.process.poll() is None, f"{running.name} died"
    assert result.messages > 0 and result.delivered > 0
    assert result.bad == 0  # nothing arrived that was not the partner's next message
    assert result.lost == 0 and result.delivered == result.sent
    assert result.closed == 0
    assert len(result.latencies) == result.messages
