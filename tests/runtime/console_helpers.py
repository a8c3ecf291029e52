"""Shared pieces of the console tests: keys, a probe process with its console
on, and the two clients (OpenSSH's ``ssh`` and asyncssh)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
from proc import BOUND, AppProcess


@dataclass
class Keys:
    directory: Path
    alice: Path  # authorized
    mallory: Path  # not in authorized_keys
    carol: Path  # authorized only from 10.0.0.0/8
    authorized: Path


def make_keys(directory: Path) -> Keys:
    directory.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    public: dict[str, str] = {}
    for name in ("alice", "mallory", "carol"):
        key = asyncssh.generate_private_key("ssh-ed25519", comment=f"{name}@test")
        path = directory / f"id_{name}"
        path.write_bytes(key.export_private_key())
        path.chmod(0o600)
        public[name] = key.export_public_key().decode().strip()
        paths[name] = path
    authorized = directory / "authorized_keys"
    authorized.write_text(
        f'# console operators\n{public["alice"]}\nfrom="10.0.0.0/8",no-pty {public["carol"]}\n'
    )
    return Keys(directory, paths["alice"], paths["mallory"], paths["carol"], authorized)


class ConsoleApp:
    """The probe appliance as a process, with its console on 127.0.0.1:0."""

    def __init__(self, keys: Keys, state: Path, *extra: str) -> None:
        self.keys = keys
        self.app = AppProcess(
            [
                "--console-listen",
                "127.0.0.1:0",
                "--console-keys",
                str(keys.authorized),
                "--state-dir",
                str(state),
                *extra,
            ]
        )
        line = self.app.wait_log("console")
        self.fingerprint: str = line["host_key_sha256"]
        self.port = int(line["listen"].rpartition(":")[2])
        self.service = self.app.ready()["tcp"]

    def ssh(
        self, *command: str, key: Path | None = None, options: Sequence[str] = ()
    ) -> subprocess.CompletedProcess[str]:
        return ssh(self.port, key or self.keys.alice, *command, options=options)

    def stop(self) -> None:
        self.app.stop()


def ssh(
    port: int, key: Path, *command: str, options: Sequence[str] = (), input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "ssh",
            "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", "LogLevel=ERROR",
            "-i", str(key),
            "-p", str(port),
            *options,
            "127.0.0.1",
            *command,
        ],
        capture_output=True,
        text=True,
        timeout=BOUND,
        input=input if input is not None else "",
    )  # fmt: skip


def client(port: int, key: Path | None, **kwargs: Any) -> Any:
    """``asyncssh.connect`` to the console (an async context manager)."""
    return asyncssh.connect(
        "127.0.0.1",
        port,
        username="operator",
        known_hosts=None,
        client_keys=[str(key)] if key is not None else None,
        agent_path=None,
        connect_timeout=BOUND,
        **kwargs,
    )
