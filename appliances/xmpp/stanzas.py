"""Small stanza builders shared by the IM layer: errors (RFC 6120 §8.3),
XEP-0203 delay stamps, XEP-0082 date-times without a time module."""

from __future__ import annotations

from .c2s import NS_CLIENT, NS_STANZAS
from .xmlstream import NS_STREAMS, Element, Stanza, StreamError, XMLStreamParser

__all__ = [
    "NS_DELAY",
    "error_reply",
    "iq_result",
    "parse_stanzas",
    "stamp",
]

NS_DELAY = "urn:xmpp:delay"

#: RFC 6120 §8.3.3: the error type that goes with each condition we send
_ERROR_TYPES = {
    "bad-request": "modify",
    "conflict": "cancel",
    "feature-not-implemented": "cancel",
    "forbidden": "auth",
    "item-not-found": "cancel",
    "jid-malformed": "modify",
    "not-acceptable": "modify",
    "not-allowed": "cancel",
    "not-authorized": "auth",
    "policy-violation": "modify",
    "remote-server-not-found": "cancel",
    "resource-constraint": "wait",
    "service-unavailable": "cancel",
    "undefined-condition": "cancel",
}


def error_reply(stanza: Element, condition: str, text: str = "", extra: Element | None = None) -> Element:
    """The error answer to ``stanza`` (§8.3.1): addresses swapped, same id, type error."""
    attrs = {"type": "error"}
    for name in ("id",):
        if name in stanza.attrs:
            attrs[name] = stanza.attrs[name]
    if "from" in stanza.attrs:
        attrs["to"] = stanza.attrs["from"]
    if "to" in stanza.attrs:
        attrs["from"] = stanza.attrs["to"]
    error = Element("error", NS_CLIENT, {"type": _ERROR_TYPES.get(condition, "cancel")})
    error.add(Element(condition, NS_STANZAS))
    if text:
        error.add(Element("text", NS_STANZAS, {}, [text]))
    if extra is not None:
        error.add(extra)
    return Element(stanza.name, NS_CLIENT, attrs, [error])


def iq_result(iq: Element, *children: Element) -> Element:
    attrs = {"type": "result", "id": iq.attrs.get("id", "")}
    if "from" in iq.attrs:
        attrs["to"] = iq.attrs["from"]
    if "to" in iq.attrs:
        attrs["from"] = iq.attrs["to"]
    return Element("iq", NS_CLIENT, attrs, list(children))


def stamp(seconds: float) -> str:
    """XEP-0082 DateTime in UTC (``2002-09-10T23:08:25.123Z``) from epoch seconds."""
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hour, rest = divmod(rest, 3600)
    minute, second = divmod(rest, 60)
    # Howard Hinnant's civil_from_days
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    millis = int((seconds - whole) * 1000)
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.{millis:03d}Z"


_STREAM_HEAD = f"<stream:stream xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAMS}'>".encode()


def parse_stanzas(data: bytes) -> list[Element]:
    """The stanzas in ``data`` as we serialized them for a client's stream
    (to look again at what was queued; nothing from outside)."""
    try:
        events = XMLStreamParser(max_stanza=max(len(data), 10000)).feed(_STREAM_HEAD + data)
    except StreamError:
        return []
    return [event.element for event in events if isinstance(event, Stanza)]
