"""The init's DHCP client, driven with bytes and a manual clock: the messages
against golden packets, the exchange with a scripted server, RFC 2131's
retransmission and renewal times, and the parser's invariant on mangled
input.  (Booting the DNS image with ``ipv4=dhcp`` is in test_image_dns.)"""

from __future__ import annotations

import ipaddress
import itertools
import random

import pytest

from runtime.image import dhcp
from runtime.image.dhcp import BROADCAST, BadMessage, Client, Keeper, Lease, Nak, decode, obtain
from runtime.image.vm import NetConfig

MAC = bytes.fromhex("525400123456")
XID = 0x12345678
SERVER = ipaddress.IPv4Address("10.0.2.2")

# RFC 2131 §2 fixed fields: op htype hlen hops, xid, secs, flags (BROADCAST), ciaddr, yiaddr,
# siaddr, giaddr, chaddr (16), sname (64), file (128), then the magic cookie (bytes.fromhex skips spaces)
_REQUEST_HEAD = "01 01 06 00  12345678  0000  8000" + " 00000000" * 4 + " 525400123456" + " 00" * 202
_REPLY_HEAD = "02 01 06 00  12345678  0000  0000  00000000  0a00020f  0a000202  00000000"
_REPLY_HEAD += " 525400123456" + " 00" * 202
COOKIE = " 63825363 "
#: what we ask for in every message: client id (61), parameters (55: 1 3 6 51 58 59), max size (57: 1500)
_ASK = " 3d 07 01525400123456  37 06 010306333a3b  39 02 05dc  ff"
DISCOVER = bytes.fromhex(_REQUEST_HEAD + COOKIE + "35 01 01" + _ASK)
#: the offer's address (50) and its server (54)
_CHOSEN = " 32 04 0a00020f  36 04 0a000202 "
REQUEST = bytes.fromhex(
    _REQUEST_HEAD + COOKIE + "35 01 03  3d 07 01525400123456" + _CHOSEN + "37 06 010306333a3b  39 02 05dc  ff"
)
# an offer with the values of QEMU's user network (slirp): server 10.0.2.2, lease 86400 s,
# mask /24, router 10.0.2.2, DNS 10.0.2.3
_SLIRP = " 36 04 0a000202  33 04 00015180  01 04 ffffff00  03 04 0a000202  06 04 0a000203  ff"
OFFER = bytes.fromhex(_REPLY_HEAD + COOKIE + "35 01 02" + _SLIRP)
ACK = bytes.fromhex(_REPLY_HEAD + COOKIE + "35 01 05" + _SLIRP)
NAK = bytes.fromhex(_REPLY_HEAD.replace("0a00020f", "00000000") + COOKIE + "35 01 06  36 04 0a000202  ff")


def client() -> Client:
    return Client(MAC, lambda: XID)


def test_discover_and_request_are_the_golden_packets() -> None:
    peer = client()
    assert peer.discover(0.0) == DISCOVER
    assert peer.receive(OFFER, 0.5) == REQUEST


def test_the_ack_gives_the_lease_with_rfc_2131_default_times() -> None:
    peer = client()
    peer.discover(0.0)
    peer.receive(OFFER, 0.5)
    lease = peer.receive(ACK, 0.6)
    assert lease == Lease(
        address=ipaddress.IPv4Interface("10.0.2.15/24"),
        router=SERVER,
        dns=(ipaddress.IPv4Address("10.0.2.3"),),
        server=SERVER,
        length=86400.0,
        renew=43200.0,  # T1: half the lease (§4.4.5)
        rebind=75600.0,  # T2: 7/8 of it
        start=0.5,  # times count from the REQUEST
    )
    assert lease.describe() == "10.0.2.15/24 router=10.0.2.2 dns=10.0.2.3 lease=86400s server=10.0.2.2"


def test_replies_not_for_us_or_not_now_are_dropped() -> None:
    peer = client()
    peer.discover(0.0)
    assert peer.receive(ACK, 0.1) is None  # an ACK while selecting
    assert peer.receive(OFFER.replace(bytes.fromhex("12345678"), b"\0\0\0\1", 1), 0.1) is None  # xid
    assert peer.receive(OFFER.replace(MAC, bytes(6), 1), 0.1) is None  # someone else's offer
    assert peer.receive(OFFER, 0.2) == REQUEST
    assert peer.receive(OFFER, 0.3) is None  # a second offer once requesting


def test_a_nak_starts_again() -> None:
    peer = client()
    peer.discover(0.0)
    peer.receive(OFFER, 0.1)
    assert peer.receive(NAK, 0.2) == Nak(SERVER)
    assert peer.state is dhcp.State.INIT


def test_renewing_is_unicast_with_our_address_and_no_server_id() -> None:
    peer = client()
    peer.discover(0.0)
    peer.receive(OFFER, 0.0)
    lease = peer.receive(ACK, 0.0)
    assert isinstance(lease, Lease)
    message = decode_request(peer.renew(lease, 43200.0, rebinding=False))
    assert message["ciaddr"] == "10.0.2.15" and message["flags"] == 0
    assert 54 not in message["options"] and 50 not in message["options"]
    renewed = peer.receive(ACK, 43200.5)
    assert isinstance(renewed, Lease) and renewed.start == 43200.0


def decode_request(data: bytes) -> dict[str, object]:
    """The fields a test looks at in a BOOTREQUEST."""
    assert data[0] == 1 and data[236:240] == bytes.fromhex(COOKIE)
    options: dict[int, bytes] = {}
    i = 240
    while data[i] != 255:
        options[data[i]] = data[i + 2 : i + 2 + data[i + 1]]
        i += 2 + data[i + 1]
    return {
        "flags": int.from_bytes(data[10:12], "big"),
        "ciaddr": str(ipaddress.IPv4Address(data[12:16])),
        "kind": options[53][0],
        "options": options,
    }


