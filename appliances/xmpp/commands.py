"""Account commands: ``python -m appliances.xmpp user add|passwd|del|list``
(and the same in the SSH console).

They work on the store a running server uses (SQLite arbitrates the two
processes; the server reads accounts from the store at every login, so a new
account or password counts at once).  Passwords come from ``--password PW``
or, on the command line, from the first line of stdin (at a terminal: asked
twice, not echoed); only salted SCRAM keys
are written (``Storage.create_account``).  ``user del`` and ``user passwd``
close the account's sessions: at once in the console, within a few seconds
when run from the command line (the server reads the change from the store).
"""

from __future__ import annotations

import getpass

from runtime import Call, Command, Reply, UsageError, find_service, table_text

from .jid import JID, JIDError
from .server import XMPPService
from .storage import Storage

__all__ = ["COMMANDS"]

MAX_PASSWORD = 1024


def _account(call: Call, text: str) -> str:
    try:
        jid = JID.parse(text)
    except JIDError as exc:
        raise UsageError(f"bad account {text!r}: {exc}") from None
    if not jid.local or jid.resource:
        raise UsageError(f"an account is USER@DOMAIN, not {text!r}")
    domain = str(JID.parse(call.ctx.options.domain))
    if jid.domain != domain:
        raise UsageError(f"this server serves {domain}; give --domain {jid.domain} to manage that domain")
    return str(jid)


def _password(call: Call, jid: str, args: tuple[str, ...]) -> str:
    rest = list(args)
    password: str | None = None
    if "--password" in rest:
        index = rest.index("--password")
        if index + 1 >= len(rest):
            raise UsageError("--password needs a value")
        password = rest[index + 1]
        del rest[index : index + 2]
    if rest:
        raise UsageError(f"unexpected arguments: {' '.join(rest)}")
    if password is None:
        stdin = call.extras.get("stdin")
        if stdin is None:
            raise UsageError("give --password PW")
        if stdin.isatty():
            # typed at a terminal: not echoed, and asked twice
            password = getpass.getpass(f"password for {jid}: ")
            if getpass.getpass("the same again: ") != password:
                raise UsageError("the two passwords differ")
        else:
            password = stdin.readline(MAX_PASSWORD + 1).rstrip("\r\n")
    if not password:
        raise UsageError("the password is empty")
    if len(password) > MAX_PASSWORD:
        raise UsageError(f"the password is longer than {MAX_PASSWORD} characters")
    return password


async def _storage(call: Call) -> Storage:
    storage = Storage(call.ctx.store)
    await storage.migrate()
    return storage


async def _add(call: Call) -> Reply:
    jid = _account(call, call.args[0])
    password = _password(call, jid, call.args[1:])
    storage = await _storage(call)
    ctx = call.ctx
    if not await storage.create_account(jid, password, ctx.random, ctx.clock.now()):
        return Reply.failed(f"account {jid} exists already (use 'user passwd')", data={"error": "exists"})
    return Reply(text=f"added {jid}", data={"added": jid})


def _close_sessions(call: Call) -> None:
    """In the console of the running server: close the account's sessions
    now (a server in another process does so when it reads the change)."""
    service = find_service(call.ctx, XMPPService)
    if service is not None:
        service.apply_account_changes()


async def _passwd(call: Call) -> Reply:
    jid = _account(call, call.args[0])
    password = _password(call, jid, call.args[1:])
    storage = await _storage(call)
    if not await storage.set_password(jid, password, call.ctx.random):
        return Reply.failed(f"no account {jid}", data={"error": "not-found"})
    _close_sessions(call)
    return Reply(text=f"password of {jid} changed", data={"changed": jid})


async def _delete(call: Call) -> Reply:
    jid = _account(call, call.args[0])
    storage = await _storage(call)
    if not await storage.delete_account(jid):
        return Reply.failed(f"no account {jid}", data={"error": "not-found"})
    _close_sessions(call)
    return Reply(text=f"deleted {jid}", data={"deleted": jid})


async def _list(call: Call) -> Reply:
    storage = await _storage(call)
    accounts = storage.accounts()
    return Reply(text=table_text([[a] for a in accounts]), data={"accounts": accounts})


COMMANDS = (
    Command(
        "user add", _add, "add an account (password from --password or stdin)", "JID [--password PW]", 1, 3
    ),
    Command("user passwd", _passwd, "change an account's password", "JID [--password PW]", 1, 3),
    Command("user del", _delete, "delete an account and everything it stored", "JID", 1, 1),
    Command("user list", _list, "list the accounts", "", 0, 0),
)
