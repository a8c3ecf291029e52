"""Everything the XMPP appliance keeps, in the store's SQL tables.

Reads do not wait; writes return once durable (the store's group commit), so
a stanza acknowledged after a write (an offline message stored, a roster
push sent) survives ``kill -9``.  Every table is keyed by the account's bare
JID text (``alice@localhost``), so several domains (and, later, remote
contacts of federation) fit without a schema change.

The running server reads accounts from the store on every login (no cache):
``python -m appliances.xmpp user ...`` may change them while it runs.  A
deleted account or a changed password is also written to ``xmpp_changes``,
which the server reads every few seconds to close the account's sessions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from runtime import Random, Store

from .scram import DEFAULT_ITERATIONS, Credential, derive

__all__ = [
    "MIGRATIONS",
    "PepNode",
    "RosterItem",
    "Storage",
]

MIGRATIONS = [
    """
    CREATE TABLE xmpp_accounts(
        jid TEXT PRIMARY KEY, salt BLOB NOT NULL, iterations INTEGER NOT NULL,
        sha1_stored BLOB NOT NULL, sha1_server BLOB NOT NULL,
        sha256_stored BLOB NOT NULL, sha256_server BLOB NOT NULL, created REAL NOT NULL);
    CREATE TABLE xmpp_roster(
        jid TEXT NOT NULL, contact TEXT NOT NULL, name TEXT NOT NULL DEFAULT '',
        subscription TEXT NOT NULL DEFAULT 'none', ask INTEGER NOT NULL DEFAULT 0,
        pending_in INTEGER NOT NULL DEFAULT 0, approved INTEGER NOT NULL DEFAULT 0,
        listed INTEGER NOT NULL DEFAULT 0, groups TEXT NOT NULL DEFAULT '[]',
        PRIMARY KEY(jid, contact));
    CREATE TABLE xmpp_roster_version(jid TEXT PRIMARY KEY, version INTEGER NOT NULL);
    CREATE TABLE xmpp_offline(
        id INTEGER PRIMARY KEY AUTOINCREMENT, jid TEXT NOT NULL, stanza BLOB NOT NULL, stamp REAL NOT NULL);
    CREATE INDEX xmpp_offline_jid ON xmpp_offline(jid, id);
    CREATE TABLE xmpp_vcard(jid TEXT PRIMARY KEY, xml BLOB NOT NULL);
    CREATE TABLE xmpp_blocklist(jid TEXT NOT NULL, blocked TEXT NOT NULL, PRIMARY KEY(jid, blocked));
    """,
    """
    CREATE TABLE xmpp_changes(seq INTEGER PRIMARY KEY AUTOINCREMENT, jid TEXT NOT NULL, what TEXT NOT NULL);
    """,
    """
    CREATE TABLE xmpp_pep_nodes(
        jid TEXT NOT NULL, node TEXT NOT NULL, access TEXT NOT NULL, max_items INTEGER NOT NULL,
        PRIMARY KEY(jid, node));
    CREATE TABLE xmpp_pep_items(
        jid TEXT NOT NULL, node TEXT NOT NULL, item TEXT NOT NULL, seq INTEGER NOT NULL,
        payload BLOB NOT NULL, PRIMARY KEY(jid, node, item));
    CREATE INDEX xmpp_pep_items_seq ON xmpp_pep_items(jid, node, seq);
    """,
    """
    CREATE TABLE xmpp_private(jid TEXT NOT NULL, ns TEXT NOT NULL, xml BLOB NOT NULL, PRIMARY KEY(jid, ns));
    """,
]
#: account changes kept for servers to catch up with (they read every few seconds)
KEEP_CHANGES = 1000


@dataclass(frozen=True, slots=True)
class RosterItem:
    """One contact in one user's roster, with the subscription state of RFC 6121
    Appendix A: ``subscription`` plus pending-out (``ask``), pending-in and
    pre-approval (§3.4).  ``listed`` items are shown in the roster; an item
    that only carries a pending-in request is not (§3.1.3)."""

    contact: str
    name: str = ""
    subscription: str = "none"
    ask: bool = False
    pending_in: bool = False
    approved: bool = False
    listed: bool = False
    groups: tuple[str, ...] = ()

    def change(self, **fields: Any) -> RosterItem:
        return replace(self, **fields)

    @property
    def to(self) -> bool:
        """The user receives the contact's presence."""
        return self.subscription in ("to", "both")

    @property
    def from_(self) -> bool:
        """The contact receives the user's presence."""
        return self.subscription in ("from", "both")


