"""The SSH edge of the console: asyncssh on a listener of the runtime's service
net device.

Connections are accepted by the net device (``listen_tcp`` +
``serve_connections``), so the runtime's own bounds apply to them: the
connection cap, the idle timeout (any byte either way is activity; an idle
interactive session is cut after ``idle_timeout``), write back-pressure and the
drain on stop.  Each accepted connection is handed to an asyncssh server
connection through a small transport adapter; asyncssh does the SSH protocol
(RFC 4253 transport, RFC 4252 authentication, RFC 4254 channels).

Rules, checked in this order for every connection:

1. A source blocked by the login throttle (``throttle.py``) is closed at once,
   before any SSH byte.
2. At most ``max_startups`` connections may be logging in at once (OpenSSH's
   MaxStartups starts refusing at 10); more are closed at once.
3. Authentication is public key only (RFC 4252 §7): password (§8),
   keyboard-interactive (RFC 4256), host-based (§9) and GSS are never offered.
   The key must be in the authorized keys with a matching ``from=``.  After
   ``max_auth_tries`` refused keys the connection is disconnected (RFC 4252 §4
   asks servers to bound attempts; 6 is OpenSSH's MaxAuthTries).
   ``login_timeout`` bounds the whole login (30 s: a key needs no typing;
   OpenSSH's LoginGraceTime is 120 s for people typing passwords).
4. At most ``max_sessions`` logged-in connections (8); another one is
   disconnected with TOO_MANY_CONNECTIONS (RFC 4253 §11.1).
5. Only session channels (RFC 4254 §6) with ``exec`` (§6.5) or ``shell`` and a
   PTY (§6.2) for line editing.  Refused: direct-tcpip and tcpip-forward
   (§7.1, §7.2), X11 forwarding (§6.3), agent forwarding, UNIX-socket
   forwarding, subsystems (sftp), scp.
6. Every command line run is logged (component ``<appliance>.console``) with
   the key's comment, its fingerprint and the source address.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, cast

import asyncssh

from ..appliance import Context
from ..devices import Address, Connection, ConnectionHandler, DataFile, Limits, Log, Net, StreamListener
from ..errors import ConfigError, DeviceError
from .builtin import BUILTIN_COMMANDS
from .command import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    MAX_LINE,
    Call,
    Command,
    CommandTable,
    Reply,
    UsageError,
    execute,
    write_reply,
)
from .keys import (
    MAX_KEYS_FILE,
    AuthorizedKeys,
    Match,
    fingerprint,
    import_host_key,
    load_or_create_host_key,
    new_host_key,
)
from .throttle import LoginThrottle

__all__ = ["Console", "ConsoleLimits", "open_console"]

#: channel window (RFC 4254 §5.2): bounds what one session can make us buffer
_WINDOW = 64 * 1024
#: after ``stop`` answers, how long the session waits for the client to close
#: its channel before the stop goes ahead anyway
_STOP_FLUSH = 5.0


@dataclass(frozen=True, slots=True)
class ConsoleLimits:
    max_sessions: int = 8
    max_startups: int = 10
    login_timeout: float = 30.0
    #: an interactive session nobody types into is closed after this long
    #: (OpenSSH has none by default; hardening guides ask for 5-15 minutes)
    idle_timeout: float = 600.0
    max_auth_tries: int = 6

    @property
    def max_connections(self) -> int:
        # Room for every session and login, plus a few slots in which refused
        # connections are accepted and closed (else they would wait in the
        # kernel's backlog, and a client would hang instead of hearing no).
        return self.max_sessions + self.max_startups + 4


class _Transport(asyncio.Transport):
    """The asyncio transport asyncssh writes to, over the net device's connection."""

    def __init__(self, conn: Connection) -> None:
        super().__init__(
            extra={
                "peername": (conn.peer.host, conn.peer.port),
                "sockname": (conn.local.host, conn.local.port),
            }
        )
        self._conn = conn
        self._closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._conn.write(data)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True
        self._conn.close()

    def abort(self) -> None:
        self._closing = True
        self._conn.abort()

    def pause_reading(self) -> None:
        self._conn.pause_reading()

    def resume_reading(self) -> None:
        self._conn.resume_reading()

    def can_write_eof(self) -> bool:
        return False


class _Link(ConnectionHandler):
    """Net-device callbacks in, asyncssh protocol calls out."""

    def __init__(self, ssh: asyncssh.SSHServerConnection, server: _Server) -> None:
        self.ssh = ssh
        self.server = server

    def data_received(self, data: bytes) -> None:
        self.ssh.data_received(data)

    def eof_received(self) -> bool:
        self.ssh.eof_received()
        return False

    def pause_writing(self) -> None:
        self.ssh.pause_writing()

    def resume_writing(self) -> None:
        self.ssh.resume_writing()

    def stopping(self) -> None:
        self.server.refused = True
        self.ssh.disconnect(asyncssh.DISC_BY_APPLICATION, "appliance stopping")

    def connection_lost(self, exc: Exception | None) -> None:
        self.ssh.connection_lost(exc)


