"""The XMPP appliance's console over SSH (asyncssh's client): ``sessions``,
``kick``, and ``user ...`` closing the sessions of the account it changes."""

from __future__ import annotations

import json
from pathlib import Path

import asyncssh
from xmpp_helpers import WAIT, RawClient, add_user, log_records, start_xmpp


def ends_with(data: bytes, condition: str) -> bool:
    return (
        f"<{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>".encode() in data
        and data.rstrip().endswith(b"</stream:stream>")
    )


async def test_sessions_kick_and_account_changes(tmp_path: Path) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519", comment="operator@test")
    authorized = tmp_path / "authorized_keys"
    authorized.write_text(key.export_public_key().decode())
    argv = ["--console-listen", "127.0.0.1:0", "--console-keys", str(authorized)]
    async with start_xmpp(tmp_path / "state", argv) as app:
        for user in ("alice", "bob", "carol"):
            await add_user(app, f"{user}@localhost", "pw")
        clients = {}
        for name in ("alice/phone", "alice/laptop", "bob/desk", "carol/x"):
            user, _, resource = name.partition("/")
            clients[name] = raw = await RawClient.open(app.address())
            await raw.login(user, "pw", resource)
        await clients["alice/phone"].send("<presence><priority>5</priority></presence>")
        await clients["alice/phone"].expect(b"</presence>")
        await clients["bob/desk"].send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        await clients["bob/desk"].expect(b"<enabled")

        console = next(r for r in log_records(app) if r["msg"] == "console")
        port = int(console["listen"].rpartition(":")[2])
        async with asyncssh.connect(
            "127.0.0.1", port, username="admin", client_keys=[key], known_hosts=None
        ) as ssh:
            listed = await ssh.run("sessions --json", timeout=WAIT)
            assert listed.exit_status == 0
            sessions = {row["jid"]: row for row in json.loads(str(listed.stdout))["sessions"]}
            assert sorted(sessions) == [
                "alice@localhost/laptop",
                "alice@localhost/phone",
                "bob@localhost/desk",
                "carol@localhost/x",
            ]
            phone = sessions["alice@localhost/phone"]
            assert (phone["presence"], phone["priority"], phone["state"]) == ("available", 5, "connected")
            assert phone["address"].startswith("127.0.0.1:") and phone["tls"].startswith("TLSv1.")
            assert sessions["bob@localhost/desk"]["sm"] == "resumable"
            assert sessions["carol@localhost/x"]["sm"] == "off"
            text = str((await ssh.run("sessions", timeout=WAIT)).stdout)
            assert text.splitlines()[0].split() == [
                *("jid", "state", "presence", "for", "address", "tls", "sm", "unacked")
            ]
            row = next(line.split() for line in text.splitlines() if line.startswith("alice@localhost/phone"))
            assert row[1:4] == ["connected", "available", "(5)"]

            # one session by full JID
            kicked = await ssh.run("kick alice@localhost/phone", timeout=WAIT)
            assert (kicked.exit_status, str(kicked.stdout).strip()) == (
                0,
                "closed 1 session of alice@localhost/phone",
            )
            assert ends_with(await clients["alice/phone"].read_to_close(), "policy-violation")
            missing = await ssh.run("kick nobody@localhost", timeout=WAIT)
            assert missing.exit_status != 0 and "no session" in str(missing.stderr)
            assert (await ssh.run("kick localhost", timeout=WAIT)).exit_status != 0

            # a new password closes the account's sessions (even a resumable
            # one: it does not hibernate), a deleted account too
            changed = await ssh.run("user passwd bob@localhost --password new", timeout=WAIT)
            assert changed.exit_status == 0
            assert ends_with(await clients["bob/desk"].read_to_close(), "reset")
            assert (await ssh.run("user del alice@localhost", timeout=WAIT)).exit_status == 0
            assert ends_with(await clients["alice/laptop"].read_to_close(), "not-authorized")
            left = json.loads(str((await ssh.run("sessions --json", timeout=WAIT)).stdout))["sessions"]
            assert [row["jid"] for row in left] == ["carol@localhost/x"]

            # the server keeps serving: carol is still connected and answered
            await clients["carol/x"].send("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
            assert b"id='p'" in await clients["carol/x"].expect(b"/>")
        clients["carol/x"].close()