@dataclass(frozen=True, slots=True)
class PepNode:
    """One XEP-0163 node of an account: its name and configuration."""

    name: str
    access: str = "presence"
    max_items: int = 1


def _bool(value: Any) -> bool:
    return bool(value)


class Storage:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def migrate(self) -> None:
        await self.store.migrate("xmpp", MIGRATIONS)

    # ----------------------------------------------------------------- accounts

    def has_account(self, jid: str) -> bool:
        return bool(self.store.query("SELECT 1 FROM xmpp_accounts WHERE jid = ?", (jid,)))

    def accounts(self) -> list[str]:
        return [row[0] for row in self.store.query("SELECT jid FROM xmpp_accounts ORDER BY jid")]

    def credential(self, jid: str, hash_name: str) -> Credential | None:
        if hash_name not in ("sha1", "sha256"):  # it names columns: a closed set
            raise ValueError(f"unknown hash {hash_name!r}")
        rows = self.store.query(
            f"SELECT salt, iterations, {hash_name}_stored, {hash_name}_server"
            " FROM xmpp_accounts WHERE jid = ?",
            (jid,),
        )
        if not rows:
            return None
        salt, iterations, stored, server = rows[0]
        return Credential(bytes(salt), int(iterations), bytes(stored), bytes(server))

    def _keys(self, password: str, random: Random) -> tuple[bytes, int, Credential, Credential]:
        salt = random.bytes(16)
        sha1 = derive(password, salt, DEFAULT_ITERATIONS, "sha1")
        sha256 = derive(password, salt, DEFAULT_ITERATIONS, "sha256")
        return salt, DEFAULT_ITERATIONS, sha1, sha256

    async def create_account(self, jid: str, password: str, random: Random, now: float) -> bool:
        """False when the account exists already."""
        salt, iterations, sha1, sha256 = self._keys(password, random)
        count = await self.store.execute(
            "INSERT INTO xmpp_accounts VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(jid) DO NOTHING",
            (
                *(jid, salt, iterations, sha1.stored_key, sha1.server_key),
                sha256.stored_key,
                sha256.server_key,
                now,
            ),
        )
        return count == 1

    async def set_password(self, jid: str, password: str, random: Random) -> bool:
        if not self.has_account(jid):
            return False
        salt, iterations, sha1, sha256 = self._keys(password, random)
        await self.store.transaction(
            [
                (
                    "UPDATE xmpp_accounts SET salt = ?, iterations = ?, sha1_stored = ?, sha1_server = ?,"
                    " sha256_stored = ?, sha256_server = ? WHERE jid = ?",
                    (
                        *(salt, iterations, sha1.stored_key, sha1.server_key),
                        *(sha256.stored_key, sha256.server_key, jid),
                    ),
                ),
                *self._changed(jid, "password"),
            ]
        )
        return True

    @staticmethod
    def _changed(jid: str, what: str) -> list[tuple[str, tuple[Any, ...]]]:
        return [
            ("INSERT INTO xmpp_changes(jid, what) VALUES (?, ?)", (jid, what)),
            (
                "DELETE FROM xmpp_changes WHERE seq <= (SELECT max(seq) FROM xmpp_changes) - ?",
                (KEEP_CHANGES,),
            ),
        ]

    def last_change(self) -> int:
        rows = self.store.query("SELECT max(seq) FROM xmpp_changes")
        return int(rows[0][0] or 0)

    def changes(self, after: int) -> list[tuple[int, str, str]]:
        """Account changes (seq, bare JID, "password" or "deleted") after ``after``."""
        rows = self.store.query(
            "SELECT seq, jid, what FROM xmpp_changes WHERE seq > ? ORDER BY seq", (after,)
        )
        return [(int(seq), str(jid), str(what)) for seq, jid, what in rows]

    async def delete_account(self, jid: str) -> bool:
        if not self.has_account(jid):
            return False
        await self.store.transaction(
            [
                *self._changed(jid, "deleted"),
                ("DELETE FROM xmpp_accounts WHERE jid = ?", (jid,)),
                ("DELETE FROM xmpp_roster WHERE jid = ?", (jid,)),
                ("DELETE FROM xmpp_roster_version WHERE jid = ?", (jid,)),
                ("DELETE FROM xmpp_offline WHERE jid = ?", (jid,)),
                ("DELETE FROM xmpp_vcard WHERE jid = ?", (jid,)),
                ("DELETE FROM xmpp_blocklist WHERE jid = ?", (jid,)),
                ("DELETE FROM xmpp_pep_nodes WHERE jid = ?", (jid,)),
                ("DELETE FROM xmpp_pep_items WHERE jid = ?", (jid,)),
                ("DELETE FROM xmpp_private WHERE jid = ?", (jid,)),
            ]
        )
        return True

    # ----------------------------------------------------------------- roster

    def roster_version(self, jid: str) -> int:
        rows = self.store.query("SELECT version FROM xmpp_roster_version WHERE jid = ?", (jid,))
        return int(rows[0][0]) if rows else 0

    def roster(self, jid: str) -> list[RosterItem]:
        rows = self.store.query(
            "SELECT contact, name, subscription, ask, pending_in, approved, listed, groups"
            " FROM xmpp_roster WHERE jid = ? ORDER BY contact",
            (jid,),
        )
        return [self._item(row) for row in rows]

    def roster_item(self, jid: str, contact: str) -> RosterItem | None:
        rows = self.store.query(
            "SELECT contact, name, subscription, ask, pending_in, approved, listed, groups"
            " FROM xmpp_roster WHERE jid = ? AND contact = ?",
            (jid, contact),
        )
        return self._item(rows[0]) if rows else None

    @staticmethod
    def _item(row: Sequence[Any]) -> RosterItem:
        contact, name, subscription, ask, pending_in, approved, listed, groups = row
        return RosterItem(
            contact,
            name,
            subscription,
            _bool(ask),
            _bool(pending_in),
            _bool(approved),
            _bool(listed),
            tuple(json.loads(groups)),
        )

    async def put_roster_item(self, jid: str, item: RosterItem) -> int:
        """Store ``item`` (replacing the contact's row); returns the new roster version."""
        await self.store.transaction(
            [
                (
                    "INSERT INTO xmpp_roster_version VALUES (?, 1)"
                    " ON CONFLICT(jid) DO UPDATE SET version = version + 1",
                    (jid,),
                ),
                (
                    "INSERT OR REPLACE INTO xmpp_roster VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        jid,
                        item.contact,
                        item.name,
                        item.subscription,
                        int(item.ask),
                        int(item.pending_in),
                        int(item.approved),
                        int(item.listed),
                        json.dumps(list(item.groups)),
                    ),
                ),
            ]
        )
        return self.roster_version(jid)

    async def delete_roster_item(self, jid: str, contact: str) -> int:
        await self.store.transaction(
            [
                (
                    "INSERT INTO xmpp_roster_version VALUES (?, 1)"
                    " ON CONFLICT(jid) DO UPDATE SET version = version + 1",
                    (jid,),
                ),
                ("DELETE FROM xmpp_roster WHERE jid = ? AND contact = ?", (jid, contact)),
            ]
        )
        return self.roster_version(jid)

    # ----------------------------------------------------------------- offline messages

    def offline_count(self, jid: str) -> int:
        return int(self.store.query("SELECT count(*) FROM xmpp_offline WHERE jid = ?", (jid,))[0][0])

    async def store_offline(self, jid: str, stanza: bytes, stamp: float) -> None:
        await self.store.execute(
            "INSERT INTO xmpp_offline(jid, stanza, stamp) VALUES (?, ?, ?)", (jid, stanza, stamp)
        )

    def offline(self, jid: str) -> list[tuple[int, bytes, float]]:
        rows = self.store.query(
            "SELECT id, stanza, stamp FROM xmpp_offline WHERE jid = ? ORDER BY id", (jid,)
        )
        return [(int(row[0]), bytes(row[1]), float(row[2])) for row in rows]

    async def delete_offline(self, jid: str, up_to: int) -> None:
        await self.store.execute("DELETE FROM xmpp_offline WHERE jid = ? AND id <= ?", (jid, up_to))

    # ----------------------------------------------------------------- vCard, blocking

    def vcard(self, jid: str) -> bytes | None:
        rows = self.store.query("SELECT xml FROM xmpp_vcard WHERE jid = ?", (jid,))
        return bytes(rows[0][0]) if rows else None

    async def set_vcard(self, jid: str, xml: bytes) -> None:
        await self.store.execute("INSERT OR REPLACE INTO xmpp_vcard VALUES (?, ?)", (jid, xml))

    def blocklist(self, jid: str) -> list[str]:
        rows = self.store.query("SELECT blocked FROM xmpp_blocklist WHERE jid = ? ORDER BY blocked", (jid,))
        return [row[0] for row in rows]

    async def block(self, jid: str, items: Sequence[str]) -> None:
        await self.store.transaction(
            [("INSERT OR IGNORE INTO xmpp_blocklist VALUES (?, ?)", (jid, item)) for item in items]
        )

    async def unblock(self, jid: str, items: Sequence[str] | None) -> None:
        if items is None:
            await self.store.execute("DELETE FROM xmpp_blocklist WHERE jid = ?", (jid,))
            return
        await self.store.transaction(
            [("DELETE FROM xmpp_blocklist WHERE jid = ? AND blocked = ?", (jid, item)) for item in items]
        )

    # ----------------------------------------------------------------- private XML (XEP-0049)

    def private(self, jid: str, ns: str) -> bytes | None:
        rows = self.store.query("SELECT xml FROM xmpp_private WHERE jid = ? AND ns = ?", (jid, ns))
        return bytes(rows[0][0]) if rows else None

    def private_size(self, jid: str) -> int:
        rows = self.store.query(
            "SELECT coalesce(sum(length(xml)), 0) FROM xmpp_private WHERE jid = ?", (jid,)
        )
        return int(rows[0][0])

    async def set_private(self, jid: str, ns: str, xml: bytes) -> None:
        await self.store.execute("INSERT OR REPLACE INTO xmpp_private VALUES (?, ?, ?)", (jid, ns, xml))

    # ----------------------------------------------------------------- PEP (XEP-0163)

    def pep_node(self, jid: str, node: str) -> PepNode | None:
        rows = self.store.query(
            "SELECT access, max_items FROM xmpp_pep_nodes WHERE jid = ? AND node = ?", (jid, node)
        )
        return PepNode(node, str(rows[0][0]), int(rows[0][1])) if rows else None

    def pep_node_count(self, jid: str) -> int:
        return int(self.store.query("SELECT count(*) FROM xmpp_pep_nodes WHERE jid = ?", (jid,))[0][0])

    def pep_items(
        self, jid: str, node: str, ids: Sequence[str] | None = None, limit: int | None = None
    ) -> list[tuple[str, bytes]]:
        """(item id, payload), oldest first: the given ids, or the newest ``limit``, or all."""
        if ids is not None:
            marks = ",".join("?" * len(ids))
            rows = self.store.query(
                f"SELECT item, payload FROM xmpp_pep_items WHERE jid = ? AND node = ? AND item IN ({marks})"
                " ORDER BY seq",
                (jid, node, *ids),
            )
        else:
            rows = self.store.query(
                "SELECT item, payload FROM (SELECT item, payload, seq FROM xmpp_pep_items"
                " WHERE jid = ? AND node = ? ORDER BY seq DESC LIMIT ?) ORDER BY seq",
                (jid, node, -1 if limit is None else limit),
            )
        return [(str(item), bytes(payload)) for item, payload in rows]

    @staticmethod
    def _trim(jid: str, node: str, keep: int) -> tuple[str, tuple[Any, ...]]:
        return (
            "DELETE FROM xmpp_pep_items WHERE jid = ? AND node = ? AND seq <= "
            "(SELECT max(seq) FROM xmpp_pep_items WHERE jid = ? AND node = ?) - ?",
            (jid, node, jid, node, keep),
        )

    async def pep_publish(self, jid: str, node: PepNode, item: str, payload: bytes) -> None:
        """Create the node if new, store the item (replacing one with its id), keep the newest."""
        await self.store.transaction(
            [
                (
                    "INSERT OR IGNORE INTO xmpp_pep_nodes VALUES (?, ?, ?, ?)",
                    (jid, node.name, node.access, node.max_items),
                ),
                (
                    "INSERT OR REPLACE INTO xmpp_pep_items VALUES (?, ?, ?,"
                    " (SELECT coalesce(max(seq), 0) + 1 FROM xmpp_pep_items WHERE jid = ? AND node = ?), ?)",
                    (jid, node.name, item, jid, node.name, payload),
                ),
                self._trim(jid, node.name, node.max_items),
            ]
        )

    async def pep_configure(self, jid: str, node: PepNode) -> None:
        await self.store.transaction(
            [
                (
                    "UPDATE xmpp_pep_nodes SET access = ?, max_items = ? WHERE jid = ? AND node = ?",
                    (node.access, node.max_items, jid, node.name),
                ),
                self._trim(jid, node.name, node.max_items),
            ]
        )

    async def pep_retract(self, jid: str, node: str, item: str) -> bool:
        count = await self.store.execute(
            "DELETE FROM xmpp_pep_items WHERE jid = ? AND node = ? AND item = ?", (jid, node, item)
        )
        return count == 1

    async def pep_purge(self, jid: str, node: str) -> None:
        await self.store.execute("DELETE FROM xmpp_pep_items WHERE jid = ? AND node = ?", (jid, node))

    async def pep_delete_node(self, jid: str, node: str) -> None:
        await self.store.transaction(
            [
                ("DELETE FROM xmpp_pep_items WHERE jid = ? AND node = ?", (jid, node)),
                ("DELETE FROM xmpp_pep_nodes WHERE jid = ? AND node = ?", (jid, node)),
            ]
        )

    def pep_last_items_for(self, user: str) -> list[tuple[str, str, str, bytes]]:
        """(owner, node, item id, payload): the newest item of every node ``user``
        may see: its own, and those of contacts whose presence it receives
        (nodes not on the whitelist model)."""
        rows = self.store.query(
            "SELECT n.jid, n.node, i.item, i.payload FROM xmpp_pep_nodes n"
            " JOIN xmpp_pep_items i ON i.jid = n.jid AND i.node = n.node AND i.seq ="
            " (SELECT max(seq) FROM xmpp_pep_items WHERE jid = n.jid AND node = n.node)"
            " WHERE n.jid = ? OR (n.access != 'whitelist' AND n.jid IN"
            " (SELECT contact FROM xmpp_roster WHERE jid = ? AND subscription IN ('to', 'both')))"
            " ORDER BY n.jid, n.node",
            (user, user),
        )
        return [(str(owner), str(node), str(item), bytes(payload)) for owner, node, item, payload in rows]
