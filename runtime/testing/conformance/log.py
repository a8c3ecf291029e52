"""Conformance suite for the ``Log`` device.

Subclass ``LogConformance`` and provide a ``log_harness`` fixture returning a
``LogHarness``: a way to get a ``Log`` for a component, a way to set a
component's level (``""`` is the root; the harness starts at root level
``info``), and a way to read back what was logged as ``CapturedRecord`` dicts.
Readers for the two line formats and for the memory sink are here too, so a
new implementation only has to say where its lines go.
"""

from __future__ import annotations

import json
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypedDict

import pytest

from ...devices import Log
from ...log import MemoryLogSink

__all__ = [
    "CapturedRecord",
    "LogConformance",
    "LogHarness",
    "as_text",
    "read_json_lines",
    "read_memory_records",
    "read_text_lines",
]


class CapturedRecord(TypedDict):
    level: str
    component: str
    msg: str
    #: field values as text (see ``as_text``): the common ground of all formats
    fields: dict[str, str]
    #: the traceback text of an exception, if one was logged
    exc: str | None


@dataclass(frozen=True)
class LogHarness:
    logger: Callable[[str], Log]
    set_level: Callable[[str, str | None], None]
    records: Callable[[], list[CapturedRecord]]


def as_text(value: object) -> str:
    """How a field value reads once written: JSON scalars as JSON spells them."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    try:
        return str(value)
    except Exception:
        return "<unprintable>"


# --------------------------------------------------------------------- readers

_TEXT_HEAD = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (DEBUG|INFO |WARN |ERROR) ([^ :]+): ")
_TEXT_LEVELS = {"DEBUG": "debug", "INFO ": "info", "WARN ": "warning", "ERROR": "error"}
_UNESCAPES = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t"}
_HEX_WIDTH = {"x": 2, "u": 4, "U": 8}


def _unescape(text: str) -> str:
    out = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "\\":
            out.append(char)
            i += 1
            continue
        code = text[i + 1]
        if code in _UNESCAPES:
            out.append(_UNESCAPES[code])
            i += 2
        elif code in _HEX_WIDTH:
            width = _HEX_WIDTH[code]
            out.append(chr(int(text[i + 2 : i + 2 + width], 16)))
            i += 2 + width
        else:
            raise ValueError(f"bad escape \\{code} in {text!r}")
    return "".join(out)


def _quoted(text: str, start: int) -> tuple[str, int]:
    """The quoted string at ``text[start]`` (a '"'), unescaped, and the index after it."""
    i = start + 1
    while text[i] != '"':
        i += 2 if text[i] == "\\" else 1
    return _unescape(text[start + 1 : i]), i + 1


def _text_record(line: str) -> CapturedRecord:
    head = _TEXT_HEAD.match(line)
    if head is None:
        raise ValueError(f"not a log line: {line!r}")
    rest, at = line, head.end()
    if rest[at : at + 1] == '"':
        msg, at = _quoted(rest, at)
    else:
        # An unquoted message has no '=': the first '=' belongs to the first field,
        # whose key starts after the last space before it.
        eq = rest.find("=", at)
        end = len(rest) if eq < 0 else rest.rfind(" ", at, eq)
        msg, at = rest[at:end], end
    fields: dict[str, str] = {}
    while at < len(rest):
        if rest[at] != " ":
            raise ValueError(f"expected a space at {at} in {line!r}")
        eq = rest.index("=", at)
        key = rest[at + 1 : eq]
        if rest[eq + 1 : eq + 2] == '"':
            fields[key], at = _quoted(rest, eq + 1)
        else:
            end = rest.find(" ", eq)
            end = len(rest) if end < 0 else end
            fields[key], at = rest[eq + 1 : end], end
    return {
        "level": _TEXT_LEVELS[head.group(2)],
        "component": head.group(3),
        "msg": msg,
        "fields": fields,
        "exc": None,
    }


def read_text_lines(text: str) -> list[CapturedRecord]:
    """Records of the text format; indented lines are the previous record's traceback."""
    records: list[CapturedRecord] = []
    for line in text.split("\n")[:-1]:
        if line.startswith("    "):
            last = records[-1]
            last["exc"] = line[4:] if last["exc"] is None else f"{last['exc']}\n{line[4:]}"
        else:
            records.append(_text_record(line))
    return records


