"""Authoritative DNS over UDP: our appliance vs NSD vs Knot, side by side in one run.

    python3 -m bench.dns.run [--names 2000] [--rounds 3] [--seconds 10] [--rss-names 100000] [--profile]

One zone of about ``--names`` names (A, AAAA, CNAME, TXT, MX, a wildcard, a
delegation; ``bench/dns/core.py``'s generator) and a query file of 20,000
queries, 10% of them for names that do not exist (NXDOMAIN), written to a temp
dir.  Each server is pinned to CPU 0 (``taskset -c 0``), dnsperf to CPU 1; the
servers take turns, ``--rounds`` rounds of ``--seconds`` each.  Reported per
server: queries/s (dnsperf), queries per server CPU-second (utime+stime of the
server's processes from /proc before/after), both as ratios to NSD, and the RSS
of each server after loading a ``--rss-names`` zone.  Our appliance runs as
shipped: one worker, RRL on (loopback exempt), no query log.

``--profile`` also runs ours under cProfile for one round and prints where the
time goes.  A dated section (command, machine, table) is appended to
bench/RESULTS.md.  No thresholds: numbers to compare.
"""

from __future__ import annotations

import argparse
import datetime
import io
import pstats
import random
import re
import shlex
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench import procstats, record  # noqa: E402
from bench.dns.core import make_zone  # noqa: E402
from bench.procstats import cpu_seconds, rss_bytes  # noqa: E402

ORIGIN = "bench.test"
QUERIES = 20_000
#: dnsperf settings (``-c``, ``-q``, ``-T``), overridable by flags
DNSPERF_CLIENTS = 16
DNSPERF_OUTSTANDING = 2000
DNSPERF_THREADS = 1


def soa_query() -> bytes:
    name = b"".join(bytes([len(p)]) + p.encode() for p in ORIGIN.split(".")) + b"\x00"
    return struct.pack("!6H", 0x1234, 0, 1, 0, 0, 0) + name + struct.pack("!HH", 6, 1)


def wait_answering(port: int, process: subprocess.Popen[bytes], name: str, tries: int = 600) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        for _ in range(tries):
            if process.poll() is not None:
                raise SystemExit(f"{name} exited with status {process.returncode}")
            sock.sendto(soa_query(), ("127.0.0.1", port))
            try:
                reply = sock.recv(4096)
                if reply[3] & 0xF == 0 and reply[6:8] != b"\x00\x00":
                    return
            except OSError:
                pass
            time.sleep(0.1)
    raise SystemExit(f"{name} never answered on port {port}")


# --------------------------------------------------------------------- servers


@dataclass
class Server:
    name: str
    command: list[str]
    port: int
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    def start(self) -> None:
        assert self.log is not None
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(self.command, stdout=out, stderr=out, cwd=ROOT)
        wait_answering(self.port, self.process, self.name)

    def stop(self) -> None:
        procstats.stop(self.process)


def need(tool: str) -> str:
    path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    if path is None:
        raise SystemExit(f"{tool} is not installed (apt-get install -y nsd knot dnsperf)")
    return path


def ours(tmp: Path, zonefile: Path, *, wrapper: list[str] | None = None) -> Server:
    port = procstats.free_port(udp=True)
    command = [
        "taskset",
        "-c",
        "0",
        *(wrapper or [sys.executable]),
        "-m",
        "appliances.dns",
        "--zone",
        str(zonefile),
        "--listen",
        f"127.0.0.1:{port}",
        "--state-dir",
        str(tmp / "state"),
        "--log-level",
        "warning",
    ]
    return Server("ours", command, port, log=tmp / "ours.log")


def nsd(tmp: Path, zonefile: Path) -> Server:
    port = procstats.free_port(udp=True)
    directory = tmp / f"nsd-{port}"
    directory.mkdir()
    conf = directory / "nsd.conf"
    conf.write_text(
        "server:\n"
        f"    ip-address: 127.0.0.1@{port}\n"
        f"    zonesdir: {zonefile.parent}\n"
        '    database: ""\n'
        f"    pidfile: {directory}/nsd.pid\n"
        f"    xfrdfile: {directory}/xfrd.state\n"
        f"    zonelistfile: {directory}/zone.list\n"
        f"    xfrdir: {directory}\n"
        '    username: ""\n'
        '    chroot: ""\n'
        f"    logfile: {directory}/nsd.log\n"
        "    server-count: 1\n"
        "    rrl-ratelimit: 0\n"
        "    rrl-whitelist-ratelimit: 0\n"
        "remote-control:\n"
        "    control-enable: no\n"
        "zone:\n"
        f"    name: {ORIGIN}\n"
        f"    zonefile: {zonefile}\n"
    )
    return Server(
        "nsd", ["taskset", "-c", "0", need("nsd"), "-d", "-c", str(conf)], port, log=directory / "out.log"
    )


