"""The XML stream core driven with bytes: events, raw bytes kept, and every
refusal of RFC 6120 §11 (restricted XML, bombs, size and depth bounds)."""

from __future__ import annotations

import pytest

from appliances.xmpp.xmlstream import (
    Element,
    Stanza,
    StreamClose,
    StreamError,
    StreamOpen,
    XMLStreamParser,
    serialize,
)

HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
)
BODY = (
    b" <presence a='&gt;/&apos;'/>\n<message to='bob@localhost'><body>x &amp; y \xc3\xa9</body></message>"
    b"<iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>"
    b"<stream:features/></stream:stream>"
)


def feed_all(data: bytes, step: int, parser: XMLStreamParser | None = None) -> list[object]:
    parser = parser or XMLStreamParser()
    events: list[object] = []
    for i in range(0, len(data), step):
        events += parser.feed(data[i : i + step])
    return events


@pytest.mark.parametrize("step", [1, 2, 7, 100000])
def test_events_are_the_same_whole_and_byte_at_a_time(step: int) -> None:
    events = feed_all(HEADER + BODY, step)
    assert isinstance(events[0], StreamOpen)
    assert events[0].default_ns == "jabber:client" and events[0].attrs["to"] == "localhost"
    stanzas = [e for e in events if isinstance(e, Stanza)]
    assert [s.raw for s in stanzas[:3]] == [
        b"<presence a='&gt;/&apos;'/>",
        b"<message to='bob@localhost'><body>x &amp; y \xc3\xa9</body></message>",
        b"<iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>",
    ]
    assert stanzas[0].element.attrs == {"a": ">/'"}
    body = stanzas[1].element.find("body")
    assert body is not None and body.text == "x & y é"
    # a prefix bound on the stream header: the raw bytes cannot stand alone
    assert stanzas[3].raw is None and stanzas[3].element.ns == "http://etherx.jabber.org/streams"
    assert isinstance(events[-1], StreamClose)


def test_serializer_escapes_and_declares_namespaces() -> None:
    element = Element("message", "jabber:client", {"to": "a'b\"<&>"})
    element.add(Element("body", "jabber:client", {}, ["<&>'\""]))
    element.add(Element("x", "urn:test", {"{http://www.w3.org/XML/1998/namespace}lang": "en"}))
    data = serialize(element)
    assert data == (
        b"<message to='a&apos;b&quot;&lt;&amp;&gt;'><body>&lt;&amp;&gt;'\"</body>"
        b"<x xmlns='urn:test' xml:lang='en'/></message>"
    )
    # and it parses back to the same thing
    (stanza,) = [e for e in feed_all(HEADER + data, 5) if isinstance(e, Stanza)]
    assert serialize(stanza.element) == data


BILLION_LAUGHS = (
    b"<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
    + b"".join(f"<!ENTITY lol{i + 1} '{('&lol' + str(i) + ';') * 10}'>".encode() for i in range(9))
    + b"]><stream:stream xmlns='jabber:client'>&lol9;"
)


@pytest.mark.parametrize(
    ("data", "condition"),
    [
        (BILLION_LAUGHS, "restricted-xml"),
        (b"<!DOCTYPE stream>" + HEADER, "restricted-xml"),
        (HEADER + b"<!-- hello -->", "restricted-xml"),
        (HEADER + b"<?php echo 1; ?>", "restricted-xml"),
        (HEADER + b"<message><body>&xxe;</body></message>", "restricted-xml"),
        (HEADER + b"<message><x:body/></message>", "bad-namespace-prefix"),
        (HEADER + b"<message></presence>", "not-well-formed"),
        (HEADER + b"<message><body>\xff</body></message>", "not-well-formed"),
        (HEADER + b"hello", "bad-format"),
        (b"<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream/>", "unsupported-encoding"),
    ],
)
@pytest.mark.parametrize("step", [1, 4096])
def test_refusals(data: bytes, condition: str, step: int) -> None:
    parser = XMLStreamParser()
    with pytest.raises(StreamError) as caught:
        feed_all(data, step, parser)
    assert caught.value.condition == condition
    # the parser stays failed: the same error again, nothing else
    with pytest.raises(StreamError):
        parser.feed(b"<presence/>")


