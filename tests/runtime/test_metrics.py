"""The metrics device: exposition text, bounds, collectors, /proc, and the HTTP endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import math
import os
import random
import re
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from runtime.devices import Address
from runtime.lifecycle import Lifecycle
from runtime.log import MemoryLogSink
from runtime.metrics import CONTENT_TYPE, DEFAULT_BUCKETS, Registry, add_process_metrics, format_value
from runtime.metrics_http import MAX_DISCARDED_BODY, MAX_REQUEST_HEAD, _serve_connection, serve_metrics
from runtime.net.host import HostNet
from runtime.testing.conformance.metrics import MetricsConformance, parse_exposition

#: every wait in these tests is bounded by this (seconds); generous for shared machines
BOUND = 10.0


class TestRegistry(MetricsConformance):
    @pytest.fixture
    def metrics(self) -> Registry:
        return Registry()


# --------------------------------------------------------------------- exposition


def test_exposition_exact() -> None:
    reg = Registry()
    queries = reg.counter("dns_queries_total", "Queries received.", labels=("qtype", "rcode"))
    queries.labels("A", "NOERROR").inc()
    queries.labels("A", "NOERROR").inc()
    queries.labels("MX", "NXDOMAIN").inc(0.5)
    reg.gauge("dns_zones", "Zones loaded.").set(3)
    latency = reg.histogram("dns_answer_seconds", "Time to answer.", buckets=(0.001, 0.01))
    latency.observe(0.0005)
    latency.observe(0.01)
    latency.observe(2)
    reg.counter("empty_total", "A family with no children yet.", labels=("x",))
    assert reg.render() == (
        "# HELP dns_queries_total Queries received.\n"
        "# TYPE dns_queries_total counter\n"
        'dns_queries_total{qtype="A",rcode="NOERROR"} 2\n'
        'dns_queries_total{qtype="MX",rcode="NXDOMAIN"} 0.5\n'
        "# HELP dns_zones Zones loaded.\n"
        "# TYPE dns_zones gauge\n"
        "dns_zones 3\n"
        "# HELP dns_answer_seconds Time to answer.\n"
        "# TYPE dns_answer_seconds histogram\n"
        'dns_answer_seconds_bucket{le="0.001"} 1\n'
        'dns_answer_seconds_bucket{le="0.01"} 2\n'
        'dns_answer_seconds_bucket{le="+Inf"} 3\n'
        "dns_answer_seconds_sum 2.0105\n"
        "dns_answer_seconds_count 3\n"
        "# HELP empty_total A family with no children yet.\n"
        "# TYPE empty_total counter\n"
    )


def test_labelled_histogram_exact() -> None:
    reg = Registry()
    reg.histogram("op_seconds", "Ops.", labels=("op",), buckets=(1,)).labels("get").observe(0.25)
    assert reg.render() == (
        "# HELP op_seconds Ops.\n"
        "# TYPE op_seconds histogram\n"
        'op_seconds_bucket{op="get",le="1"} 1\n'
        'op_seconds_bucket{op="get",le="+Inf"} 1\n'
        'op_seconds_sum{op="get"} 0.25\n'
        'op_seconds_count{op="get"} 1\n'
    )


def test_escaping_exact() -> None:
    reg = Registry()
    reg.gauge("g", 'Help with \\ and\nnewline and "quotes".', labels=("v",)).labels('a\\b"c\nd').set(1)
    assert reg.render() == (
        '# HELP g Help with \\\\ and\\nnewline and "quotes".\n# TYPE g gauge\ng{v="a\\\\b\\"c\\nd"} 1\n'
    )


def test_empty_registry_renders_nothing() -> None:
    assert Registry().render() == ""


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (3.0, "3"),
        (-2, "-2"),
        (0.25, "0.25"),
        (1e-9, "1e-09"),
        (1e20, "1e+20"),
        (2.0**53, "9007199254740992.0"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
        (math.nan, "NaN"),
    ],
)
def test_format_value(value: float, text: str) -> None:
    assert format_value(value) == text
    if value == value:
        assert float(text.replace("Inf", "inf")) == value


def test_default_buckets_are_the_client_defaults() -> None:
    assert DEFAULT_BUCKETS == (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
    reg = Registry()
    reg.histogram("h", "H.")
    les = [line.split('"')[1] for line in reg.render().splitlines() if line.startswith("h_bucket")]
    assert les == [
        *("0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.25", "0.5", "0.75"),
        *("1", "2.5", "5", "7.5", "10", "+Inf"),
    ]


def test_histogram_nan_goes_to_inf_bucket() -> None:
    reg = Registry()
    histogram = reg.histogram("h", "H.", buckets=(1,))
    histogram.observe(math.nan)
    assert histogram.buckets() == [(1.0, 0), (math.inf, 1)]
    assert histogram.count == 1 and math.isnan(histogram.sum)


def test_child_values_are_readable() -> None:
    reg = Registry()
    counter = reg.counter("c_total", "C.")
    counter.inc(2)
    gauge = reg.gauge("g", "G.")
    gauge.set(True)
    histogram = reg.histogram("h", "H.", buckets=(1, 2))
    histogram.observe(1.5)
    assert (counter.value, gauge.value) == (2, 1.0)
    assert histogram.buckets() == [(1.0, 0), (2.0, 1), (math.inf, 1)]
    assert (histogram.sum, histogram.count) == (1.5, 1)


def test_unlabelled_metric_is_its_own_child() -> None:
    reg = Registry()
    counter = reg.counter("c_total", "C.")
    assert counter.labels() is counter
    assert reg.gauge("g", "G.").labels().labels().value == 0
    for metric in (counter, reg.gauge("g2", "G."), reg.histogram("h", "H.")):
        with pytest.raises(ValueError, match="no labels"):
            metric.labels("x")


def test_label_values_are_strings_and_cached_by_spelling() -> None:
    reg = Registry()
    family = reg.counter("http_responses_total", "Responses.", labels=("status",))
    child = family.labels(200)
    assert family.labels("200") is child and family.labels(200) is child
    child.inc()
    assert 'status="200"} 1\n' in reg.render()
    unhashable = family.labels(["x"])  # still works, converted with str()
    assert family.labels("['x']") is unhashable


def test_series_bound_folds_new_label_sets_into_overflow() -> None:
    reg = Registry(max_series=2)
    family = reg.counter("peers_total", "Per peer.", labels=("peer", "kind"))
    family.labels("a", "x").inc()
    family.labels("b", "x").inc()
    family.labels("c", "x").inc()
    family.labels("d", "y").inc(2)
    family.labels("a", "x").inc()
    samples = parse_exposition(reg.render())["peers_total"].samples
    assert [(s.labels, s.value) for s in samples] == [
        ({"peer": "a", "kind": "x"}, 2),
        ({"peer": "b", "kind": "x"}, 1),
        ({"peer": "_overflow", "kind": "_overflow"}, 3),
    ]


# --------------------------------------------------------------------- registration errors


def test_clash_messages_name_both_shapes() -> None:
    reg = Registry()
    reg.counter("c_total", "C.", labels=("a",))
    with pytest.raises(
        ValueError,
        match=r"c_total is already registered as a counter with labels \('a',\); "
        r"cannot register it again as a gauge with labels \('a',\)",
    ):
        reg.gauge("c_total", "C.", labels=("a",))


def test_histogram_sample_names_cannot_be_taken_twice() -> None:
    reg = Registry()
    reg.histogram("rtt", "RTT.")
    with pytest.raises(ValueError, match="rtt_count"):
        reg.counter("rtt_count", "Clash.")
    reg.gauge("size_sum", "Taken first.")
    with pytest.raises(ValueError, match="size_sum"):
        reg.histogram("size", "Clash.")


@pytest.mark.parametrize(
    ("buckets", "message"),
    [
        ((1, 1), "increase strictly"),
        ((2, 1), "increase strictly"),
        ((math.nan,), "finite"),
        ((-math.inf, 1), "finite"),
        ((math.inf,), "at least one"),
    ],
)
def test_bad_buckets(buckets: tuple[float, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Registry().histogram("h", "H.", buckets=buckets)


def test_explicit_inf_bucket_is_the_same_histogram() -> None:
    reg = Registry()
    assert reg.histogram("h", "H.", buckets=(1, math.inf)) is reg.histogram("h", "H.", buckets=(1,))


def test_histogram_le_label_and_duplicate_labels_are_refused() -> None:
    reg = Registry()
    with pytest.raises(ValueError, match="'le' is reserved"):
        reg.histogram("h", "H.", labels=("le",))
    with pytest.raises(ValueError, match="duplicate"):
        reg.counter("c_total", "C.", labels=("a", "a"))


# --------------------------------------------------------------------- collectors


def test_collectors_run_at_render() -> None:
    reg = Registry()
    gauge = reg.gauge("open_connections", "Open connections.")
    calls = []

    def collect() -> None:
        calls.append(1)
        gauge.set(len(calls) * 10)

    reg.add_collector(collect)
    assert "open_connections 10\n" in reg.render()
    assert "open_connections 20\n" in reg.render()
    reg.remove_collector(collect)
    assert "open_connections 20\n" in reg.render()


def test_failing_collector_is_counted_and_the_others_still_render() -> None:
    reg = Registry()
    gauge = reg.gauge("g", "G.")

    def broken() -> None:
        raise OSError("gone")

    reg.add_collector(broken)
    reg.add_collector(lambda: gauge.set(7))
    assert "g 7\n" in reg.render()
    assert reg.collector_errors == 1


# --------------------------------------------------------------------- process metrics


def _fake_proc(root: Path, *, comm: str = "python3 (x) y", utime: int = 250, stime: int = 50) -> None:
    (root / "self" / "fd").mkdir(parents=True)
    for fd in range(3):
        (root / "self" / "fd" / str(fd)).write_text("")
    # fields 3..: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    # cutime cstime priority nice threads itrealvalue starttime vsize rss
    stat = f"1234 ({comm}) S 1 1234 1234 0 -1 4194560 100 0 0 0 {utime} {stime} 0 0 20 0 1 0 5000 1000 400\n"
    (root / "self" / "stat").write_text(stat)
    (root / "self" / "status").write_text("Name:\tpython3\nVmPeak:\t 9 kB\nVmRSS:\t  2048 kB\nThreads:\t1\n")
    (root / "stat").write_text("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n")


def test_process_metrics_from_proc(tmp_path: Path) -> None:
    _fake_proc(tmp_path)
    ticks = os.sysconf("SC_CLK_TCK")
    reg = Registry()
    assert add_process_metrics(reg, proc=str(tmp_path)) is True
    families = parse_exposition(reg.render())
    assert families["process_resident_memory_bytes"].value() == 2048 * 1024
    assert families["process_cpu_seconds_total"].value() == pytest.approx(300 / ticks)
    assert families["process_cpu_seconds_total"].type == "counter"
    assert families["process_open_fds"].value() == 3
    assert families["process_start_time_seconds"].value() == pytest.approx(1700000000 + 5000 / ticks)

    # Values follow /proc at each render; if it disappears they stay as they were.
    (tmp_path / "self" / "fd" / "3").write_text("")
    assert parse_exposition(reg.render())["process_open_fds"].value() == 4
    (tmp_path / "self" / "stat").unlink()
    families = parse_exposition(reg.render())
    assert families["process_open_fds"].value() == 4
    assert reg.collector_errors == 0


def test_process_metrics_skip_without_proc(tmp_path: Path) -> None:
    reg = Registry()
    assert add_process_metrics(reg, proc=str(tmp_path / "nothing")) is False
    assert reg.render() == ""


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs Linux /proc")
def test_process_metrics_of_this_process() -> None:
    reg = Registry()
    assert add_process_metrics(reg)
    families = parse_exposition(reg.render())
    assert families["process_resident_memory_bytes"].value() > 1024 * 1024
    assert families["process_open_fds"].value() >= 3
    assert families["process_start_time_seconds"].value() > 1e9


# --------------------------------------------------------------------- HTTP endpoint


@pytest.fixture
def registry() -> Registry:
    reg = Registry()
    reg.counter("hits_total", "Hits.").inc(3)
    return reg


@pytest.fixture
async def server(registry: Registry) -> AsyncIterator[Address]:
    net = HostNet(lifecycle=Lifecycle(), log=MemoryLogSink().logger("net"))
    listener = await net.listen_tcp(Address("127.0.0.1", 0))
    task = asyncio.create_task(serve_metrics(listener, registry))
    try:
        yield listener.address
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def exchange(address: Address, request: bytes) -> bytes:
    """Send raw bytes, read until the server closes."""
    reader, writer = await asyncio.open_connection(address.host, address.port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(BOUND):
            return await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=BOUND) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read()


async def test_get_metrics_with_urllib(server: Address) -> None:
    status, headers, body = await asyncio.to_thread(_get, f"http://{server}/metrics")
    assert status == 200
    assert headers["Content-Type"] == CONTENT_TYPE
    assert int(headers["Content-Length"]) == len(body)
    assert body == b"# HELP hits_total Hits.\n# TYPE hits_total counter\nhits_total 3\n"


async def test_index_page_and_404(server: Address) -> None:
    status, headers, body = await asyncio.to_thread(_get, f"http://{server}/")
    assert (status, headers["Content-Type"]) == (200, "text/html; charset=utf-8")
    assert b'<a href="/metrics">' in body
    status, _, body = await asyncio.to_thread(_get, f"http://{server}/nope")
    assert (status, body) == (404, b"Not Found\n")


async def test_query_string_is_ignored(server: Address) -> None:
    status, _, body = await asyncio.to_thread(_get, f"http://{server}/metrics?format=text")
    assert status == 200 and body.endswith(b"hits_total 3\n")


def _keep_alive(address: Address) -> list[tuple[int, bytes, bool]]:
    conn = http.client.HTTPConnection(address.host, address.port, timeout=BOUND)
    try:
        results = []
        conn.request("GET", "/metrics")
        sock = conn.sock
        response = conn.getresponse()
        results.append((response.status, response.read(), True))
        conn.request("HEAD", "/metrics")
        response = conn.getresponse()
        results.append((response.status, response.read(), conn.sock is sock))
        conn.request("POST", "/metrics", body=b"x=1")
        response = conn.getresponse()
        results.append((response.status, response.read(), conn.sock is sock))
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        results.append((response.status, response.read(), conn.sock is sock))
        return results
    finally:
        conn.close()


async def test_keep_alive_serves_several_requests_on_one_connection(
    server: Address, registry: Registry
) -> None:
    results = await asyncio.to_thread(_keep_alive, server)
    body = registry.render().encode()
    assert results == [
        (200, body, True),
        (200, b"", True),  # HEAD: no body
        (405, b"Method Not Allowed\n", True),
        (200, body, True),
    ]


async def test_head_announces_the_get_length(server: Address, registry: Registry) -> None:
    reply = await exchange(server, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert f"content-length: {len(registry.render())}".encode() in head.lower()
    assert body == b""


async def test_pipelined_requests_are_answered_in_order(server: Address) -> None:
    reply = await exchange(
        server,
        b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
        b"DELETE / HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    statuses = re.findall(rb"HTTP/1.1 [^\r]*", reply)
    assert statuses == [b"HTTP/1.1 404 Not Found", b"HTTP/1.1 405 Method Not Allowed", b"HTTP/1.1 200 OK"]
    assert reply.endswith(b"hits_total 3\n")


async def test_405_names_the_allowed_methods(server: Address) -> None:
    request = b"PUT /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    reply = await exchange(server, request)
    assert reply.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
    assert b"\r\nAllow: GET, HEAD\r\n" in reply


async def test_a_small_body_is_dropped_and_the_connection_kept(server: Address) -> None:
    body = b"x" * MAX_DISCARDED_BODY
    reply = await exchange(
        server,
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        + b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    assert re.findall(rb"HTTP/1.1 [^\r]*", reply) == [b"HTTP/1.1 405 Method Not Allowed", b"HTTP/1.1 200 OK"]


async def test_a_large_body_gets_an_answer_and_a_close(server: Address) -> None:
    # One byte over the bound: the server reads all we send, so its close is a clean FIN.
    body = b"x" * (MAX_DISCARDED_BODY + 1)
    request = b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n" + body
    reply = await exchange(server, request)
    assert reply.startswith(b"HTTP/1.1 405 ")
    assert b"\r\nconnection: close\r\n" in reply.lower()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nbad header line\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    ],
)
async def test_malformed_requests_get_400_and_a_close(server: Address, request_bytes: bytes) -> None:
    reply = await exchange(server, request_bytes)
    assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"\r\nconnection: close\r\n" in reply.lower()
    assert reply.endswith(b"\r\n\r\nBad Request\n")


async def test_oversized_head_is_refused(server: Address) -> None:
    padding = b"X-Pad: " + b"a" * 1000 + b"\r\n"
    request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + padding * (MAX_REQUEST_HEAD // len(padding) + 2)
    reply = await exchange(server, request)
    assert reply.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")


async def test_client_that_leaves_early_does_not_disturb_the_server(server: Address) -> None:
    _, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(b"GET /met")
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    status, _, _ = await asyncio.to_thread(_get, f"http://{server}/metrics")
    assert status == 200


# --------------------------------------------------------------------- fuzzed input


class ScriptedStream:
    """Gives the server fixed chunks, then end of stream; keeps what it sends."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks
        self.sent = bytearray()
        self.closed = False

    async def receive(self, max_bytes: int = 65536, *, timeout: float | None = None) -> bytes:
        return self._chunks.pop(0) if self._chunks else b""

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        self.sent += data

    async def aclose(self) -> None:
        self.closed = True