def read_json_lines(text: str) -> list[CapturedRecord]:
    records: list[CapturedRecord] = []
    for line in text.split("\n")[:-1]:
        obj: dict[str, Any] = json.loads(line)
        core = {key: obj.pop(key) for key in ("ts", "level", "component", "msg")}
        exc = obj.pop("exc", None)
        records.append(
            {
                "level": core["level"],
                "component": core["component"],
                "msg": core["msg"],
                "fields": {key: as_text(value) for key, value in obj.items()},
                "exc": exc,
            }
        )
    return records


def read_memory_records(sink: MemoryLogSink) -> list[CapturedRecord]:
    return [
        {
            "level": record["level"],
            "component": record["component"],
            "msg": record["msg"],
            "fields": {key: as_text(value) for key, value in record["fields"].items()},
            "exc": None
            if record["exc"] is None
            else "".join(traceback.format_exception(record["exc"])).rstrip("\n"),
        }
        for record in sink.records
    ]


# --------------------------------------------------------------------- the suite


class _Counting:
    """A field value that counts how often it is turned into text."""

    def __init__(self) -> None:
        self.calls = 0

    def __str__(self) -> str:
        self.calls += 1
        return "counted"

    __repr__ = __str__


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text for you")

    __repr__ = __str__


# Values that a line format must carry without breaking a line or a field apart.
AWKWARD_VALUES = [
    "",
    "plain",
    "two words",
    'say "hi"',
    "a=b",
    "back\\slash",
    "line\nbreak",
    "carriage\rreturn",
    "tab\there",
    " padded ",
    "\x1b[31mred\x1b[0m",
    "unicode é ü 名前",
    "sep\u2028arator",
    '\\" tricky \\n',
]

AWKWARD_MESSAGES = ["", "plain message", "has = sign", 'has "quotes"', " leading", "trailing ", "two\nlines"]


