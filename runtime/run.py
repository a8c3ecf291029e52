"""Running an appliance: options, loop, devices, signals, graceful stop, workers.

Exit codes, for supervisors (systemd ``RestartPreventExitStatus=2 3``,
Kubernetes restart policies):

    0  stopped as asked (signal, console ``stop``, or the appliance finished)
    1  the appliance or the runtime failed while running (traceback logged)
    2  bad command line, environment or config file (one line on stderr)
    3  a device could not be opened at start (one line per problem)

Signals: SIGTERM and SIGINT stop gracefully (stop accepting, drain in-flight
work for ``--drain-timeout``, then close); a second one cancels at once.
SIGHUP reloads: data directories are re-read, then the appliance's reload hooks
run, one reload at a time.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO, cast

from .ambient import SystemClock, SystemRandom
from .appliance import Appliance, Context
from .devices import Address, ListenerStats, Log
from .errors import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, EXIT_STARTUP, ConfigError, DeviceError, StartupError
from .kv import DirectoryData
from .lifecycle import Lifecycle
from .log import LogSink, capture_stdlib_logging
from .logoptions import LogFiles, parse_log_files, parse_log_levels
from .metrics import Registry, add_process_metrics
from .offline import run_offline, split_command
from .options import Options, parse_options
from .targets.base import Devices
from .workers import supervise

if TYPE_CHECKING:
    from .console.ssh import Console

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_STARTUP",
    "configure",
    "help_text",
    "main",
    "reload",
    "run",
    "run_process",
    "serve_appliance",
]


#: after the drain timeout, how much longer the runtime waits before cancelling
_STOP_GRACE = 5.0


def main(appliance: Appliance, argv: Sequence[str] | None = None) -> None:
    """``python -m appliances.NAME``: run and exit with the run's status."""
    sys.exit(run(appliance, sys.argv[1:] if argv is None else argv, os.environ))


def configure(
    appliance: Appliance,
    argv: Sequence[str],
    environ: Mapping[str, str],
    kernel_cmdline: str | None = None,
) -> Options:
    options = parse_options(appliance.name, appliance.all_options(), argv, environ, kernel_cmdline)
    if options.help:
        return options
    parse_log_levels(options.get("log_level"))
    parse_log_files(options.get("log_file"))
    if options.get("console_listen") is not None and not options.get("console_keys"):
        raise ConfigError(
            "--console-listen needs --console-keys FILE (no console without keys)", option="console_keys"
        )
    if options.get("workers") > 1:
        if not appliance.workers:
            raise ConfigError(f"--workers: {appliance.name} runs as a single process", option="workers")
        if any(addr.port == 0 for addr in options.get("listen") if "listen" in options.declared):
            raise ConfigError(
                "--workers > 1 needs fixed ports: port 0 would differ per worker", option="workers"
            )
    return options


def run(
    appliance: Appliance,
    argv: Sequence[str],
    environ: Mapping[str, str],
    *,
    kernel_cmdline: str | None = None,
    stderr: TextIO | None = None,
) -> int:
    err = stderr or sys.stderr
    option_argv, command = split_command(appliance, argv)
    try:
        options = configure(appliance, option_argv, environ, kernel_cmdline)
    except ConfigError as exc:
        print(f"{appliance.name}: {exc}", file=err)
        return EXIT_CONFIG
    if command is not None and not options.help:
        return run_offline(appliance, options, command, stderr=err)
    if options.help:
        print(help_text(appliance, options), file=sys.stdout)
        return EXIT_OK
    if options.get("version"):
        print(f"{appliance.name} {appliance.version}", file=sys.stdout)
        return EXIT_OK
    workers = options.get("workers")
    if workers > 1:
        return supervise(
            appliance, options, workers, err, lambda a, o, e, index: run_process(a, o, e, worker=index)
        )
    return run_process(appliance, options, err)


