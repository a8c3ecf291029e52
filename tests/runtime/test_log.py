"""The log device: formats, levels, the tail ring, failure handling, the stdlib bridge."""

from __future__ import annotations

import io
import json
import logging
import math
import sys
import threading
from collections.abc import Iterator

import pytest

from runtime.devices import Log
from runtime.log import (
    LEVELS,
    MAX_VALUE_CHARS,
    LogSink,
    LogStats,
    MemoryLogSink,
    capture_stdlib_logging,
    parse_level,
)
from runtime.testing.conformance.log import (
    LogConformance,
    LogHarness,
    read_json_lines,
    read_memory_records,
    read_text_lines,
)

#: 2026-11-28T18:49:31.123Z
T0 = 1795891771.123


class ManualClock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# --------------------------------------------------------------------- conformance


class TestTextSink(LogConformance):
    @pytest.fixture
    def log_harness(self) -> LogHarness:
        out = io.StringIO()
        sink = LogSink(out, format="text", clock=ManualClock())
        return LogHarness(sink.logger, sink.set_level, lambda: read_text_lines(out.getvalue()))


class TestJsonSink(LogConformance):
    @pytest.fixture
    def log_harness(self) -> LogHarness:
        out = io.StringIO()
        sink = LogSink(out, format="json", clock=ManualClock())
        return LogHarness(sink.logger, sink.set_level, lambda: read_json_lines(out.getvalue()))


class TestStderrSink(LogConformance):
    """The default output is whatever ``sys.stderr`` is at the time of the write."""

    @pytest.fixture
    def log_harness(self, capsys: pytest.CaptureFixture[str]) -> LogHarness:
        sink = LogSink(clock=ManualClock())
        return LogHarness(sink.logger, sink.set_level, lambda: read_text_lines(capsys.readouterr().err))


class TestMemorySink(LogConformance):
    @pytest.fixture
    def log_harness(self) -> LogHarness:
        sink = MemoryLogSink(level="info", clock=ManualClock())
        return LogHarness(sink.logger, sink.set_level, lambda: read_memory_records(sink))


# --------------------------------------------------------------------- formats


def test_text_line_exact() -> None:
    out = io.StringIO()
    sink = LogSink(out, clock=ManualClock())
    sink.logger("dns").info("serving zone", origin="example.org.", records=12)
    sink.logger("dns").child("zone").warning("odd", note="two words", q='say "x"', eq="a=b", nl="a\nb", e="")
    assert out.getvalue() == (
        "2026-11-28T18:49:31.123Z INFO  dns: serving zone origin=example.org. records=12\n"
        "2026-11-28T18:49:31.123Z WARN  dns.zone: odd "
        'note="two words" q="say \\"x\\"" eq="a=b" nl="a\\nb" e=""\n'
    )


def test_text_level_columns() -> None:
    out = io.StringIO()
    sink = LogSink(out, level="debug", clock=ManualClock())
    log = sink.logger("a")
    log.debug("m")
    log.info("m")
    log.warning("m")
    log.error("m")
    assert [line[25:36] for line in out.getvalue().splitlines()] == [
        "DEBUG a: m",
        "INFO  a: m",
        "WARN  a: m",
        "ERROR a: m",
    ]


def test_text_message_is_quoted_only_when_it_would_be_ambiguous() -> None:
    out = io.StringIO()
    log = LogSink(out, clock=ManualClock()).logger("a")
    log.info("plain words")
    log.info("x=1")
    log.info("")
    log.info("two\nlines")
    assert [line[34:] for line in out.getvalue().splitlines()] == [
        "plain words",
        '"x=1"',
        '""',
        '"two\\nlines"',
    ]


def test_text_escapes_terminal_controls() -> None:
    out = io.StringIO()
    LogSink(out, clock=ManualClock()).logger("a").info("m", v="\x1b[2J", u="nb\xa0sp", ls="a\u2028b")
    assert out.getvalue().endswith(' v="\\x1b[2J" u="nb\\xa0sp" ls="a\\u2028b"\n')