class _Server(asyncssh.SSHServer):
    """One console connection's login and its state."""

    def __init__(self, console: Console, peer: Address) -> None:
        self.console = console
        self.peer = peer
        self.conn: asyncssh.SSHServerConnection | None = None
        self.match: Match | None = None
        self.authenticated = False
        #: closed on purpose (cap, stop): not a failed login
        self.refused = False
        self.rejected_keys = 0
        self.username = ""
        self.since = 0.0
        self.stop_after: asyncssh.SSHServerProcess[str] | None = None

    @property
    def user(self) -> str:
        return self.match.key.name if self.match else ""

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn

    def connection_lost(self, exc: Exception | None) -> None:
        self.console._connection_ended(self)

    def begin_auth(self, username: str) -> bool:
        self.username = username
        if self.console.logged_in() >= self.console.limits.max_sessions:
            self._refuse("console session cap reached")
        return True  # authentication is always required

    # RFC 4252 §7: the only method offered.
    def public_key_auth_supported(self) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def host_based_auth_supported(self) -> bool:
        return False

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        match = self.console.keys.match(key, self.peer.host)
        if match is None:
            self.rejected_keys += 1
            if self.rejected_keys >= self.console.limits.max_auth_tries and self.conn is not None:
                self.conn.disconnect(
                    asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE, "too many authentication failures"
                )
            return False
        self.match = match
        return True

    def auth_completed(self) -> None:
        self.authenticated = True
        self.since = self.console.clock()
        self.console._logged_in(self)
        if self.console.logged_in() > self.console.limits.max_sessions:
            self._refuse("console session cap reached")

    def _refuse(self, reason: str) -> None:
        self.refused = True
        self.console.log.warning("console connection refused", peer=str(self.peer), reason=reason)
        if self.conn is not None:
            # RFC 4253 §11.1 code 4
            self.conn.disconnect(asyncssh.DISC_TOO_MANY_CONNECTIONS, reason)

    # RFC 4254 §7.2 (direct-tcpip) and §7.1 (tcpip-forward), and their UNIX twins.
    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> bool:
        self.console.log.warning("console port forwarding refused", peer=str(self.peer), user=self.user)
        return False

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        self.console.log.warning("console remote forwarding refused", peer=str(self.peer), user=self.user)
        return False

    def unix_connection_requested(self, dest_path: str) -> bool:
        return False

    def unix_server_requested(self, listen_path: str) -> bool:
        return False


