"""The XML stream core (sans-IO): bytes in, stream events out; elements back to bytes.

Rules (RFC 6120 §11, "XML usage"):

1. The stream is one XML document whose root is ``<stream:stream>``; every
   child of the root (depth 1) is a top-level element: a stanza (message,
   presence, iq) or a stream-level element (features, starttls, auth...).
2. Restricted XML (§11.1): a DTD, an entity declaration, a comment or a
   processing instruction is refused with ``restricted-xml``.  No entity is
   ever expanded except the five predefined ones and character references,
   so an entity bomb ("billion laughs") is refused at its DOCTYPE, before any
   expansion.  An undefined entity reference is ``not-well-formed``.
3. Encoding (§11.6): UTF-8 only; an XML declaration naming another encoding
   is ``unsupported-encoding``.
4. Bounds: a top-level element larger than ``max_stanza`` bytes, or nesting
   deeper than ``max_depth``, is ``policy-violation`` (§4.9.3.14).  The stream
   header itself is bounded by the same size.
5. Whitespace between top-level elements is a keepalive (§4.6.1) and ignored;
   other character data there is ``bad-format``.
6. Every top-level element keeps its raw bytes when they can be reused as they
   are (no prefix bound on the stream header is used inside it), so routing
   need not re-serialise what it does not change.

``XMLStreamParser.feed(data)`` returns the events completed by ``data`` or
raises ``StreamError`` carrying the RFC 6120 §4.9.3 condition to answer with.
Feeding byte-at-a-time gives the same events as feeding the whole.
"""

from __future__ import annotations

import xml.parsers.expat as expat
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_STANZA",
    "NS_STREAMS",
    "NS_XML",
    "Element",
    "Event",
    "Stanza",
    "StreamClose",
    "StreamError",
    "StreamOpen",
    "XMLStreamParser",
    "escape_attr",
    "escape_text",
    "serialize",
]

NS_STREAMS = "http://etherx.jabber.org/streams"
NS_XML = "http://www.w3.org/XML/1998/namespace"

#: RFC 6120 §13.12 says a server may limit stanza size and must allow at least
#: 10,000 bytes; Prosody's default c2s limit is 256 KiB (c2s_stanza_size_limit)
DEFAULT_MAX_STANZA = 256 * 1024
#: no real stanza nests deeper than a few tens (XHTML-IM, forwarded carbons);
#: ejabberd refuses beyond 100 by default
DEFAULT_MAX_DEPTH = 64
_SEP = "\x01"


class StreamError(Exception):
    """The peer broke the stream rules: answer with this RFC 6120 §4.9.3 condition and close."""

    def __init__(self, condition: str, text: str = "") -> None:
        super().__init__(f"{condition}: {text}" if text else condition)
        self.condition = condition
        self.text = text


class Element:
    """One XML element: local name, namespace, attributes, children (elements and text).

    Attribute names are local names, or ``{namespace}local`` for namespaced
    ones (``{http://www.w3.org/XML/1998/namespace}lang`` for ``xml:lang``)."""

    __slots__ = ("attrs", "children", "name", "ns")

    def __init__(
        self,
        name: str,
        ns: str = "",
        attrs: dict[str, str] | None = None,
        children: list[Element | str] | None = None,
    ) -> None:
        self.name = name
        self.ns = ns
        self.attrs: dict[str, str] = attrs if attrs is not None else {}
        self.children: list[Element | str] = children if children is not None else []

    def __repr__(self) -> str:
        return f"<Element {{{self.ns}}}{self.name} {self.attrs!r} {len(self.children)} children>"

    def get(self, attr: str, default: str | None = None) -> str | None:
        return self.attrs.get(attr, default)

    def elements(self) -> Iterator[Element]:
        for child in self.children:
            if isinstance(child, Element):
                yield child

    def find(self, name: str, ns: str | None = None) -> Element | None:
        """The first child element called ``name`` (in ``ns``: default, this element's)."""
        want = self.ns if ns is None else ns
        for child in self.children:
            if isinstance(child, Element) and child.name == name and child.ns == want:
                return child
        return None

    def first(self) -> Element | None:
        for child in self.children:
            if isinstance(child, Element):
                return child
        return None

    @property
    def text(self) -> str:
        return "".join(child for child in self.children if isinstance(child, str))

    def add(self, child: Element | str) -> Element:
        """Append ``child``; returns it when an element (for chaining), else self."""
        self.children.append(child)
        return child if isinstance(child, Element) else self

    def copy(self) -> Element:
        return Element(
            self.name,
            self.ns,
            dict(self.attrs),
            [c.copy() if isinstance(c, Element) else c for c in self.children],
        )


