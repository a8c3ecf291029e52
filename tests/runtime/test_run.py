"""The runner, end to end with real processes: options errors, graceful stop,
reload, crashes, accept backoff, durability across kill -9, workers."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time

import pytest
from proc import BOUND, PROBE, REPO, AppProcess, free_port, line_exchange

from runtime.run import malloc_trim


def run_probe(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    full_env = dict(os.environ, PYTHONPATH=str(REPO))
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, str(PROBE), *args], capture_output=True, text=True, timeout=BOUND, env=full_env
    )


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["--workers", "many"], {}, "--workers (flag): bad value 'many': expected a whole number"),
        (["--listen", "127.0.0.1:99999"], {}, "port 99999 out of range"),
        (["--idle-timeout", "soon"], {}, "expected a duration"),
        (["--log-format", "xml"], {}, "expected one of text, json"),
        (["--log-level", "loud"], {}, "--log-level: bad value 'loud'"),
        (["--no-such-option"], {}, "unknown option --no-such-option"),
        (["--listen"], {}, "--listen: missing value"),
        ([], {"PROBE_MAX_CONNECTIONS": "0"}, "--max-connections (env PROBE_MAX_CONNECTIONS): bad value '0'"),
        (["stray"], {}, "unknown command 'stray' (see --help)"),
    ],
)
def test_bad_option_exits_2_with_one_line(args: list[str], env: dict[str, str], needle: str) -> None:
    result = run_probe(*args, env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("probe: ")
    assert needle in lines[0]
    assert "Traceback" not in result.stderr


def test_bad_config_file_is_one_line(tmp_path) -> None:
    config = tmp_path / "probe.toml"
    config.write_text("max_connections = 'lots'\n")
    result = run_probe("--config", str(config))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"probe: --max-connections (config {config}): bad value 'lots': expected a whole number"
    )
    config.write_text("not toml [")
    result = run_probe("--config", str(config))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "is not valid TOML" in result.stderr


def test_device_problems_exit_3_one_line_each(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run_probe("--state-dir", str(blocker / "state"))
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("probe: store: "), result.stderr


def test_help_lists_options_with_defaults_and_sources(tmp_path) -> None:
    result = run_probe("--help", env={"PROBE_IDLE_TIMEOUT": "5s"})
    assert result.returncode == 0
    out = result.stdout
    assert "--listen ADDR:PORT" in out and "= 127.0.0.1:0   [default; env PROBE_LISTEN]" in out
    assert "= 5s   [env PROBE_IDLE_TIMEOUT; env PROBE_IDLE_TIMEOUT]" in out
    assert "--drain-timeout" in out and "--workers" in out


def test_graceful_stop_drains_in_flight_request(tmp_path) -> None:
    app = AppProcess(["--state-dir", str(tmp_path), "--drain-timeout", "20"])
    try:
        tcp = app.ready()["tcp"]
        busy = socket.create_connection(tcp, timeout=BOUND)
        idle = socket.create_connection(tcp, timeout=BOUND)
        busy.sendall(b"slow 1.5\n")
        idle.sendall(b"echo hi\n")
        assert idle.recv(100) == b"hi\n"
        time.sleep(0.3)  # let the slow request start before the stop
        app.signal(signal.SIGTERM)
        app.wait_log("stopping")
        # The in-flight request still gets its answer; the idle keep-alive
        # connection is closed by the server.
        assert busy.recv(100) == b"done\n"
        assert idle.recv(100) == b""
        assert app.wait() == 0
        assert any(line.get("msg") == "stopped" for line in app.lines)
        with pytest.raises(OSError):
            socket.create_connection(tcp, timeout=2)
        busy.close()
        idle.close()
    finally:
        app.stop()


def test_sighup_runs_the_reload_hook(tmp_path) -> None:
    app = AppProcess(["--state-dir", str(tmp_path)])
    try:
        tcp = app.ready()["tcp"]
        assert line_exchange(tcp, "reloads") == "0"
        app.signal(signal.SIGHUP)
        app.wait_log("reloaded")
        app.signal(signal.SIGHUP)
        app.wait_log("reloaded", count=2)
        assert line_exchange(tcp, "reloads") == "2"
        app.signal(signal.SIGTERM)
        assert app.wait() == 0
    finally:
        app.stop()


def test_crashing_handler_is_logged_and_server_keeps_serving(tmp_path) -> None:
    app = AppProcess(["--state-dir", str(tmp_path)])
    try:
        tcp = app.ready()["tcp"]
        assert line_exchange(tcp, "crash") == ""
        crash = app.wait_log("connection handler crashed")
        assert "RuntimeError: probe crashed on purpose" in crash["exc"]
        assert "Traceback" in crash["exc"]
        assert line_exchange(tcp, "echo still here") == "still here"
        app.signal(signal.SIGTERM)
        assert app.wait() == 0
    finally:
        app.stop()


def test_accept_backs_off_on_emfile_and_recovers(tmp_path) -> None:
    def low_fd_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    app = AppProcess(["--state-dir", str(tmp_path)], preexec=low_fd_limit)
    clients: list[socket.socket] = []
    try:
        tcp = app.ready()["tcp"]
        # Far more connections than the server has descriptors; the kernel's
        # backlog (4096) holds the ones it cannot accept.
        for _ in range(120):
            clients.append(socket.create_connection(tcp, timeout=BOUND))
        warning = app.wait_log("accept failed, backing off")
        assert warning["error"] == "EMFILE"
        for sock in clients:
            sock.close()
        clients.clear()
        # Once descriptors are free again, the server accepts and answers.
        assert line_exchange(tcp, "echo recovered") == "recovered"
        app.signal(signal.SIGTERM)
        assert app.wait() == 0
    finally:
        for sock in clients:
            sock.close()
        app.stop()


def test_store_write_survives_kill_9(tmp_path) -> None:
    app = AppProcess(["--state-dir", str(tmp_path)])
    try:
        tcp = app.ready()["tcp"]
        for i in range(20):
            assert line_exchange(tcp, f"put key{i} value{i}") == "stored"
        app.signal(signal.SIGKILL)
        assert app.wait() == -signal.SIGKILL
    finally:
        app.stop()
    again = AppProcess(["--state-dir", str(tmp_path)])
    try:
        tcp = again.ready()["tcp"]
        for i in range(20):
            assert line_exchange(tcp, f"get key{i}") == f"value{i}"
        again.signal(signal.SIGTERM)
        assert again.wait() == 0
    finally:
        again.stop()


def test_workers_share_the_port_and_stop_together(tmp_path) -> None:
    port = free_port()
    app = AppProcess(["--state-dir", str(tmp_path), "--workers", "2", "--listen", f"127.0.0.1:{port}"])
    try:
        app.wait_log("ready", count=2)
        seen = set()
        for _ in range(200):  # bounded: SO_REUSEPORT spreads connections by hash
            seen.add(line_exchange(("127.0.0.1", port), "worker"))
            if len(seen) == 2:
                break
        assert seen == {"0", "1"}
        app.signal(signal.SIGTERM)
        assert app.wait() == 0
        assert len([line for line in app.lines if line.get("msg") == "stopped"]) == 2
    finally:
        app.stop()


def test_workers_need_fixed_ports() -> None:
    result = run_probe("--workers", "2")
    assert result.returncode == 2
    assert "fixed ports" in result.stderr


def test_asyncio_loop_can_be_chosen(tmp_path) -> None:
    app = AppProcess(["--state-dir", str(tmp_path), "--loop", "asyncio"])
    try:
        tcp = app.ready()["tcp"]
        assert line_exchange(tcp, "echo plain asyncio") == "plain asyncio"
        app.signal(signal.SIGINT)
        assert app.wait() == 0
    finally:
        app.stop()


def test_port_in_use_exits_3_with_one_line(tmp_path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_probe(
            "--state-dir", str(tmp_path), "--listen", f"127.0.0.1:{port}", "--log-format", "json"
        )
    assert result.returncode == 3
    errors = [line for line in result.stderr.splitlines() if '"level": "error"' in line]
    assert len(errors) == 1 and f"cannot listen on 127.0.0.1:{port}" in errors[0]
    assert "Traceback" not in result.stderr


def test_metrics_endpoint_reports_process_and_listener_metrics(tmp_path) -> None:
    app = AppProcess(["--state-dir", str(tmp_path), "--metrics-listen", "127.0.0.1:0"])
    try:
        tcp = app.ready()["tcp"]
        metrics_line = app.wait_log("metrics")
        host, _, port = metrics_line["listen"].rpartition(":")
        assert line_exchange(tcp, "echo counted") == "counted"
        assert line_exchange(tcp, "crash") == ""
        import urllib.request

        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=BOUND) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = response.read().decode()
        listener = f"{tcp[0]}:{tcp[1]}"
        assert f'runtime_connections_accepted_total{{listener="{listener}"}} 2' in text
        assert f'runtime_handler_errors_total{{endpoint="{listener}"}} 1' in text
        assert "process_resident_memory_bytes " in text
        app.signal(signal.SIGTERM)
        assert app.wait() == 0
    finally:
        app.stop()


def test_offline_commands_work_on_the_store_of_a_running_server(tmp_path) -> None:
    app = AppProcess(["--state-dir", str(tmp_path)])
    try:
        tcp = app.ready()["tcp"]
        assert line_exchange(tcp, "put colour blue") == "stored"
        # Options may stand before or after the command's words.
        listed = run_probe("--state-dir", str(tmp_path), "keys", "--json")
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.strip() == '["colour"]'
        stored = run_probe("set", "size", "large", "--state-dir", str(tmp_path))
        assert (stored.returncode, stored.stdout.strip()) == (0, "stored size")
        assert line_exchange(tcp, "get size") == "large"
        app.signal(signal.SIGTERM)
        assert app.wait() == 0
    finally:
        app.stop()
    import os

    piped = subprocess.run(
        [sys.executable, str(PROBE), "--state-dir", str(tmp_path), "set", "secret", "-"],
        input="from stdin\n", capture_output=True, text=True, timeout=BOUND,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )  # fmt: skip
    assert piped.returncode == 0, piped.stderr
    assert run_probe("--state-dir", str(tmp_path), "keys").stdout.split() == ["colour", "secret", "size"]


def test_offline_command_usage_errors_exit_2(tmp_path) -> None:
    result = run_probe("--state-dir", str(tmp_path), "set", "only-key")
    assert result.returncode == 2
    assert result.stderr.strip() == "probe: usage: set KEY VALUE"
    result = run_probe("--state-dir", str(tmp_path), "frobnicate")
    assert result.returncode == 2 and "unknown command 'frobnicate'" in result.stderr
    helped = run_probe("--help")
    assert "set KEY VALUE" in helped.stdout and "commands (" in helped.stdout


def _rss() -> int:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_malloc_trim_gives_freed_heap_pages_back() -> None:
    """What ``give_back_memory`` calls: freed malloc'd memory held below a
    live block goes back to the system (glibc; the test machine has it)."""
    trim = malloc_trim()
    assert trim is not None
    blocks = [bytes(4096) + bytes([n % 256]) for n in range(40_000)]  # ~160 MiB, malloc'd
    keep = blocks[-1]
    del blocks
    before = _rss()
    trim(0)
    after = _rss()
    assert keep and before - after > 64 * 1024 * 1024
