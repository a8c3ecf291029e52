"""``python -m runtime``: list, describe, new (the skeleton's own test passes
unchanged), and discovery through the entry-point group."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from proc import BOUND, REPO

from runtime.appliance import discover


def runtime_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ, PYTHONPATH=str(REPO))
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "runtime", *args],
        capture_output=True,
        text=True,
        timeout=BOUND * 4,
        cwd=cwd or REPO,
        env=full_env,
    )


def test_usage_without_command_is_an_error() -> None:
    result = runtime_cli()
    assert result.returncode == 2 and "usage: python -m runtime" in result.stdout


def test_describe_unknown_appliance_is_one_line() -> None:
    result = runtime_cli("describe", "nosuchthing")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("runtime: no appliance named 'nosuchthing'")


def test_new_writes_an_appliance_whose_test_passes(tmp_path: Path) -> None:
    result = runtime_cli("new", "demo", "--dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "appliances" / "demo" / "server.py").is_file()
    test_file = tmp_path / "tests" / "demo" / "test_demo.py"
    assert test_file.is_file()
    # The skeleton lists and describes like any appliance...
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    listed = runtime_cli("list", cwd=tmp_path, env=env)
    assert "demo" in listed.stdout
    described = runtime_cli("describe", "demo", cwd=tmp_path, env=env)
    assert "devices: net, store" in described.stdout and "--max-line" in described.stdout
    # ...and its own test passes unchanged, with strict settings.
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = auto\n"
        "asyncio_default_fixture_loop_scope = function\nfilterwarnings = error\n"
    )
    tested = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/demo"],
        capture_output=True,
        text=True,
        timeout=BOUND * 4,
        cwd=tmp_path,
        env=dict(os.environ, **env),
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "5 passed" in tested.stdout
    # Refuses to overwrite.
    again = runtime_cli("new", "demo", "--dir", str(tmp_path))
    assert again.returncode == 2 and "already exists" in again.stderr


def test_new_refuses_bad_names(tmp_path: Path) -> None:
    for name in ("Demo", "1x", "class", "a-b"):
        result = runtime_cli("new", name, "--dir", str(tmp_path))
        assert result.returncode == 2, name


def test_discovery_through_entry_points(tmp_path: Path, monkeypatch) -> None:
    package = tmp_path / "thirdparty_app"
    package.mkdir()
    (package / "__init__.py").write_text(
        textwrap.dedent("""
        from runtime import Appliance

        async def main(ctx):
            ctx.ready()

        APPLIANCE = Appliance(name="thirdparty", summary="an appliance from another package",
                              package=__name__, main=main)
    """)
    )
    dist = tmp_path / "thirdparty_app-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-app\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[runtime.appliances]\nthirdparty = thirdparty_app:APPLIANCE\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    found = discover()
    assert "thirdparty" in found and found["thirdparty"].summary == "an appliance from another package"
    result = runtime_cli("list", env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"})
    assert "thirdparty" in result.stdout
    ran = runtime_cli("run", "thirdparty", env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"})
    assert ran.returncode == 0, ran.stderr
