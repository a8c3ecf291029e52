"""The web appliance against nginx and uvicorn, side by side, with wrk.

    python3 -m bench.web.run [--duration 10] [--connections 50] [--no-record]

Every server serves the same two files (1 KiB and 1 MiB, random bytes) from
one temporary directory, pinned to one core (``taskset -c 0``) while wrk runs
on the other (``taskset -c 1 wrk -t1 -c50 -d10s``):

- ``web``: ``python -m appliances.web`` (uvloop, access log off);
- ``nginx``: one worker, ``sendfile on``, access log off;
- ``uvicorn-h11`` and ``uvicorn-httptools``: uvicorn on uvloop with each of its
  HTTP backends, running ``bench/web/asgi_app.py`` (the files read once).

Cases: the 1 KiB file with keep-alive, the same with ``Connection: close``
(a new connection per request), the 1 MiB file with keep-alive.  Reported per
server and case: requests/s, requests per server CPU-second (utime+stime of
the server's processes from /proc, before and after the run), MB/s, the
server's peak RSS under load, and ratios to ``web``.  A dated section with the
command and the table is appended to ``bench/RESULTS.md`` (``--no-record``: print
only).  Goals (not assertions): on 1 KiB keep-alive, at least 2x uvicorn-h11
and at least uvicorn-httptools per CPU-second; on 1 MiB at least 80% of
nginx's MB/s.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench import procstats, record  # noqa: E402
from bench.procstats import cpu_seconds, rss_bytes  # noqa: E402

__all__ = ["main"]

SERVER_CPU = "0"
WRK_CPU = "1"

NGINX_CONF = """
worker_processes 1;
{user}
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


@dataclass(frozen=True)
class Case:
    name: str
    path: str
    wrk_args: tuple[str, ...]


CASES = (
    Case("1 KiB keep-alive", "/1k.bin", ()),
    Case("1 KiB Connection: close", "/1k.bin", ("-H", "Connection: close")),
    Case("1 MiB keep-alive", "/1m.bin", ()),
)


@dataclass
class Result:
    server: str
    case: str
    requests_per_s: float
    bytes_per_s: float
    cpu_seconds: float
    duration: float
    rss: int
    errors: str

    @property
    def per_cpu_second(self) -> float:
        return self.requests_per_s * self.duration / self.cpu_seconds if self.cpu_seconds else 0.0


def wait_listening(port: int, process: subprocess.Popen[bytes], name: str) -> None:
    for _ in range(200):
        if process.poll() is not None:
            raise SystemExit(f"{name} exited with status {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{name} did not listen on {port}")


_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def parse_wrk(out: str) -> tuple[float, float, str]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"Transfer/sec:\s+([\d.]+)([KMG]?B)", out)
    rate = float(m.group(1)) * _UNITS[m.group(2)] if m else 0.0
    errors = []
    for pattern in (r"Socket errors: [^\n]*", r"Non-2xx or 3xx responses: \d+"):
        found = re.search(pattern, out)
        if found:
            errors.append(found.group(0))
    return rps, rate, "; ".join(errors)


def run_wrk(port: int, case: Case, seconds: int, connections: int, pid: int, name: str) -> Result:
    command = [
        "taskset",
        "-c",
        WRK_CPU,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        *case.wrk_args,
        f"http://127.0.0.1:{port}{case.path}",
    ]
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.25):
            peak[0] = max(peak[0], rss_bytes(pid))

    sampler = threading.Thread(target=sample)
    before = cpu_seconds(pid)
    started = time.monotonic()
    sampler.start()
    try:
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    finally:
        done.set()
        sampler.join()
    elapsed = time.monotonic() - started
    used = cpu_seconds(pid) - before
    rps, rate, errors = parse_wrk(out)
    return Result(name, case.name, rps, rate, used, elapsed, peak[0], errors)


Launcher = Callable[[int], tuple[list[str], dict[str, str]]]


def servers(root: Path, tmp: Path) -> dict[str, Launcher]:
    python = sys.executable
    env = dict(os.environ, PYTHONPATH=str(REPO), BENCH_ROOT=str(root))

    def web(port: int) -> tuple[list[str], dict[str, str]]:
        return [
            python,
            "-m",
            "appliances.web",
            "--listen",
            f"127.0.0.1:{port}",
            "--root",
            str(root),
            "--access-log",
            "off",
            "--log-level",
            "warning",
        ], env

    def nginx(port: int) -> tuple[list[str], dict[str, str]]:
        conf = tmp / f"nginx-{port}.conf"
        user = "user root root;" if os.geteuid() == 0 else ""
        conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, root=root, user=user))
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        return [
            binary,
            "-p",
            str(tmp),
            "-c",
            str(conf),
            "-e",
            str(tmp / "error.log"),
            "-g",
            "daemon off;",
        ], env

    def uvicorn(backend: str) -> Launcher:
        def launch(port: int) -> tuple[list[str], dict[str, str]]:
            return [
                python,
                "-m",
                "uvicorn",
                "bench.web.asgi_app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--http",
                backend,
                "--loop",
                "uvloop",
                "--no-access-log",
                "--log-level",
                "warning",
            ], env

        return launch

    return {
        "web": web,
        "nginx": nginx,
        "uvicorn-h11": uvicorn("h11"),
        "uvicorn-httptools": uvicorn("httptools"),
    }


