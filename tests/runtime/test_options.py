"""Typed options: kinds, precedence of sources, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.devices import Address
from runtime.errors import ConfigError
from runtime.options import ADDRESS, BOOL, DURATION, INT, PATH, SIZE, STR, Option, choice, parse_options

DECLARED = [
    Option("config", PATH, None, "config file"),
    Option("listen", ADDRESS, [Address("127.0.0.1", 53)], "listen", repeat=True),
    Option("workers", INT, 1, "workers", minimum=1, maximum=8),
    Option("timeout", DURATION, 30.0, "timeout"),
    Option("limit", SIZE, 1024, "limit"),
    Option("verbose", BOOL, False, "verbose"),
    Option("mode", choice("fast", "safe"), "safe", "mode"),
    Option("secret", STR, "", "a secret", secret=True),
]


def parse(argv=(), env=None, kernel=None):  # type: ignore[no-untyped-def]
    return parse_options("dns", DECLARED, list(argv), env or {}, kernel)


def test_defaults_and_sources() -> None:
    options = parse()
    assert options.workers == 1 and options.source("workers") == "default"
    assert options.listen == [Address("127.0.0.1", 53)]


def test_precedence_default_file_kernel_env_flag(tmp_path: Path) -> None:
    config = tmp_path / "dns.toml"
    config.write_text(
        'workers = 2\ntimeout = "5m"\nmode = "fast"\nlisten = ["[::1]:5300", "127.0.0.1:5300"]\n'
    )
    options = parse(["--config", str(config)])
    assert (options.workers, options.timeout, options.mode) == (2, 300.0, "fast")
    assert options.listen == [Address("::1", 5300), Address("127.0.0.1", 5300)]
    assert options.source("workers") == f"config {config}"
    options = parse(["--config", str(config)], kernel="workers=3 console=ttyS0 limit=64k")
    assert options.workers == 3 and options.source("workers") == "kernel" and options.limit == 65536
    options = parse(["--config", str(config)], env={"DNS_WORKERS": "4"}, kernel="workers=3")
    assert options.workers == 4 and options.source("workers") == "env DNS_WORKERS"
    options = parse(["--config", str(config), "--workers=5"], env={"DNS_WORKERS": "4"}, kernel="workers=3")
    assert options.workers == 5 and options.source("workers") == "flag --workers"
    options = parse(env={"DNS_CONFIG": str(config)})
    assert options.workers == 2


def test_kinds() -> None:
    options = parse(["--timeout", "1h30m", "--limit", "16M", "--verbose", "--mode", "FAST"])
    assert options.timeout == 5400.0 and options.limit == 16 * 1024**2
    assert options.verbose is True and options.mode == "fast"
    assert parse(["--timeout", "250ms"]).timeout == 0.25
    assert parse(["--no-verbose"]).verbose is False
    assert parse(["--verbose=false"]).verbose is False


def test_flag_values_are_not_split_at_commas() -> None:
    declared = [Option("header", STR, [], "a header", repeat=True)]
    options = parse_options("web", declared, ["--header", "Cache-Control: public, max-age=60"], {})
    assert options.header == ["Cache-Control: public, max-age=60"]
    options = parse_options("web", declared, [], {"WEB_HEADER": "a,b"})
    assert options.header == ["a", "b"]


def test_repeat_flags_replace_lower_sources() -> None:
    options = parse(["--listen", "[::1]:53", "--listen", "10.0.0.1:53"], env={"DNS_LISTEN": "127.0.0.2:53"})
    assert options.listen == [Address("::1", 53), Address("10.0.0.1", 53)]
    assert parse(env={"DNS_LISTEN": "127.0.0.2:53,127.0.0.3:53"}).listen == [
        Address("127.0.0.2", 53),
        Address("127.0.0.3", 53),
    ]


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--workers", "9"], {}, "--workers (flag): bad value '9': expected at most 8"),
        (["--workers", "0"], {}, "--workers (flag): bad value '0': expected at least 1"),
        (["--timeout", "soon"], {}, "expected a duration such as 30, 30s, 250ms, 5m or 1h30m"),
        (["--limit", "12 parsecs"], {}, "expected a size such as 512, 64k, 16M or 1G"),
        (["--mode", "slow"], {}, "expected one of fast, safe"),
        (
            [],
            {"DNS_VERBOSE": "maybe"},
            "--verbose (env DNS_VERBOSE): bad value 'maybe': expected true or false",
        ),
        (["--listen", "[::1"], {}, "unclosed '['"),
        (["--no-mode"], {}, "unknown option --no-mode"),
        (["--verbose=yes", "--no-verbose=1"], {}, "--no-verbose takes no value"),
    ],
)
def test_errors_are_one_line(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(argv, env)
    text = str(caught.value)
    assert message in text and "\n" not in text


def test_config_file_errors(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("colour = 'blue'\n")
    with pytest.raises(ConfigError, match="unknown option 'colour'"):
        parse(["--config", str(config)])
    config.write_text("workers = 'two'\n")
    with pytest.raises(ConfigError, match="expected a whole number"):
        parse(["--config", str(config)])
    with pytest.raises(ConfigError, match="cannot read"):
        parse(["--config", str(tmp_path / "missing.toml")])


def test_secrets_are_redacted_in_the_table() -> None:
    options = parse(env={"DNS_SECRET": "hunter2"})
    shown = dict((flag, value) for flag, value, _ in options.table())
    assert shown["--secret"] == "(secret)"


def test_address_forms() -> None:
    assert Address.parse("[::1]:53") == Address("::1", 53)
    assert str(Address("::1", 53)) == "[::1]:53"
    assert Address.parse("example.org", default_port=80) == Address("example.org", 80)
    with pytest.raises(ValueError):
        Address.parse("127.0.0.1")
