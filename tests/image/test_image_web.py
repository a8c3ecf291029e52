"""The web appliance as a qemu image: HTTP GET from the host through a
forwarded port, then the power button."""

from __future__ import annotations

import http.client
from pathlib import Path

import pytest
from image_helpers import BOOT_TIMEOUT, booted, free_port, needs_qemu

from runtime.build import build

pytestmark = [pytest.mark.slow, needs_qemu]


@pytest.fixture(scope="module")
def web_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("web-qemu")
    site = tmp_path_factory.mktemp("site")
    (site / "index.html").write_text("<h1>baked into the image</h1>\n")
    (site / "hello.txt").write_text("hello from the guest\n")
    build("web", out, target="qemu", data=[f"site={site}"])
    return out


def get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_boot_serves_the_baked_site_then_powers_off(web_image: Path, tmp_path: Path) -> None:
    port = free_port()
    with booted(web_image, tmp_path, [f"tcp:{port}:80"]) as guest:
        status, headers, body = get(port, "/hello.txt")
        assert (status, body) == (200, b"hello from the guest\n")
        assert headers["Content-Type"].startswith("text/plain")
        status, _, body = get(port, "/")
        assert (status, body) == (200, b"<h1>baked into the image</h1>\n")
        assert get(port, "/missing")[0] == 404
        guest.power_button()
        assert guest.wait(BOOT_TIMEOUT) == 0
        console = guest.console()
    assert "init: web exited with status 0; powering off" in console
