"""The XMPP appliance's console commands, next to the runtime's own and the
``user ...`` commands (which also run from the command line).

- ``sessions``: every bound session: JID, connected or hibernating (XEP-0198),
  presence and priority, how long it has been bound, the client's address,
  TLS version, stream management and stanzas not yet acknowledged;
- ``kick JID``: close one session (full JID) or every session of an account
  (bare JID) with a ``policy-violation`` stream error; a hibernating session
  ends at once.  The client may log in again: to keep it out, ``user del`` or
  ``user passwd`` (both close the account's sessions too).
"""

from __future__ import annotations

from runtime import Call, Command, Reply, UsageError, find_service, table_text

from .jid import JID, JIDError
from .server import XMPPService

__all__ = ["CONSOLE_COMMANDS"]


def _service(call: Call) -> XMPPService | None:
    return find_service(call.ctx, XMPPService)


def _not_started() -> Reply:
    return Reply.failed("the XMPP service has not started yet")


def _sessions(call: Call) -> Reply:
    service = _service(call)
    if service is None:
        return _not_started()
    rows = service.session_rows()
    header = ("jid", "state", "presence", "for", "address", "tls", "sm", "unacked")
    lines = [
        (
            str(row["jid"]),
            str(row["state"]),
            f"{row['presence']} ({row['priority']})",
            f"{row['seconds']}s",
            str(row["address"]) or "-",
            str(row["tls"]) or "-",
            str(row["sm"]),
            str(row["unacked"]),
        )
        for row in rows
    ]
    text = table_text(lines, header) if rows else "no sessions"
    return Reply(text=text, data={"sessions": rows})


def _kick(call: Call) -> Reply:
    try:
        jid = JID.parse(call.args[0])
    except JIDError as exc:
        raise UsageError(f"bad JID {call.args[0]!r}: {exc}") from None
    if not jid.local:
        raise UsageError("give an account (user@domain) or a session (user@domain/resource)")
    service = _service(call)
    if service is None:
        return _not_started()
    count = service.kick(jid)
    if count == 0:
        return Reply.failed(f"no session of {jid}", data={"error": "not-found", "kicked": 0})
    return Reply(text=f"closed {count} session{'s' if count != 1 else ''} of {jid}", data={"kicked": count})


CONSOLE_COMMANDS = (
    Command("sessions", _sessions, "list the bound sessions", "", 0, 0),
    Command("kick", _kick, "close a session (full JID) or all of an account (bare JID)", "JID", 1, 1),
)
