"""The init's DHCP client (RFC 2131; options from RFC 2132), for ``ipv4=dhcp``.

Rules (RFC 2131 §4.4, the client's side of its Figure 5):

1. INIT: broadcast DHCPDISCOVER; SELECTING: the first DHCPOFFER for our
   ``xid`` and hardware address is taken, answered with a broadcast
   DHCPREQUEST naming its server (§4.4.1: the client may take the first).
2. REQUESTING: DHCPACK gives the lease (BOUND); DHCPNAK goes back to INIT.
3. BOUND until T1 (default half the lease, §4.4.5), then RENEWING: DHCPREQUEST
   with our address in ``ciaddr`` unicast to the server that gave the lease;
   from T2 (default 7/8 of the lease) REBINDING: the same, broadcast.  An
   ACK renews the lease; a NAK, or the lease running out, goes back to INIT
   and the address is taken off the interface.
4. Until the address is configured, messages ask for broadcast replies (the
   BROADCAST flag, §4.1): with no address yet, the kernel drops unicast IP
   addressed to us before any socket sees it.
5. Retransmission (§4.1): 4 s randomised by +-1 s, doubled up to 64 s; while
   renewing or rebinding, half the time left until T2 (or the end of the
   lease), at least 60 s (§4.4.5).

``Client`` is the sans-IO core: it makes the messages and reads the replies
(bytes in, bytes or a ``Lease`` out).  ``obtain`` and ``Keeper`` are the I/O
around it, on one UDP socket bound to port 68 and to the interface
(``SO_BINDTODEVICE``), with the clock and the sleep injected.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

__all__ = [
    "BadMessage",
    "Client",
    "Keeper",
    "Lease",
    "Nak",
    "UdpLink",
    "decode",
    "encode",
    "obtain",
    "renew",
]

SERVER_PORT = 67
CLIENT_PORT = 68
BROADCAST = ipaddress.IPv4Address("255.255.255.255")
_ANY = ipaddress.IPv4Address(0)

# RFC 2131 §3: the magic cookie that starts the options field
_COOKIE = b"\x63\x82\x53\x63"
# op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr, sname, file, cookie
_HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s4s")
_BOOTREQUEST, _BOOTREPLY = 1, 2
_ETHERNET = 1
_FLAG_BROADCAST = 0x8000
#: RFC 2131 §2: a client must accept messages of up to 576 bytes; we say we take 1500 (option 57)
MAX_MESSAGE = 1500

# RFC 2132 §9.6: option 53 values
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)
# RFC 2132 option codes
_PAD, _END = 0, 255
_SUBNET_MASK, _ROUTER, _DNS = 1, 3, 6
_REQUESTED_IP, _LEASE_TIME, _OVERLOAD, _MESSAGE_TYPE, _SERVER_ID = 50, 51, 52, 53, 54
_PARAMETERS, _MAX_SIZE, _RENEWAL_TIME, _REBINDING_TIME, _CLIENT_ID = 55, 57, 58, 59, 61
#: what we ask for: mask, router, DNS servers, lease time, T1, T2
_WANTED = bytes([_SUBNET_MASK, _ROUTER, _DNS, _LEASE_TIME, _RENEWAL_TIME, _REBINDING_TIME])
#: RFC 2132 §9.2: lease time 0xffffffff is infinity
_INFINITE = 0xFFFFFFFF

#: §4.1 retransmission: first wait, its randomisation, the cap
FIRST_WAIT, JITTER, MAX_WAIT = 4.0, 1.0, 64.0
#: §4.4.5: the least wait between retransmissions while renewing or rebinding
MIN_RENEW_WAIT = 60.0
#: a shorter lease is taken as this long (RFC 2131 sets no minimum; a lease of
#: seconds would keep the client asking in a loop)
MIN_LEASE = 60


class BadMessage(ValueError):
    """A datagram on port 68 that is not a well-formed BOOTREPLY: the server's
    (or a stranger's) fault; the client drops it and keeps waiting (§4.1)."""


@dataclass(frozen=True, slots=True)
class Reply:
    kind: int
    xid: int
    yiaddr: ipaddress.IPv4Address
    chaddr: bytes
    options: dict[int, bytes]


@dataclass(frozen=True, slots=True)
class Nak:
    """The server refused the address (DHCPNAK): start again."""

    server: ipaddress.IPv4Address | None


@dataclass(frozen=True, slots=True)
class Lease:
    address: ipaddress.IPv4Interface
    router: ipaddress.IPv4Address | None
    dns: tuple[ipaddress.IPv4Address, ...]
    server: ipaddress.IPv4Address
    #: seconds from ``start``; None: the lease never ends
    length: float | None
    renew: float | None
    rebind: float | None
    #: the clock when the request was sent (§4.4.5: times count from then)
    start: float

    def describe(self) -> str:
        dns = ",".join(map(str, self.dns)) or "-"
        length = "infinite" if self.length is None else f"{self.length:.0f}s"
        return f"{self.address} router={self.router or '-'} dns={dns} lease={length} server={self.server}"


def encode(
    kind: int,
    xid: int,
    mac: bytes,
    *,
    ciaddr: ipaddress.IPv4Address = _ANY,
    options: tuple[tuple[int, bytes], ...] = (),
    broadcast: bool = True,
) -> bytes:
    """A BOOTREQUEST of DHCP message type ``kind``."""
    header = _HEADER.pack(
        _BOOTREQUEST, _ETHERNET, len(mac), 0, xid, 0, _FLAG_BROADCAST if broadcast else 0,
        ciaddr.packed, _ANY.packed, _ANY.packed, _ANY.packed, mac.ljust(16, b"\0"), b"", b"", _COOKIE,
    )  # fmt: skip
    body = [bytes([_MESSAGE_TYPE, 1, kind])]
    client_id = bytes([_ETHERNET]) + mac  # RFC 2132 §9.14: type 1 (Ethernet) and the address
    every = (
        (_CLIENT_ID, client_id),
        *options,
        (_PARAMETERS, _WANTED),
        (_MAX_SIZE, struct.pack("!H", MAX_MESSAGE)),
    )
    for code, value in every:
        body.append(bytes([code, len(value)]) + value)
    body.append(bytes([_END]))
    return header + b"".join(body)


def _options(data: bytes) -> dict[int, bytes]:
    """RFC 2132 §2: code, length, value; pad and end have no length.  A code
    given twice is concatenated (RFC 3396).  Option overload (52: more options
    in ``sname``/``file``) is not followed: the options we use come first."""
    found: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        code = data[i]
        if code == _END:
            return found
        if code == _PAD:
            i += 1
            continue
        if i + 1 >= len(data) or i + 2 + data[i + 1] > len(data):
            raise BadMessage(f"option {code} runs past the end of the message")
        length = data[i + 1]
        found[code] = found.get(code, b"") + data[i + 2 : i + 2 + length]
        i += 2 + length
    raise BadMessage("no end option")


def decode(data: bytes) -> Reply:
    """A BOOTREPLY with a DHCP message type, or ``BadMessage``."""
    if len(data) < _HEADER.size:
        raise BadMessage(f"{len(data)} bytes: shorter than the fixed fields ({_HEADER.size})")
    op, htype, hlen, _, xid, _, _, _, yiaddr, _, _, chaddr, _, _, cookie = _HEADER.unpack_from(data)
    if op != _BOOTREPLY:
        raise BadMessage(f"op {op} is not BOOTREPLY")
    if cookie != _COOKIE:
        raise BadMessage("no DHCP magic cookie")
    if htype != _ETHERNET or hlen != 6:
        raise BadMessage(f"hardware type {htype}/{hlen} is not Ethernet")
    options = _options(data[_HEADER.size :])
    kind = options.get(_MESSAGE_TYPE, b"")
    if len(kind) != 1:
        raise BadMessage("no DHCP message type (a plain BOOTP reply)")
    return Reply(kind[0], xid, ipaddress.IPv4Address(yiaddr), chaddr[:hlen], options)


def _address(value: bytes | None) -> ipaddress.IPv4Address | None:
    return ipaddress.IPv4Address(value[:4]) if value and len(value) >= 4 else None


def _seconds(value: bytes | None) -> int | None:
    return struct.unpack("!I", value[:4])[0] if value and len(value) >= 4 else None


def _lease(reply: Reply, server: ipaddress.IPv4Address, start: float) -> Lease:
    options = reply.options
    mask = options.get(_SUBNET_MASK)
    if mask is not None and len(mask) == 4:
        try:
            address = ipaddress.IPv4Interface(f"{reply.yiaddr}/{ipaddress.IPv4Address(mask)}")
        except ValueError:
            raise BadMessage(f"subnet mask {ipaddress.IPv4Address(mask)} is not a netmask") from None
    else:
        # no mask given: the address's class decides, as ISC dhclient does
        first = reply.yiaddr.packed[0]
        address = ipaddress.IPv4Interface(f"{reply.yiaddr}/{8 if first < 128 else 16 if first < 192 else 24}")
    dns_bytes = options.get(_DNS, b"")
    dns = tuple(ipaddress.IPv4Address(dns_bytes[i : i + 4]) for i in range(0, len(dns_bytes) - 3, 4))
    length = _seconds(options.get(_LEASE_TIME))
    if length is None or length == _INFINITE:
        return Lease(address, _address(options.get(_ROUTER)), dns, server, None, None, None, start)
    length = max(length, MIN_LEASE)
    renew = _seconds(options.get(_RENEWAL_TIME))
    rebind = _seconds(options.get(_REBINDING_TIME))
    # §4.4.5 defaults; a server's T1 > T2 or T2 > lease is not trusted
    rebind_at = float(rebind) if rebind is not None and rebind <= length else length * 0.875
    renew_at = float(renew) if renew is not None and renew <= rebind_at else length * 0.5
    return Lease(
        address, _address(options.get(_ROUTER)), dns, server, float(length), renew_at, rebind_at, start
    )


class State(Enum):
    INIT = "init"
    SELECTING = "selecting"
    REQUESTING = "requesting"
    BOUND = "bound"
    RENEWING = "renewing"
    REBINDING = "rebinding"


#: the reply kinds each state takes; everything else is dropped
_ACCEPTS = {
    State.INIT: (),
    State.SELECTING: (OFFER,),
    State.REQUESTING: (ACK, NAK),
    State.BOUND: (),
    State.RENEWING: (ACK, NAK),
    State.REBINDING: (ACK, NAK),
}


class Client:
    """The client's state machine, sans IO: ``discover``/``renew`` give the
    message to send, ``receive`` takes a datagram and gives the next message
    (a REQUEST after an OFFER), a ``Lease`` (ACK), a ``Nak``, or None (not for
    us, or not now).  ``xids`` gives each exchange its transaction id."""

    def __init__(self, mac: bytes, xids: Callable[[], int]) -> None:
        self.mac = mac
        self._xids = xids
        self.state = State.INIT
        self.xid = 0
        self._lease: Lease | None = None
        self._server: ipaddress.IPv4Address | None = None
        self._sent = 0.0

    def discover(self, now: float) -> bytes:
        self.state, self.xid, self._sent = State.SELECTING, self._xids(), now
        return encode(DISCOVER, self.xid, self.mac)

    def renew(self, lease: Lease, now: float, *, rebinding: bool) -> bytes:
        """§4.4.5: our address in ``ciaddr``, no server identifier or requested address."""
        self.state = State.REBINDING if rebinding else State.RENEWING
        self.xid, self._lease, self._sent = self._xids(), lease, now
        # §4.1: a client that has its address takes unicast replies
        return encode(REQUEST, self.xid, self.mac, ciaddr=lease.address.ip, broadcast=False)

    def receive(self, data: bytes, now: float) -> bytes | Lease | Nak | None:
        """Raises ``BadMessage`` for a malformed datagram (the caller drops it)."""
        reply = decode(data)
        if reply.xid != self.xid or reply.chaddr != self.mac or reply.kind not in _ACCEPTS[self.state]:
            return None
        server = _address(reply.options.get(_SERVER_ID))
        if reply.kind == OFFER:
            if server is None:
                raise BadMessage("an offer without a server identifier")  # RFC 2131 Table 3: MUST
            self.state, self._server, self._sent = State.REQUESTING, server, now
            options = ((_REQUESTED_IP, reply.yiaddr.packed), (_SERVER_ID, server.packed))
            return encode(REQUEST, self.xid, self.mac, options=options)
        if reply.kind == NAK:
            self.state = State.INIT
            return Nak(server)
        self.state = State.BOUND
        known = self._server or (self._lease.server if self._lease else None)
        return _lease(reply, server or known or _ANY, self._sent)


class Link(Protocol):
    """Datagrams on the client port of one interface."""

    def send(self, data: bytes, to: ipaddress.IPv4Address) -> None: ...

    def receive(self, timeout: float) -> bytes | None: ...


class UdpLink:
    """A UDP socket on port 68 bound to the interface: broadcasts go out of
    it with no address configured, and broadcast replies come in."""

    def __init__(self, interface: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        self.sock.bind(("0.0.0.0", CLIENT_PORT))

    def send(self, data: bytes, to: ipaddress.IPv4Address) -> None:
        try:
            self.sock.sendto(data, (str(to), SERVER_PORT))
        except OSError:
            pass  # no route yet, or the link is down: it counts as a lost datagram

    def receive(self, timeout: float) -> bytes | None:
        self.sock.settimeout(max(timeout, 0.0))
        try:
            return self.sock.recv(65535)
        except (TimeoutError, BlockingIOError):
            return None


def xid_source() -> int:
    """A transaction id: random if the kernel can give one without waiting
    (the init asks before the random pool is known to be ready)."""
    try:
        return int.from_bytes(os.getrandom(4, os.GRND_NONBLOCK), "big")
    except (BlockingIOError, OSError):
        return time.monotonic_ns() & 0xFFFFFFFF


def _jitter(xid: int) -> float:
    """-1..+1 s (§4.1), drawn from the transaction id (itself random)."""
    return ((xid >> 8) % 2001 - 1000) / 1000 * JITTER


def _exchange(
    link: Link,
    client: Client,
    message: bytes,
    to: ipaddress.IPv4Address,
    waits: Callable[[float], float | None],
    clock: Callable[[], float],
) -> Lease | Nak | None:
    """Send ``message``, answer an OFFER with its REQUEST, until a lease or a
    NAK comes; ``waits(now)`` says how long to wait before sending again
    (None: give up)."""
    while True:
        wait = waits(clock())
        if wait is None:
            return None
        link.send(message, to)
        until = clock() + wait
        while (left := until - clock()) > 0:
            data = link.receive(left)
            if data is None:
                break
            try:
                result = client.receive(data, clock())
            except BadMessage:
                continue
            if isinstance(result, bytes):  # the REQUEST for an offer: send it at once
                message = result
                break
            if result is not None:
                return result


def obtain(link: Link, client: Client, clock: Callable[[], float], deadline: float) -> Lease | None:
    """INIT to BOUND, or None at ``deadline``; a NAK starts again (§3.1)."""
    while clock() < deadline:
        message = client.discover(clock())
        wait = FIRST_WAIT

        def waits(now: float) -> float | None:
            nonlocal wait
            if now >= deadline:
                return None
            this, wait = wait + _jitter(client.xid), min(wait * 2, MAX_WAIT)
            return min(this, deadline - now)

        result = _exchange(link, client, message, BROADCAST, waits, clock)
        if isinstance(result, Lease):
            return result
        if result is None:
            return None
    return None


def renew(link: Link, client: Client, lease: Lease, clock: Callable[[], float]) -> Lease | Nak | None:
    """RENEWING from T1 then REBINDING from T2 (§4.4.5): a new lease, a NAK,
    or None when the lease ran out."""
    assert lease.length is not None and lease.renew is not None and lease.rebind is not None
    for rebinding, until in ((False, lease.rebind), (True, lease.length)):
        end = lease.start + until

        def waits(now: float, end: float = end) -> float | None:
            if now >= end:
                return None
            return min(max((end - now) / 2, MIN_RENEW_WAIT), end - now)

        message = client.renew(lease, clock(), rebinding=rebinding)
        result = _exchange(link, client, message, BROADCAST if rebinding else lease.server, waits, clock)
        if result is not None:
            return result
    return None


class Keeper:
    """Gets a lease and keeps it (on a daemon thread once started): renews it,
    and when it is lost takes the address off and asks again, a round of
    DISCOVERs every ``retry`` seconds.  ``apply`` configures a lease's
    address, ``clear`` takes it off."""

    def __init__(
        self,
        link: Link,
        client: Client,
        interface: str,
        *,
        apply: Callable[[Lease], None],
        clear: Callable[[], None],
        log: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        retry: float = 60.0,
    ) -> None:
        self.link, self.client, self.interface = link, client, interface
        self.apply, self.clear, self.log = apply, clear, log
        self.clock, self.sleep, self.retry = clock, sleep, retry
        self.lease: Lease | None = None

    def acquire(self, timeout: float) -> bool:
        """INIT to BOUND within ``timeout``; the lease configured and logged."""
        lease = obtain(self.link, self.client, self.clock, self.clock() + timeout)
        if lease is None:
            return False
        self.lease = lease
        self.apply(lease)
        self.log(f"init: dhcp {self.interface} {self._mac} {lease.describe()}")
        return True

    @property
    def _mac(self) -> str:
        return self.client.mac.hex(":")

    def start(self) -> None:
        threading.Thread(target=self.run, name="dhcp", daemon=True).start()

    def step(self) -> bool:
        """One turn: get a lease, or keep the one held until it is renewed or
        lost.  False when there is nothing more to do (an infinite lease)."""
        lease = self.lease
        if lease is None:
            self.acquire(self.retry)
            return True
        if lease.length is None or lease.renew is None:
            return False
        self.sleep(max(lease.start + lease.renew - self.clock(), 0.0))
        result = renew(self.link, self.client, lease, self.clock)
        if isinstance(result, Lease):
            self.lease = result
            if (result.address, result.router, result.dns) != (lease.address, lease.router, lease.dns):
                self.apply(result)
                self.log(f"init: dhcp {self.interface} {self._mac} {result.describe()}")
            return True
        what = "refused (DHCPNAK)" if result else "ran out"
        self.log(f"init: dhcp {self.interface}: the lease of {lease.address} {what}; asking again")
        self.lease = None
        self.clear()
        return True

    def run(self) -> None:
        try:
            while self.step():
                pass
        except Exception as exc:  # the appliance goes on with the address it has
            self.log(f"init: dhcp {self.interface}: the lease keeper stopped: {exc!r}")
