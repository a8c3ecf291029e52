"""Console keys: the operators' authorized keys and the console's host key.

Authorized keys are an OpenSSH ``authorized_keys`` file read through the data
device.  Unlike sshd, a line that does not parse is an error naming the line
(an operator who mistyped a key should hear so at start, not find out when
locked out).  Each entry is matched with asyncssh's own authorized-keys code,
so its options apply as in sshd: ``from="PATTERN,..."`` is matched against the
peer's address (never a reverse-DNS name: no lookups, like sshd's default
``UseDNS no``), and ``command="..."`` pins the key to that one command line.
The key's comment names the operator in the log.

The host key (Ed25519, RFC 8709) is made once and kept, so that clients'
known_hosts entries stay valid across restarts: in ``<state-dir>/console_host_key``
(mode 0600, written to a temporary file, synced, then linked into place, so a
crash never leaves half a key and concurrent workers agree on the first one
written), or given read-only with ``--console-host-key FILE``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncssh

__all__ = [
    "HOST_KEY_FILE",
    "MAX_KEYS_FILE",
    "AuthorizedKey",
    "AuthorizedKeys",
    "Match",
    "fingerprint",
    "import_host_key",
    "load_or_create_host_key",
    "new_host_key",
]

HOST_KEY_FILE = "console_host_key"
#: an authorized_keys file larger than this is refused (thousands of keys)
MAX_KEYS_FILE = 1024 * 1024

# The options field: no unquoted whitespace; quoted strings may hold anything.
_OPTIONS = re.compile(r'(?:[^\s"]|"(?:\\.|[^"\\])*")+\s+')


@dataclass(frozen=True, slots=True)
class AuthorizedKey:
    #: ``FILE:LINE`` of the entry
    where: str
    #: the key's comment, else its fingerprint: who logged in, for the log
    name: str
    fingerprint: str
    #: the entry alone, for asyncssh's matching of key and options
    entry: asyncssh.SSHAuthorizedKeys


@dataclass(frozen=True, slots=True)
class Match:
    key: AuthorizedKey
    #: ``command="..."`` of the entry, if any
    forced_command: str | None


class AuthorizedKeys:
    def __init__(self, keys: Sequence[AuthorizedKey]) -> None:
        self.keys = tuple(keys)

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def parse(cls, text: str, source: str) -> AuthorizedKeys:
        """Every entry of ``text``.  Raises ValueError naming the first bad line,
        or saying that there is no key at all."""
        keys: list[AuthorizedKey] = []
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            where = f"{source}:{number}"
            try:
                entry = asyncssh.import_authorized_keys(line)
                public = _public_key(line)
            except (ValueError, asyncssh.KeyImportError) as exc:
                raise ValueError(f"{where}: not an authorized key entry ({exc})") from None
            fp = public.get_fingerprint("sha256")
            keys.append(AuthorizedKey(where, public.get_comment() or fp, fp, entry))
        if not keys:
            raise ValueError(f"{source}: no keys (a console without keys would let nobody in)")
        return cls(keys)

    def match(self, key: asyncssh.SSHKey, address: str) -> Match | None:
        """The first entry that allows ``key`` from ``address``, if any."""
        for candidate in self.keys:
            options = candidate.entry.validate(key, address, address)
            if options is not None:
                forced = options.get("command")
                return Match(candidate, forced if isinstance(forced, str) else None)
        return None


def _public_key(line: str) -> asyncssh.SSHKey:
    try:
        return asyncssh.import_public_key(line)
    except asyncssh.KeyImportError:
        stripped = _OPTIONS.sub("", line, count=1)
        return asyncssh.import_public_key(stripped)


def fingerprint(key: asyncssh.SSHKey) -> str:
    return key.get_fingerprint("sha256")


def new_host_key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519")


def import_host_key(data: bytes, source: str) -> asyncssh.SSHKey:
    try:
        return asyncssh.import_private_key(data)
    except (ValueError, asyncssh.KeyImportError) as exc:
        raise ValueError(f"{source}: not an unencrypted private key ({exc})") from None


def load_or_create_host_key(state_dir: Path) -> tuple[asyncssh.SSHKey, bool]:
    """The host key kept in ``state_dir`` (made there if missing), and whether
    it was made now.  Raises OSError or ValueError with the path in the text."""
    path = state_dir / HOST_KEY_FILE
    try:
        return import_host_key(path.read_bytes(), str(path)), False
    except FileNotFoundError:
        pass
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = new_host_key()
    temporary = state_dir / f".{HOST_KEY_FILE}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.write(fd, key.export_private_key())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            # link(2) fails if the name exists: a worker that lost the race
            # reads the winner's key instead of replacing it.
            os.link(temporary, path)
        except FileExistsError:
            return import_host_key(path.read_bytes(), str(path)), False
    finally:
        temporary.unlink(missing_ok=True)
    directory = os.open(state_dir, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return key, True
