"""Master-file parsing: directives, syntax, every supported type, errors with file:line."""

from __future__ import annotations

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest

from appliances.dns import names, rdata, zonefile
from appliances.dns.errors import ZoneError
from appliances.dns.lexer import LexError, tokenize
from appliances.dns.zone import load_zone

ORIGIN = names.from_text("example.test.", None)


def parse(text: str, **kwargs: object) -> list[zonefile.Record]:
    records, errors = zonefile.parse(text, origin=ORIGIN, **kwargs)  # type: ignore[arg-type]
    assert not errors, [str(e) for e in errors]
    return records


def errors_of(text: str, **kwargs: object) -> list[str]:
    _, errors = zonefile.parse(text, origin=ORIGIN, filename="z.zone", **kwargs)  # type: ignore[arg-type]
    return [str(e) for e in errors]


def test_names_and_escapes() -> None:
    assert names.from_text("www", ORIGIN) == b"\x03www\x07example\x04test\x00"
    assert names.from_text("@", ORIGIN) == ORIGIN
    assert names.from_text("a\\.b.c.", None) == b"\x03a.b\x01c\x00"
    assert names.from_text("\\065b.", None) == b"\x02Ab\x00"
    assert names.to_text(b"\x03a.b\x01c\x00") == "a\\.b.c."
    with pytest.raises(ValueError, match="longer than 63"):
        names.from_text("a" * 64 + ".", None)
    with pytest.raises(ValueError, match="longer than 255"):
        names.from_text(".".join(["a" * 60] * 5) + ".", None)
    with pytest.raises(ValueError, match="empty label"):
        names.from_text("a..b.", None)
    with pytest.raises(ValueError, match="no origin"):
        names.from_text("relative", None)
    assert names.is_below(b"\x01a\x07example\x04test\x00", ORIGIN)
    assert not names.is_below(b"\x08xexample\x04test\x00", ORIGIN)


def test_ttl_units() -> None:
    assert rdata.parse_ttl("3600") == 3600
    assert rdata.parse_ttl("1h") == 3600
    assert rdata.parse_ttl("1h30m") == 5400
    assert rdata.parse_ttl("1W2D") == 9 * 86400
    assert rdata.parse_ttl("1d1s") == 86401
    for bad in ("1x", "h", "1h2x", "", "-1", "2147483648", "1hh"):
        with pytest.raises(ValueError):
            rdata.parse_ttl(bad)


def test_basic_file() -> None:
    text = """\
$TTL 1h ; default
@   IN SOA ns1 hostmaster (
        1   ; serial
        2h 15m 2w
        5m )
    NS  ns1            ; inherits @
www 300 IN A 192.0.2.1
    IN 60 AAAA 2001:db8::1
$ORIGIN sub.example.test.
x   A   192.0.2.2
@   TXT "origin moved"
"""
    records = parse(text)
    owners = [names.to_text(r.owner) for r in records]
    assert owners == [
        "example.test.",
        "example.test.",
        "www.example.test.",
        "www.example.test.",
        "x.sub.example.test.",
        "sub.example.test.",
    ]
    assert [r.ttl for r in records] == [3600, 3600, 300, 60, 3600, 3600]
    assert [r.line for r in records] == [2, 6, 7, 8, 10, 11]
    soa = records[0].rdata
    assert soa[-20:] == (1).to_bytes(4, "big") + b"".join(
        v.to_bytes(4, "big") for v in (7200, 900, 1209600, 300)
    )


def test_last_explicit_ttl_without_dollar_ttl() -> None:
    records = parse("a 120 A 192.0.2.1\nb A 192.0.2.2\n")
    assert [r.ttl for r in records] == [120, 120]
    assert errors_of("a A 192.0.2.1\n") == [
        "z.zone:1: no TTL on this record and no $TTL before it (RFC 2308 §4)"
    ]


def test_quoted_strings_comments_and_escapes() -> None:
    records = parse('$TTL 60\nt TXT "a ; not a comment" "q\\"uote" \\065bc "\\255" ; comment\n')
    assert records[0].rdata == b'\x11a ; not a comment\x06q"uote\x03Abc\x01\xff'
    records = parse('$TTL 60\nt TXT ( "one"\n "two" )\n')
    assert records[0].rdata == b"\x03one\x03two"


