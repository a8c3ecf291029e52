"""The SSH console end to end: the probe appliance as a process with its console
on, driven by OpenSSH's ``ssh`` and by asyncssh's client."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import asyncssh
import pytest
from console_helpers import ConsoleApp, Keys, client, ssh
from proc import BOUND, AppProcess, line_exchange

pytestmark = pytest.mark.slow


# --------------------------------------------------------------------- authentication


def test_openssh_key_accepted_and_command_logged(console: ConsoleApp) -> None:
    result = console.ssh("status")
    assert result.returncode == 0, result.stderr
    assert "probe 0.1.0" in result.stdout
    host, port = console.service
    assert f"tcp/{host}:{port}" in result.stdout
    line = console.app.wait_log("console command")
    assert line["command"] == "status"
    assert line["key"] == "alice@test"
    assert line["peer"].startswith("127.0.0.1:")
    assert line["component"] == "probe.console"


def test_openssh_unknown_key_is_refused(console: ConsoleApp) -> None:
    result = console.ssh("status", key=console.keys.mallory)
    assert result.returncode == 255
    assert "Permission denied (publickey)" in result.stderr
    assert result.stdout == ""
    assert console.app.wait_log("console login failed")["peer"].startswith("127.0.0.1:")


def test_from_restriction_is_honoured(console: ConsoleApp) -> None:
    # carol's key is authorized only from 10.0.0.0/8; we come from 127.0.0.1.
    result = console.ssh("status", key=console.keys.carol)
    assert result.returncode == 255
    assert "Permission denied (publickey)" in result.stderr


async def test_asyncssh_key_accepted_unknown_and_from_refused(console: ConsoleApp) -> None:
    async with client(console.port, console.keys.alice) as conn:
        result = await conn.run("status --json", timeout=BOUND)
        assert result.exit_status == 0
        assert json.loads(str(result.stdout))["appliance"] == "probe"
        assert conn.get_server_host_key().get_fingerprint("sha256") == console.fingerprint
    for refused in (console.keys.mallory, console.keys.carol):
        with pytest.raises(asyncssh.PermissionDenied):
            async with client(console.port, refused):
                pass


async def test_password_and_keyboard_interactive_are_not_offered(console: ConsoleApp) -> None:
    with pytest.raises(asyncssh.PermissionDenied):
        async with client(
            console.port, None, password="hunter2", preferred_auth="password,keyboard-interactive"
        ):
            pass
    result = console.ssh(
        "status",
        options=[
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
            "-o",
            "PubkeyAuthentication=no",
        ],
    )
    assert result.returncode == 255
    assert "Permission denied (publickey)" in result.stderr


# --------------------------------------------------------------------- forwarding


async def test_forwarding_and_agent_are_refused(console: ConsoleApp) -> None:
    host, port = console.service
    async with client(console.port, console.keys.alice) as conn:
        # RFC 4254 §7.2: direct-tcpip (local forwarding) to the appliance's own port
        with pytest.raises(asyncssh.ChannelOpenError):
            await conn.create_connection(asyncssh.SSHTCPSession, host, port)
        # RFC 4254 §7.1: tcpip-forward (remote forwarding)
        with pytest.raises(asyncssh.ChannelListenError):
            await conn.forward_remote_port("127.0.0.1", 0, host, port)
        # Agent forwarding (auth-agent-req@openssh.com) and X11 (RFC 4254 §6.3),
        # asked with want-reply so that the refusal (§5.4 CHANNEL_FAILURE) is seen.
        chan, _ = await conn.create_session(asyncssh.SSHClientSession, "status")
        assert await chan._make_request(b"auth-agent-req@openssh.com") is False
        assert (
            await chan._make_request(
                b"x11-req",
                b"\x00"
                + asyncssh.packet.String("MIT-MAGIC-COOKIE-1")
                + asyncssh.packet.String("00" * 16)
                + asyncssh.packet.UInt32(0),
            )
            is False
        )
        # Neither sftp nor any other subsystem.
        with pytest.raises((asyncssh.SFTPError, asyncssh.ChannelOpenError, asyncssh.ConnectionLost, OSError)):
            async with conn.start_sftp_client():
                pass
        # The connection still works after all these refusals.
        assert (await conn.run("help", timeout=BOUND)).exit_status == 0
    console.app.read_logs(0.2)
    lines = [line["msg"] for line in console.app.lines]
    assert "console port forwarding refused" in lines
    assert "console remote forwarding refused" in lines


def test_openssh_forwarding_is_refused(console: ConsoleApp) -> None:
    host, port = console.service
    # -W: stdio forwarding through a direct-tcpip channel
    result = console.ssh(options=["-W", f"{host}:{port}"])
    assert result.returncode == 255
    assert "stdio forwarding failed" in result.stderr
    # -R with ExitOnForwardFailure: a refused tcpip-forward ends the client
    result = console.ssh("status", options=["-o", "ExitOnForwardFailure=yes", "-R", f"0:{host}:{port}"])
    assert result.returncode == 255
    assert "forwarding failed" in result.stderr


# --------------------------------------------------------------------- commands


def test_commands_output_and_exit_status(console: ConsoleApp) -> None:
    result = console.ssh("help")
    assert result.returncode == 0
    for usage in (
        "status",
        "stats [PREFIX|--raw]",
        "log level [[COMPONENT] LEVEL]",
        "log tail [N]",
        "reload",
        "config",
        "stop",
    ):
        assert usage in result.stdout

    status = json.loads(console.ssh("status", "--json").stdout)
    assert status["appliance"] == "probe" and status["version"] == "0.1.0"
    assert status["rss_bytes"] > 0 and status["tasks"] > 0 and status["uptime_seconds"] >= 0
    assert f"tcp/127.0.0.1:{console.port}" in status["service_listeners"]

    line_exchange(console.service, "echo counted")
    stats = console.ssh("stats", "runtime_connections_accepted")
    assert stats.returncode == 0
    assert (
        f"runtime_connections_accepted_total{{listener={console.service[0]}:{console.service[1]}}}"
        in stats.stdout
    )
    data = json.loads(console.ssh("stats", "--json").stdout)
    assert data["process_resident_memory_bytes"][0]["value"] > 0
    assert "# HELP" in console.ssh("stats", "--raw").stdout
    missing = console.ssh("stats", "no_such_metric")
    assert missing.returncode == 1 and "no metric" in missing.stderr

    config = console.ssh("config")
    assert config.returncode == 0
    row = next(line for line in config.stdout.splitlines() if line.startswith("--console-listen"))
    assert row.split() == ["--console-listen", "127.0.0.1:0", "flag", "--console-listen"]
    rows = {entry["option"]: entry for entry in json.loads(console.ssh("config", "--json").stdout)}
    assert rows["--console-keys"]["value"] == str(console.keys.authorized)
    assert rows["--drain-timeout"] == {"option": "--drain-timeout", "value": "10s", "source": "default"}

    unknown = console.ssh("frobnicate")
    assert unknown.returncode == 2
    assert "unknown command 'frobnicate'" in unknown.stderr
    assert console.ssh("log").returncode == 2
    assert console.ssh("log", "tail", "lots").returncode == 2
    assert console.ssh("status", "extra").returncode == 2
    wrong = console.ssh("status", "--json", "extra")
    assert wrong.returncode == 2 and json.loads(wrong.stdout)["error"].startswith("usage: status")


def test_log_level_and_tail(console: ConsoleApp) -> None:
    table = console.ssh("log", "level")
    assert table.returncode == 0
    assert "(root)" in table.stdout and "info" in table.stdout
    assert console.ssh("log", "level", "probe.net", "debug").returncode == 0
    levels = json.loads(console.ssh("log", "level", "--json").stdout)
    assert levels["probe.net"] == "debug" and levels[""] == "info"
    bad = console.ssh("log", "level", "loud")
    assert bad.returncode == 2 and "unknown log level" in bad.stderr
    assert console.ssh("log", "level", "probe.net", "inherit").returncode == 0
    assert json.loads(console.ssh("log", "level", "--json").stdout)["probe.net"] == "info"

    tail = console.ssh("log", "tail", "3")
    assert tail.returncode == 0
    shown = tail.stdout.strip().splitlines()
    assert len(shown) == 3
    assert json.loads(shown[-1])["msg"] == "console command"  # this very command, logged first
    assert len(json.loads(console.ssh("log", "tail", "--json").stdout)["lines"]) == 20


def test_reload_runs_the_hooks_and_reports_problems(console: ConsoleApp) -> None:
    assert line_exchange(console.service, "reloads") == "0"
    result = console.ssh("reload")
    assert result.returncode == 0 and result.stdout.strip() == "reloaded"
    assert line_exchange(console.service, "reloads") == "1"
    # A broken authorized_keys file is a reload problem; the keys in force stay.
    console.keys.authorized.write_text("ssh-ed25519 not-base64 broken@test\n")
    result = console.ssh("reload", "--json")
    assert result.returncode == 1
    answer = json.loads(result.stdout)
    assert answer["reloaded"] is False
    assert any(
        "--console-keys" in problem and "authorized_keys:1" in problem for problem in answer["problems"]
    )
    assert line_exchange(console.service, "reloads") == "2"
    assert console.ssh("status").returncode == 0


def test_stop_stops_the_appliance_gracefully(console: ConsoleApp) -> None:
    result = console.ssh("stop")
    assert result.returncode == 0, result.stderr
    assert "stopping" in result.stdout
    assert console.app.wait() == 0
    assert any(line.get("msg") == "stopped" for line in console.app.lines)


async def test_interactive_session_with_pty(console: ConsoleApp) -> None:
    async with client(console.port, console.keys.alice) as conn:
        process = await conn.create_process(term_type="xterm", term_size=(100, 30))
        banner = await process.stdout.readuntil("probe> ")
        assert "'help' lists the commands" in banner
        process.stdin.write("status\n")
        answer = await process.stdout.readuntil("probe> ")
        assert "uptime" in answer and "\r\n" in answer  # a terminal gets CR LF
        process.stdin.write("nonsense\n")
        answer = await process.stdout.readuntil("probe> ")
        assert "unknown command 'nonsense'" in answer
        process.stdin.write("exit\n")
        result = await process.wait(timeout=BOUND)
        assert result.exit_status == 2  # the last command's status


def test_commands_from_stdin_without_pty(console: ConsoleApp) -> None:
    result = ssh(console.port, console.keys.alice, options=["-T"], input="help\nreload\n")
    assert result.returncode == 0
    assert "log tail [N]" in result.stdout and "reloaded" in result.stdout


# --------------------------------------------------------------------- host key


def test_host_key_is_kept_across_restarts(keys: Keys, tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = ConsoleApp(keys, state)
    try:
        fingerprint = first.fingerprint
        assert fingerprint.startswith("SHA256:")
        assert first.ssh("stop").returncode == 0
        assert first.app.wait() == 0
    finally:
        first.stop()
    key_file = state / "console_host_key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    second = ConsoleApp(keys, state)
    try:
        assert second.fingerprint == fingerprint
        assert not any(line.get("msg") == "console host key made" for line in second.app.lines)
    finally:
        second.stop()


def test_console_needs_keys(tmp_path: Path) -> None:
    app = AppProcess(["--console-listen", "127.0.0.1:0", "--state-dir", str(tmp_path)])
    try:
        assert app.wait() == 2
    finally:
        app.stop()
    assert any("--console-listen needs --console-keys" in line["msg"] for line in app.lines)


def test_console_keys_without_a_key_fail_at_start(tmp_path: Path) -> None:
    empty = tmp_path / "authorized_keys"
    empty.write_text("# nobody yet\n")
    app = AppProcess(
        ["--console-listen", "127.0.0.1:0", "--console-keys", str(empty), "--state-dir", str(tmp_path)]
    )
    try:
        assert app.wait() == 2
    finally:
        app.stop()
    assert any("no keys" in line["msg"] for line in app.lines), app.lines
