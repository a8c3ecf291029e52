"""HTTP dates (RFC 9110 §5.6.7), from a time we are given, never from a clock."""

from __future__ import annotations

import re
from datetime import UTC, datetime

__all__ = ["date_line", "format_http_date", "parse_http_date"]

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NUMBER = {m.encode(): i + 1 for i, m in enumerate(_MONTHS)}


def format_http_date(seconds: float) -> str:
    """IMF-fixdate, the only form a sender may generate: ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    d = datetime.fromtimestamp(int(seconds), UTC)
    return (
        f"{_DAYS[d.weekday()]}, {d.day:02d} {_MONTHS[d.month - 1]} {d.year:04d} "
        f"{d.hour:02d}:{d.minute:02d}:{d.second:02d} GMT"
    )


# A recipient MUST accept all three formats (RFC 9110 §5.6.7).
_IMF = re.compile(
    rb"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d\d) ([A-Z][a-z]{2}) (\d{4}) (\d\d):(\d\d):(\d\d) GMT"
)
_RFC850 = re.compile(
    rb"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), "
    rb"(\d\d)-([A-Z][a-z]{2})-(\d\d) (\d\d):(\d\d):(\d\d) GMT"
)
_ASCTIME = re.compile(
    rb"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) ([A-Z][a-z]{2}) ([ \d]\d) (\d\d):(\d\d):(\d\d) (\d{4})"
)


def parse_http_date(value: bytes) -> int | None:
    """Seconds since the epoch, or ``None`` for anything that is not an HTTP-date."""
    value = value.strip()
    m = _IMF.fullmatch(value)
    if m is not None:
        day, month, year, hh, mm, ss = m.groups()
    else:
        m = _RFC850.fullmatch(value)
        if m is not None:
            day, month, yy, hh, mm, ss = m.groups()
            # RFC 9110 §5.6.7 pivots two-digit years on the current year; without a
            # clock here we pivot on the epoch: 70-99 are 19xx, 00-69 are 20xx.
            year = str(2000 + int(yy) if int(yy) < 70 else 1900 + int(yy)).encode()
        else:
            m = _ASCTIME.fullmatch(value)
            if m is None:
                return None
            month, day, hh, mm, ss, year = m.groups()
    month_number = _MONTH_NUMBER.get(month)
    if month_number is None:
        return None
    try:
        d = datetime(int(year), month_number, int(day), int(hh), int(mm), int(ss), tzinfo=UTC)
    except ValueError:
        return None
    return int(d.timestamp())


_cached_second = -1
_cached_line = b""


def date_line(now: float) -> bytes:
    """The ``Date`` field line for ``now``, formatted once per second."""
    global _cached_second, _cached_line
    second = int(now)
    if second != _cached_second:
        _cached_line = b"Date: " + format_http_date(second).encode() + b"\r\n"
        _cached_second = second
    return _cached_line
