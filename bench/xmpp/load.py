"""The load generator of ``bench/xmpp/run.py``: one process, one event loop
(uvloop when installed), run pinned with ``taskset -c 1``.

    taskset -c 1 python3 -m bench.xmpp.load --port PORT --server-pid PID --connections N \\
        [--mechanism SCRAM-SHA-1] [--salted FILE] [--seconds 10] [--window 2] [--login-concurrency 50]

Against one running server: reads the idle server's RSS, logs ``N`` accounts
in (``u0``..) with at most ``--login-concurrency`` logins at a time, reads the
RSS with ``N`` bound connections (after ``--settle`` quiet seconds), then
chats (``client.chat``: pairs, ``--window`` messages in flight each way) for
``--warmup`` plus ``--seconds`` seconds. Server CPU (utime+stime of its
process tree, from /proc) is read before and after the logins and around the
measured chat window, the generator's own CPU (getrusage) and the machine's
CPU pressure (PSI: other load stealing the CPUs) around the same window.
Prints one JSON object (``Measurement``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import resource
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.procstats import cpu_seconds, rss_bytes  # noqa: E402
from bench.xmpp.client import SaltedPasswords, chat, login_all  # noqa: E402
from bench.xmpp.servers import DOMAIN, accounts  # noqa: E402

__all__ = ["Measurement", "main", "measure", "raise_nofile"]

#: file descriptors beyond the connections (the interpreter, /proc reads, TLS)
SPARE_FILES = 256


@dataclass
class Measurement:
    connections: int
    logins: int
    login_failures: int
    first_error: str
    login_seconds: float
    login_cpu: float
    generator_login_cpu: float
    rss_idle: int
    rss_bound: int
    messages: int
    chat_seconds: float
    chat_cpu: float
    generator_cpu: float
    #: seconds in the chat window in which some task on the machine waited for a CPU
    cpu_pressure: float
    p50_ms: float
    p99_ms: float
    sent: int
    delivered: int
    bad: int
    lost: int
    closed: int
    tls: str
    pbkdf2_at_login: int

    @property
    def logins_per_s(self) -> float:
        return self.logins / self.login_seconds if self.login_seconds else 0.0

    @property
    def logins_per_cpu(self) -> float:
        return self.logins / self.login_cpu if self.login_cpu else 0.0

    @property
    def messages_per_s(self) -> float:
        return self.messages / self.chat_seconds if self.chat_seconds else 0.0

    @property
    def messages_per_cpu(self) -> float:
        return self.messages / self.chat_cpu if self.chat_cpu else 0.0

    @property
    def rss_per_connection(self) -> float:
        return (self.rss_bound - self.rss_idle) / self.logins if self.logins else 0.0

    @property
    def server_load(self) -> float:
        """The server's CPU-seconds per wall second in the chat window (1.0: its core busy)."""
        return self.chat_cpu / self.chat_seconds if self.chat_seconds else 0.0

    @property
    def contention(self) -> float:
        """The share of the chat window in which some task waited for a CPU
        (PSI's totals lag a little behind: capped at 1)."""
        return min(1.0, self.cpu_pressure / self.chat_seconds) if self.chat_seconds else 0.0

    @property
    def generator_login_load(self) -> float:
        """The generator's CPU-seconds per wall second while logging in (its TLS
        handshakes and SCRAM cost about what the server's do)."""
        return self.generator_login_cpu / self.login_seconds if self.login_seconds else 0.0

    @property
    def generator_load(self) -> float:
        """The generator's CPU-seconds per wall second in the chat window (1.0: one core busy)."""
        return self.generator_cpu / self.chat_seconds if self.chat_seconds else 0.0