@dataclass(frozen=True, slots=True)
class StreamOpen:
    """The peer's stream header: ``name`` and ``ns`` of the root, its attributes,
    and the default namespace it declared (``jabber:client`` for a client)."""

    name: str
    ns: str
    attrs: dict[str, str]
    default_ns: str | None
    prefixes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Stanza:
    """A complete top-level element; ``raw`` its exact bytes when reusable as they are."""

    element: Element
    raw: bytes | None


@dataclass(frozen=True, slots=True)
class StreamClose:
    """``</stream:stream>``: the peer closed its stream (RFC 6120 §4.4)."""


Event = StreamOpen | Stanza | StreamClose

# pyexpat's XML_ERROR_* names are message texts; ``codes`` maps them to numbers.
_EXPAT_CONDITIONS = {
    expat.errors.codes[expat.errors.XML_ERROR_UNBOUND_PREFIX]: "bad-namespace-prefix",
    # §11.1: no entity references other than the predefined ones
    expat.errors.codes[expat.errors.XML_ERROR_UNDEFINED_ENTITY]: "restricted-xml",
    expat.errors.codes[expat.errors.XML_ERROR_RECURSIVE_ENTITY_REF]: "restricted-xml",
    expat.errors.codes[expat.errors.XML_ERROR_INCORRECT_ENCODING]: "unsupported-encoding",
    expat.errors.codes[expat.errors.XML_ERROR_UNKNOWN_ENCODING]: "unsupported-encoding",
}


def _split(qname: str) -> tuple[str, str, str | None]:
    """expat's ``ns SEP local [SEP prefix]`` into (ns, local, prefix)."""
    parts = qname.split(_SEP)
    if len(parts) == 1:
        return "", parts[0], None
    if len(parts) == 2:
        return parts[0], parts[1], None
    return parts[0], parts[1], parts[2]


