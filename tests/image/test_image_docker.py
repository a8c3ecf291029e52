"""The oci target in a real engine: ``docker load`` of the built tar and
``docker build`` of the top-level Dockerfile (FROM scratch, nothing pulled),
each run as nobody, asked over UDP, stopped with SIGTERM (exit status 0).

The test starts its own dockerd (data under a temporary directory, no
iptables, no bridge: containers use the host's network namespace and listen
on a free loopback port)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest
from image_helpers import free_port

from runtime.build import build

ROOT = Path(__file__).resolve().parents[2]
#: dockerd's start and each docker command; generous for shared machines
DOCKER_TIMEOUT = 120.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("dockerd") is None or shutil.which("docker") is None or os.geteuid() != 0,
        reason="needs root and docker.io (dockerd)",
    ),
]


@pytest.fixture(scope="module")
def docker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    base = tmp_path_factory.mktemp("dockerd")
    socket_path = base / "docker.sock"
    log = (base / "dockerd.log").open("wb")
    daemon = subprocess.Popen(
        ["dockerd", "--data-root", str(base / "data"), "--exec-root", str(base / "exec"),
         "--pidfile", str(base / "docker.pid"), "-H", f"unix://{socket_path}",
         "--iptables=false", "--ip6tables=false", "--bridge=none"],
        stdout=log, stderr=log,
    )  # fmt: skip
    env = dict(os.environ, DOCKER_HOST=f"unix://{socket_path}", DOCKER_BUILDKIT="0")
    try:
        deadline = time.monotonic() + DOCKER_TIMEOUT
        while subprocess.run(["docker", "info"], env=env, capture_output=True, check=False).returncode != 0:
            assert daemon.poll() is None and time.monotonic() < deadline, (base / "dockerd.log").read_text()
            time.sleep(0.2)
        yield env
    finally:
        daemon.terminate()
        daemon.wait(DOCKER_TIMEOUT)
        log.close()
        # dockerd leaves its network namespace (and overlay mounts) mounted
        # under its directories; unmount them so the temporary tree can go.
        with open("/proc/mounts") as mounts:
            points = [line.split()[1] for line in mounts if line.split()[1].startswith(str(base))]
        for point in sorted(points, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def docker_cli(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        ["docker", *args], env=env, capture_output=True, text=True, timeout=DOCKER_TIMEOUT, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def serve_and_ask(env: dict[str, str], image: str) -> str:
    port = free_port()
    container = docker_cli(env, "run", "-d", "--network", "host", "-e", f"DNS_LISTEN=127.0.0.1:{port}", image)
    try:
        deadline = time.monotonic() + DOCKER_TIMEOUT
        while " ready " not in docker_cli(env, "logs", container) + "\n" + _stderr(env, container):
            assert time.monotonic() < deadline, docker_cli(env, "logs", container)
            time.sleep(0.1)
        query = dns.message.make_query("www.example.test", "A")
        reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=10)
        assert reply.rcode() == dns.rcode.NOERROR
        assert docker_cli(env, "inspect", "-f", "{{.Config.User}}", container) == "65534:65534"
        docker_cli(env, "stop", container)
        return docker_cli(env, "inspect", "-f", "{{.State.ExitCode}}", container)
    finally:
        subprocess.run(["docker", "rm", "-f", container], env=env, capture_output=True, check=False)


def _stderr(env: dict[str, str], container: str) -> str:
    result = subprocess.run(
        ["docker", "logs", container], env=env, capture_output=True, text=True, check=False
    )
    return result.stderr


def test_docker_loads_the_oci_tar_and_runs_it(docker: dict[str, str], tmp_path: Path) -> None:
    build("dns", tmp_path, target="oci")
    loaded = docker_cli(docker, "load", "-i", str(tmp_path / "dns-oci.tar"))
    assert "appliance-dns:0.1.0" in loaded
    assert serve_and_ask(docker, "appliance-dns:0.1.0") == "0"
    # stopped at once after start: PID 1 gets no default action for SIGTERM,
    # so the init keeps one that comes before the runtime's handlers and acts
    # on it at ready (else docker would kill it after -t seconds: status 137)
    port = free_port()
    container = docker_cli(
        docker, "run", "-d", "--network", "host", "-e", f"DNS_LISTEN=127.0.0.1:{port}", "appliance-dns:0.1.0"
    )
    try:
        docker_cli(docker, "stop", "-t", "120", container)
        assert docker_cli(docker, "inspect", "-f", "{{.State.ExitCode}}", container) == "0"
    finally:
        subprocess.run(["docker", "rm", "-f", container], env=docker, capture_output=True, check=False)


def test_dockerfile_from_scratch_builds_the_same_rootfs(docker: dict[str, str], tmp_path: Path) -> None:
    build("dns", tmp_path, target="oci")
    docker_cli(
        docker, "build", "-q", "-f", str(ROOT / "Dockerfile"), "-t", "appliance-dns-dockerfile", str(tmp_path)
    )
    assert serve_and_ask(docker, "appliance-dns-dockerfile") == "0"
