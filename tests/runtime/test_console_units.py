"""The console's sans-IO parts: the login throttle (with a manual clock), the
command table, the authorized-keys parser, the host key file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import asyncssh
import pytest

from runtime.console.builtin import parse_exposition
from runtime.console.command import Call, Command, CommandTable, Reply, UsageError, table_text
from runtime.console.keys import AuthorizedKeys, load_or_create_host_key
from runtime.console.throttle import LoginThrottle, source_of

# --------------------------------------------------------------------- throttle


def test_five_failures_in_a_minute_block_for_five_minutes() -> None:
    throttle = LoginThrottle()
    for second in range(4):
        assert throttle.failed("192.0.2.1", float(second)) is False
    assert not throttle.blocked("192.0.2.1", 4.0)
    assert throttle.failed("192.0.2.1", 4.0) is True
    assert throttle.blocked("192.0.2.1", 4.0)
    assert not throttle.blocked("192.0.2.2", 4.0)  # per source
    assert throttle.blocked("192.0.2.1", 303.9)
    assert not throttle.blocked("192.0.2.1", 304.0)
    assert throttle.blocked_sources(10.0) == ["192.0.2.1"]


def test_failures_outside_the_window_do_not_add_up() -> None:
    throttle = LoginThrottle()
    for minute in range(10):
        assert throttle.failed("192.0.2.1", minute * 61.0) is False
    assert not throttle.blocked("192.0.2.1", 610.0)


def test_failures_while_blocked_do_not_extend_the_block() -> None:
    throttle = LoginThrottle(max_failures=2, window=60, block=100)
    throttle.failed("192.0.2.1", 0.0)
    assert throttle.failed("192.0.2.1", 1.0)
    assert throttle.failed("192.0.2.1", 50.0) is False
    assert not throttle.blocked("192.0.2.1", 101.0)


def test_success_forgives_and_ipv6_counts_per_64() -> None:
    throttle = LoginThrottle(max_failures=2)
    throttle.failed("192.0.2.1", 0.0)
    throttle.succeeded("192.0.2.1")
    assert throttle.failed("192.0.2.1", 1.0) is False
    assert source_of("2001:db8:1:2::7") == source_of("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert source_of("::ffff:192.0.2.9") == "192.0.2.9"
    throttle.failed("2001:db8:1:2::7", 0.0)
    assert throttle.failed("2001:db8:1:2::8", 1.0) is True
    assert throttle.blocked("2001:db8:1:2::1234", 2.0)


def test_tracked_sources_are_bounded() -> None:
    throttle = LoginThrottle(max_sources=100)
    for n in range(1000):
        throttle.failed(f"10.0.{n // 256}.{n % 256}", float(n))
    assert len(throttle) <= 100


# --------------------------------------------------------------------- commands


def _echo(call: Call) -> Reply:
    return Reply(" ".join(call.args))


def test_command_table_picks_the_longest_name() -> None:
    table = CommandTable(
        [
            Command("zone show", _echo, "one zone", usage="NAME", min_args=1, max_args=1),
            Command("zone reload", _echo, "reload one", usage="NAME", min_args=1, max_args=1),
            Command("zones", _echo, "all"),
        ]
    )
    parsed = table.parse('zone show "example.org." --json')
    assert parsed is not None
    assert parsed.command.name == "zone show" and parsed.args == ("example.org.",) and parsed.json
    assert table.parse("   ") is None
    with pytest.raises(UsageError, match="usage: zone show NAME"):
        table.parse("zone show")
    with pytest.raises(UsageError, match=r"usage: zone show NAME \| zone reload NAME"):
        table.parse("zone frob x")
    with pytest.raises(UsageError, match="unknown command 'rm'"):
        table.parse("rm -rf /")
    with pytest.raises(UsageError, match="cannot split"):
        table.parse('zone show "unclosed')
    with pytest.raises(UsageError, match="too long"):
        table.parse("zones " + "x" * 2000)
    with pytest.raises(ValueError, match="declared twice"):
        CommandTable([Command("zones", _echo, "a"), Command("zones", _echo, "b")])


def test_table_text_aligns_columns() -> None:
    assert table_text([("a", "1"), ("long", "2")], ("name", "n")) == "name  n\na     1\nlong  2"


def test_parse_exposition_reads_labels_with_escapes() -> None:
    text = '# HELP x y\n# TYPE x counter\nx{a="b\\"c",d="e"} 3\nplain 1.5\n'
    assert parse_exposition(text) == [("x", {"a": 'b"c', "d": "e"}, "3"), ("plain", {}, "1.5")]


# --------------------------------------------------------------------- keys


def test_authorized_keys_names_and_from() -> None:
    alice = asyncssh.generate_private_key("ssh-ed25519", comment="alice@test").convert_to_public()
    carol = asyncssh.generate_private_key("ssh-ed25519", comment="carol@test").convert_to_public()
    text = (
        f"{alice.export_public_key().decode()}"
        f'from="10.0.0.0/8,!10.9.0.0/16",command="status" {carol.export_public_key().decode()}'
    )
    keys = AuthorizedKeys.parse(text, "authorized_keys")
    assert len(keys) == 2
    match = keys.match(alice, "127.0.0.1")
    assert match is not None and match.key.name == "alice@test" and match.forced_command is None
    assert match.key.where == "authorized_keys:1"
    assert keys.match(carol, "127.0.0.1") is None
    assert keys.match(carol, "10.9.1.1") is None
    carol_match = keys.match(carol, "10.1.2.3")
    assert carol_match is not None and carol_match.forced_command == "status"
    assert carol_match.key.name == "carol@test"


def test_authorized_keys_errors_name_the_line() -> None:
    with pytest.raises(ValueError, match="keys:2: not an authorized key entry"):
        AuthorizedKeys.parse("# ok\nssh-ed25519 AAAA-broken x\n", "keys")
    with pytest.raises(ValueError, match="no keys"):
        AuthorizedKeys.parse("# nobody\n\n", "keys")


def test_host_key_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    state = tmp_path / "state"
    key, made = load_or_create_host_key(state)
    assert made
    again, made_again = load_or_create_host_key(state)
    assert not made_again
    assert again.get_fingerprint("sha256") == key.get_fingerprint("sha256")
    assert stat.S_IMODE(os.stat(state / "console_host_key").st_mode) == 0o600
    assert [p.name for p in state.iterdir()] == ["console_host_key"]
    (state / "console_host_key").write_text("garbage")
    with pytest.raises(ValueError, match="not an unencrypted private key"):
        load_or_create_host_key(state)
