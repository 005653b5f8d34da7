"""The notification queue's rows: every SQL statement on the ``notifications`` table.

One row per event and channel (the table is the journal's migration 4). ``notify/queue.py``
decides what to send, when and how to retry; this module only reads and writes the rows,
each write one durable transaction of the :class:`~sftpd_agent.store.journal.Store`.
Works on a read-only store for the reads (``status``).
"""

from __future__ import annotations

import datetime
import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

from .journal import Store
from .records import now_iso, parse_iso


@dataclass(frozen=True, slots=True)
class Queued:
    """One row of the ``notifications`` table not sent yet."""

    id: int
    event: str
    channel: str
    payload: dict[str, Any]
    created_at: datetime.datetime
    attempts: int

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Queued:
        return cls(id=row["id"], event=row["event"], channel=row["channel"],
                   payload=json.loads(row["payload"]),
                   created_at=datetime.datetime.fromisoformat(row["created_at"]),
                   attempts=row["attempts"])

    @property
    def campaign_id(self) -> str:
        campaign = self.payload.get("campaign") or {}
        return str(campaign.get("campaign_id") or "")


class QueueFigures(TypedDict):
    """The queue for ``status`` and metrics.

    ``pending``: rows not sent; ``failing``: of those, rows whose last attempt failed;
    ``oldest``: when the oldest pending row was queued; ``last_error``: the latest failure.
    """

    pending: int
    failing: int
    oldest: str | None
    last_error: str | None


class NotificationRows:
    """The ``notifications`` table of ``store``."""

    def __init__(self, store: Store) -> None:
        self._store = store

    # -- writes (one transaction each) ---------------------------------------------------

    def add(self, event: str, channels: Sequence[str], payload: str,
            at: datetime.datetime) -> None:
        """One row per channel, all due ``at``, in one transaction."""
        now = now_iso(at)
        with self._store.transaction() as db:
            db.executemany(
                "INSERT INTO notifications (event, channel, payload, created_at, next_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [(event, channel, payload, now, now) for channel in channels])

    def sent(self, pk: int, *, at: datetime.datetime, attempts: int) -> None:
        with self._store.transaction() as db:
            db.execute("UPDATE notifications SET sent_at = ?, attempts = ?, last_error = NULL "
                       "WHERE id = ?", (now_iso(at), attempts, pk))

    def dropped(self, pk: int, *, at: datetime.datetime, reason: str) -> None:
        """Done with without sending (its channel is gone): purged as a sent row is."""
        with self._store.transaction() as db:
            db.execute("UPDATE notifications SET sent_at = ?, last_error = ? WHERE id = ?",
                       (now_iso(at), reason, pk))

    def failed(self, pk: int, *, attempts: int, error: str,
               next_at: datetime.datetime) -> None:
        with self._store.transaction() as db:
            db.execute("UPDATE notifications SET attempts = ?, last_error = ?, next_at = ? "
                       "WHERE id = ?", (attempts, error, now_iso(next_at), pk))

    def postpone(self, pks: Iterable[int], next_at: datetime.datetime) -> None:
        """The rows ``pks`` are not due before ``next_at`` (not attempted, not counted)."""
        when = now_iso(next_at)
        with self._store.transaction() as db:
            db.executemany("UPDATE notifications SET next_at = ? WHERE id = ?",
                           [(when, pk) for pk in pks])

    # -- reads ---------------------------------------------------------------------------

    def due(self, now: datetime.datetime, limit: int) -> list[Queued]:
        """The first ``limit`` rows not sent and due by ``now``, in queue order."""
        rows = self._store._db.execute(
            "SELECT id, event, channel, payload, created_at, attempts FROM notifications "
            "WHERE sent_at IS NULL AND next_at <= ? ORDER BY id LIMIT ?",
            (now_iso(now), limit)).fetchall()
        return [Queued.from_row(row) for row in rows]

    def next_due(self) -> datetime.datetime | None:
        """When the next row not sent is due (None: nothing waits)."""
        row = self._store._db.execute(
            "SELECT min(next_at) FROM notifications WHERE sent_at IS NULL").fetchone()
        return parse_iso(row[0])

    def figures(self) -> QueueFigures:
        db = self._store._db
        pending, failing, oldest = db.execute(
            "SELECT count(*), coalesce(sum(attempts > 0), 0), min(created_at) "
            "FROM notifications WHERE sent_at IS NULL").fetchone()
        last = db.execute(
            "SELECT last_error FROM notifications WHERE sent_at IS NULL AND attempts > 0 "
            "ORDER BY id DESC LIMIT 1").fetchone()
        return {"pending": int(pending), "failing": int(failing), "oldest": oldest,
                "last_error": last[0] if last else None}

    def all(self) -> list[dict[str, Any]]:
        """Every row, sent or not, as the table holds it, in queue order (for inspection)."""
        return [dict(row) for row in
                self._store._db.execute("SELECT * FROM notifications ORDER BY id")]