@pytest.mark.parametrize("seed", range(4))
def test_parser_returns_a_reply_or_raises_bad_message(seed: int) -> None:
    """Whole, cut at every length, and with random bytes changed: a valid
    ``Reply`` or ``BadMessage``, never anything else (the client too)."""
    rng = random.Random(seed)
    inputs = [ACK[:n] for n in range(len(ACK) + 1)] if seed == 0 else []
    for _ in range(2000):
        mangled = bytearray(rng.choice([OFFER, ACK, NAK]))
        for _ in range(rng.randint(1, 6)):
            mangled[rng.randrange(236, len(mangled))] = rng.randrange(256)
        inputs.append(bytes(mangled))
        inputs.append(bytes(rng.randrange(256) for _ in range(rng.randrange(300))))
    for data in inputs:
        try:
            reply = decode(data)
        except BadMessage:
            continue
        assert reply.kind in range(256) and len(reply.chaddr) == 6
        for state in (dhcp.State.SELECTING, dhcp.State.REQUESTING):
            peer = client()
            peer.discover(0.0)
            peer.state = state
            try:
                peer.receive(data, 1.0)
            except BadMessage:
                pass


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class ScriptedServer:
    """A link whose server answers as slirp does while ``up``; waiting for a
    reply that never comes moves the manual clock on by the whole timeout."""

    def __init__(self, clock: ManualClock, up: bool = True) -> None:
        self.clock = clock
        self.up = up
        self.sent: list[tuple[float, ipaddress.IPv4Address, int]] = []
        self.pending: list[bytes] = []

    def send(self, data: bytes, to: ipaddress.IPv4Address) -> None:
        kind = decode_request(data)["kind"]
        assert isinstance(kind, int)
        self.sent.append((self.clock.now, to, kind))
        if self.up:
            self.pending.append(OFFER if kind == dhcp.DISCOVER else ACK)

    def receive(self, timeout: float) -> bytes | None:
        if self.pending:
            return self.pending.pop(0)
        self.clock.now += timeout
        return None


def test_discover_is_retransmitted_at_rfc_2131_intervals_within_the_bound() -> None:
    clock = ManualClock()
    link = ScriptedServer(clock, up=False)
    assert obtain(link, client(), clock, deadline=30.0) is None
    times = [at for at, to, kind in link.sent]
    assert all(to == BROADCAST and kind == dhcp.DISCOVER for _, to, kind in link.sent)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # §4.1: 4 s +-1, then doubled (8 +-1, 16 +-1): four DISCOVERs in 30 s
    assert len(times) == 4 and 3 <= gaps[0] <= 5 and 7 <= gaps[1] <= 9 and 15 <= gaps[2] <= 17
    assert clock.now == 30.0


def test_keeper_renews_rebinds_and_asks_again_when_the_lease_runs_out() -> None:
    clock = ManualClock()
    link = ScriptedServer(clock)
    applied: list[Lease] = []
    cleared: list[float] = []
    lines: list[str] = []
    keeper = Keeper(
        link, client(), "eth0", apply=applied.append, clear=lambda: cleared.append(clock.now),
        log=lines.append, clock=clock, sleep=clock.sleep,
    )  # fmt: skip
    assert keeper.acquire(30.0)
    assert [kind for _, _, kind in link.sent] == [dhcp.DISCOVER, dhcp.REQUEST]
    leased = "10.0.2.15/24 router=10.0.2.2 dns=10.0.2.3 lease=86400s server=10.0.2.2"
    assert lines == [f"init: dhcp eth0 52:54:00:12:34:56 {leased}"]

    link.sent.clear()
    assert keeper.step()  # at T1 the server answers the unicast renewal
    assert link.sent == [(43200.0, SERVER, dhcp.REQUEST)]
    assert keeper.lease is not None and keeper.lease.start == 43200.0
    assert len(applied) == 1  # the same lease: nothing to configure again

    link.up = False
    link.sent.clear()
    assert keeper.step()  # nobody answers: renewing, rebinding, then the end of the lease
    renewing = [at for at, to, _ in link.sent if to == SERVER]
    rebinding = [at for at, to, _ in link.sent if to == BROADCAST]
    t1, t2, end = 43200.0 * 2, 43200.0 + 75600.0, 43200.0 + 86400.0
    assert renewing[0] == t1 and rebinding[0] == t2
    # §4.4.5: half the time left until T2 (or the end), never less than 60 s
    assert renewing[1] - renewing[0] == (t2 - t1) / 2
    for sent in (renewing, rebinding):
        assert all(b - a >= 60 for a, b in itertools.pairwise(sent))
    assert cleared == [end] and keeper.lease is None
    assert lines[-1] == "init: dhcp eth0: the lease of 10.0.2.15/24 ran out; asking again"

    link.up = True
    assert keeper.step()
    assert keeper.lease is not None and len(applied) == 2


def test_cmdline_keys_choose_dhcp_or_static_with_name_servers() -> None:
    config = NetConfig.from_keys({"ipv4": "dhcp", "nameserver": "10.0.2.3,9.9.9.9"})
    assert config.dhcp and config.address is None and config.gateway is None
    assert config.nameservers == (ipaddress.IPv4Address("10.0.2.3"), ipaddress.IPv4Address("9.9.9.9"))
    static = NetConfig.from_keys({"ipv4": "10.0.2.15/24", "gateway": "10.0.2.2"})
    assert not static.dhcp and static.nameservers == ()