class Console:
    """The console of one appliance process: serve until cancelled or stopped."""

    def __init__(
        self,
        ctx: Context,
        listener: StreamListener,
        keys: AuthorizedKeys,
        host_key: asyncssh.SSHKey,
        *,
        commands: Sequence[Command],
        log: Log,
        sink: Any = None,
        reload: Callable[[], Awaitable[list[str]]] | None = None,
        limits: ConsoleLimits | None = None,
        throttle: LoginThrottle | None = None,
    ) -> None:
        self.ctx = ctx
        self.listener = listener
        self.keys = keys
        self.host_key = host_key
        self.log = log
        self.limits = limits or ConsoleLimits()
        self.throttle = throttle or LoginThrottle()
        self.clock = ctx.clock.monotonic
        self.table = CommandTable(commands)
        self._sink = sink
        self._reload = reload
        self._servers: set[_Server] = set()
        self._next: _Server | None = None
        self._group: asyncio.TaskGroup | None = None
        self._loop = asyncio.get_running_loop()
        self._options = asyncssh.SSHServerConnectionOptions(
            server_host_keys=[host_key],
            server_factory=self._take_server,
            process_factory=self._start_process,
            login_timeout=self.limits.login_timeout,
            password_auth=False,
            kbdint_auth=False,
            host_based_auth=False,
            gss_host=None,
            x11_forwarding=False,
            agent_forwarding=False,
            allow_scp=False,
            allow_pty=True,
            line_editor=True,
            max_line_length=MAX_LINE,
            window=_WINDOW,
            keepalive_interval=0,
        )

    # ----------------------------------------------------------------- serving

    @property
    def address(self) -> Address:
        return self.listener.address

    @property
    def host_key_fingerprint(self) -> str:
        return fingerprint(self.host_key)

    def logged_in(self) -> int:
        return sum(1 for server in self._servers if server.authenticated and not server.refused)

    def sessions(self) -> list[dict[str, Any]]:
        now = self.clock()
        return [
            {"user": s.user, "peer": str(s.peer), "seconds": round(now - s.since, 1)}
            for s in self._servers
            if s.authenticated and not s.refused
        ]

    async def serve(self) -> None:
        async with asyncio.TaskGroup() as group:
            self._group = group
            try:
                await self.listener.serve_connections(self._accept)
            finally:
                self._group = None

    def reload_keys(self) -> None:
        """Re-read the authorized keys (a reload hook): a file that does not
        parse keeps the keys in force, and the reload reports it."""
        self.keys = read_keys(self.ctx)
        self.log.info("console keys reloaded", keys=len(self.keys))

    def _accept(self, conn: Connection) -> ConnectionHandler:
        peer = conn.peer
        now = self.clock()
        if self.throttle.blocked(peer.host, now):
            self.log.debug("console connection refused", peer=str(peer), reason="throttled")
            conn.close()
            return ConnectionHandler()
        starting = sum(1 for server in self._servers if not server.authenticated)
        if starting >= self.limits.max_startups:
            self.log.warning("console connection refused", peer=str(peer), reason="too many logins at once")
            conn.close()
            return ConnectionHandler()
        server = _Server(self, peer)
        self._servers.add(server)
        ssh = asyncssh.SSHServerConnection(self._loop, self._options)
        self._next = server
        try:
            ssh.connection_made(_Transport(conn))
        finally:
            self._next = None
        return _Link(ssh, server)

    def _take_server(self) -> asyncssh.SSHServer:
        # Called by asyncssh from inside connection_made, just above.
        server, self._next = self._next, None
        if server is None:
            raise RuntimeError("console: asyncssh asked for a server outside an accept")
        return server

    def _logged_in(self, server: _Server) -> None:
        self.throttle.succeeded(server.peer.host)
        assert server.match is not None
        self.log.info(
            "console login",
            key=server.user,
            fingerprint=server.match.key.fingerprint,
            peer=str(server.peer),
            username=server.username,
        )

    def _connection_ended(self, server: _Server) -> None:
        self._servers.discard(server)
        if server.authenticated:
            self.log.info("console logout", key=server.user, peer=str(server.peer))
            return
        if server.refused:
            return
        self.log.info(
            "console login failed", peer=str(server.peer), username=server.username, keys=server.rejected_keys
        )
        if self.throttle.failed(server.peer.host, self.clock()):
            self.log.warning(
                "console source blocked after failed logins",
                peer=str(server.peer),
                seconds=self.throttle.block,
            )

    # ----------------------------------------------------------------- sessions

    def _start_process(self, process: asyncssh.SSHServerProcess[str]) -> None:
        conn = process.channel.get_connection()
        server = conn.get_owner()
        group = self._group
        if not isinstance(server, _Server) or not server.authenticated or group is None:
            process.exit(EXIT_FAILED)
            return
        # The session task belongs to the console's TaskGroup, not to asyncssh.
        group.create_task(self._session(server, process))

    async def _session(self, server: _Server, process: asyncssh.SSHServerProcess[str]) -> None:
        try:
            if process.subsystem:
                process.stderr.write(f"no subsystems here ({process.subsystem!r} refused)\n")
                process.exit(EXIT_FAILED)
                return
            assert server.match is not None
            command = server.match.forced_command or process.command
            if command is not None:
                process.exit(await self._run_line(server, process, command))
            else:
                process.exit(await self._interact(server, process))
            if server.stop_after is process:
                # The answer and the exit status are out; let the client close
                # the channel (bounded) so that the stop does not cut them off.
                try:
                    await asyncio.wait_for(process.wait_closed(), _STOP_FLUSH)
                except TimeoutError:
                    pass
                self.ctx.request_stop()
        except (BrokenPipeError, ConnectionError, asyncssh.Error):
            pass  # the client went away mid-answer
        except Exception as exc:
            self.log.exception("console session crashed", exc, peer=str(server.peer), key=server.user)
            process.exit(EXIT_FAILED)

    async def _interact(self, server: _Server, process: asyncssh.SSHServerProcess[str]) -> int:
        tty = process.term_type is not None
        name = self.ctx.appliance.name
        if tty:
            process.stdout.write(
                f"{name} {self.ctx.appliance.version} console. 'help' lists the commands, 'exit' leaves.\n"
            )
        status = EXIT_OK
        while server.stop_after is None:
            if tty:
                process.stdout.write(f"{name}> ")
            try:
                line = await process.stdin.readline()
            except (asyncssh.BreakReceived, asyncssh.SignalReceived):
                process.stdout.write("\n")
                continue
            except asyncssh.TerminalSizeChanged:
                continue
            if not line:
                break  # end of input (Ctrl-D)
            if line.strip() in ("exit", "quit", "logout"):
                break
            status = await self._run_line(server, process, line, tty=tty)
        return status

    async def _run_line(
        self, server: _Server, process: asyncssh.SSHServerProcess[str], line: str, *, tty: bool = False
    ) -> int:
        line = line.strip()
        if not line:
            return EXIT_OK
        assert server.match is not None
        self.log.info(
            "console command",
            command=line[:MAX_LINE],
            key=server.user,
            fingerprint=server.match.key.fingerprint,
            peer=str(server.peer),
        )
        want_json = "--json" in line.split()
        try:
            parsed = self.table.parse(line)
            if parsed is None:
                return EXIT_OK
            want_json = parsed.json

            def stop() -> None:
                server.stop_after = process

            call = Call(
                self.ctx,
                parsed.args,
                parsed.json,
                user=server.user,
                peer=str(server.peer),
                extras={
                    "sink": self._sink,
                    "reload": self._reload,
                    "sessions": self.sessions,
                    "commands": tuple(self.table),
                    "stop": stop,
                },
            )
            reply = await execute(parsed, call)
        except UsageError as exc:
            reply = Reply.failed(str(exc), EXIT_USAGE)
        except Exception as exc:
            self.log.exception("console command crashed", exc, command=line[:MAX_LINE], key=server.user)
            reply = Reply.failed(f"internal error: {type(exc).__name__}: {exc}")
        # On a terminal, errors go with the output: stderr would race the prompt.
        out = cast(TextIO, process.stdout)
        write_reply(reply, json_mode=want_json, out=out, err=out if tty else cast(TextIO, process.stderr))
        if reply.status != EXIT_OK:
            self.log.info("console command failed", command=line[:MAX_LINE], status=reply.status)
        return reply.status


