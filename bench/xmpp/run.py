"""XMPP client-to-server: our appliance vs Prosody, side by side in one run, with
a raw-XMPP load generator.

    python3 -m bench.xmpp.run [--levels 50,200,1000] [--seconds 10] [--window 2]
        [--login-concurrency 50] [--prosody-gc incremental|generational] [--no-record]

Both servers get the same self-signed certificate, the same accounts stored
the same way (salted SCRAM keys, 4096 iterations; ``bench/xmpp/servers.py``)
and the same work: STARTTLS, SASL with the strongest SCRAM both offer
(SCRAM-SHA-1: Prosody keeps SHA-1 keys by default), resource binding, initial
presence, then chat.  Each server is started afresh per level, pinned to CPU 0
(``taskset -c 0``); the generator (``bench/xmpp/load.py``, one asyncio process,
uvloop) is pinned to CPU 1 (``taskset -c 1``); the servers take turns at each
level.  Prosody 0.12 runs from a config written to the temp dir: foreground,
epoll (checked), c2s only, TLS required, internal_hashed, no mod_limits, and
otherwise its defaults: Nagle on, Lua's incremental collector (``--prosody-gc
generational`` switches that: in trials here, at 1,000 connections, about
2.5x less CPU per message and a third more RSS per connection).

Per level (``--levels``: connections) and server: one session logs in and out
first (what the first session costs once is not per connection), then the N
connections log in, at most ``--login-concurrency`` at a time (logins/s,
logins per server CPU-second, and the generator's own CPU while logging in:
its TLS handshakes cost about what the servers' do, so above 0.9 of its core
logins/s tell the generator's limit and logins per server CPU-second the
servers'); RSS per connection, ``(RSS with N bound connections - RSS of the
idle server) / N``, each read after ``--settle`` quiet seconds (10: most IM
connections are quiet most of the time; Lua's collector and our runtime's
return of freed heap pages, every 5 s, tidy up then); then the connections chat in pairs,
``--window`` messages in flight each way, for 1 s of warm-up and ``--seconds``
measured: messages/s, messages per server CPU-second (utime+stime of the
server's process tree from /proc around the window), p50/p99 delivery latency,
and the generator's own CPU-seconds per wall second in the window (above 0.9
the generator, not the server, may be the bottleneck: flagged), the server's
(below 1.0: it was not saturated) and the machine's CPU pressure
(``/proc/pressure/cpu``: other load taking the CPUs, flagged above 10% of the
window). CPU times come in clock ticks (10 ms): the login phase of 50
connections lasts a fraction of a second, so its logins per CPU-second are
coarse. Messages lost or not the expected next one from the partner are
counted. Ratios are ours/Prosody. A dated section with the command and the
table is appended to ``bench/RESULTS.md`` (``--no-record``: print only).

Goals (not assertions): ours at least Prosody's messages per CPU-second and
logins/s, and no more RSS per connection than Prosody.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench import procstats, record  # noqa: E402
from bench.xmpp import servers  # noqa: E402
from bench.xmpp.client import HASHES, SaltedPasswords, choose_mechanism, probe_mechanisms  # noqa: E402
from bench.xmpp.load import SPARE_FILES, Measurement, raise_nofile  # noqa: E402

__all__ = ["main"]

SERVER_CPU = "0"
LOAD_CPU = "1"
NAMES = ("ours", "prosody")
#: the generator's CPU-seconds per wall second above which it may be the bottleneck
GENERATOR_BUSY = 0.9
#: the share of the chat window with some task waiting for a CPU above which
#: other load on the machine probably held the server back
CONTENDED = 0.1
#: one generator run: logins of 1,000 connections, the chat and its drain, with room to spare
LOAD_TIMEOUT = 600.0
#: after the server listens, before its idle RSS is read
SETTLE = 1.0


def start(
    name: str, tmp: Path, cert: Path, key: Path, max_connections: int, prosody_gc: str = ""
) -> servers.Server:
    pin = ["taskset", "-c", SERVER_CPU]
    if name == "ours":
        server = servers.ours(tmp / name, cert, key, max_connections=max_connections, pin=pin)
    else:
        server = servers.prosody(tmp / name, cert, key, pin=pin, gc=prosody_gc)
    server.start()
    if name == "prosody" and not servers.uses_epoll(server.pid):
        server.stop()
        raise SystemExit("prosody is not on its epoll backend (no eventpoll descriptor)")
    return server


def generate(
    server: servers.Server, connections: int, mechanism: str, salted: Path, args: argparse.Namespace
) -> Measurement:
    command = [
        "taskset",
        "-c",
        LOAD_CPU,
        sys.executable,
        "-m",
        "bench.xmpp.load",
        "--port",
        str(server.port),
        "--server-pid",
        str(server.pid),
        "--connections",
        str(connections),
        "--mechanism",
        mechanism,
        "--salted",
        str(salted),
        "--login-concurrency",
        str(args.login_concurrency),
        "--window",
        str(args.window),
        "--seconds",
        str(args.seconds),
        "--settle",
        str(args.settle),
    ]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=LOAD_TIMEOUT, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"the load generator failed against {server.name}:\n{done.stderr[-3000:]}")
    return Measurement(**json.loads(done.stdout.strip().splitlines()[-1]))


async def prepare(tmp: Path, names: list[str], count: int, cert: Path, key: Path) -> tuple[str, Path]:
    """Accounts on both servers, the mechanism both offer, the salted passwords
    the generator will need (in a file)."""
    users = servers.accounts(count)
    salted = SaltedPasswords()
    for name in names:
        (tmp / name).mkdir()
    if "prosody" in names:
        servers.prosody_accounts(tmp / "prosody", users, salted)
    offers = []
    for name in names:
        server = await asyncio.to_thread(start, name, tmp, cert, key, count)
        try:
            offers.append(await probe_mechanisms("127.0.0.1", server.port, servers.DOMAIN))
        finally:
            await asyncio.to_thread(server.stop)
    mechanism = choose_mechanism(offers)
    if "ours" in names:
        await servers.ours_accounts(tmp / "ours", users, salted, [HASHES[mechanism]])
    path = tmp / "salted.json"
    salted.save(path)
    return mechanism, path


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def table(results: dict[tuple[int, str], Measurement], levels: list[int]) -> list[str]:
    lines = [
        "| connections | server | logins/s | logins per CPU-s | messages/s | messages per CPU-s | "
        "p50 ms | p99 ms | RSS per connection | server CPU | generator CPU | notes |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for level in levels:
        for name in NAMES:
            m = results.get((level, name))
            if m is None:
                continue
            notes = []
            if m.login_failures:
                notes.append(f"{m.login_failures} logins failed ({m.first_error})")
            if m.lost or m.bad:
                notes.append(f"{m.lost} lost, {m.bad} unexpected of {m.sent:,} sent")
            if m.closed:
                notes.append(f"{m.closed} connections closed by the server")
            if m.generator_load > GENERATOR_BUSY:
                notes.append("generator busy: may be the bottleneck")
            if m.generator_login_load > GENERATOR_BUSY:
                notes.append(f"logins/s bound by the generator ({m.generator_login_load:.0%} of its core)")
            if m.contention > CONTENDED:
                notes.append(f"CPU contention {m.contention:.0%} of the time")
            lines.append(
                f"| {level:,} | {name} | {m.logins_per_s:,.0f} | {m.logins_per_cpu:,.0f} | "
                f"{m.messages_per_s:,.0f} | {m.messages_per_cpu:,.0f} | {m.p50_ms:.1f} | {m.p99_ms:.1f} | "
                f"{m.rss_per_connection / 1024:,.1f} KiB | {m.server_load:.0%} | {m.generator_load:.0%} | "
                f"{'; '.join(notes)} |"
            )
        ours, prosody = results.get((level, "ours")), results.get((level, "prosody"))
        if ours and prosody:
            lines.append(
                f"| {level:,} | ours/prosody | {ratio(ours.logins_per_s, prosody.logins_per_s)} | "
                f"{ratio(ours.logins_per_cpu, prosody.logins_per_cpu)} | "
                f"{ratio(ours.messages_per_s, prosody.messages_per_s)} | "
                f"{ratio(ours.messages_per_cpu, prosody.messages_per_cpu)} | "
                f"{ratio(ours.p50_ms, prosody.p50_ms)} | {ratio(ours.p99_ms, prosody.p99_ms)} | "
                f"{ratio(ours.rss_per_connection, prosody.rss_per_connection)} | | | |"
            )
    return lines


def goals(results: dict[tuple[int, str], Measurement], levels: list[int]) -> list[str]:
    lines = []
    checks = (
        ("messages per CPU-s", lambda m: m.messages_per_cpu, True),
        ("logins/s", lambda m: m.logins_per_s, True),
        ("RSS per connection", lambda m: m.rss_per_connection, False),
    )
    for level in levels:
        ours, prosody = results.get((level, "ours")), results.get((level, "prosody"))
        if not (ours and prosody):
            continue
        for label, value, higher in checks:
            mine, theirs = value(ours), value(prosody)
            if not theirs:
                continue
            met = mine >= theirs if higher else mine <= theirs
            want = ">= 1" if higher else "<= 1"
            lines.append(
                f"- {level:,} connections, {label}, ours / prosody: {mine / theirs:.2f} "
                f"(goal {want}: {'met' if met else 'NOT met'})"
            )
    return lines


def machine() -> str:
    return f"{procstats.machine()}; {servers.prosody_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="50,200,1000", help="connections per level, comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured chat seconds per level")
    parser.add_argument("--window", type=int, default=2, help="messages in flight each way per pair")
    parser.add_argument(
        "--settle", type=float, default=10.0, help="seconds the bound connections stay quiet before the RSS"
    )
    parser.add_argument("--login-concurrency", type=int, default=50, help="logins at a time")
    parser.add_argument(
        "--prosody-gc",
        choices=("incremental", "generational"),
        default="incremental",
        help="Lua garbage collector mode of Prosody (its default: incremental)",
    )
    parser.add_argument("--only", help="comma-separated servers to run (default: ours,prosody)")
    parser.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    args = parser.parse_args()
    levels = [int(level) for level in args.levels.split(",")]
    names = [name for name in NAMES if not args.only or name in args.only.split(",")]
    if shutil.which("taskset") is None:
        raise SystemExit("taskset is not installed (apt-get install -y util-linux)")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs two CPUs: the server on one, the load generator on the other")
    # the servers inherit it; the generator raises its own
    raise_nofile(max(levels) + SPARE_FILES)
    command = "python3 -m bench.xmpp.run " + shlex.join(sys.argv[1:])
    results: dict[tuple[int, str], Measurement] = {}
    shown: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="bench-xmpp-") as name:
        tmp = Path(name)
        os.chmod(tmp, 0o755)
        cert, key = servers.make_certificate(tmp)
        started = time.monotonic()
        mechanism, salted = asyncio.run(prepare(tmp, names, max(levels), cert, key))
        print(
            f"{max(levels):,} accounts each, {mechanism}, in {time.monotonic() - started:.1f} s", flush=True
        )
        for level in levels:
            for server_name in names:
                gc = "" if args.prosody_gc == "incremental" else args.prosody_gc
                server = start(server_name, tmp, cert, key, max(levels) + SPARE_FILES, gc)
                try:
                    time.sleep(SETTLE)
                    m = generate(server, level, mechanism, salted, args)
                    if server.process is not None and server.process.poll() is not None:
                        raise SystemExit(f"{server_name} exited during the run: see {server.log}")
                finally:
                    server.stop()
                results[(level, server_name)] = m
                shown[server_name] = shlex.join(server.command)
                print(
                    f"  {level:5,} {server_name:8s} {m.logins_per_s:8,.0f} logins/s "
                    f"{m.logins_per_cpu:8,.0f} logins/CPU-s {m.messages_per_s:9,.0f} msg/s "
                    f"{m.messages_per_cpu:9,.0f} msg/CPU-s p50 {m.p50_ms:6.1f} ms p99 {m.p99_ms:6.1f} ms "
                    f"{m.rss_per_connection / 1024:7.1f} KiB/conn server {m.server_load:4.0%} "
                    f"generator {m.generator_load:4.0%} {m.tls}",
                    flush=True,
                )
                if m.login_failures or m.lost or m.bad or m.closed:
                    print(
                        f"    {m.login_failures} logins failed ({m.first_error}); {m.lost} lost, "
                        f"{m.bad} unexpected, {m.closed} closed of {m.sent:,} sent",
                        flush=True,
                    )
                if m.generator_load > GENERATOR_BUSY:
                    print(
                        f"    warning: the generator used {m.generator_load:.0%} of its core: "
                        "it, not the server, may be the bottleneck",
                        flush=True,
                    )
                if m.generator_login_load > GENERATOR_BUSY:
                    print(
                        f"    warning: the generator used {m.generator_login_load:.0%} of its core while "
                        "logging in: logins/s tell its limit, logins per server CPU-second the servers'",
                        flush=True,
                    )
                if m.contention > CONTENDED:
                    print(
                        f"    warning: some task waited for a CPU {m.contention:.0%} of the chat window "
                        "(/proc/pressure/cpu): other load on the machine",
                        flush=True,
                    )
    report = table(results, levels)
    summary = goals(results, levels)
    print("\n".join(["", *report, "", *summary]))
    if args.no_record:
        return
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = [
        f"## xmpp: c2s logins and chat, ours vs Prosody ({now})",
        "",
        f"Command: `{command.strip()}`",
        "",
        f"Machine: {machine()}",
        "",
        f"Each server `taskset -c {SERVER_CPU}`, started afresh per level; load from `taskset -c {LOAD_CPU} "
        f"python3 -m bench.xmpp.load` (asyncio, uvloop): STARTTLS, {mechanism} (4096 iterations), bind, "
        f"presence; logins {args.login_concurrency} at a time; chat in pairs, {args.window} messages in "
        f"flight each way, 1 s warm-up then {args.seconds:g} s measured. Prosody's Lua GC: "
        f"{args.prosody_gc}. Server commands (ports vary):",
        "",
        *(f"    {server_name}: {text}" for server_name, text in shown.items()),
        "",
        *report,
        "",
        *summary,
        "",
    ]
    record.append(section)


if __name__ == "__main__":
    main()