SEEDS = [
    b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    b"HEAD / HTTP/1.0\r\n\r\n",
    b"POST /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\nHost: y\r\n\r\n",
]


def _mutations(rng: random.Random) -> Iterator[bytes]:
    for _ in range(300):
        data = bytearray(rng.choice(SEEDS))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data) + 1)
            action = rng.randrange(3)
            if action == 0 and data:
                del data[at : at + rng.randint(1, 8)]
            elif action == 1:
                data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            else:
                data[at:at] = rng.choice([b"\r\n", b":", b" ", b"\x00", b"Content-Length: 99\r\n"])
        yield bytes(data)


@pytest.mark.parametrize("split", ["whole", "bytewise"])
async def test_any_input_gets_responses_or_a_close(split: str, registry: Registry) -> None:
    """The parser invariant: every input ends in well-framed responses and a close,
    never an exception out of the connection handler."""
    rng = random.Random(f"metrics-http-{split}")
    for data in [*SEEDS, *_mutations(rng)]:
        chunks = [data] if split == "whole" else [data[i : i + 1] for i in range(len(data))]
        stream = ScriptedStream(chunks)
        await _serve_connection(stream, registry)  # type: ignore[arg-type]
        assert stream.closed
        sent = bytes(stream.sent)
        assert sent == b"" or sent.startswith(b"HTTP/1.1 "), (data, sent)
        for status in re.findall(rb"HTTP/1.1 (\d{3}) ", sent):
            assert status in (b"200", b"400", b"404", b"405", b"431", b"501"), (data, sent)