def test_tokenizer_errors() -> None:
    with pytest.raises(LexError, match="unterminated"):
        list(tokenize('a TXT "open\n'))
    with pytest.raises(LexError, match="not closed"):
        list(tokenize("a SOA ( 1 2\n"))
    with pytest.raises(LexError, match="without matching"):
        list(tokenize("a A 1 )\n"))
    assert errors_of('$TTL 1\na A 192.0.2.1\nb TXT "x\n') == ["z.zone:3: unterminated quoted string"]


def test_class_handling() -> None:
    assert parse("$TTL 1\na IN A 192.0.2.1\nb CLASS1 A 192.0.2.1\n")
    assert errors_of("$TTL 1\na CH A 192.0.2.1\nb HS 1 A 192.0.2.1\nc CLASS3 TXT x\n") == [
        "z.zone:2: class CH not supported: only IN is served",
        "z.zone:3: class HS not supported: only IN is served",
        "z.zone:4: class CLASS3 not supported: only IN is served",
    ]


def test_errors_carry_file_and_line_and_continue() -> None:
    text = (
        "$TTL 1\na A 300.1.1.1\nb AAAA nope\nc MX ten mail\nd FOO x\ne A\n\n"
        "$GENERATE 1-2 x A 1.2.3.4\n   A 1.2.3.4\n"
    )
    assert errors_of(text) == [
        "z.zone:2: bad IPv4 address '300.1.1.1'",
        "z.zone:3: bad IPv6 address 'nope'",
        "z.zone:4: MX preference: expected an integer, got 'ten'",
        "z.zone:5: unknown record type 'FOO' (use TYPEnnn and '\\# <len> <hex>', RFC 3597 §5)",
        "z.zone:6: A takes 1 field, got 0",
        "z.zone:8: unsupported directive $GENERATE (supported: $ORIGIN, $TTL, $INCLUDE)",
        "z.zone:9: line starts with a blank but no previous owner name to inherit",
    ]


def test_error_count_is_bounded() -> None:
    text = "$TTL 1\n" + "a A bad\n" * 500
    errors = errors_of(text)
    assert len(errors) == zonefile.MAX_ERRORS + 1
    assert errors[-1].endswith(f"stopped after {zonefile.MAX_ERRORS} errors")


def test_include_origin_and_restore() -> None:
    files = {
        "hosts": "h1 A 192.0.2.1\n$ORIGIN other.example.test.\nh2 A 192.0.2.2\n",
        "sub": "s A 192.0.2.3\n",
    }
    records = parse(
        "$TTL 1\n$INCLUDE hosts\nafter A 192.0.2.4\n$INCLUDE sub deep.example.test.\nlast A 192.0.2.5\n",
        include=files.__getitem__,
    )
    got = [(names.to_text(r.owner), r.file, r.line) for r in records]
    assert got == [
        ("h1.example.test.", "hosts", 1),
        ("h2.other.example.test.", "hosts", 3),
        ("after.example.test.", "<zone>", 3),  # RFC 1035 §5.1: origin restored
        ("s.deep.example.test.", "sub", 1),
        ("last.example.test.", "<zone>", 5),
    ]


def test_include_errors() -> None:
    assert errors_of("$INCLUDE x\n") == ["z.zone:1: $INCLUDE is not allowed here (no include source given)"]
    assert errors_of("$INCLUDE missing\n", include={}.__getitem__) == [
        "z.zone:1: cannot include 'missing': 'missing'"
    ]
    loop = {"self": "$INCLUDE self\n"}
    errors = errors_of("$INCLUDE self\n", include=loop.__getitem__)
    assert errors == [f"self:1: $INCLUDE nested deeper than {zonefile.MAX_INCLUDE_DEPTH} levels (a cycle?)"]
    bad = {"bad": "$TTL 1\nok A 192.0.2.1\nno A 1.2.3\n"}
    assert errors_of("$INCLUDE bad\n", include=bad.__getitem__) == ["bad:3: bad IPv4 address '1.2.3'"]
    assert errors_of("$INCLUDE b\n", include={"b": b"\n\xff\n"}.__getitem__) == ["b:2: not valid UTF-8"]


