"""Large files through the stream's sendfile: exact bytes at any offset, and the
bad cases (the file shrank or vanished since the site was built, the client
went away mid-file), which must close the connection and never crash."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from web_helpers import request
from web_server_helpers import WAIT, fetch, log_records, read_until_closed, split_head, start_web

SIZE = 3 * 1024 * 1024 + 17  # over the in-memory limit: streamed, not cached


def content(size: int = SIZE) -> bytes:
    block = hashlib.sha256(b"files").digest()
    return (block * (size // len(block) + 1))[:size]


async def test_large_file_and_ranges_are_exact(tmp_path: Path) -> None:
    data = content()
    (tmp_path / "big.bin").write_bytes(data)
    async with start_web(["--root", str(tmp_path)]) as app:
        address = app.address("tcp")
        whole = await fetch(address, "/big.bin")
        assert whole.status == 200 and whole.body == data
        part = await fetch(address, "/big.bin", headers={"Range": "bytes=1000000-2999999"})
        assert part.status == 206 and part.body == data[1_000_000:3_000_000]
        tail = await fetch(address, "/big.bin", headers={"Range": "bytes=-5"})
        assert tail.body == data[-5:]
        multi = await fetch(address, "/big.bin", headers={"Range": "bytes=0-9,2000000-2000009"})
        assert multi.status == 206 and data[:10] in multi.body and data[2_000_000:2_000_010] in multi.body


async def test_a_file_that_shrank_closes_the_connection(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(content())
    async with start_web(["--root", str(tmp_path)]) as app:
        address = app.address("tcp")
        path.write_bytes(content(SIZE // 2))  # changed on disk, the site not reloaded
        out = await _get(address.host, address.port, "/big.bin")
        status, headers, body = split_head(out)
        assert status == 200 and int(headers["content-length"]) == SIZE
        assert len(body) == SIZE // 2  # short: the connection was closed, not padded or hung
        path.unlink()
        status, headers, body = split_head(await _get(address.host, address.port, "/big.bin"))
        assert status == 200 and body == b""
        warnings = [str(r["msg"]) for r in log_records(app) if r["level"] == "warning"]
        assert any("shrank" in w for w in warnings) and any("vanished" in w for w in warnings)
        assert [r for r in log_records(app) if r["level"] == "error"] == []
        assert (await fetch(address, "/healthz")).status == 200


async def test_a_client_leaving_mid_file_is_no_error(tmp_path: Path) -> None:
    (tmp_path / "big.bin").write_bytes(content(32 * 1024 * 1024))
    async with start_web(["--root", str(tmp_path)]) as app:
        address = app.address("tcp")
        for _ in range(5):
            reader, writer = await asyncio.open_connection(address.host, address.port)
            writer.write(request("/big.bin", host="a"))
            await asyncio.wait_for(reader.readexactly(100_000), WAIT)
            writer.transport.abort()  # a reset, mid-file
        assert (await fetch(address, "/healthz")).status == 200
        assert [r for r in log_records(app) if r["level"] == "error"] == []


async def _get(host: str, port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request(path, host="a"))
        return await read_until_closed(reader)
    finally:
        writer.close()