def test_text_exception_lines_are_indented() -> None:
    out = io.StringIO()
    sink = LogSink(out, clock=ManualClock())
    # An exception that was never raised has no frames: its traceback is one line.
    sink.logger("dns").exception("load failed", ValueError("bad\nzone"), file="z.db")
    assert out.getvalue() == (
        "2026-11-28T18:49:31.123Z ERROR dns: load failed file=z.db\n    ValueError: bad\n    zone\n"
    )
    assert sink.tail(1) == [out.getvalue().rstrip("\n")]


def test_json_line_exact() -> None:
    out = io.StringIO()
    sink = LogSink(out, format="json", clock=ManualClock())
    sink.logger("dns").info("serving zone", origin="example.org.", records=12, ok=True, none=None)
    assert out.getvalue() == (
        '{"ts": "2026-11-28T18:49:31.123Z", "level": "info", "component": "dns", "msg": "serving zone", '
        '"origin": "example.org.", "records": 12, "ok": true, "none": null}\n'
    )


def test_json_exception_field() -> None:
    out = io.StringIO()
    LogSink(out, format="json", clock=ManualClock()).logger("dns").exception("x", KeyError("k"))
    assert json.loads(out.getvalue()) == {
        "ts": "2026-11-28T18:49:31.123Z",
        "level": "error",
        "component": "dns",
        "msg": "x",
        "exc": "KeyError: 'k'",
    }


def test_json_odd_values() -> None:
    class Thing:
        def __str__(self) -> str:
            return "a thing"

    out = io.StringIO()
    LogSink(out, format="json", clock=ManualClock()).logger("a").info(
        "m", obj=Thing(), nan=math.nan, inf=-math.inf, items=[1, "two"], bad=[math.nan], raw=b"\x00"
    )
    record = json.loads(out.getvalue())
    assert record["obj"] == "a thing"
    assert (record["nan"], record["inf"]) == ("nan", "-inf")
    assert record["items"] == [1, "two"]
    assert record["bad"] == "[nan]"
    assert record["raw"] == "b'\\x00'"


def test_json_is_ascii_so_no_unicode_line_break_splits_it() -> None:
    out = io.StringIO()
    LogSink(out, format="json", clock=ManualClock()).logger("a").info("名前", v="a\u2028b\x85c")
    assert out.getvalue().isascii()
    assert out.getvalue().endswith('"msg": "\\u540d\\u524d", "v": "a\\u2028b\\u0085c"}\n')
    assert read_json_lines(out.getvalue())[0]["fields"] == {"v": "a\u2028b\x85c"}


def test_json_fields_cannot_overwrite_the_record_keys() -> None:
    out = io.StringIO()
    LogSink(out, format="json", clock=ManualClock()).logger("a").info(
        "m", ts=1, level="x", component="y", exc="z"
    )
    record = json.loads(out.getvalue())
    assert (record["ts"], record["level"], record["component"]) == ("2026-11-28T18:49:31.123Z", "info", "a")
    assert (record["ts_"], record["level_"], record["component_"], record["exc_"]) == (1, "x", "y", "z")


def test_timestamps_follow_the_clock() -> None:
    clock = ManualClock(T0)
    out = io.StringIO()
    log = LogSink(out, clock=clock).logger("a")
    log.info("m")
    clock.t = T0 + 0.8769  # .9999 rounds to .000 of the next second
    log.info("m")
    clock.t = 0.0
    log.info("m")
    clock.t = 1e9 + 0.5
    log.info("m")
    assert [line[:24] for line in out.getvalue().splitlines()] == [
        "2026-11-28T18:49:31.123Z",
        "2026-11-28T18:49:32.000Z",
        "1970-01-01T00:00:00.000Z",
        "2001-09-09T01:46:40.500Z",
    ]


def test_long_values_are_cut() -> None:
    out = io.StringIO()
    LogSink(out, clock=ManualClock()).logger("a").info("m", big="x" * (MAX_VALUE_CHARS + 10))
    [record] = read_text_lines(out.getvalue())
    assert record["fields"]["big"] == "x" * MAX_VALUE_CHARS + "...[+10 chars]"


def test_odd_field_names_stay_parseable() -> None:
    out = io.StringIO()
    LogSink(out, clock=ManualClock()).logger("a").info("m", **{"a b": 1, "c=d": 2, "": 3})
    assert read_text_lines(out.getvalue())[0]["fields"] == {"a_b": "1", "c_d": "2", "_": "3"}