def test_entity_bomb_is_refused_before_any_expansion() -> None:
    parser = XMLStreamParser()
    with pytest.raises(StreamError) as caught:
        parser.feed(BILLION_LAUGHS)
    assert caught.value.condition == "restricted-xml"
    assert len(parser.pending()) == 0


@pytest.mark.parametrize("step", [1, 1000, 1 << 20])
def test_oversize_stanza_is_a_policy_violation_while_it_arrives(step: int) -> None:
    parser = XMLStreamParser(max_stanza=10000)
    parser.feed(HEADER)
    data = b"<message><body>" + b"a" * 20000 + b"</body></message>"
    with pytest.raises(StreamError) as caught:
        feed_all(data, step, parser)
    assert caught.value.condition == "policy-violation"


def test_an_unterminated_start_tag_is_bounded_too() -> None:
    parser = XMLStreamParser(max_stanza=10000)
    parser.feed(HEADER)
    parser.feed(b"<message to='")
    with pytest.raises(StreamError) as caught:
        for _ in range(100):
            parser.feed(b"a" * 1000)
    assert caught.value.condition == "policy-violation"


def test_deep_nesting_is_a_policy_violation() -> None:
    parser = XMLStreamParser(max_depth=20)
    parser.feed(HEADER)
    with pytest.raises(StreamError) as caught:
        parser.feed(b"<message>" + b"<a>" * 30)
    assert caught.value.condition == "policy-violation"


def test_keepalive_whitespace_is_consumed_not_buffered() -> None:
    parser = XMLStreamParser(max_stanza=10000)
    parser.feed(HEADER)
    for _ in range(50000):
        assert parser.feed(b" ") == []
    assert parser.pending() == b""
    (stanza,) = parser.feed(b"<presence/>")
    assert isinstance(stanza, Stanza) and stanza.raw == b"<presence/>"


def _describe(events: list[object]) -> list[object]:
    out: list[object] = []
    for event in events:
        if isinstance(event, Stanza):
            out.append((serialize(event.element), event.raw))
        else:
            out.append(type(event).__name__)
    return out


@pytest.mark.parametrize("step", [1, 5, 100000])
def test_compact_between_stanzas_changes_nothing_but_memory(step: int) -> None:
    """A quiet stream gives expat's memory back; the next bytes resume it with
    the same events, raw bytes and stream-level prefixes as without."""
    expected = _describe(feed_all(HEADER + BODY, step))
    parser = XMLStreamParser()
    events = feed_all(HEADER, step, parser)
    pieces = [
        b" <presence a='&gt;/&apos;'/>\n",
        b"<message to='bob@localhost'><body>x &amp; y \xc3\xa9</body>",
    ]
    pieces += [b"</message><iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>"]
    pieces += [b"<stream:features/>", b"</stream:stream>"]
    compacted = 0
    for piece in pieces:
        events += feed_all(piece, step, parser)
        compacted += parser.compact()
    assert _describe(events) == expected
    # not mid-element (after the <message> start), and not after the stream ended
    assert compacted == 3
    assert not parser.compact()


def test_compact_then_errors_and_limits_still_apply() -> None:
    parser = XMLStreamParser(max_stanza=10000)
    parser.feed(HEADER)
    assert parser.compact()
    with pytest.raises(StreamError) as refused:
        parser.feed(b"<!-- a comment after the resume -->")
    assert refused.value.condition == "restricted-xml"
    parser = XMLStreamParser(max_stanza=10000)
    parser.feed(HEADER + b"<presence/>")
    assert parser.compact()
    with pytest.raises(StreamError) as oversize:
        parser.feed(b"<message><body>" + b"x" * 20000)
    assert oversize.value.condition == "policy-violation"


def test_compact_consumes_keepalive_whitespace() -> None:
    """Whitespace after a stanza (expat reports it only at the next tag) does
    not keep the parser: it is consumed by ``compact``, and offsets stay right."""
    parser = XMLStreamParser()
    parser.feed(HEADER + b"<presence/>\n  ")
    assert parser.compact()
    events = parser.feed(b" <message to='a@b'><body>x</body></message>")
    (stanza,) = events
    assert isinstance(stanza, Stanza) and stanza.raw == b"<message to='a@b'><body>x</body></message>"
    assert parser.compact()