def raise_nofile(needed: int) -> None:
    """Raise the soft RLIMIT_NOFILE to ``needed`` (at most the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_pressure() -> float:
    """Seconds some runnable task waited for a CPU, machine-wide (PSI,
    ``/proc/pressure/cpu``); 0 where the kernel has no PSI.  Over the chat
    window it shows whether other load took the CPUs from the server or the
    generator."""
    try:
        some = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return 0.0
    return int(some.rpartition("total=")[2]) / 1e6 if "total=" in some else 0.0


def percentile(ordered: list[int], fraction: float) -> float:
    """Nearest-rank percentile of sorted nanoseconds, in milliseconds."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / 1e6


async def measure(args: argparse.Namespace, salted: SaltedPasswords) -> Measurement:
    pid = args.server_pid
    users = accounts(args.connections)
    # One session in and out first: what the server's first session costs
    # once (lazily loaded code, caches, TLS state) is not per connection.
    warm = await login_all(
        args.host, args.port, args.domain, users[:1], mechanism=args.mechanism, salted=salted, concurrency=1
    )
    for connection in warm.connections:
        await connection.aclose(timeout=5.0)
    await asyncio.sleep(max(args.settle, 0.5))  # the idle server quiet as long as the bound one
    rss_idle = rss_bytes(pid)
    computed = salted.computed
    cpu_before = cpu_seconds(pid)
    own_before = own_cpu()
    logged = await login_all(
        args.host,
        args.port,
        args.domain,
        users,
        mechanism=args.mechanism,
        salted=salted,
        concurrency=args.login_concurrency,
    )
    login_cpu = cpu_seconds(pid) - cpu_before
    generator_login_cpu = own_cpu() - own_before
    await asyncio.sleep(args.settle)  # quiet connections, as most IM connections are
    rss_bound = rss_bytes(pid)
    connections = logged.connections
    try:
        result = await chat(
            connections,
            window=args.window,
            warmup=args.warmup,
            seconds=args.seconds,
            drain=args.drain,
            probe=lambda: (cpu_seconds(pid), own_cpu(), cpu_pressure()),
        )
    finally:
        async with asyncio.TaskGroup() as group:
            for connection in connections:
                group.create_task(connection.aclose(timeout=5.0))
    ordered = sorted(result.latencies)
    server_before, own_before, waited_before = result.before
    server_after, own_after, waited_after = result.after
    return Measurement(
        connections=args.connections,
        logins=len(connections),
        login_failures=logged.failures,
        first_error=logged.first_error,
        login_seconds=logged.seconds,
        login_cpu=login_cpu,
        generator_login_cpu=generator_login_cpu,
        rss_idle=rss_idle,
        rss_bound=rss_bound,
        messages=result.messages,
        chat_seconds=result.seconds,
        chat_cpu=server_after - server_before,
        generator_cpu=own_after - own_before,
        cpu_pressure=waited_after - waited_before,
        p50_ms=percentile(ordered, 0.50),
        p99_ms=percentile(ordered, 0.99),
        sent=result.sent,
        delivered=result.delivered,
        bad=result.bad,
        lost=result.lost,
        closed=result.closed,
        tls=connections[0].tls if connections else "",
        pbkdf2_at_login=salted.computed - computed,
    )


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--domain", default=DOMAIN)
    parser.add_argument("--server-pid", type=int, required=True, help="whose CPU and RSS to read")
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--mechanism", default="SCRAM-SHA-1")
    parser.add_argument("--salted", type=Path, help="salted passwords made ahead (SaltedPasswords.save)")
    parser.add_argument("--login-concurrency", type=int, default=50)
    parser.add_argument("--window", type=int, default=2, help="messages in flight each way per pair")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--settle", type=float, default=0.0, help="quiet seconds before the bound RSS")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--drain", type=float, default=5.0, help="wait for messages in flight at the end")
    return parser


def main() -> None:
    args = parser().parse_args()
    raise_nofile(args.connections + SPARE_FILES)
    salted = SaltedPasswords.load(args.salted) if args.salted else SaltedPasswords()
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(measure(args, salted))
    else:
        result = uvloop.run(measure(args, salted))
    print(json.dumps(dataclasses.asdict(result)))


if __name__ == "__main__":
    main()
