"""The appliance's own sans-IO pieces, driven with bytes: TSIG, the rate
limiter, the message reader, the transfer reader and journal, zone origins,
and the option checks."""

from __future__ import annotations

import io
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.rrset
import dns.tsig
import pytest
from dns_helpers import SMALL, zone
from server_helpers import KEY_NAME, KEY_OPTION, KEYRING

from appliances.dns import APPLIANCE, tsig
from appliances.dns.message import MessageError, parse_message, read_name
from appliances.dns.rrl import DROP, SEND, SLIP, RateLimiter, parse_prefix, tc_answer
from appliances.dns.sources import file_origin
from appliances.dns.xfr import (
    Journal,
    TransferError,
    TransferReader,
    axfr_messages,
    ixfr_messages,
    records_of,
    serial_gt,
)
from runtime.run import run

KEY = tsig.parse_key(KEY_OPTION)
KEYS = {KEY.name: KEY}


def test_tsig_verifies_dnspython_and_dnspython_verifies_us() -> None:
    query = dns.message.make_query("www.small.test", "A")
    query.use_tsig(KEYRING, keyname=KEY_NAME)
    wire = query.to_wire()
    record = tsig.find_tsig(wire)
    assert record is not None and record.key_name == KEY.name
    now = int(time.time())
    assert tsig.verify(record, KEYS, now) == (tsig.NOERROR, KEY)
    assert tsig.verify(record, KEYS, now + 301)[0] == tsig.BADTIME  # RFC 8945 §5.2.3 fudge
    assert tsig.verify(record, {}, now) == (tsig.BADKEY, None)
    tampered = tsig.find_tsig(wire[:-30] + bytes([wire[-30] ^ 1]) + wire[-29:])
    assert tampered is not None and tsig.verify(tampered, KEYS, now)[0] == tsig.BADSIG

    answer = dns.message.make_response(dns.message.make_query("www.small.test", "A")).to_wire()
    signed, _ = tsig.sign(wire[:2] + answer[2:], KEY, now, prior=record.mac)
    assert dns.message.from_wire(signed, keyring=KEYRING, request_mac=query.mac).had_tsig
    question_end = 12 + len(query.question[0].name.to_wire()) + 4
    bad = tsig.error_response(wire, question_end, record, tsig.BADSIG, KEY, now)
    with pytest.raises(dns.tsig.PeerBadSignature):
        dns.message.from_wire(bad, keyring=KEYRING, request_mac=query.mac)


def test_tsig_key_syntax() -> None:
    assert tsig.parse_key("k:HMAC-SHA512:c2VjcmV0").digest == "sha512"
    assert tsig.parse_key("k:hmac-md5:c2VjcmV0").algorithm == b"\x08hmac-md5\x07sig-alg\x03reg\x03int\x00"
    for bad in ("k:c2VjcmV0", "k:hmac-sha3:c2VjcmV0", "k:hmac-sha256:not base64!"):
        with pytest.raises(ValueError):
            tsig.parse_key(bad)
    with pytest.raises(MessageError):
        tsig.find_tsig(b"\x00" * 11)


def test_rate_limiter_slips_every_second_and_refills() -> None:
    now = [0.0]
    limiter = RateLimiter(2, clock=lambda: now[0], slip=2, exempt=[parse_prefix("127.0.0.0/8")])
    answer = dns.message.make_response(dns.message.make_query("www.small.test", "A"))
    answer.answer.append(dns.rrset.from_text("www.small.test.", 60, "IN", "A", "192.0.2.1"))
    reply = answer.to_wire()
    actions = [limiter.check(reply, "192.0.2.7") for _ in range(8)]
    assert actions == [SEND, SEND, DROP, SLIP, DROP, SLIP, DROP, SLIP]
    assert limiter.check(reply, "192.0.2.200") == DROP  # the same /24
    assert limiter.check(reply, "192.0.3.1") == SEND  # another /24
    assert limiter.check(reply, "127.0.0.1") == SEND  # exempt
    now[0] = 1.0  # two tokens back
    # the slip count goes on across refills: the drop from .200 above was the first of a pair
    assert [limiter.check(reply, "192.0.2.7") for _ in range(3)] == [SEND, SEND, SLIP]
    slipped = dns.message.from_wire(tc_answer(reply))
    assert slipped.flags & dns.flags.TC and not slipped.answer and slipped.question == answer.question


