"""The DNS appliance's own settings, parsed from its options (sans-IO).

Value syntax (one value per flag; flags repeat):

- ``--tsig-key NAME:ALGORITHM:BASE64SECRET``: a TSIG key (RFC 8945), e.g.
  ``xfr.example:hmac-sha256:c2VjcmV0...``; in the config file
  ``tsig_key = ["xfr.example:hmac-sha256:..."]``, or in the environment
  ``DNS_TSIG_KEY`` (comma-separated).  Algorithms: hmac-sha256 (RFC 8945 §6
  "mandatory"), hmac-sha1, -sha224, -sha384, -sha512, hmac-md5.
- ``--allow-transfer PREFIX[@KEY]``: who may AXFR/IXFR (default: nobody); with
  ``@KEY`` the request must also be signed with that key.
- ``--notify ADDR:PORT[@KEY]``: secondaries to NOTIFY (RFC 1996) when a zone
  changes, signed with KEY if given.
- ``--secondary ZONE=ADDR:PORT[@KEY]``: serve ZONE as a secondary of that
  primary, transfers (and the NOTIFY we accept) signed with KEY if given.
- ``--rrl-exempt PREFIX``: clients never rate limited.

A syntax error is found when options are parsed (one line naming the option);
a reference to an unknown key when the appliance starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from runtime import Address, ConfigError

from . import names
from .rrl import Network, parse_prefix
from .tsig import Key, parse_key

__all__ = [
    "Config",
    "Secondary",
    "Target",
    "TransferRule",
    "check_each",
    "parse_keyed_address",
    "parse_secondary",
    "parse_transfer_rule",
]


@dataclass(frozen=True, slots=True)
class TransferRule:
    network: Network
    key: bytes | None


@dataclass(frozen=True, slots=True)
class Target:
    address: Address
    key: Key | None


@dataclass(frozen=True, slots=True)
class Secondary:
    #: lowercase wire origin
    origin: bytes
    primary: Address
    key: Key | None

    @property
    def name(self) -> str:
        return names.to_text(self.origin)


def _split_key(text: str) -> tuple[str, str | None]:
    body, at, key = text.strip().rpartition("@")
    if not at:
        return text.strip(), None
    if not key:
        raise ValueError(f"empty key name after '@' in {text!r}")
    return body, key


def _key_name(text: str) -> bytes:
    return names.from_text(text if text.endswith(".") else text + ".", None).lower()


def parse_transfer_rule(text: str) -> tuple[Network, bytes | None]:
    body, key = _split_key(text)
    return parse_prefix(body), (_key_name(key) if key else None)


def parse_keyed_address(text: str, default_port: int = 53) -> tuple[Address, bytes | None]:
    body, key = _split_key(text)
    address = Address.parse(body, default_port)
    parse_prefix(address.host)  # an IP address, not a host name: no resolver here
    return address, (_key_name(key) if key else None)


def parse_secondary(text: str) -> tuple[bytes, Address, bytes | None]:
    zone, eq, rest = text.partition("=")
    if not eq or not zone.strip() or not rest.strip():
        raise ValueError(f"expected ZONE=ADDR:PORT[@KEY], got {text!r}")
    zone = zone.strip()
    origin = names.from_text(zone if zone.endswith(".") else zone + ".", None).lower()
    address, key = parse_keyed_address(rest)
    return origin, address, key


def check_each(parse: Any) -> Any:
    """An ``Option.check`` that runs ``parse`` on every value (the message of its ValueError)."""

    def check(values: Sequence[str]) -> str | None:
        for value in values:
            try:
                parse(value)
            except ValueError as e:
                return f"{value!r}: {e}"
        return None

    return check


@dataclass(frozen=True)
class Config:
    keys: dict[bytes, Key]
    transfer_rules: tuple[TransferRule, ...]
    notify: tuple[Target, ...]
    secondaries: tuple[Secondary, ...]
    rrl_exempt: tuple[Network, ...]

    @classmethod
    def from_options(cls, options: Any) -> Config:
        """Raises ``ConfigError`` naming the option."""
        keys: dict[bytes, Key] = {}
        for text in options.tsig_key:
            key = parse_key(text)
            keys[key.name] = key

        def known(name: bytes | None, option: str) -> Key | None:
            if name is None:
                return None
            if name not in keys:
                flag = "--" + option.replace("_", "-")
                raise ConfigError(
                    f"{flag}: no TSIG key {names.to_text(name)!r} (give it with --tsig-key)", option=option
                )
            return keys[name]

        rules = []
        for text in options.allow_transfer:
            network, key_name = parse_transfer_rule(text)
            known(key_name, "allow_transfer")
            rules.append(TransferRule(network, key_name))
        targets = []
        for text in options.notify:
            address, key_name = parse_keyed_address(text)
            targets.append(Target(address, known(key_name, "notify")))
        secondaries: dict[bytes, Secondary] = {}
        for text in options.secondary:
            origin, address, key_name = parse_secondary(text)
            if origin in secondaries:
                raise ConfigError(
                    f"--secondary: zone {names.to_text(origin)} given twice", option="secondary"
                )
            secondaries[origin] = Secondary(origin, address, known(key_name, "secondary"))
        exempt = tuple(parse_prefix(text) for text in options.rrl_exempt)
        return cls(keys, tuple(rules), tuple(targets), tuple(secondaries.values()), exempt)

    def transfer_allowed(self, host: str, key: Key | None) -> bool:
        """RFC 5936 §6: transfers only to whom the operator allows."""
        try:
            address = parse_prefix(host.partition("%")[0]).network_address
        except ValueError:
            return False
        for rule in self.transfer_rules:
            if address in rule.network and (rule.key is None or (key is not None and key.name == rule.key)):
                return True
        return False