def measure(name: str, launch: Launcher, args: argparse.Namespace) -> tuple[list[Result], str]:
    port = procstats.free_port()
    command, env = launch(port)
    full = ["taskset", "-c", SERVER_CPU, *command]
    process = subprocess.Popen(full, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    results = []
    try:
        wait_listening(port, process, name)
        warm = Case("warm-up", "/1k.bin", ())
        run_wrk(port, warm, 2, args.connections, process.pid, name)
        for case in CASES:
            result = run_wrk(port, case, args.duration, args.connections, process.pid, name)
            results.append(result)
            print(
                f"  {name:18s} {case.name:24s} {result.requests_per_s:10,.0f} req/s "
                f"{result.per_cpu_second:10,.0f} req/CPU-s {result.bytes_per_s / 1e6:9,.1f} MB/s "
                f"{result.rss / 2**20:7.1f} MiB {result.errors}",
                flush=True,
            )
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    shown = " ".join(part if " " not in part else repr(part) for part in full)
    return results, shown


def table(results: list[Result]) -> list[str]:
    ours = {r.case: r for r in results if r.server == "web"}
    lines = [
        "| case | server | req/s | req per CPU-s | MB/s | RSS under load | req/s vs web | req/CPU-s vs web |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for case in CASES:
        base = ours.get(case.name)
        for r in (r for r in results if r.case == case.name):
            vs = f"{r.requests_per_s / base.requests_per_s:.2f}" if base and base.requests_per_s else "-"
            vs_cpu = f"{r.per_cpu_second / base.per_cpu_second:.2f}" if base and base.per_cpu_second else "-"
            note = f" ({r.errors})" if r.errors else ""
            lines.append(
                f"| {case.name} | {r.server}{note} | {r.requests_per_s:,.0f} | {r.per_cpu_second:,.0f} | "
                f"{r.bytes_per_s / 1e6:,.1f} | {r.rss / 2**20:.1f} MiB | {vs} | {vs_cpu} |"
            )
    return lines


def goals(results: list[Result]) -> list[str]:
    by = {(r.server, r.case): r for r in results}
    lines = []
    small, big = CASES[0].name, CASES[2].name
    web = by.get(("web", small))
    for peer, want in (("uvicorn-h11", 2.0), ("uvicorn-httptools", 1.0)):
        other = by.get((peer, small))
        if web and other and other.per_cpu_second:
            ratio = web.per_cpu_second / other.per_cpu_second
            verdict = "met" if ratio >= want else "NOT met"
            lines.append(f"- {small}, req per CPU-s, web / {peer}: {ratio:.2f} (goal >= {want:g}: {verdict})")
    web_big, nginx_big = by.get(("web", big)), by.get(("nginx", big))
    if web_big and nginx_big and nginx_big.bytes_per_s:
        ratio = web_big.bytes_per_s / nginx_big.bytes_per_s
        verdict = "met" if ratio >= 0.8 else "NOT met"
        lines.append(f"- {big}, MB/s, web / nginx: {ratio:.2f} (goal >= 0.80: {verdict})")
    return lines


def machine() -> str:
    tools = [["nginx", "-v"], ["wrk", "--version"], [sys.executable, "-m", "uvicorn", "--version"]]
    return procstats.machine(tools)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections")
    parser.add_argument("--only", action="append", help="run only these servers (repeatable)")
    parser.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    args = parser.parse_args()
    for tool in ("wrk", "nginx", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install -y wrk nginx-light util-linux)")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs two CPUs: the server on one, wrk on the other")
    results: list[Result] = []
    commands: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp_name:
        tmp = Path(tmp_name)
        root = tmp / "root"
        root.mkdir()
        (root / "1k.bin").write_bytes(os.urandom(1024))
        (root / "1m.bin").write_bytes(os.urandom(1024 * 1024))
        os.chmod(tmp, 0o755)
        for name, launch in servers(root, tmp).items():
            if args.only and name not in args.only:
                continue
            found, shown = measure(name, launch, args)
            results.extend(found)
            commands.append(f"    {name}: {shown}")
    report = table(results)
    summary = goals(results)
    print("\n".join(["", *report, "", *summary]))
    if args.no_record:
        return
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    invocation = "python3 -m bench.web.run " + " ".join(sys.argv[1:])
    section = [
        f"## web: static files, web vs nginx vs uvicorn ({now})",
        "",
        f"Command: `{invocation.strip()}`",
        "",
        f"Machine: {machine()}",
        "",
        f"Each server pinned with `taskset -c {SERVER_CPU}`; load from `taskset -c {WRK_CPU} wrk -t1 "
        f"-c{args.connections} -d{args.duration}s` (plus `-H 'Connection: close'` for that case). "
        "Server commands:",
        "",
        *commands,
        "",
        *report,
        "",
        *summary,
        "",
    ]
    record.append(section)


if __name__ == "__main__":
    main()