def knot(tmp: Path, zonefile: Path) -> Server:
    port = procstats.free_port(udp=True)
    directory = tmp / f"knot-{port}"
    directory.mkdir()
    conf = directory / "knot.conf"
    conf.write_text(
        "server:\n"
        f"    listen: 127.0.0.1@{port}\n"
        f"    rundir: {directory}\n"
        "    udp-workers: 1\n"
        "    tcp-workers: 1\n"
        "    background-workers: 1\n"
        "database:\n"
        f"    storage: {directory}\n"
        "log:\n"
        "  - target: stderr\n"
        "    any: warning\n"
        "template:\n"
        "  - id: default\n"
        f"    storage: {directory}\n"
        "    zonefile-sync: -1\n"
        "    journal-content: none\n"
        "zone:\n"
        f"  - domain: {ORIGIN}\n"
        f"    file: {zonefile}\n"
    )
    return Server(
        "knot", ["taskset", "-c", "0", need("knotd"), "-c", str(conf)], port, log=directory / "out.log"
    )


# --------------------------------------------------------------------- load


def write_inputs(tmp: Path, names: int, rng: random.Random) -> tuple[Path, Path]:
    zonefile = tmp / f"{ORIGIN}.zone"
    zonefile.write_text(make_zone(names))
    lines = []
    types = ["A", "AAAA", "MX", "TXT"]
    for _ in range(QUERIES):
        if rng.random() < 0.1:
            lines.append(f"nx{rng.randrange(10**9)}.{ORIGIN} A")
        else:
            lines.append(f"h{rng.randrange(names)}.{ORIGIN} {rng.choice(types)}")
    queryfile = tmp / "queries.txt"
    queryfile.write_text("\n".join(lines) + "\n")
    return zonefile, queryfile


@dataclass
class Round:
    qps: float
    cpu: float
    seconds: float
    lost: float


@dataclass
class Totals:
    rounds: list[Round] = field(default_factory=list)

    @property
    def qps(self) -> float:
        return sum(r.qps for r in self.rounds) / len(self.rounds)

    @property
    def per_cpu(self) -> float:
        queries = sum(r.qps * r.seconds for r in self.rounds)
        cpu = sum(r.cpu for r in self.rounds)
        return queries / cpu if cpu else 0.0

    @property
    def lost(self) -> float:
        return max(r.lost for r in self.rounds)


def dnsperf(server: Server, queryfile: Path, seconds: int) -> Round:
    assert server.process is not None
    command = [
        "taskset",
        "-c",
        "1",
        need("dnsperf"),
        "-s",
        "127.0.0.1",
        "-p",
        str(server.port),
        "-d",
        str(queryfile),
        "-l",
        str(seconds),
        "-c",
        str(DNSPERF_CLIENTS),
        "-q",
        str(DNSPERF_OUTSTANDING),
        "-T",
        str(DNSPERF_THREADS),
    ]
    before = cpu_seconds(server.process.pid)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    after = cpu_seconds(server.process.pid)
    found = re.search(r"Queries per second:\s+([\d.]+)", done.stdout)
    lost = re.search(r"Queries lost:\s+\d+ \(([\d.]+)%\)", done.stdout)
    elapsed = re.search(r"Run time \(s\):\s+([\d.]+)", done.stdout)
    if found is None:
        raise SystemExit(f"dnsperf failed against {server.name}:\n{done.stdout}\n{done.stderr}")
    return Round(
        float(found.group(1)),
        after - before,
        float(elapsed.group(1)) if elapsed else seconds,
        float(lost.group(1)) if lost else 0.0,
    )


def measure_rss(make: Callable[[Path, Path], Server], tmp: Path, zonefile: Path) -> int:
    server = make(tmp, zonefile)
    server.start()
    try:
        assert server.process is not None
        time.sleep(1.0)  # let the loader settle (Knot loads in the background)
        return rss_bytes(server.process.pid)
    finally:
        server.stop()