# --------------------------------------------------------------------- levels


def test_parse_level() -> None:
    assert [parse_level(name) for name in ("DEBUG", "Info", " warning ", "warn", "ERROR")] == [
        "debug",
        "info",
        "warning",
        "warning",
        "error",
    ]
    assert LEVELS == ("debug", "info", "warning", "error")
    expected = r"^unknown log level 'trace'; expected one of: debug, info, warning, error$"
    with pytest.raises(ValueError, match=expected):
        parse_level("trace")


def test_levels_table() -> None:
    sink = LogSink(io.StringIO(), level="warning", levels={"dns": "debug"})
    sink.logger("dns").child("zone")
    sink.logger("web")
    sink.set_level("web.static", "error")
    assert sink.levels() == {
        "": "warning",
        "dns": "debug",
        "dns.zone": "debug",
        "web": "warning",
        "web.static": "error",
    }
    assert sink.level_of("dns.zone.deep") == "debug"
    sink.set_level("dns", None)
    assert sink.levels()["dns.zone"] == "warning"
    sink.set_level("", "INFO")
    assert sink.levels()["dns"] == "info"


def test_root_level_cannot_be_removed() -> None:
    sink = LogSink(io.StringIO())
    with pytest.raises(ValueError, match="root"):
        sink.set_level("", None)


@pytest.mark.parametrize("component", ["", "a..b", ".a", "a.", "has space", "colon:", 'quote"'])
def test_bad_components_are_refused(component: str) -> None:
    sink = LogSink(io.StringIO())
    with pytest.raises(ValueError, match="bad log component"):
        sink.logger(component)
    if component:
        with pytest.raises(ValueError, match="bad log component"):
            sink.set_level(component, "info")


def test_bad_sink_settings() -> None:
    with pytest.raises(ValueError, match="unknown log format 'xml'"):
        LogSink(io.StringIO(), format="xml")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown log level"):
        LogSink(io.StringIO(), level="loud")
    with pytest.raises(ValueError, match="unknown log level"):
        LogSink(io.StringIO(), levels={"dns": "loud"})
    with pytest.raises(ValueError, match="unknown log level"):
        LogSink(io.StringIO()).set_level("dns", "loud")


