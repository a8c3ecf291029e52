"""HTTPS, the self-signed certificate, the HTTP -> HTTPS redirect listener: with
curl and the stdlib's ssl as clients."""

from __future__ import annotations

import asyncio
import hashlib
import io
import socket
import ssl
from pathlib import Path

import pytest
from web_server_helpers import WAIT, curl, fetch, log_records, start_web

from appliances.web import APPLIANCE
from runtime import EXIT_CONFIG, Address, make_self_signed, run

DEMO = Path(__file__).resolve().parents[2] / "appliances" / "web" / "data" / "site"


def _handshake(
    address: Address, *, max_version: ssl.TLSVersion | None = None
) -> tuple[bytes, str | None, str]:
    """(server certificate DER, ALPN chosen, TLS version) of one handshake, verifying nothing."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2", "http/1.1"])
    if max_version is not None:
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = max_version
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with socket.create_connection(address, timeout=WAIT) as raw, context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return der, tls.selected_alpn_protocol(), tls.version() or ""


def _fingerprint(der: bytes) -> str:
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def _resolve(address: Address) -> list[str]:
    return ["--resolve", f"localhost:{address.port}:{address.host}"]


async def test_self_signed_certificate_is_made_logged_and_served(tmp_path: Path) -> None:
    async with start_web(["--tls-listen", "127.0.0.1:0"]) as app:
        https = app.address("tcp", 1)
        der, alpn, version = await asyncio.to_thread(_handshake, https)
        (made,) = [r for r in log_records(app) if "self-signed" in str(r["msg"])]
        assert made["level"] == "warning"
        assert made["sha256"] == _fingerprint(der)
        assert alpn == "http/1.1"
        assert version in ("TLSv1.2", "TLSv1.3")
        ready = next(r for r in log_records(app) if r["msg"] == "ready")
        assert f"https://{https}/" in str(ready["url"])

        # The certificate the log vouched for is enough for curl to verify the server.
        cafile = tmp_path / "served.pem"
        cafile.write_text(ssl.DER_cert_to_PEM_cert(der))
        status, out, err = await curl(
            "--cacert", str(cafile), *_resolve(https), f"https://localhost:{https.port}/"
        )
        assert status == 0, err
        assert out == (DEMO / "index.html").read_bytes()
        # ...and for http.client over TLS, with keep-alive.
        context = ssl.create_default_context(cafile=str(cafile))
        page = await fetch(https, "/style.css", tls=context)
        assert page.status == 200 and page.body == (DEMO / "style.css").read_bytes()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
async def test_tls_below_1_2_is_refused() -> None:
    async with start_web(["--tls-listen", "127.0.0.1:0"]) as app:
        https = app.address("tcp", 1)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await asyncio.to_thread(_handshake, https, max_version=ssl.TLSVersion.TLSv1_1)
        status, _, _ = await curl("-k", "--tlsv1.2", "--tls-max", "1.2", f"https://127.0.0.1:{https.port}/")
        assert status == 0
        assert (await asyncio.to_thread(_handshake, https))[1] == "http/1.1"  # still serving


@pytest.fixture
def cert_files(tmp_path: Path) -> tuple[Path, Path]:
    cert_pem, key_pem = make_self_signed(["localhost"])
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    return tmp_path / "cert.pem", tmp_path / "key.pem"


async def test_given_certificate_ranges_and_hsts_with_curl(cert_files: tuple[Path, Path]) -> None:
    cert, key = cert_files
    argv = ["--tls-listen", "127.0.0.1:0", "--tls-cert", str(cert), "--tls-key", str(key), "--hsts"]
    async with start_web(argv) as app:
        http, https = app.address("tcp", 0), app.address("tcp", 1)
        (loaded,) = [r for r in log_records(app) if r["msg"] == "TLS certificate loaded"]
        der = ssl.PEM_cert_to_DER_cert(cert.read_text())
        assert loaded["sha256"] == _fingerprint(der)
        url = f"https://localhost:{https.port}/index.html"
        tls = ["--cacert", str(cert), *_resolve(https)]
        page = (DEMO / "index.html").read_bytes()

        status, out, err = await curl(*tls, "-D", "-", "-r", "0-99", url)
        assert status == 0, err
        head, _, body = out.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 206 ")
        assert f"content-range: bytes 0-99/{len(page)}".encode() in head.lower()
        assert b"strict-transport-security: max-age=63072000" in head.lower()
        assert body == page[:100]

        status, out, _ = await curl(*tls, "-r", "-50", url)  # suffix range
        assert out == page[-50:]
        status, out, _ = await curl(*tls, "-r", "2000-", url)  # open range
        assert out == page[2000:]
        status, out, _ = await curl(*tls, "-D", "-", "-r", "0-9,20-29", url)  # multipart
        head, _, body = out.partition(b"\r\n\r\n")
        assert b"multipart/byteranges; boundary=" in head
        assert page[:10] in body and page[20:30] in body
        status, out, _ = await curl(*tls, "-o", "/dev/null", "-w", "%{http_code}", "-r", "99999-", url)
        assert out == b"416"

        plain = await fetch(http, "/index.html")
        assert plain.header("strict-transport-security") is None  # RFC 6797 §7.2: not over plain HTTP


async def test_redirect_listener_sends_clients_to_https(cert_files: tuple[Path, Path]) -> None:
    cert, key = cert_files
    argv = [
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        "--redirect-listen",
        "127.0.0.1:0",
    ]
    async with start_web(argv) as app:
        https, redirect = app.address("tcp", 1), app.address("tcp", 2)
        moved = await fetch(redirect, "/style.css?x=1", headers={"Host": "localhost:1234"})
        assert moved.status == 301
        assert moved.header("location") == f"https://localhost:{https.port}/style.css?x=1"
        head = await fetch(redirect, "/a%20b", method="HEAD", headers={"Host": "example.org"})
        assert (head.status, head.body) == (301, b"")
        assert head.header("location") == f"https://example.org:{https.port}/a%20b"
        assert (await fetch(redirect, "/healthz")).body == b"ok\n"
        ready = next(r for r in log_records(app) if r["msg"] == "ready")
        assert ready["redirect"] == str(redirect)

        status, out, err = await curl(
            "-L",
            "--cacert",
            str(cert),
            *_resolve(https),
            *_resolve(redirect),
            f"http://localhost:{redirect.port}/style.css",
        )
        assert status == 0, err
        assert out == (DEMO / "style.css").read_bytes()


async def test_reload_swaps_the_certificate_for_new_connections(cert_files: tuple[Path, Path]) -> None:
    cert, key = cert_files
    argv = ["--tls-listen", "127.0.0.1:0", "--tls-cert", str(cert), "--tls-key", str(key)]
    async with start_web(argv) as app:
        https = app.address("tcp", 1)
        before = (await asyncio.to_thread(_handshake, https))[0]
        assert await app.reload() == []
        assert not [r for r in log_records(app) if r["msg"] == "TLS certificate reloaded"]
        # A pair that does not load is refused and the old certificate stays.
        other_cert, _ = make_self_signed(["other"])
        cert.write_bytes(other_cert)
        problems = await app.reload()
        assert len(problems) == 1 and "keeping the old certificate" in problems[0]
        assert (await asyncio.to_thread(_handshake, https))[0] == before
        new_cert, new_key = make_self_signed(["localhost"])
        cert.write_bytes(new_cert)
        key.write_bytes(new_key)
        assert await app.reload() == []
        assert [r for r in log_records(app) if r["msg"] == "TLS certificate reloaded"]
        after = (await asyncio.to_thread(_handshake, https))[0]
        assert after != before


def test_tls_configuration_errors(cert_files: tuple[Path, Path]) -> None:
    cert, key = cert_files
    other_cert, _ = make_self_signed(["other"])
    (cert.parent / "other.pem").write_bytes(other_cert)
    base = ["--listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0"]
    cases = [
        (["--tls-key", str(key)], "--tls-cert and --tls-key go together"),
        (["--tls-cert", str(cert.parent / "other.pem"), "--tls-key", str(key)], "do not load"),
    ]
    for extra, needle in cases:
        err = io.StringIO()
        assert run(APPLIANCE, [*base, *extra], {}, stderr=err) == EXIT_CONFIG
        assert needle in err.getvalue()
    err = io.StringIO()
    assert (
        run(APPLIANCE, ["--listen", "127.0.0.1:0", "--redirect-listen", "127.0.0.1:0"], {}, stderr=err)
        == EXIT_CONFIG
    )
    assert "--redirect-listen redirects to HTTPS: it needs --tls-listen" in err.getvalue()