def profile_ours(tmp: Path, zonefile: Path, queryfile: Path, seconds: int) -> str:
    out = tmp / "ours.prof"
    server = ours(tmp, zonefile, wrapper=[sys.executable, "-m", "cProfile", "-o", str(out)])
    server.start()
    try:
        result = dnsperf(server, queryfile, seconds)
    finally:
        server.stop()
    stats = pstats.Stats(str(out))
    stats.sort_stats("tottime")
    text = io.StringIO()
    stats.stream = text  # type: ignore[attr-defined]
    stats.print_stats(14)
    lines = [line for line in text.getvalue().splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if "ncalls" in line)
    return f"(under cProfile: {result.qps:,.0f} q/s)\n" + "\n".join(lines[start:])


def machine() -> str:
    return procstats.machine([["nsd", "-v"], ["knotd", "--version"], ["dnsperf", "-h"]])


def main() -> None:
    global DNSPERF_CLIENTS, DNSPERF_OUTSTANDING, DNSPERF_THREADS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--names", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rss-names", type=int, default=100_000)
    parser.add_argument("--profile", action="store_true", help="also profile ours for one round")
    parser.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    parser.add_argument("--clients", type=int, default=DNSPERF_CLIENTS, help="dnsperf -c")
    parser.add_argument("--outstanding", type=int, default=DNSPERF_OUTSTANDING, help="dnsperf -q")
    parser.add_argument("--threads", type=int, default=DNSPERF_THREADS, help="dnsperf -T")
    parser.add_argument("--only", help="comma-separated servers to run (default: all)")
    args = parser.parse_args()
    DNSPERF_CLIENTS, DNSPERF_OUTSTANDING, DNSPERF_THREADS = args.clients, args.outstanding, args.threads
    cmd = "python3 -m bench.dns.run " + shlex.join(sys.argv[1:])
    rng = random.Random(53)
    makers: dict[str, Callable[[Path, Path], Server]] = {"ours": ours, "nsd": nsd, "knot": knot}
    if args.only:
        makers = {key: make for key, make in makers.items() if key in args.only.split(",")}
    with tempfile.TemporaryDirectory(prefix="bench-dns-") as name:
        tmp = Path(name)
        zonefile, queryfile = write_inputs(tmp, args.names, rng)
        servers = {key: make(tmp, zonefile) for key, make in makers.items()}
        totals = {key: Totals() for key in servers}
        try:
            for server in servers.values():
                server.start()
            for round_number in range(args.rounds):
                for key, server in servers.items():
                    result = dnsperf(server, queryfile, args.seconds)
                    totals[key].rounds.append(result)
                    print(
                        f"round {round_number + 1} {key:5} {result.qps:>10,.0f} q/s  "
                        f"cpu {result.cpu:5.2f} s  "
                        f"lost {result.lost:.2f}%",
                        flush=True,
                    )
        finally:
            for server in servers.values():
                server.stop()
        profile = profile_ours(tmp, zonefile, queryfile, args.seconds) if args.profile else ""
        big_dir = tmp / "big"
        big_dir.mkdir()
        big_zone = big_dir / f"{ORIGIN}.zone"
        big_zone.write_text(make_zone(args.rss_names))
        rss = {key: measure_rss(make, big_dir, big_zone) for key, make in makers.items()}

    base = totals.get("nsd") or next(iter(totals.values()))
    rows = [
        "| server | queries/s | queries per CPU-s | q/s vs NSD | q/CPU-s vs NSD | worst loss | "
        f"RSS, {args.rss_names:,}-name zone |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, total in totals.items():
        rows.append(
            f"| {key} | {total.qps:,.0f} | {total.per_cpu:,.0f} | {total.qps / base.qps:.2f} | "
            f"{total.per_cpu / base.per_cpu:.2f} | {total.lost:.2f}% | {rss[key] / 2**20:,.1f} MiB |"
        )
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = [
        f"## dns: UDP queries, ours vs NSD vs Knot ({stamp})",
        "",
        f"Command: `{cmd.strip()}`",
        "",
        f"Machine: {machine()}",
        "",
        f"Zone: {args.names} names (bench/dns/core.py generator), {QUERIES:,} queries, 10% NXDOMAIN. "
        "Each server "
        f"`taskset -c 0`; load `taskset -c 1 dnsperf -c {DNSPERF_CLIENTS} -q {DNSPERF_OUTSTANDING} "
        f"-T {DNSPERF_THREADS} "
        f"-l {args.seconds}`; {args.rounds} rounds, servers in turn. Ours: one worker, defaults (RRL on, "
        "loopback exempt).",
        "",
        *rows,
        "",
    ]
    if profile:
        section += ["Where our time goes (cProfile, tottime, one round):", "", "```", profile, "```", ""]
    text = "\n".join(section)
    print()
    print(text)
    if not args.no_record:
        record.append(section)


if __name__ == "__main__":
    main()