def test_enabled_resolves_the_level_once_per_change(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = LogSink(io.StringIO())
    log = sink.logger("dns").child("zone")
    calls = []
    resolve = sink.effective_level_number

    def counting(component: str) -> int:
        calls.append(component)
        return resolve(component)

    monkeypatch.setattr(sink, "effective_level_number", counting)
    for _ in range(100):
        log.enabled("debug")
        log.debug("suppressed")
    assert calls == ["dns.zone"]
    sink.set_level("dns", "debug")
    for _ in range(100):
        log.enabled("debug")
    assert calls == ["dns.zone", "dns.zone"]


def test_suppressed_call_writes_and_formats_nothing() -> None:
    class Exploding:
        def __str__(self) -> str:
            raise AssertionError("formatted a suppressed record")

    out = io.StringIO()
    sink = LogSink(out, level="error")
    log = sink.logger("a")
    log.debug("x", v=Exploding())
    log.info("x", v=Exploding())
    log.warning("x", v=Exploding())
    assert out.getvalue() == ""
    assert sink.tail(10) == []
    assert sink.statistics() == LogStats(lines=0, dropped=0)


# --------------------------------------------------------------------- tail ring


def test_tail_keeps_the_last_n() -> None:
    sink = LogSink(io.StringIO(), tail_lines=3, clock=ManualClock())
    log = sink.logger("a")
    for i in range(5):
        log.info(f"line {i}")
    assert [line[34:] for line in sink.tail(10)] == ["line 2", "line 3", "line 4"]
    assert [line[34:] for line in sink.tail(2)] == ["line 3", "line 4"]
    assert sink.tail(0) == []
    assert sink.tail(-1) == []


def test_tail_of_json_sink_holds_json_lines() -> None:
    sink = LogSink(io.StringIO(), format="json", clock=ManualClock())
    sink.logger("a").info("m")
    assert json.loads(sink.tail(1)[0])["msg"] == "m"


def test_tail_can_be_disabled() -> None:
    sink = LogSink(io.StringIO(), tail_lines=0)
    sink.logger("a").info("m")
    assert sink.tail(5) == []
    with pytest.raises(ValueError):
        LogSink(io.StringIO(), tail_lines=-1)


# --------------------------------------------------------------------- broken output


class BrokenPipeStream(io.StringIO):
    def write(self, s: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


class AsciiOnly(io.StringIO):
    def write(self, s: str) -> int:
        s.encode("ascii")
        return super().write(s)


def test_closed_output_drops_and_counts() -> None:
    out = io.StringIO()
    sink = LogSink(out, clock=ManualClock())
    log = sink.logger("a")
    log.info("kept")
    out.close()
    log.info("lost")
    log.exception("lost too", ValueError("x"))
    assert sink.dropped == 2
    assert sink.statistics() == LogStats(lines=1, dropped=2)
    assert [line[34:] for line in sink.tail(5)] == ["kept", "lost", "lost too\n    ValueError: x"]


def test_broken_pipe_and_encoding_errors_are_dropped() -> None:
    sink = LogSink(BrokenPipeStream())
    sink.logger("a").error("m")
    ascii_sink = LogSink(AsciiOnly())
    ascii_sink.logger("a").info("ok")
    ascii_sink.logger("a").info("名前")
    assert (sink.dropped, ascii_sink.statistics()) == (1, LogStats(lines=1, dropped=1))


def test_missing_stderr_is_a_drop(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = LogSink()
    monkeypatch.setattr(sys, "stderr", None)
    sink.logger("a").error("m")
    assert sink.dropped == 1


# --------------------------------------------------------------------- memory sink


def test_memory_sink_keeps_raw_values() -> None:
    sink = MemoryLogSink(clock=ManualClock())
    exc = OSError("disk")
    log = sink.logger("store")
    log.debug("opened", path="/var/x", size=10)
    log.exception("write failed", exc, key="k")
    assert sink.records == [
        {
            "ts": T0,
            "level": "debug",
            "component": "store",
            "msg": "opened",
            "fields": {"path": "/var/x", "size": 10},
            "exc": None,
        },
        {
            "ts": T0,
            "level": "error",
            "component": "store",
            "msg": "write failed",
            "fields": {"key": "k"},
            "exc": exc,
        },
    ]
    assert sink.tail(1) == ["2026-11-28T18:49:31.123Z ERROR store: write failed key=k\n    OSError: disk"]
    sink.clear()
    assert sink.records == [] and sink.tail(5) == []


def test_memory_sink_is_bounded() -> None:
    sink = MemoryLogSink(max_records=2)
    log = sink.logger("a")
    for i in range(3):
        log.info("m", i=i)
    assert [r["fields"]["i"] for r in sink.records] == [1, 2]


def test_logger_satisfies_the_protocol() -> None:
    log = LogSink(io.StringIO()).logger("a")
    assert isinstance(log, Log)
    assert repr(log) == "<Logger a>"


# --------------------------------------------------------------------- stdlib bridge


@pytest.fixture
def clean_root_logger() -> Iterator[logging.Logger]:
    # pytest adds and removes its own handlers around each test phase: look only for ours.
    root = logging.getLogger()
    level = root.level
    yield root
    assert root.level == level
    assert not [h for h in root.handlers if type(h).__module__ == "runtime.log"], "a capture leaked"


def test_stdlib_records_arrive_under_lib(clean_root_logger: logging.Logger) -> None:
    sink = MemoryLogSink()
    with capture_stdlib_logging(sink):
        library = logging.getLogger("asyncssh.connection")
        library.info("below the bridge level")
        library.warning("host key for %s changed", "example.org")
        try:
            raise ConnectionResetError("peer went away")
        except ConnectionResetError:
            library.exception("lost connection")
        logging.getLogger().error("from the root")
    logging.getLogger("asyncssh").error("after close")
    assert [(r["level"], r["component"], r["msg"]) for r in sink.records] == [
        ("warning", "lib.asyncssh.connection", "host key for example.org changed"),
        ("error", "lib.asyncssh.connection", "lost connection"),
        ("error", "lib.root", "from the root"),
    ]
    assert isinstance(sink.records[1]["exc"], ConnectionResetError)


def test_stdlib_bridge_lowers_the_root_level_and_restores_it(clean_root_logger: logging.Logger) -> None:
    sink = MemoryLogSink()
    capture = capture_stdlib_logging(sink, level="DEBUG")
    try:
        logging.getLogger("some.lib").debug("detail %d", 1)
        logging.getLogger("some.lib").log(25, "between info and warning")
        logging.getLogger("some.lib").critical("very bad")
    finally:
        capture.close()
    capture.close()  # closing twice is harmless
    assert [(r["level"], r["msg"]) for r in sink.records] == [
        ("debug", "detail 1"),
        ("info", "between info and warning"),
        ("error", "very bad"),
    ]


def test_stdlib_bridge_obeys_the_sink_levels(clean_root_logger: logging.Logger) -> None:
    sink = MemoryLogSink(level="warning", levels={"lib.noisy": "error"})
    with capture_stdlib_logging(sink, level="info"):
        logging.getLogger("noisy").warning("hidden")
        logging.getLogger("quiet").info("hidden too")
        logging.getLogger("quiet").warning("shown")
    assert [r["msg"] for r in sink.records] == ["shown"]


def test_stdlib_bridge_odd_names_and_bad_formats(clean_root_logger: logging.Logger) -> None:
    sink = MemoryLogSink()
    with capture_stdlib_logging(sink) as capture:
        logging.getLogger("my lib:v2..x").warning("odd name")
        # A bad %-format trips the stdlib's own handlers (pytest's too): hand it to ours alone.
        bad = logging.LogRecord("fmt", logging.WARNING, __file__, 1, "needs %d args %d", (1,), None)
        capture._handler.handle(bad)
    assert [r["component"] for r in sink.records] == ["lib.my_lib_v2.x", "lib.fmt"]
    assert sink.records[1]["msg"] == "needs %d args %d (1,)"


def test_stdlib_bridge_level_is_checked() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        capture_stdlib_logging(MemoryLogSink(), level="chatty")


def test_records_from_threads_stay_whole(clean_root_logger: logging.Logger) -> None:
    # Libraries log from executor threads through the bridge; lines must not interleave.
    out = io.StringIO()
    sink = LogSink(out, clock=ManualClock())
    with capture_stdlib_logging(sink):

        def work(n: int) -> None:
            library = logging.getLogger(f"worker{n}")
            for i in range(200):
                library.warning("step %d of worker %d", i, n)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    records = read_text_lines(out.getvalue())
    assert len(records) == 800
    assert sorted(r["msg"] for r in records) == sorted(
        f"step {i} of worker {n}" for n in range(4) for i in range(200)
    )


def test_routes_send_a_component_and_its_children_elsewhere_bare() -> None:
    import io

    main, routed = io.StringIO(), io.StringIO()
    sink = LogSink(main, clock=lambda: 0.0)
    sink.route("web.access", routed)
    sink.logger("web.access").info('1.2.3.4 - - "GET / HTTP/1.1" 200 5')
    sink.logger("web.access.tls").info("handshake", peer="1.2.3.4")
    sink.logger("web").info("ready")
    assert routed.getvalue() == '1.2.3.4 - - "GET / HTTP/1.1" 200 5\nhandshake peer=1.2.3.4\n'
    assert main.getvalue() == "1970-01-01T00:00:00.000Z INFO  web: ready\n"
    assert sink.tail(10) == ["1970-01-01T00:00:00.000Z INFO  web: ready"]
    sink.route("web.access", None)
    sink.logger("web.access").info("back")
    assert main.getvalue().endswith("INFO  web.access: back\n")


def test_routes_in_json_keep_the_whole_record() -> None:
    import io
    import json

    main, routed = io.StringIO(), io.StringIO()
    sink = LogSink(main, format="json", clock=lambda: 0.0)
    sink.route("web.access", routed)
    sink.logger("web.access").info("request", status=200)
    assert json.loads(routed.getvalue()) == {
        "ts": "1970-01-01T00:00:00.000Z",
        "level": "info",
        "component": "web.access",
        "msg": "request",
        "status": 200,
    }
    assert main.getvalue() == ""