def test_read_name_refuses_loops_and_forward_pointers() -> None:
    with pytest.raises(MessageError):
        read_name(b"\x00" * 12 + b"\xc0\x0c", 12)  # points at itself
    with pytest.raises(MessageError):
        read_name(b"\x00" * 12 + b"\x01a\xc0\x12\x00\x00", 12)  # points forwards
    name, end = read_name(b"\x00" * 12 + b"\x01a\x00" + b"\x01b\xc0\x0c", 15)
    assert (name, end) == (b"\x01b\x01a\x00", 19)


def test_transfer_reader_axfr_ixfr_and_errors() -> None:
    v1 = zone(SMALL)
    v2 = zone(SMALL.replace(" 7 3600", " 8 3600").replace("192.0.2.2", "192.0.2.9"))
    question = v1.origin + b"\x00\xfc\x00\x01"
    journal = Journal(4)
    journal.record(v1, v2)
    assert serial_gt(8, 7) and not serial_gt(7, 8) and serial_gt(1, 2**32 - 5)  # RFC 1982

    def records(messages: list[bytes]) -> list[object]:
        return [rr for m in messages for rr in parse_message(m).answer]

    full = TransferReader(v1.origin)
    assert full.feed(records(axfr_messages(1, question, v2)))  # type: ignore[arg-type]
    assert full.soa is not None and not full.incremental and len(full.records) == 3

    diffs = journal.since(v1.origin, 7)
    assert diffs is not None
    step = TransferReader(v1.origin, serial=7, current=records_of(v1))
    assert step.feed(records(ixfr_messages(1, question, v2, diffs)))  # type: ignore[arg-type]
    assert step.incremental and step.records == full.records

    current = TransferReader(v1.origin, serial=8)
    current.feed(records(ixfr_messages(1, question, v2, [])))  # type: ignore[arg-type]
    assert current.end_of_message() and current.up_to_date

    broken = TransferReader(v1.origin)
    with pytest.raises(TransferError):
        broken.feed(records(axfr_messages(1, question, v2))[1:])  # type: ignore[arg-type]


def test_file_origin() -> None:
    assert file_origin(b"; c\n$TTL 1h\n$ORIGIN a.test.\n@ SOA x y 1 2 3 4 5\n", "b.zone") == "a.test."
    assert file_origin(b"@ 300 SOA x y 1 2 3 4 5\n", "dir/example.org.zone") == "example.org."
    assert file_origin(b"@ 300 SOA x y 1 2 3 4 5\n", "db.example") is None


def test_option_errors_are_one_line(tmp_path: Path) -> None:
    err = io.StringIO()
    assert run(APPLIANCE, ["--tsig-key", "k:hmac-sha999:AAAA"], {}, stderr=err) == 2
    assert err.getvalue().count("\n") == 1 and "--tsig-key" in err.getvalue()
    for flag, value in (("--secondary", "example.org"), ("--allow-transfer", "nope"), ("--notify", "host:x")):
        err = io.StringIO()
        assert run(APPLIANCE, [flag, value], {}, stderr=err) == 2, err.getvalue()
        assert flag in err.getvalue()
    # a key reference is checked when the appliance starts: one line, exit 2 too
    err = io.StringIO()
    args = ["--listen", "127.0.0.1:0", "--state-dir", str(tmp_path), "--allow-transfer", "10.0.0.0/8@nokey"]
    assert run(APPLIANCE, args, {}, stderr=err) == 2
    assert "--allow-transfer: no TSIG key 'nokey.'" in err.getvalue() and "Traceback" not in err.getvalue()
