"""Typed options, filled from several sources.

Precedence, lowest first (each source replaces, never merges, what is below it):

    default < config file (TOML) < kernel command line (image) < environment < flags

* flags: ``--max-connections 100``, ``--max-connections=100``; booleans
  ``--flag`` / ``--no-flag`` / ``--flag=false``; repeatable options take one value
  per occurrence.
* environment: ``<APPLIANCE>_<OPTION>``, e.g. ``DNS_MAX_CONNECTIONS=100``;
  repeatable options as a comma-separated list (a flag's value is never split).
* config file: flat TOML, keys are option names (``max_connections`` or
  ``max-connections``); repeatable options as arrays.
* kernel command line: ``key=value`` words (``max-connections=100``), words
  that name no option are left to the init.

A bad value raises ``ConfigError`` whose text is one line naming the option,
the source and what was expected.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .devices import Address
from .errors import ConfigError

__all__ = [
    "ADDRESS",
    "BOOL",
    "DURATION",
    "FILE",
    "FLOAT",
    "INT",
    "PATH",
    "SIZE",
    "STR",
    "Kind",
    "Option",
    "Options",
    "Setting",
    "choice",
    "parse_options",
]


@dataclass(frozen=True)
class Kind:
    """How an option's text becomes a value.  ``parse`` raises ValueError; the
    message should say what was expected."""

    name: str
    parse: Callable[[str], Any]
    from_toml: Callable[[Any], Any] | None = None
    show: Callable[[Any], str] = str

    def convert(self, raw: Any) -> Any:
        if isinstance(raw, str):
            return self.parse(raw)
        if self.from_toml is not None:
            return self.from_toml(raw)
        raise ValueError(f"expected {self.name}, got {type(raw).__name__}")


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _toml_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    raise ValueError("expected true or false")


def _parse_int(text: str) -> int:
    try:
        return int(text.strip(), 10)
    except ValueError:
        raise ValueError("expected a whole number") from None


def _toml_int(raw: Any) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    raise ValueError("expected a whole number")


def _parse_float(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise ValueError("expected a number") from None


def _toml_float(raw: Any) -> float:
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return float(raw)
    raise ValueError("expected a number")


_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)?")


def _parse_duration(text: str) -> float:
    text = text.strip().lower()
    total = 0.0
    pos = 0
    while pos < len(text):
        match = _DURATION_RE.match(text, pos)
        if match is None or (match.group(2) is None and match.end() != len(text)):
            raise ValueError("expected a duration such as 30, 30s, 250ms, 5m or 1h30m")
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]
        pos = match.end()
    if not text:
        raise ValueError("expected a duration such as 30, 30s, 250ms, 5m or 1h30m")
    return total


def _show_duration(value: float) -> str:
    return f"{value:g}s"


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "gib": 1024**3,
}


def _parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", text)
    if match is None or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError("expected a size such as 512, 64k, 16M or 1G")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]


def _parse_address(text: str) -> Address:
    return Address.parse(text)


def _parse_str(text: str) -> str:
    return text


def _toml_str(raw: Any) -> str:
    if isinstance(raw, str):
        return raw
    raise ValueError("expected a string")


STR = Kind("text", _parse_str, _toml_str)
PATH = Kind("path", _parse_str, _toml_str)
#: a single file read through the data device (on the host: confined to its directory)
FILE = Kind("file", _parse_str, _toml_str)
BOOL = Kind("true/false", _parse_bool, _toml_bool, show=lambda v: "true" if v else "false")
INT = Kind("whole number", _parse_int, _toml_int)
FLOAT = Kind("number", _parse_float, _toml_float)
DURATION = Kind("duration", _parse_duration, _toml_float, show=_show_duration)
SIZE = Kind("size", _parse_size, _toml_int)
ADDRESS = Kind("HOST:PORT", _parse_address, None)


def choice(*values: str) -> Kind:
    """A kind accepting exactly one of ``values`` (case-insensitive)."""

    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in values:
            raise ValueError("expected one of " + ", ".join(values))
        return value

    return Kind("|".join(values), parse, lambda raw: parse(_toml_str(raw)))


@dataclass(frozen=True)
class Option:
    """One typed option of an appliance (or of the runtime).

    ``name`` is a Python identifier; the flag is ``--name-with-dashes``.
    ``check`` validates the converted value and returns an error text or None.
    """

    name: str
    kind: Kind
    default: Any
    help: str
    repeat: bool = False
    secret: bool = False
    minimum: float | None = None
    maximum: float | None = None
    check: Callable[[Any], str | None] | None = None
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def env_name(self, appliance: str) -> str:
        return f"{appliance}_{self.name}".upper().replace("-", "_").replace(".", "_")

    def validate(self, value: Any) -> None:
        for item in value if self.repeat else [value]:
            if self.minimum is not None and item < self.minimum:
                raise ValueError(f"expected at least {self.minimum:g}")
            if self.maximum is not None and item > self.maximum:
                raise ValueError(f"expected at most {self.maximum:g}")
        if self.check is not None:
            problem = self.check(value)
            if problem:
                raise ValueError(problem)

    def show(self, value: Any) -> str:
        if self.secret and value:
            return "(secret)"
        if self.repeat:
            return ",".join(self.kind.show(v) for v in value) if value else "(none)"
        if value is None:
            return "(none)"
        return self.kind.show(value)


@dataclass(frozen=True)
class Setting:
    value: Any
    #: "default", "config FILE", "kernel", "env NAME" or "flag --name"
    source: str


@dataclass
class Options:
    """The effective options: attribute access by name, plus their sources."""

    appliance: str
    declared: Mapping[str, Option]
    settings: dict[str, Setting] = field(default_factory=dict)
    #: ``--help`` was asked for
    help: bool = False

    def __getattr__(self, name: str) -> Any:
        try:
            return self.settings[name].value
        except KeyError:
            raise AttributeError(f"no option {name!r}") from None

    def get(self, name: str) -> Any:
        return self.settings[name].value

    def source(self, name: str) -> str:
        return self.settings[name].source

    def with_values(self, **values: Any) -> Options:
        """A copy with some values replaced (source "override"), for tests and workers."""
        settings = dict(self.settings)
        for name, value in values.items():
            if name not in self.declared:
                raise ConfigError(f"no option {name!r}", option=name)
            settings[name] = Setting(value, "override")
        return Options(self.appliance, self.declared, settings, self.help)

    def table(self) -> list[tuple[str, str, str]]:
        """(flag, shown value, source) per option, secrets redacted."""
        return [
            (opt.flag, opt.show(self.settings[opt.name].value), self.settings[opt.name].source)
            for opt in self.declared.values()
        ]


def _convert(option: Option, raw: Any, source: str) -> Any:
    try:
        if option.repeat:
            if isinstance(raw, str):
                items: Sequence[Any] = [part for part in raw.split(",") if part.strip()]
            elif isinstance(raw, list):
                items = raw
            else:
                raise ValueError("expected a list")
            value: Any = [option.kind.convert(item) for item in items]
        else:
            value = option.kind.convert(raw)
        option.validate(value)
    except ValueError as exc:
        raise ConfigError(f"{option.flag} ({source}): bad value {raw!r}: {exc}", option=option.name) from None
    return value


def _read_config(path: str, declared: Mapping[str, Option]) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"--config: cannot read {path}: {exc.strerror or exc}", option="config") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config: {path} is not valid TOML: {exc}", option="config") from None
    found: dict[str, Any] = {}
    for key, raw in data.items():
        name = key.replace("-", "_")
        if name not in declared or name == "config":
            raise ConfigError(f"--config: {path}: unknown option {key!r}", option="config")
        found[name] = raw
    return found


def _split_flags(
    args: Sequence[str], declared: Mapping[str, Option]
) -> tuple[list[tuple[Option, Any]], bool]:
    by_flag = {opt.flag: opt for opt in declared.values()}
    out: list[tuple[Option, Any]] = []
    want_help = False
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg in ("-h", "--help"):
            want_help = True
            continue
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument {arg!r} (options start with --; see --help)")
        name, eq, inline = arg.partition("=")
        option = by_flag.get(name)
        negated = False
        if option is None and name.startswith("--no-"):
            option = by_flag.get("--" + name[5:])
            negated = option is not None and option.kind is BOOL
            if not negated:
                option = None
        if option is None:
            raise ConfigError(f"unknown option {name} (see --help)")
        if option.kind is BOOL and not eq:
            out.append((option, "false" if negated else "true"))
            continue
        if negated:
            raise ConfigError(f"{name} takes no value")
        if not eq:
            if i >= len(args):
                raise ConfigError(f"{option.flag}: missing value ({option.kind.name})", option=option.name)
            inline = args[i]
            i += 1
        out.append((option, inline))
    return out, want_help


def parse_options(
    appliance: str,
    declared: Iterable[Option],
    argv: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    kernel_cmdline: str | None = None,
) -> Options:
    """Resolve every declared option from all sources (see module docstring)."""
    table = {opt.name: opt for opt in declared}
    environ = environ if environ is not None else {}
    flags, want_help = _split_flags(list(argv), table)

    settings: dict[str, Setting] = {name: Setting(opt.default, "default") for name, opt in table.items()}

    # The config file's path itself comes from env or flags.
    config_path: str | None = None
    if "config" in table:
        env_config = environ.get(table["config"].env_name(appliance))
        if env_config:
            config_path = env_config
        for option, raw in flags:
            if option.name == "config":
                config_path = raw
        if config_path:
            settings["config"] = Setting(
                config_path, "flag" if any(o.name == "config" for o, _ in flags) else "env"
            )
            for name, raw in _read_config(config_path, table).items():
                settings[name] = Setting(
                    _convert(table[name], raw, f"config {config_path}"), f"config {config_path}"
                )

    if kernel_cmdline:
        for word in kernel_cmdline.split():
            key, eq, raw = word.partition("=")
            name = key.replace("-", "_")
            if eq and name in table and name != "config":
                settings[name] = Setting(_convert(table[name], raw, "kernel command line"), "kernel")

    for name, option in table.items():
        env_name = option.env_name(appliance)
        if env_name in environ and name != "config":
            settings[name] = Setting(
                _convert(option, environ[env_name], f"env {env_name}"), f"env {env_name}"
            )

    repeated: dict[str, list[Any]] = {}
    for option, raw in flags:
        if option.name == "config":
            continue
        if option.repeat:
            repeated.setdefault(option.name, []).append(raw)
        else:
            settings[option.name] = Setting(_convert(option, raw, "flag"), f"flag {option.flag}")
    for name, raws in repeated.items():
        # One value per flag: commas inside a flag's value are kept (only the
        # environment, with no way to repeat a variable, splits at commas).
        option = table[name]
        settings[name] = Setting(_convert(option, raws, "flag"), f"flag {option.flag}")

    return Options(appliance, table, settings, want_help)