def run_process(appliance: Appliance, options: Options, err: TextIO, *, worker: int | None = None) -> int:
    """One process: pick the loop, open the host devices, serve until stopped."""
    from .targets.host import open_host_devices

    sink = LogSink(err, format=options.get("log_format"))
    for component, level in parse_log_levels(options.get("log_level")):
        sink.set_level(component, level)
    log = sink.logger(appliance.name)
    loop_factory = _loop_factory(options.get("loop"), log)
    log_files = LogFiles(sink, parse_log_files(options.get("log_file")))
    try:
        log_files.open()
    except OSError as exc:
        print(f"{appliance.name}: --log-file: cannot open {exc.filename}: {exc.strerror}", file=err)
        return EXIT_STARTUP

    async def start() -> int:
        lifecycle = Lifecycle()
        try:
            devices = await open_host_devices(
                appliance, options, lifecycle=lifecycle, log=log, reuse_port=worker is not None
            )
        except StartupError as exc:
            for problem in exc.problems:
                print(f"{appliance.name}: {problem}", file=err)
            return EXIT_STARTUP
        extras: dict[str, Any] = {"worker": worker, "log_sink": sink, "reopen_logs": log_files.open}
        return await serve_appliance(appliance, options, devices, lifecycle, log, sink=sink, extras=extras)

    bridge = capture_stdlib_logging(sink)
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(start())
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        bridge.close()
        log_files.close()


def _loop_factory(choice: str, log: Log) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if choice != "uvloop":
        return None
    try:
        import uvloop
    except ImportError:
        log.warning("uvloop is not installed; using the asyncio event loop (pip install uvloop)")
        return None
    return uvloop.new_event_loop


async def serve_appliance(
    appliance: Appliance,
    options: Options,
    devices: Devices,
    lifecycle: Lifecycle,
    log: Log,
    *,
    sink: LogSink | None = None,
    metrics: Registry | None = None,
    clock: Any = None,
    random: Any = None,
    extras: dict[str, Any] | None = None,
    signals: bool = True,
    on_context: Callable[[Context], None] | None = None,
) -> int:
    """Run ``appliance.main`` with ``devices`` until it finishes or is stopped.

    Owns every runtime task in one TaskGroup; closes the devices at the end.
    """
    registry = metrics or Registry()
    add_process_metrics(registry)
    _add_net_metrics(registry, devices)
    ctx = Context(
        appliance,
        options,
        lifecycle=lifecycle,
        log=log,
        metrics=registry,
        clock=clock or SystemClock(),
        random=random or SystemRandom(),
        net=devices.net,
        store=devices.store,
        data=devices.data,
        extras=dict(extras or {}, devices=devices, started=time.time()),
    )
    if on_context is not None:
        on_context(ctx)
    loop = asyncio.get_running_loop()
    reloads: asyncio.Queue[asyncio.Future[list[str]] | None] = asyncio.Queue()
    ctx.extras["reload"] = lambda: _queue_reload(reloads)
    status = EXIT_OK
    main_task: asyncio.Task[None] | None = None
    stop_signals = 0

    def on_stop_signal(signame: str) -> None:
        nonlocal stop_signals
        stop_signals += 1
        if stop_signals == 1:
            log.info("stopping", signal=signame, drain_timeout=options.get("drain_timeout"))
            lifecycle.request_stop()
        elif main_task is not None:
            log.warning("second stop signal, cancelling now", signal=signame)
            main_task.cancel()

    installed: list[int] = []
    if signals:
        for signum, handler in (
            (signal.SIGTERM, lambda: on_stop_signal("SIGTERM")),
            (signal.SIGINT, lambda: on_stop_signal("SIGINT")),
            (signal.SIGHUP, lambda: _queue_reload(reloads)),
        ):
            try:
                loop.add_signal_handler(signum, handler)
                installed.append(signum)
            except (NotImplementedError, RuntimeError, ValueError):
                pass

    try:
        async with asyncio.TaskGroup() as group:
            main_task = group.create_task(appliance.main(ctx), name=f"{appliance.name}.main")
            helpers = [
                group.create_task(_reloader(ctx, reloads, log)),
                group.create_task(_backstop(lifecycle, main_task, options.get("drain_timeout"), log)),
                group.create_task(give_back_memory()),
            ]
            metrics_at = options.get("metrics_listen") if "metrics_listen" in options.declared else None
            if metrics_at is not None and devices.service_net is not None:
                from .metrics_http import serve_metrics  # h11 and http only when it is on

                listener = await devices.service_net.listen_tcp(metrics_at)
                log.info("metrics", listen=str(listener.address))
                helpers.append(group.create_task(serve_metrics(listener, registry)))
            console_at = options.get("console_listen") if "console_listen" in options.declared else None
            if console_at is not None and devices.service_net is not None:
                console = await _open_console(
                    ctx, devices, console_at, log, sink, lambda: _queue_reload(reloads)
                )
                helpers.append(group.create_task(console.serve()))
            await asyncio.wait([main_task])
            lifecycle.request_stop()
            for helper in helpers:
                helper.cancel()
    except* ConfigError as config_error:
        # An option the appliance found wrong at start (it knows combinations
        # the option parser cannot check): one line, like any option error.
        for bad_option in config_error.exceptions:
            log.error(str(bad_option))
        status = EXIT_CONFIG
    except* DeviceError as device_error:
        # A device the appliance asked for at run time (a port in use): the
        # operator's to fix, so one line, no traceback.
        for problem in device_error.exceptions:
            log.error(str(problem))
        status = EXIT_STARTUP
    except* Exception as group_error:
        for exc in group_error.exceptions:
            log.exception("appliance failed", exc)
        status = EXIT_FAILURE
    finally:
        for installed_signal in installed:
            loop.remove_signal_handler(installed_signal)
        await devices.aclose()
    if status == EXIT_OK:
        log.info("stopped")
    return status