class XMLStreamParser:
    """One XML stream (a new one after each stream restart, RFC 6120 §4.3.3)."""

    def __init__(self, *, max_stanza: int = DEFAULT_MAX_STANZA, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
        self.max_stanza = max_stanza
        self.max_depth = max_depth
        self._parser: Any = self._new_expat()
        self._events: list[Event] = []
        self._stack: list[Element] = []
        self._buf = bytearray()
        self._base = 0  # stream offset of self._buf[0]
        self._safe = 0  # stream offset up to which every byte is consumed
        self._top_start = 0  # stream offset where the current top-level element starts
        self._top_gt = 0  # stream offset of the '>' ending its start tag
        self._raw_ok = True
        self._stream_prefixes: dict[str, str] = {}
        self._new_decls: dict[str, str] = {}
        self._default_ns: str | None = None
        self._opened = False
        self._closed = False
        self._failed: StreamError | None = None
        #: the stream header as received, to resume after ``compact``
        self._header = b""
        #: stream offset = expat's byte index + this (non-zero after a resume)
        self._shift = 0
        self._replaying = False
        self._released = False

    def _new_expat(self) -> Any:
        parser = expat.ParserCreate("UTF-8", namespace_separator=_SEP)
        parser.namespace_prefixes = True
        # Unbuffered text: keepalive whitespace is consumed as it arrives.
        parser.buffer_text = False
        # Never read an external DTD or parameter entity (rule 2).
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._chars
        parser.StartNamespaceDeclHandler = self._ns_decl
        parser.XmlDeclHandler = self._xml_decl
        parser.StartDoctypeDeclHandler = self._restricted
        parser.EntityDeclHandler = self._restricted
        parser.UnparsedEntityDeclHandler = self._restricted
        parser.NotationDeclHandler = self._restricted
        parser.ElementDeclHandler = self._restricted
        parser.AttlistDeclHandler = self._restricted
        parser.CommentHandler = self._restricted
        parser.ProcessingInstructionHandler = self._restricted
        parser.SkippedEntityHandler = self._restricted
        parser.ExternalEntityRefHandler = self._external
        return parser

    def compact(self) -> bool:
        """Between stanzas, give back expat's memory (about 10 KiB a stream):
        the next ``feed`` starts a new expat parser and replays the stream
        header to it first (a few microseconds).  A no-op mid-element."""
        if (
            self._parser is None
            or not self._opened
            or self._closed
            or self._failed is not None
            or self._stack
        ):
            return False
        if self._buf:
            if self._buf.strip(b" \t\r\n"):
                return False  # an element (or bad bytes) under way
            # Whitespace between stanzas (keepalives): expat reports it only when
            # the next tag comes; it means nothing, so it is consumed here.
            self._base += len(self._buf)
            self._safe = self._base
            self._buf.clear()
        self._parser = None
        return True

    def close(self) -> None:
        """This stream is over (a restart or the end of the connection): let
        go of expat now.  Its handlers point back at this object, so without
        this the pair would wait for the cycle collector."""
        self._parser = None
        self._released = True

    def _resume(self) -> None:
        if self._released:
            raise RuntimeError("this XML stream parser is closed")
        parser = self._new_expat()
        self._replaying = True
        try:
            parser.Parse(self._header, False)
        finally:
            self._replaying = False
        self._parser = parser
        # expat counts from the replayed header; the stream goes on at _base
        self._shift = self._base - len(self._header)

    def _index(self) -> int:
        """The stream offset of the event expat is reporting."""
        return int(self._parser.CurrentByteIndex) + self._shift

    @property
    def depth(self) -> int:
        return len(self._stack) + (1 if self._opened and not self._closed else 0)

    def feed(self, data: bytes) -> list[Event]:
        """Events completed by ``data``; raises ``StreamError`` (and stays failed)."""
        if self._failed is not None:
            raise self._failed
        if self._closed:
            if data.strip():
                raise self._fail(StreamError("not-well-formed", "data after the end of the stream"))
            return []
        self._buf += data
        try:
            if self._parser is None:
                self._resume()
            self._parser.Parse(data, False)
        except StreamError as exc:
            raise self._fail(exc) from None
        except expat.ExpatError as exc:
            condition = _EXPAT_CONDITIONS.get(exc.code, "not-well-formed")
            error = StreamError(condition, expat.errors.messages[exc.code])
            if not any(type(event) is Stanza for event in self._events):
                raise self._fail(error) from None
            # Complete elements came before the bad bytes: they are handed out
            # first and the error stands (``error``).  After SASL success the
            # bytes that follow belong to a new stream (RFC 6120 §6.4.6), which
            # the caller starts with ``pending()``.
            self._failed = error
        # Drop what is consumed (complete elements, keepalive whitespace); what
        # remains is one element (or header) in progress, and it is bounded.
        done = self._safe - self._base
        if done > 0:
            del self._buf[:done]
            self._base = self._safe
        start = self._top_start if self._stack else self._base
        if self._base + len(self._buf) - start > self.max_stanza:
            raise self._fail(StreamError("policy-violation", f"element larger than {self.max_stanza} bytes"))
        events, self._events = self._events, []
        return events

    @property
    def error(self) -> StreamError | None:
        """The error that ended this stream, if any (raised again by ``feed``)."""
        return self._failed

    def pending(self) -> bytes:
        """Bytes received after the last complete top-level element (for a stream restart)."""
        return bytes(self._buf)

    def _fail(self, error: StreamError) -> StreamError:
        self._failed = error
        self._buf.clear()
        return error

    # ------------------------------------------------------------- expat handlers

    def _restricted(self, *args: Any) -> None:
        raise StreamError("restricted-xml", "no DTDs, entities, comments or processing instructions")

    def _external(self, *args: Any) -> int:
        raise StreamError("restricted-xml", "external entities are refused")

    def _xml_decl(self, version: str | None, encoding: str | None, standalone: int) -> None:
        if encoding is not None and encoding.upper().replace("_", "-") not in ("UTF-8", "UTF8"):
            raise StreamError("unsupported-encoding", "only UTF-8 is allowed (RFC 6120 §11.6)")

    def _ns_decl(self, prefix: str | None, uri: str | None) -> None:
        if self._replaying:
            return
        if not self._opened:
            if prefix is None:
                self._default_ns = uri or ""
            else:
                self._stream_prefixes[prefix] = uri or ""
        elif prefix is not None:
            self._new_decls[prefix] = uri or ""

    def _start(self, qname: str, attrs: dict[str, str]) -> None:
        if self._replaying:
            return  # the stream header again, after compact()
        ns, name, prefix = _split(qname)
        parsed: dict[str, str] = {}
        for key, value in attrs.items():
            a_ns, a_name, a_prefix = _split(key)
            parsed[f"{{{a_ns}}}{a_name}" if a_ns else a_name] = value
            if a_prefix is not None and a_prefix != "xml" and a_prefix not in self._new_decls:
                self._raw_ok = False
        if not self._opened:
            self._opened = True
            self._events.append(StreamOpen(name, ns, parsed, self._default_ns, dict(self._stream_prefixes)))
            self._safe = self._tag_end(self._index() - self._base) + self._base + 1
            self._header = bytes(self._buf[: self._safe - self._base])
            return
        if prefix is not None and prefix not in self._new_decls:
            # A prefix bound on the stream header: the raw bytes would not stand alone.
            self._raw_ok = False
        element = Element(name, ns, parsed)
        if self._stack:
            if len(self._stack) + 1 >= self.max_depth:
                raise StreamError("policy-violation", f"elements nested deeper than {self.max_depth}")
            self._stack[-1].children.append(element)
        else:
            start = self._index()
            self._top_start = start
            self._top_gt = self._tag_end(start - self._base) + self._base
        self._stack.append(element)

    def _tag_end(self, index: int) -> int:
        """Index in the buffer of the '>' closing the start tag at ``index``."""
        buf = self._buf
        quote = 0
        for i in range(index, len(buf)):
            byte = buf[i]
            if quote:
                if byte == quote:
                    quote = 0
            elif byte in (0x22, 0x27):
                quote = byte
            elif byte == 0x3E:
                return i
        return len(buf) - 1  # unreachable: expat reports a start tag only once complete

    def _end(self, qname: str) -> None:
        if not self._stack:
            self._closed = True
            self._events.append(StreamClose())
            return
        element = self._stack.pop()
        if self._stack:
            return
        index = self._index() - self._base
        gt = self._top_gt - self._base
        buf = self._buf
        if buf[gt - 1] == 0x2F:  # '/>': an empty element, its start tag is all of it
            end = gt + 1
        else:
            end = buf.index(b">", index) + 1
        start = self._top_start - self._base
        if end - start > self.max_stanza:
            raise StreamError("policy-violation", f"element larger than {self.max_stanza} bytes")
        raw = bytes(buf[start:end]) if self._raw_ok else None
        self._events.append(Stanza(element, raw))
        self._safe = self._base + end
        self._raw_ok = True
        self._new_decls = {}

    def _chars(self, text: str) -> None:
        if self._replaying:
            return
        if self._stack:
            children = self._stack[-1].children
            if children and isinstance(children[-1], str):
                children[-1] += text
            else:
                children.append(text)
        elif text.strip():
            raise StreamError("bad-format", "character data between top-level elements")
        else:
            # ASCII whitespace: one byte per character
            self._safe = self._index() + len(text)


# ----------------------------------------------------------------- serializer

_TEXT = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_ATTR = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "'": "&apos;", '"': "&quot;"})


