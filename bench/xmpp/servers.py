"""The two XMPP servers of the benchmark, set up alike: our appliance and
Prosody, one self-signed certificate, the same accounts (``u0``.. with password
``pw0``..), stored the same way: salted SCRAM keys, 4096 iterations.

- ours: accounts written with ``Storage.create_account`` (what ``python -m
  appliances.xmpp user add`` runs) on the store the host target opens for a
  ``--state-dir``, without a process per account;
- Prosody 0.12: ``authentication = "internal_hashed"`` keeps one Lua file per
  account, ``DATA/<host>/accounts/<user>.dat``, names %-encoded
  (``util/datamanager.lua``), holding ``stored_key``/``server_key`` (hex),
  ``salt`` (a string, a UUID when Prosody makes it) and ``iteration_count``
  (``modules/mod_auth_internal_hashed.lua``); written here directly, since
  ``prosodyctl register`` costs a process per account.

Prosody runs in the foreground (``-F``; the ``daemonize`` option is deprecated
in 0.12), on the epoll backend, only c2s on a loopback port, TLS required, no
mod_limits (no rate limits) and no s2s.  As root it needs ``run_as_root``
(mod_posix refuses otherwise), as the bench's nginx gets ``user root``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from appliances.xmpp.scram import DEFAULT_ITERATIONS
from appliances.xmpp.storage import Storage
from bench import procstats
from bench.xmpp.client import SaltedPasswords
from runtime.ambient import SystemRandom
from runtime.store import open_sqlite_store
from runtime.targets.host import STORE_FILE

__all__ = [
    "DOMAIN",
    "Server",
    "accounts",
    "make_certificate",
    "ours",
    "ours_accounts",
    "prosody",
    "prosody_accounts",
    "prosody_binary",
    "prosody_version",
    "uses_epoll",
]

REPO = Path(__file__).resolve().parents[2]
DOMAIN = "localhost"
#: Prosody's own default for ``password_hash``: it keeps SHA-1 keys, so it offers SCRAM-SHA-1 only
PROSODY_HASH = "sha1"
#: how long a server may take to start listening
START_TIMEOUT = 30.0

PROSODY_CONF = """\
-- written by bench/xmpp/servers.py
{root}
pidfile = "{directory}/prosody.pid"
data_path = "{directory}/data"
certificates = "{directory}/certs"
log = {{ warn = "{directory}/prosody.log" }}
network_backend = "epoll"
{gc}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
s2s_ports = {{ }}
c2s_direct_tls_ports = {{ }}
-- roster, SASL and STARTTLS; presence, message, iq and c2s are always loaded
modules_enabled = {{ "roster"; "saslauth"; "tls" }}
modules_disabled = {{ "s2s"; "s2s_auth_certs"; "limits" }}
authentication = "internal_hashed"
c2s_require_encryption = true
ssl = {{ certificate = "{cert}"; key = "{key}" }}
VirtualHost "{domain}"
"""


def accounts(count: int) -> list[tuple[str, str]]:
    """(user, password) of the benchmark's accounts."""
    return [(f"u{i}", f"pw{i}") for i in range(count)]


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for ``DOMAIN`` (P-256), as (cert, key) files."""
    from runtime import make_self_signed

    cert_pem, key_pem = make_self_signed([DOMAIN])
    cert, key = directory / "cert.pem", directory / "key.pem"
    cert.write_bytes(cert_pem)
    key.write_bytes(key_pem)
    key.chmod(0o644)  # Prosody may read it as its own user
    return cert, key


# --------------------------------------------------------------------- accounts


async def ours_accounts(
    directory: Path, users: list[tuple[str, str]], salted: SaltedPasswords, hash_names: list[str]
) -> None:
    """Accounts in the store of ``ours(directory, ...)`` (those missing), and
    their salted passwords in ``salted`` for each of ``hash_names``."""
    async with await open_sqlite_store(directory / "state" / STORE_FILE) as store:
        storage = Storage(store)
        await storage.migrate()
        random = SystemRandom()

        async def add(user: str, password: str) -> None:
            jid = f"{user}@{DOMAIN}"
            if not storage.has_account(jid):
                await storage.create_account(jid, password, random, time.time())

        # a hundred at a time: their writes queue up together and group-commit
        for start in range(0, len(users), 100):
            async with asyncio.TaskGroup() as group:
                for user, password in users[start : start + 100]:
                    group.create_task(add(user, password))
        for user, password in users:
            for hash_name in hash_names:
                credential = storage.credential(f"{user}@{DOMAIN}", hash_name)
                assert credential is not None
                salted.get(user, password, credential.salt, credential.iterations, hash_name)


def _datamanager_encode(text: str) -> str:
    """Prosody's ``util/datamanager.lua`` file name encoding: every byte but
    [A-Za-z0-9] as %xx (lower-case hex)."""
    return re.sub(rb"[^A-Za-z0-9]", lambda m: b"%%%02x" % m.group(0)[0], text.encode("utf-8")).decode()


def prosody_accounts(directory: Path, users: list[tuple[str, str]], salted: SaltedPasswords) -> None:
    """The internal_hashed account files of ``prosody(directory, ...)`` (those
    missing), and the salted passwords in ``salted``."""
    directory = directory / "data" / _datamanager_encode(DOMAIN) / "accounts"
    directory.mkdir(parents=True, exist_ok=True)
    name = PROSODY_HASH
    for user, password in users:
        path = directory / f"{_datamanager_encode(user)}.dat"
        if path.exists():
            continue
        salt = str(uuid.uuid4())  # what mod_auth_internal_hashed makes (util.uuid.generate)
        salted_password = salted.get(user, password, salt.encode("ascii"), DEFAULT_ITERATIONS, name)
        stored_key = hashlib.new(name, hmac.digest(salted_password, b"Client Key", name)).hexdigest()
        server_key = hmac.digest(salted_password, b"Server Key", name).hex()
        # util/serialization.lua's layout (keys as Prosody writes them)
        path.write_text(
            "return {\n"
            f'\t["iteration_count"] = {DEFAULT_ITERATIONS};\n'
            f'\t["server_key"] = "{server_key}";\n'
            f'\t["stored_key"] = "{stored_key}";\n'
            f'\t["salt"] = "{salt}";\n'
            "};\n"
        )


# --------------------------------------------------------------------- processes


@dataclass
class Server:
    name: str
    command: list[str]
    port: int
    log: Path
    env: dict[str, str] | None = None
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=REPO, env=self.env
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with status {self.process.returncode}: see {self.log}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not listen on {self.port} within {START_TIMEOUT:g} s")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        procstats.stop(self.process)


def ours(
    directory: Path,
    cert: Path,
    key: Path,
    *,
    max_connections: int = 1024,
    pin: list[str] | None = None,
) -> Server:
    """Our appliance on a free loopback port, the store in ``directory/state``."""
    port = procstats.free_port()
    command = [
        *(pin or []),
        sys.executable,
        "-m",
        "appliances.xmpp",
        "--state-dir",
        str(directory / "state"),
        "--listen",
        f"127.0.0.1:{port}",
        "--domain",
        DOMAIN,
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        "--max-connections",
        str(max_connections),
        "--receive-rate",
        "0",  # rate limits off, as for Prosody (no mod_limits)
        "--log-level",
        "warning",
    ]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return Server("ours", command, port, directory / "ours.log", env)


def prosody(directory: Path, cert: Path, key: Path, *, pin: list[str] | None = None, gc: str = "") -> Server:
    """Prosody on a free loopback port, its data in ``directory/data``;
    ``gc="generational"`` switches Lua 5.4's collector from Prosody's default
    (incremental) to generational mode."""
    binary = prosody_binary()
    port = procstats.free_port()
    (directory / "certs").mkdir(exist_ok=True)
    (directory / "data").mkdir(exist_ok=True)
    conf = directory / "prosody.cfg.lua"
    root = "run_as_root = true" if os.geteuid() == 0 else ""
    conf.write_text(
        PROSODY_CONF.format(
            root=root,
            gc=f'gc = {{ mode = "{gc}" }}' if gc else "",
            directory=directory,
            port=port,
            cert=cert,
            key=key,
            domain=DOMAIN,
        )
    )
    command = [*(pin or []), binary, "-F", "--config", str(conf)]
    return Server("prosody", command, port, directory / "prosody.out")


def prosody_binary() -> str:
    path = shutil.which("prosody") or shutil.which("prosody", path="/usr/sbin:/sbin:/usr/bin")
    if path is None:
        raise RuntimeError(
            "prosody is not installed (apt-get install -y prosody; scripts/install-deps --test)"
        )
    return path


def prosody_version() -> str:
    """The version Debian's package installs next to its sources (``prosody
    --version`` does not exist: it would start a server)."""
    try:
        return "Prosody " + Path("/usr/lib/prosody/prosody.version").read_text().strip()
    except OSError:
        return "Prosody (version unknown)"


def uses_epoll(pid: int) -> bool:
    """Whether ``pid`` holds an epoll instance (Prosody's epoll backend does)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[eventpoll]":
                return True
        except OSError:  # closed since the listing
            continue
    return False
