"""The XMPP appliance as a qemu image with a data disk and its SSH console on.

First boot: two accounts made through the console with OpenSSH, ``status``
read back, alice logs in from the host (slixmpp, STARTTLS + SCRAM against the
certificate the appliance made and keeps in the store) and writes to bob, who
is offline; the power button stops it cleanly.  Second boot from the same
disk: the console answers with the same host key (OpenSSH checks it against
the known_hosts entry of the first boot) and bob gets alice's message with its
XEP-0203 delay stamp.
"""

from __future__ import annotations

import asyncio
import datetime
import re
import subprocess
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from image_helpers import BOOT_TIMEOUT, booted, free_port, needs_qemu

from runtime import Address
from runtime.build import build
from tests.xmpp.xmpp_helpers import Client

pytestmark = [pytest.mark.slow, needs_qemu]

#: one XMPP step (login, a ping, a message) through the forwarded port of a TCG guest
WAIT = 60.0
#: one ssh command, connection and key exchange included
SSH_TIMEOUT = 120.0
CONSOLE_PORT = 2222
BODY = "written while you were away"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``id`` (the operator's private key) and ``authorized_keys`` in one directory."""
    directory = tmp_path_factory.mktemp("console-keys")
    key = asyncssh.generate_private_key("ssh-ed25519", comment="operator@image-test")
    (directory / "id").write_bytes(key.export_private_key())
    (directory / "id").chmod(0o600)
    (directory / "authorized_keys").write_bytes(key.export_public_key())
    return directory


@pytest.fixture(scope="module")
def xmpp_image(tmp_path_factory: pytest.TempPathFactory, keys: Path) -> Path:
    out = tmp_path_factory.mktemp("xmpp-qemu")
    build(
        "xmpp",
        out,
        target="qemu",
        disk_size=16 * 1024 * 1024,
        options=[f"console_keys={keys / 'authorized_keys'}", f"console_listen=0.0.0.0:{CONSOLE_PORT}"],
    )
    return out


def ssh(port: int, keys: Path, *command: str, check_host_key: bool) -> subprocess.CompletedProcess[str]:
    """OpenSSH's client against the guest's console; the host key is learnt
    into ``keys/known_hosts`` on first use, or must match it."""
    return subprocess.run(
        [
            "ssh",
            "-p", str(port),
            "-i", str(keys / "id"),
            "-o", f"StrictHostKeyChecking={'yes' if check_host_key else 'accept-new'}",
            "-o", f"UserKnownHostsFile={keys / 'known_hosts'}",
            "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", "LogLevel=ERROR",
            "-o", f"ConnectTimeout={int(SSH_TIMEOUT)}",
            "admin@127.0.0.1",
            *command,
        ],
        capture_output=True,
        text=True,
        timeout=SSH_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def known_host_fingerprint(keys: Path) -> str:
    listing = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(keys / "known_hosts")], capture_output=True, text=True, check=True
    ).stdout
    (line,) = listing.splitlines()
    return line.split()[1]


def client(jid: str, password: str) -> Client:
    """The XMPP tests' slixmpp client, with waits long enough for a TCG guest."""
    made = Client(jid, password, wait=WAIT)
    made.register_plugin("xep_0203")
    return made


async def alice_writes_to_bob(port: int) -> None:
    alice = client("alice@localhost/host", "alice-pw")
    assert await alice.login(Address("127.0.0.1", port))
    alice.send_message(mto="bob@localhost", mbody=BODY, mtype="chat")
    # answered after the message: the server has taken it
    await asyncio.wait_for(alice.plugin["xep_0199"].ping("localhost", timeout=WAIT), WAIT)
    await alice.close()


async def bob_reads(port: int) -> Any:
    bob = client("bob@localhost/host", "bob-pw")
    assert await bob.login(Address("127.0.0.1", port))
    message = await bob.next_message(BODY)
    await bob.close()
    return message


def console_fingerprint(console: str) -> str:
    found = re.search(r" console listen=\S+ host_key_sha256=(SHA256:\S+)", console)
    assert found, console
    return found.group(1)


def test_console_accounts_then_an_offline_message_across_a_reboot(
    xmpp_image: Path, keys: Path, tmp_path: Path
) -> None:
    xmpp_port, console_port = free_port(), free_port()
    forwards = [f"tcp:{xmpp_port}:5222", f"tcp:{console_port}:{CONSOLE_PORT}"]

    with booted(xmpp_image, tmp_path / "boot1", forwards) as guest:
        for jid, password in (("alice@localhost", "alice-pw"), ("bob@localhost", "bob-pw")):
            result = ssh(console_port, keys, "user", "add", jid, "--password", password, check_host_key=False)
            assert (result.returncode, result.stdout) == (0, f"added {jid}\n"), result.stderr
        again = ssh(
            console_port, keys, "user", "add", "bob@localhost", "--password", "x", check_host_key=False
        )
        assert again.returncode == 1 and "exists already" in again.stderr
        status = ssh(console_port, keys, "status", check_host_key=False)
        assert status.returncode == 0, status.stderr
        fields = dict(line.split(None, 1) for line in status.stdout.splitlines())
        assert fields["appliance"].startswith("xmpp ")
        assert fields["pid"] == "1"  # the appliance is the VM's init
        assert fields["state"] == "ready"
        assert fields["listeners"] == "tcp/0.0.0.0:5222"
        assert fields["runtime"] == f"tcp/0.0.0.0:{CONSOLE_PORT}"

        sent_at = datetime.datetime.now(datetime.UTC)
        asyncio.run(alice_writes_to_bob(xmpp_port))
        guest.power_button()
        assert guest.wait(BOOT_TIMEOUT) == 0
        first = guest.console()
    assert "init: xmpp exited with status 0; powering off" in first
    assert "console host key made" in first
    host_key = console_fingerprint(first)
    assert known_host_fingerprint(keys) == host_key

    with booted(xmpp_image, tmp_path / "boot2", forwards) as guest:
        # StrictHostKeyChecking=yes: refused unless the key is the one learnt above
        status = ssh(console_port, keys, "status", check_host_key=True)
        assert status.returncode == 0, status.stderr
        message = asyncio.run(bob_reads(xmpp_port))
        guest.power_button()
        assert guest.wait(BOOT_TIMEOUT) == 0
        second = guest.console()
    assert console_fingerprint(second) == host_key
    assert "console host key made" not in second
    assert str(message["from"]) == "alice@localhost/host"
    stamp = message["delay"]["stamp"]
    assert message["delay"]["from"] == "localhost"
    # XEP-0203: when the server took it, by the guest's clock (QEMU's RTC is the host's)
    slack = datetime.timedelta(minutes=1)
    assert sent_at - slack < stamp < datetime.datetime.now(datetime.UTC) + slack
    assert "init: xmpp exited with status 0; powering off" in second