def escape_text(text: str) -> str:
    return text.translate(_TEXT)


def escape_attr(text: str) -> str:
    return text.translate(_ATTR)


def serialize(element: Element, parent_ns: str = "jabber:client") -> bytes:
    """The element as UTF-8 bytes, declaring its namespace where it differs from ``parent_ns``."""
    out: list[str] = []
    _write(element, parent_ns, out)
    return "".join(out).encode("utf-8")


def _write(element: Element, parent_ns: str, out: list[str]) -> None:
    out.append("<" + element.name)
    if element.ns != parent_ns:
        out.append(f" xmlns='{escape_attr(element.ns)}'")
    extra = 0
    for key, value in element.attrs.items():
        if key[0] == "{":
            ns, _, local = key[1:].partition("}")
            if ns == NS_XML:
                out.append(f" xml:{local}='{escape_attr(value)}'")
            else:
                extra += 1
                out.append(f" xmlns:a{extra}='{escape_attr(ns)}' a{extra}:{local}='{escape_attr(value)}'")
        else:
            out.append(f" {key}='{escape_attr(value)}'")
    if not element.children:
        out.append("/>")
        return
    out.append(">")
    for child in element.children:
        if isinstance(child, str):
            out.append(child.translate(_TEXT))
        else:
            _write(child, element.ns, out)
    out.append(f"</{element.name}>")