#: how often freed heap memory is handed back to the system
TRIM_INTERVAL = 5.0


def malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where there is none (musl, macOS)."""
    try:
        import ctypes

        return cast(Callable[[int], int], ctypes.CDLL(None).malloc_trim)
    except (ImportError, OSError, AttributeError):
        return None


async def give_back_memory(interval: float = TRIM_INTERVAL) -> None:
    """Every ``interval``, hand the pages of freed heap memory back to the
    system (in a thread: it walks the heap).  A burst (many connections at
    once, a big reload) otherwise leaves memory the allocator keeps: measured
    with 50 XMPP connections, 54 KiB each before a trim, 40 after."""
    await asyncio.sleep(interval)  # not during start-up
    trim = malloc_trim()
    if trim is None:
        return
    while True:
        await asyncio.to_thread(trim, 0)
        await asyncio.sleep(interval)


async def _open_console(
    ctx: Context,
    devices: Devices,
    address: Address,
    log: Log,
    sink: LogSink | None,
    reload: Callable[[], Awaitable[list[str]]],
) -> Console:
    """Bind the SSH console (asyncssh is imported only when it is switched on)."""
    from .console.ssh import open_console

    assert devices.service_net is not None
    console = await open_console(
        ctx,
        devices.service_net,
        address,
        log=log.child("console"),
        state_dir=devices.state_dir,
        sink=sink,
        reload=reload,
    )
    ctx.on_reload(console.reload_keys)
    log.info("console", listen=str(console.address), host_key_sha256=console.host_key_fingerprint)
    return console


def _add_net_metrics(registry: Registry, devices: Devices) -> None:
    """Per-listener and per-endpoint counts, read from the net device at render time."""
    active = registry.gauge("runtime_connections", "Open stream connections.", labels=("listener",))
    accepted = registry.counter(
        "runtime_connections_accepted_total", "Accepted connections.", labels=("listener",)
    )
    crashed = registry.counter(
        "runtime_handler_errors_total", "Connection or datagram handlers that raised.", labels=("endpoint",)
    )
    datagrams = registry.counter("runtime_datagrams_total", "Datagrams received.", labels=("endpoint",))

    def collect() -> None:
        for item in getattr(devices.net, "owned", ()):
            stats = item.statistics()
            name = str(stats.address)
            if isinstance(stats, ListenerStats):
                active.labels(name).set(stats.active)
                accepted.labels(name).set_total(stats.accepted)
                crashed.labels(name).set_total(stats.handler_errors)
            else:
                datagrams.labels(name).set_total(stats.received)
                crashed.labels(name).set_total(stats.handler_errors)

    registry.add_collector(collect)


def _queue_reload(queue: asyncio.Queue[asyncio.Future[list[str]] | None]) -> asyncio.Future[list[str]]:
    done: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
    queue.put_nowait(done)
    return done


async def _reloader(ctx: Context, queue: asyncio.Queue[asyncio.Future[list[str]] | None], log: Log) -> None:
    while True:
        done = await queue.get()
        problems = await reload(ctx)
        if done is not None and not done.done():
            done.set_result(problems)


async def reload(ctx: Context) -> list[str]:
    """Re-read data directories, then run the appliance's hooks.  Returns one
    line per problem (also logged); an empty list means the reload took."""
    log = ctx.log
    problems: list[str] = []
    reopen_logs = ctx.extras.get("reopen_logs")
    if reopen_logs is not None:
        try:
            reopen_logs()  # after log rotation, write to the new files
        except OSError as exc:
            problems.append(f"--log-file: cannot reopen {exc.filename}: {exc.strerror}")
    devices: Devices | None = ctx.extras.get("devices")
    if devices is not None:
        mounted = list(devices.data.values()) + [f.data for files in devices.files.values() for f in files]
        for data in {id(d): d for d in mounted}.values():
            if isinstance(data, DirectoryData):
                try:
                    data.refresh()
                except OSError as exc:
                    problems.append(f"data {data.name!r}: {exc}")
    for hook in ctx.reload_hooks:
        try:
            result = hook()
            if isinstance(result, Awaitable):
                await result
        except Exception as exc:
            log.exception("reload hook failed", exc)
            problems.append(f"{type(exc).__name__}: {exc}")
    if problems:
        log.warning("reload finished with problems", problems=len(problems))
    else:
        log.info("reloaded")
    return problems


async def _backstop(lifecycle: Lifecycle, main_task: asyncio.Task[None], drain: float, log: Log) -> None:
    await lifecycle.wait_stopping()
    await asyncio.wait([main_task], timeout=drain + _STOP_GRACE)
    if not main_task.done():
        log.warning("appliance did not stop within the drain timeout; cancelling", drain_timeout=drain)
        main_task.cancel()


def help_text(appliance: Appliance, options: Options) -> str:
    lines = [
        f"{appliance.name} {appliance.version}: {appliance.summary}",
        "",
        f"usage: python -m appliances.{appliance.name} [OPTIONS]",
        "",
        "options (value now, and its source):",
    ]
    for option in options.declared.values():
        metavar = "" if option.kind.name == "true/false" else f" {option.metavar or option.kind.name.upper()}"
        setting = options.settings[option.name]
        lines.append(f"  {option.flag}{metavar}")
        lines.append(f"      {option.help}")
        env = option.env_name(appliance.name)
        lines.append(f"      = {option.show(setting.value)}   [{setting.source}; env {env}]")
    if appliance.commands:
        lines += ["", f"commands (python -m appliances.{appliance.name} [OPTIONS] COMMAND [ARGS] [--json]):"]
        lines += [f"  {command.usage_line:<30} {command.help}" for command in appliance.commands]
    lines.append("")
    lines.append("exit status: 0 stopped, 1 failed, 2 bad configuration, 3 a device could not be opened")
    return "\n".join(lines)