class LogConformance:
    """Behaviour every ``Log`` implementation shares."""

    def records(self, harness: LogHarness) -> list[CapturedRecord]:
        return harness.records()

    def test_is_a_log(self, log_harness: LogHarness) -> None:
        assert isinstance(log_harness.logger("app"), Log)

    def test_component_and_children(self, log_harness: LogHarness) -> None:
        log = log_harness.logger("dns")
        assert log.component == "dns"
        assert log.child("zone").component == "dns.zone"
        assert log.child("zone").child("load").component == "dns.zone.load"

    def test_record_has_level_component_message_and_fields(self, log_harness: LogHarness) -> None:
        log_harness.logger("dns").info("serving zone", origin="example.org.", records=12)
        assert self.records(log_harness) == [
            {
                "level": "info",
                "component": "dns",
                "msg": "serving zone",
                "fields": {"origin": "example.org.", "records": "12"},
                "exc": None,
            }
        ]

    def test_child_logs_under_its_own_component(self, log_harness: LogHarness) -> None:
        log_harness.logger("dns").child("zone").warning("stale")
        [record] = self.records(log_harness)
        assert (record["level"], record["component"], record["msg"]) == ("warning", "dns.zone", "stale")

    def test_field_order_is_kept(self, log_harness: LogHarness) -> None:
        log_harness.logger("app").info("m", zeta=1, alpha=2, mid=3)
        assert list(self.records(log_harness)[0]["fields"]) == ["zeta", "alpha", "mid"]

    @pytest.mark.parametrize(
        ("level", "emitted"),
        [
            ("debug", ["debug", "info", "warning", "error"]),
            ("info", ["info", "warning", "error"]),
            ("warning", ["warning", "error"]),
            ("error", ["error"]),
        ],
    )
    def test_level_filters_and_enabled_agrees(
        self, log_harness: LogHarness, level: str, emitted: list[str]
    ) -> None:
        log_harness.set_level("", level)
        log = log_harness.logger("app")
        log.debug("d")
        log.info("i")
        log.warning("w")
        log.error("e")
        assert [r["level"] for r in self.records(log_harness)] == emitted
        assert [name for name in ("debug", "info", "warning", "error") if log.enabled(name)] == emitted

    def test_enabled_takes_any_case_and_rejects_unknown_levels(self, log_harness: LogHarness) -> None:
        log = log_harness.logger("app")
        assert log.enabled("INFO") and log.enabled("Warning") and not log.enabled("DEBUG")
        with pytest.raises(ValueError, match="debug, info, warning, error"):
            log.enabled("verbose")

    def test_children_inherit_by_dotted_prefix(self, log_harness: LogHarness) -> None:
        log_harness.set_level("dns", "debug")
        dns = log_harness.logger("dns")
        assert dns.child("zone").child("load").enabled("debug")
        assert not log_harness.logger("dnsx").enabled("debug")  # a prefix is a whole segment
        assert not log_harness.logger("web").enabled("debug")
        log_harness.set_level("dns.zone", "error")
        assert not dns.child("zone").enabled("warning")
        assert dns.child("zone").child("load").enabled("error")
        assert not dns.child("zone").child("load").enabled("warning")
        assert dns.enabled("debug")

    def test_level_changes_reach_existing_loggers(self, log_harness: LogHarness) -> None:
        log = log_harness.logger("dns").child("zone")
        assert not log.enabled("debug")
        log.debug("hidden")
        log_harness.set_level("dns", "debug")
        log.debug("shown")
        log_harness.set_level("", "error")
        log_harness.set_level("dns", None)
        log.warning("hidden again")
        log.error("shown again")
        assert [r["msg"] for r in self.records(log_harness)] == ["shown", "shown again"]

    def test_suppressed_calls_do_not_format_their_fields(self, log_harness: LogHarness) -> None:
        value = _Counting()
        log = log_harness.logger("app")
        log.debug("not at info", value=value)
        assert value.calls == 0
        assert self.records(log_harness) == []

    @pytest.mark.parametrize("value", AWKWARD_VALUES)
    def test_field_values_come_back_whole(self, log_harness: LogHarness, value: str) -> None:
        log_harness.logger("app").info("m", value=value, after="x")
        [record] = self.records(log_harness)
        assert record["fields"] == {"value": value, "after": "x"}

    @pytest.mark.parametrize("msg", AWKWARD_MESSAGES)
    def test_messages_come_back_whole(self, log_harness: LogHarness, msg: str) -> None:
        log_harness.logger("app").info(msg, k="v")
        [record] = self.records(log_harness)
        assert (record["msg"], record["fields"]) == (msg, {"k": "v"})

    def test_scalar_values(self, log_harness: LogHarness) -> None:
        log_harness.logger("app").info("m", n=-3, f=0.25, yes=True, no=False, none=None)
        assert self.records(log_harness)[0]["fields"] == {
            "n": "-3",
            "f": "0.25",
            "yes": "true",
            "no": "false",
            "none": "null",
        }

    def test_unprintable_value_does_not_raise(self, log_harness: LogHarness) -> None:
        log_harness.logger("app").warning("m", bad=_Unprintable(), good=1)
        [record] = self.records(log_harness)
        assert record["fields"]["good"] == "1"
        assert "bad" in record["fields"]

    def test_exception_is_an_error_with_its_traceback(self, log_harness: LogHarness) -> None:
        try:
            raise ValueError("boom")
        except ValueError as exc:
            log_harness.logger("app").exception("request failed", exc, peer="192.0.2.1:53")
        [record] = self.records(log_harness)
        assert (record["level"], record["msg"]) == ("error", "request failed")
        assert record["fields"] == {"peer": "192.0.2.1:53"}
        assert record["exc"] is not None
        assert record["exc"].startswith("Traceback (most recent call last):")
        assert "test_exception_is_an_error_with_its_traceback" in record["exc"]
        assert record["exc"].endswith("ValueError: boom")

    def test_exception_chain_is_kept(self, log_harness: LogHarness) -> None:
        try:
            try:
                raise KeyError("inner")
            except KeyError as inner:
                raise RuntimeError("outer") from inner
        except RuntimeError as exc:
            log_harness.logger("app").exception("failed", exc)
        exc_text = self.records(log_harness)[0]["exc"]
        assert exc_text is not None
        assert "KeyError: 'inner'" in exc_text and exc_text.endswith("RuntimeError: outer")

    def test_other_levels_carry_no_exception(self, log_harness: LogHarness) -> None:
        log_harness.logger("app").error("plain error")
        assert self.records(log_harness)[0]["exc"] is None

    def test_one_record_per_call(self, log_harness: LogHarness) -> None:
        log = log_harness.logger("app")
        log.info("first\n2026-01-01T00:00:00.000Z ERROR forged: injected", v="x\ny")
        log.info("second")
        assert [r["msg"] for r in self.records(log_harness)] == [
            "first\n2026-01-01T00:00:00.000Z ERROR forged: injected",
            "second",
        ]
