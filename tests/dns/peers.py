"""Real peers for the DNS tests: NSD and Knot run as our own processes, with
their config, pid, state and database files in the test's tmp_path, on free
loopback ports.  A missing binary fails the test (CI installs them)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
from server_helpers import KEY_NAME, KEY_SECRET, free_port, need, off_loop


@dataclass
class Peer:
    port: int
    directory: Path
    process: asyncio.subprocess.Process

    def log(self) -> str:
        path = self.directory / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


def nsd_config(
    directory: Path, port: int, zones: Sequence[str], *, tsig: bool = False, zonesdir: Path | None = None
) -> str:
    """``zones``: full ``zone:`` clause bodies (name, zonefile, xfr lines), one per zone."""
    lines = [
        "server:",
        f"    ip-address: 127.0.0.1@{port}",
        f"    zonesdir: {zonesdir or directory}",  # $INCLUDE is relative to it
        '    database: ""',
        f"    pidfile: {directory}/nsd.pid",
        f"    xfrdfile: {directory}/xfrd.state",
        f"    zonelistfile: {directory}/zone.list",
        f"    xfrdir: {directory}",
        '    username: ""',
        '    chroot: ""',
        f"    logfile: {directory}/server.log",
        "    server-count: 1",
        "    verbosity: 2",
        "    refuse-any: no",
        "    rrl-ratelimit: 0",
        "    rrl-whitelist-ratelimit: 0",
        # NSD's default adds the apex NS to the authority section of positive
        # answers; ours is minimal responses (see test_dns_nsd.py), so compare like with like.
        "    minimal-responses: yes",
        "remote-control:",
        "    control-enable: no",
    ]
    if tsig:
        lines += [
            "key:",
            f'    name: "{KEY_NAME}"',
            "    algorithm: hmac-sha256",
            f'    secret: "{KEY_SECRET}"',
        ]
    for body in zones:
        lines.append("zone:")
        lines.extend(f"    {line}" for line in body.splitlines())
    return "\n".join(lines) + "\n"


async def wait_answering(port: int, zone: str, *, tries: int = 100) -> None:
    query = dns.message.make_query(zone, "SOA")
    for _ in range(tries):
        try:
            reply = await off_loop(dns.query.udp, query, "127.0.0.1", port=port, timeout=0.2)
            if reply.rcode() in (dns.rcode.NOERROR, dns.rcode.SERVFAIL, dns.rcode.REFUSED):
                return
        except (TimeoutError, OSError, dns.exception.Timeout):
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"the peer on port {port} never answered")


def _write_nsd_config(
    directory: Path, port: int, zones: Sequence[str], *, tsig: bool, zonesdir: Path | None
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "nsd.conf"
    conf.write_text(nsd_config(directory, port, zones, tsig=tsig, zonesdir=zonesdir))
    check = subprocess.run([need("nsd-checkconf"), str(conf)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr + check.stdout
    return conf


@asynccontextmanager
async def run_nsd(
    directory: Path,
    zones: Sequence[str],
    *,
    probe: str,
    tsig: bool = False,
    port: int | None = None,
    zonesdir: Path | None = None,
) -> AsyncIterator[Peer]:
    nsd = need("nsd")
    port = port or free_port()
    conf = _write_nsd_config(directory, port, zones, tsig=tsig, zonesdir=zonesdir)
    process = await asyncio.create_subprocess_exec(
        nsd, "-d", "-c", str(conf), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    peer = Peer(port, directory, process)
    try:
        await wait_answering(port, probe)
        yield peer
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