# --------------------------------------------------------------------- opening


def read_keys(ctx: Context) -> AuthorizedKeys:
    """The authorized keys named by ``--console-keys`` (through the data device)."""
    files: list[DataFile] = ctx.data_files("console_keys")
    if not files:
        raise ConfigError(
            "--console-listen needs --console-keys FILE (no console without keys)", option="console_keys"
        )
    item = files[0]
    source = f"--console-keys {item.key}"
    try:
        if item.data.stat(item.key).size > MAX_KEYS_FILE:
            raise ValueError(f"{source}: larger than {MAX_KEYS_FILE} bytes")
        text = item.data.read(item.key).decode("utf-8")
        return AuthorizedKeys.parse(text, item.key)
    except (OSError, KeyError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"--console-keys: {exc}", option="console_keys") from None


def host_key_for(ctx: Context, state_dir: Path | None, log: Log) -> asyncssh.SSHKey:
    """``--console-host-key FILE``, else the key kept in the state directory,
    else (a target with no state, such as memory) a new key for this run."""
    files: list[DataFile] = ctx.data_files("console_host_key") if _declared(ctx, "console_host_key") else []
    if files:
        item = files[0]
        try:
            return import_host_key(item.data.read(item.key), f"--console-host-key {item.key}")
        except (OSError, KeyError, ValueError) as exc:
            raise ConfigError(f"--console-host-key: {exc}", option="console_host_key") from None
    if state_dir is None:
        log.warning("console host key is new for this run (no state directory to keep it in)")
        return new_host_key()
    try:
        key, made = load_or_create_host_key(state_dir)
    except (OSError, ValueError) as exc:
        raise DeviceError(f"console host key in {state_dir}: {exc}") from None
    if made:
        log.info("console host key made", path=str(state_dir), fingerprint=fingerprint(key))
    return key


def _declared(ctx: Context, option: str) -> bool:
    return option in ctx.options.declared


async def open_console(
    ctx: Context,
    net: Net,
    address: Address,
    *,
    log: Log,
    state_dir: Path | None,
    sink: Any = None,
    reload: Callable[[], Awaitable[list[str]]] | None = None,
    limits: ConsoleLimits | None = None,
    throttle: LoginThrottle | None = None,
) -> Console:
    """Read the keys, load or make the host key, bind the listener.  Raises
    ConfigError (bad keys) or DeviceError (address in use, state unwritable)."""
    keys = read_keys(ctx)
    host_key = host_key_for(ctx, state_dir, log)
    commands = [*BUILTIN_COMMANDS, *ctx.appliance.console, *ctx.appliance.commands]
    CommandTable(commands)  # a name declared twice fails here, at start
    limits = limits or ConsoleLimits()
    listener = await net.listen_tcp(
        address, limits=Limits(max_connections=limits.max_connections, idle_timeout=limits.idle_timeout)
    )
    console = Console(
        ctx,
        listener,
        keys,
        host_key,
        commands=commands,
        log=log,
        sink=sink,
        reload=reload,
        limits=limits,
        throttle=throttle,
    )
    return console