# type, text, (dnspython text if it differs)
RDATA_CASES = [
    ("A", "192.0.2.1", None),
    ("AAAA", "2001:db8::1", None),
    ("NS", "ns1", None),
    ("CNAME", "Target.Example.net.", None),
    ("DNAME", "new", None),
    ("PTR", "host", None),
    ("MX", "10 mail", None),
    ("SOA", "ns1 hostmaster 2024 1h 15m 2w 5m", "ns1 hostmaster 2024 3600 900 1209600 300"),
    ("TXT", '"hello world" "second" third', None),
    ("SPF", '"v=spf1 -all"', None),
    ("HINFO", '"PC" "Linux"', None),
    ("RP", "admin.example.test. txt", None),
    ("SRV", "10 60 5060 sip", None),
    ("NAPTR", '100 10 "S" "SIP+D2U" "" _sip._udp', None),
    ("DS", "12345 13 2 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", None),
    ("SSHFP", "4 2 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", None),
    ("TLSA", "3 1 0 0123456789abcdef0123 456789abcdef", None),
    ("SMIMEA", "3 1 0 abcdef", None),
    ("DNSKEY", "257 3 13 AQID BAU=", None),
    ("CAA", '0 issue "letsencrypt.org"', None),
    ("CAA", '128 iodef "mailto:a@example.test"', None),
    ("HTTPS", "1 . alpn=h2,h3 ipv4hint=192.0.2.1,192.0.2.2 port=8443", None),
    ("HTTPS", '1 svc alpn="h2,h3" ipv6hint=2001:db8::1 mandatory=alpn,port port=443', None),
    ("HTTPS", '1 . alpn="h\\\\,2,h3" key7=abc', None),
    ("SVCB", "0 alias.example.net.", None),
    ("SVCB", '2 . key65000="x y" no-default-alpn alpn=h2', None),
    ("TYPE65534", "\\# 3 abcdef", None),
    ("TYPE65534", "\\# 0", None),
    ("A", "\\# 4 c0000201", "192.0.2.1"),
    ("MX", "\\# 8 000a 046d61696c00", "10 mail."),
]


@pytest.mark.parametrize(("rtype", "text", "theirs"), RDATA_CASES)
def test_rdata_matches_dnspython(rtype: str, text: str, theirs: str | None) -> None:
    records = parse(f"$TTL 60\nowner {rtype} {text}\n")
    origin = dns.name.from_text("example.test.")
    expected = dns.rdata.from_text(
        dns.rdataclass.IN, dns.rdatatype.from_text(rtype), theirs or text, origin=origin, relativize=False
    ).to_wire()
    assert records[0].rdata == expected
    assert records[0].rtype == dns.rdatatype.from_text(rtype)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("x TYPE65534 \\# 3 abcd", "length 3 but 2 octets"),
        ("x TYPE65534 abcd", "no text format known for TYPE65534"),
        ("x NS \\# 2 0102", "not a valid NS"),
        ("x CAA 0 is-sue x", "CAA tag"),
        ("x HTTPS 1 . alpn", "needs a value"),
        ("x HTTPS 1 . port=1 port=2", "given twice"),
        ("x HTTPS 1 . foo=1", "unknown SvcParamKey"),
        ("x SOA a b 1 2 3 4", "SOA takes 7 fields"),
        ("x SRV 1 2 70000 t", "does not fit in 16 bits"),
        ("x TXT " + "a" * 256, "limit 255"),
        ("x ANY 1", "meta type"),
        ('"x" A 192.0.2.1', "cannot be quoted"),
        ('x MX 10 "mail"', "cannot be quoted"),
        ("x DS 1 2 3 zz", "bad hex"),
    ],
)
def test_rdata_errors(line: str, message: str) -> None:
    errors = errors_of(f"$TTL 1\n{line}\n")
    assert len(errors) == 1 and errors[0].startswith("z.zone:2: ") and message in errors[0], errors


def test_zone_error_lists_everything() -> None:
    with pytest.raises(ZoneError) as info:
        load_zone(
            "$TTL 1\n@ SOA ns hm 1 2 3 4 5\n@ NS ns\nns A 192.0.2.1\nx A bad\ny MX\n",
            "example.test.",
            filename="f.zone",
        )
    assert [str(p) for p in info.value.problems] == [
        "f.zone:5: bad IPv4 address 'bad'",
        "f.zone:6: MX takes 2 fields, got 0",
    ]
    assert "2 errors in zone data" in str(info.value)


def test_svcb_ech_is_base64() -> None:
    records = parse("$TTL 1\nx HTTPS 1 . ech=AAEC\n")
    assert records[0].rdata.endswith(b"\x00\x05\x00\x03\x00\x01\x02")
