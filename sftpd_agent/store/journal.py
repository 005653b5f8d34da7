"""The state journal: SQLite in WAL mode, the agent's only memory across a crash.

Campaigns, their provider files (parts) and every state transition with its time. A
transition is committed with ``synchronous=FULL`` before the action that depends on it, so
after a crash the journal says what was intended and the remote listing says what happened.

The schema has a version (``PRAGMA user_version``) and ordered migrations; opening a store
applies the missing ones in one transaction each. The database and every file the agent
writes hold personal data: created 0600 in 0700 folders, whatever the umask.

Several processes write to it (the daemon, ``suppress import``): SQLite lets one write at a
time. A writer that finds the lock taken waits in :meth:`Store.transaction` (bounded
exponential backoff with jitter, up to :data:`BEGIN_DEADLINE`), and no writer keeps the lock
long: bulk writes (:meth:`Store.suppress_batches`) commit in batches sized to hold it about
:data:`BULK_HOLD_TARGET` and leave it free between batches for the others.
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import json
import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..files import private_dir, private_file
from ..rules.states import CampaignState, PartState

MIGRATIONS: Sequence[str] = (
    # 1: campaigns, parts, transitions, agent facts
    """
    CREATE TABLE campaigns (
        id INTEGER PRIMARY KEY,
        campaign_id TEXT NOT NULL,
        file TEXT NOT NULL,
        source TEXT NOT NULL,
        state TEXT NOT NULL,
        received_at TEXT NOT NULL,
        send_at TEXT,
        upload_at TEXT,
        rows INTEGER NOT NULL DEFAULT 0,
        valid INTEGER NOT NULL DEFAULT 0,
        invalid INTEGER NOT NULL DEFAULT 0,
        duplicates INTEGER NOT NULL DEFAULT 0,
        suppressed INTEGER NOT NULL DEFAULT 0,
        segments INTEGER NOT NULL DEFAULT 0,
        reason TEXT,
        summary TEXT,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX campaigns_state ON campaigns(state);
    CREATE TABLE parts (
        id INTEGER PRIMARY KEY,
        campaign INTEGER NOT NULL REFERENCES campaigns(id),
        number INTEGER NOT NULL,
        remote_name TEXT NOT NULL UNIQUE,
        state TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        rows INTEGER NOT NULL,
        published_at TEXT,
        outcome_at TEXT,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX parts_state ON parts(state);
    CREATE TABLE transitions (
        id INTEGER PRIMARY KEY,
        campaign INTEGER NOT NULL REFERENCES campaigns(id),
        part INTEGER REFERENCES parts(id),
        from_state TEXT,
        to_state TEXT NOT NULL,
        at TEXT NOT NULL,
        detail TEXT
    );
    CREATE INDEX transitions_campaign ON transitions(campaign);
    CREATE TABLE agent (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 2: the suppression list (never purged)
    """
    CREATE TABLE suppression (
        msisdn TEXT PRIMARY KEY,
        added_at TEXT NOT NULL,
        source TEXT NOT NULL,
        campaign TEXT
    );
    """,
    # 3: the provider's reports: read positions, delivery lines, opt-out lines, replies
    """
    CREATE TABLE report_cursors (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        campaign INTEGER REFERENCES campaigns(id),
        size INTEGER NOT NULL DEFAULT 0,
        mtime REAL NOT NULL DEFAULT 0,
        offset INTEGER NOT NULL DEFAULT 0,
        head_sha256 TEXT NOT NULL DEFAULT '',
        tail_sha256 TEXT NOT NULL DEFAULT '',
        lines INTEGER NOT NULL DEFAULT 0,
        complete_at TEXT,
        deleted_at TEXT,
        seen_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE deliveries (
        report INTEGER NOT NULL,  -- report_cursors.id (never reused)
        msisdn TEXT NOT NULL,
        idremote TEXT NOT NULL,
        campaign INTEGER,
        oadc TEXT NOT NULL,
        idstatus TEXT NOT NULL,
        status TEXT NOT NULL,
        operator TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (report, msisdn, idremote)
    ) WITHOUT ROWID;
    CREATE TABLE optouts (
        id INTEGER PRIMARY KEY,
        report INTEGER NOT NULL,  -- report_cursors.id
        key INTEGER NOT NULL,     -- a 64-bit hash of the line's text
        occurrence INTEGER NOT NULL,
        msisdn TEXT NOT NULL,
        received_at TEXT,
        campaign INTEGER REFERENCES campaigns(id),
        at TEXT NOT NULL,
        UNIQUE (report, key, occurrence)
    );
    CREATE TABLE replies (
        id INTEGER PRIMARY KEY,
        report INTEGER NOT NULL,
        key INTEGER NOT NULL,
        occurrence INTEGER NOT NULL,
        msisdn TEXT NOT NULL,
        received_at TEXT,
        message TEXT NOT NULL,
        idremote TEXT NOT NULL,
        campaign INTEGER REFERENCES campaigns(id),
        opt_out INTEGER NOT NULL,
        at TEXT NOT NULL,
        UNIQUE (report, key, occurrence)
    );
    CREATE INDEX replies_campaign ON replies(campaign);
    """,
    # 4: notifications waiting to be sent (one row per event and channel)
    """
    CREATE TABLE notifications (
        id INTEGER PRIMARY KEY,
        event TEXT NOT NULL,
        channel TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at TEXT NOT NULL,
        last_error TEXT,
        sent_at TEXT
    );
    CREATE INDEX notifications_pending ON notifications(sent_at, next_at);
    """,
)


BUSY_TIMEOUT_MS = 100
"""SQLite's own wait for a lock, on every statement (it polls at most 25 ms apart): enough for
the rare short lock of a read. Waiting to begin a write is :meth:`Store.transaction`'s."""
BEGIN_DEADLINE = 30.0
"""Seconds a writer keeps trying to begin before :class:`JournalBusyError`."""
BACKOFF_FIRST, BACKOFF_CEILING = 0.002, 0.025
"""Sleeps between tries to begin: doubling, with jitter, never longer than a bulk writer's
pause (:data:`BULK_PAUSE`), so that a waiting writer always gets in during one."""
BULK_HOLD_TARGET = 0.04
"""Seconds a batch of a bulk write should hold the write lock (the limit is 0.1 s)."""
BULK_PAUSE = 0.03
"""Seconds a bulk writer leaves the lock free between batches."""
BULK_FIRST_BATCH, BULK_MIN_BATCH, BULK_MAX_BATCH = 2_000, 200, 50_000


class JournalBusyError(sqlite3.OperationalError):
    """The journal's write lock stayed taken for :data:`BEGIN_DEADLINE` seconds."""


def _busy(error: sqlite3.OperationalError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(error) or "busy" in str(error)


def _next_batch(size: int, held: float) -> int:
    """The size of a bulk write's next batch: the one that would hold the lock for
    :data:`BULK_HOLD_TARGET`, if the last batch of ``size`` held it ``held`` seconds."""
    wanted = int(size * BULK_HOLD_TARGET / max(held, 0.001))
    return max(BULK_MIN_BATCH, min(BULK_MAX_BATCH, 2 * size, wanted))


def now_iso(when: datetime.datetime) -> str:
    return when.astimezone(datetime.UTC).isoformat(timespec="seconds")


def parse_iso(text: str | None) -> datetime.datetime | None:
    return datetime.datetime.fromisoformat(text) if text else None


@dataclass(frozen=True, slots=True)
class Campaign:
    id: int
    campaign_id: str
    file: str
    source: str
    state: CampaignState
    received_at: datetime.datetime
    send_at: datetime.datetime | None
    upload_at: datetime.datetime | None
    rows: int
    valid: int
    invalid: int
    duplicates: int
    suppressed: int
    segments: int
    reason: str | None
    summary: dict[str, Any]
    updated_at: datetime.datetime

    def figures(self) -> dict[str, int]:
        """The contract's figures (``status``, events): rows ... segments, in that order."""
        return {"rows": self.rows, "valid": self.valid, "invalid": self.invalid,
                "duplicates": self.duplicates, "suppressed": self.suppressed,
                "segments": self.segments}

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Campaign:
        return cls(
            id=row["id"], campaign_id=row["campaign_id"], file=row["file"], source=row["source"],
            state=CampaignState(row["state"]),
            received_at=datetime.datetime.fromisoformat(row["received_at"]),
            send_at=parse_iso(row["send_at"]), upload_at=parse_iso(row["upload_at"]),
            rows=row["rows"], valid=row["valid"], invalid=row["invalid"],
            duplicates=row["duplicates"], suppressed=row["suppressed"],
            segments=row["segments"], reason=row["reason"],
            summary=json.loads(row["summary"]) if row["summary"] else {},
            updated_at=datetime.datetime.fromisoformat(row["updated_at"]),
        )


@dataclass(frozen=True, slots=True)
class Part:
    id: int
    campaign: int
    number: int
    remote_name: str
    state: PartState
    size: int
    sha256: str
    rows: int
    published_at: datetime.datetime | None
    outcome_at: datetime.datetime | None

    @property
    def stem(self) -> str:
        return self.remote_name.removesuffix(".csv")

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Part:
        return cls(
            id=row["id"], campaign=row["campaign"], number=row["number"],
            remote_name=row["remote_name"], state=PartState(row["state"]), size=row["size"],
            sha256=row["sha256"], rows=row["rows"],
            published_at=parse_iso(row["published_at"]), outcome_at=parse_iso(row["outcome_at"]),
        )


@dataclass(frozen=True, slots=True)
class ReportCursor:
    """How far a remote report file has been read: the bytes up to ``offset`` (whole lines)
    are ingested; ``head_sha256``/``tail_sha256`` hash the first and last 4 KiB of them."""

    name: str
    kind: str
    campaign: int | None
    seen_at: datetime.datetime
    id: int | None = None
    size: int = 0
    mtime: float = 0.0
    offset: int = 0
    head_sha256: str = ""
    tail_sha256: str = ""
    lines: int = 0
    complete_at: datetime.datetime | None = None
    deleted_at: datetime.datetime | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> ReportCursor:
        return cls(
            name=row["name"], kind=row["kind"], campaign=row["campaign"],
            seen_at=datetime.datetime.fromisoformat(row["seen_at"]), id=row["id"],
            size=row["size"],
            mtime=row["mtime"], offset=row["offset"], head_sha256=row["head_sha256"],
            tail_sha256=row["tail_sha256"], lines=row["lines"],
            complete_at=parse_iso(row["complete_at"]), deleted_at=parse_iso(row["deleted_at"]),
        )


@dataclass(frozen=True, slots=True)
class PartPlan:
    """A provider file to publish: its name and the exact bytes' size and hash."""

    remote_name: str
    size: int
    sha256: str
    rows: int


class Store:
    """The journal. One connection, used from the event loop's thread only."""

    def __init__(self, path: Path, *, readonly: bool = False,
                 begin_deadline: float = BEGIN_DEADLINE) -> None:
        self.path = path
        self.begin_deadline = begin_deadline
        self.last_hold = 0.0
        """Seconds the last transaction held the write lock (BEGIN to the end of COMMIT)."""
        # Validation and upload preparation run in worker threads and record events: one
        # transaction at a time on the shared connection.
        self._lock = threading.RLock()
        self._rng = random.Random()  # noqa: S311  (jitter, not secrets)
        if readonly:
            # For ``status`` and friends beside a running daemon: WAL lets both read.
            self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            return
        private_dir(path.parent)
        if not path.exists():
            os.close(private_file(path))
        # Opening (WAL mode, migrations) may wait for another writer SQLite's own way.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                   timeout=begin_deadline)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA cache_size=-65536")  # 64 MiB: million-line reports
        self._migrate()
        self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        for suffix in ("-wal", "-shm"):
            sidecar = path.with_name(path.name + suffix)
            if sidecar.exists():
                sidecar.chmod(0o600)

    def close(self) -> None:
        self._db.close()

    @property
    def version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        for version in range(self.version, len(MIGRATIONS)):
            # One script, one transaction: the schema and its version change together.
            self._db.executescript(
                f"BEGIN IMMEDIATE; {MIGRATIONS[version]}; PRAGMA user_version = {version + 1}; "
                "COMMIT;"
            )

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic, durable unit: committed (fsynced) when the block ends.

        Begins once the write lock is free (:meth:`_begin`); keep the block short, another
        process may be waiting for it. Rolled back when the block raises or the COMMIT fails;
        the error goes on either way.
        """
        with self._lock:
            self._begin()
            began = time.monotonic()
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            finally:
                self.last_hold = time.monotonic() - began

    def _begin(self) -> None:
        """``BEGIN IMMEDIATE``, tried again while another connection writes: sleeps doubling
        from :data:`BACKOFF_FIRST` to :data:`BACKOFF_CEILING` with jitter (each try also waits
        up to :data:`BUSY_TIMEOUT_MS` inside SQLite), for at most ``begin_deadline`` seconds."""
        deadline = time.monotonic() + self.begin_deadline
        delay, tries = BACKOFF_FIRST, 0
        while True:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if not _busy(exc):
                    raise
                tries += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise JournalBusyError(
                        f"{self.path}: another process kept the journal's write lock for more "
                        f"than {self.begin_deadline:g} s ({tries} tries)") from exc
                time.sleep(min(left, delay * (0.5 + self._rng.random() / 2)))
                delay = min(2 * delay, BACKOFF_CEILING)
            else:
                return

    def _rollback(self) -> None:
        # SQLite may have rolled back already (a full disk, an I/O error): then nothing to do,
        # and the original error is the one to see.
        if self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    # -- campaigns -----------------------------------------------------------------------

    def add_campaign(
        self, *, campaign_id: str, file: str, source: str, at: datetime.datetime
    ) -> Campaign:
        """A dropped file, taken into the spool as ``source``: state ``received``."""
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO campaigns (campaign_id, file, source, state, received_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                (campaign_id, file, source, CampaignState.RECEIVED, now_iso(at), now_iso(at)),
            )
            pk = int(cursor.lastrowid or 0)
            db.execute(
                "INSERT INTO transitions (campaign, from_state, to_state, at) VALUES (?,?,?,?)",
                (pk, None, CampaignState.RECEIVED, now_iso(at)),
            )
        return self.campaign(pk)

    def campaign(self, pk: int) -> Campaign:
        row = self._db.execute("SELECT * FROM campaigns WHERE id = ?", (pk,)).fetchone()
        if row is None:
            raise KeyError(pk)
        return Campaign.from_row(row)

    def sources(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT source FROM campaigns")}

    def campaigns(self, *states: CampaignState) -> list[Campaign]:
        if states:
            marks = ",".join("?" * len(states))
            rows = self._db.execute(
                f"SELECT * FROM campaigns WHERE state IN ({marks}) ORDER BY id",  # noqa: S608
                states,
            ).fetchall()
        else:
            rows = self._db.execute("SELECT * FROM campaigns ORDER BY id").fetchall()
        return [Campaign.from_row(row) for row in rows]

    def move(
        self, pk: int, to: CampaignState, *, at: datetime.datetime, detail: str | None = None,
        **fields: Any,
    ) -> Campaign:
        """Record a campaign's transition (and any of its figures) durably."""
        with self.transaction() as db:
            before = db.execute("SELECT state FROM campaigns WHERE id = ?", (pk,)).fetchone()
            if before is None:
                raise KeyError(pk)
            self._update_campaign(db, pk, state=to, updated_at=now_iso(at), **fields)
            if before["state"] != to:
                db.execute(
                    "INSERT INTO transitions (campaign, from_state, to_state, at, detail) "
                    "VALUES (?,?,?,?,?)",
                    (pk, before["state"], to, now_iso(at), detail),
                )
        return self.campaign(pk)

    def update_campaign(self, pk: int, **fields: Any) -> None:
        with self.transaction() as db:
            self._update_campaign(db, pk, **fields)

    @staticmethod
    def _update_campaign(db: sqlite3.Connection, pk: int, **fields: Any) -> None:
        if not fields:
            return
        values = []
        for key, given in fields.items():
            if key not in _CAMPAIGN_FIELDS:
                raise ValueError(f"not a campaign field: {key}")
            value = given
            if isinstance(given, datetime.datetime):
                value = now_iso(given)
            elif key == "summary" and given is not None:
                value = json.dumps(given, ensure_ascii=False)
            values.append(value)
        assignments = ", ".join(f"{key} = ?" for key in fields)
        db.execute(f"UPDATE campaigns SET {assignments} WHERE id = ?",  # noqa: S608
                   (*values, pk))

    def transitions(self, pk: int) -> list[tuple[str | None, str, datetime.datetime]]:
        rows = self._db.execute(
            "SELECT from_state, to_state, at FROM transitions WHERE campaign = ? AND part IS NULL "
            "ORDER BY id", (pk,),
        ).fetchall()
        return [(r["from_state"], r["to_state"], datetime.datetime.fromisoformat(r["at"]))
                for r in rows]

    # -- parts -----------------------------------------------------------------------------

    def name_taken(self, remote_name: str) -> bool:
        row = self._db.execute("SELECT 1 FROM parts WHERE remote_name = ?",
                               (remote_name,)).fetchone()
        return row is not None

    def add_parts(
        self, pk: int, plans: Sequence[PartPlan], *, at: datetime.datetime, suppressed: int
    ) -> list[Part]:
        """Record the campaign's provider files and its move to ``uploading``: the intent."""
        with self.transaction() as db:
            for number, plan in enumerate(plans, start=1):
                db.execute(
                    "INSERT INTO parts (campaign, number, remote_name, state, size, sha256, rows,"
                    " updated_at) VALUES (?,?,?,?,?,?,?,?)",
                    (pk, number, plan.remote_name, PartState.UPLOADING, plan.size, plan.sha256,
                     plan.rows, now_iso(at)),
                )
            before = db.execute("SELECT state FROM campaigns WHERE id = ?", (pk,)).fetchone()
            self._update_campaign(db, pk, state=CampaignState.UPLOADING, suppressed=suppressed,
                                  updated_at=now_iso(at))
            db.execute(
                "INSERT INTO transitions (campaign, from_state, to_state, at) VALUES (?,?,?,?)",
                (pk, before["state"], CampaignState.UPLOADING, now_iso(at)),
            )
        return self.parts(pk)

    def parts(self, pk: int | None = None, *states: PartState) -> list[Part]:
        query = "SELECT * FROM parts WHERE 1=1"
        args: list[Any] = []
        if pk is not None:
            query += " AND campaign = ?"
            args.append(pk)
        if states:
            query += f" AND state IN ({','.join('?' * len(states))})"
            args.extend(states)
        rows = self._db.execute(query + " ORDER BY campaign, number", args).fetchall()
        return [Part.from_row(row) for row in rows]

    def move_part(self, part: Part, to: PartState, *, at: datetime.datetime) -> None:
        with self.transaction() as db:
            fields = ["state = ?", "updated_at = ?"]
            values: list[Any] = [to, now_iso(at)]
            if to != PartState.UPLOADING:
                # Seen as .lock or later without our rename recorded: published by then.
                fields.append("published_at = coalesce(published_at, ?)")
                values.append(now_iso(at))
            if to in (PartState.DONE, PartState.REJECTED):
                fields.append("outcome_at = ?")
                values.append(now_iso(at))
            db.execute(f"UPDATE parts SET {', '.join(fields)} WHERE id = ?",  # noqa: S608
                       (*values, part.id))
            db.execute(
                "INSERT INTO transitions (campaign, part, from_state, to_state, at) "
                "VALUES (?,?,?,?,?)", (part.campaign, part.id, part.state, to, now_iso(at)),
            )

    # -- the provider's reports ---------------------------------------------------------

    def acks(self, pk: int) -> dict[str, int]:
        """Delivery figures per ACK status, as last counted (kept after retention purges)."""
        summary = self.campaign(pk).summary
        figures = summary.get("acks", {})
        return {str(k): int(v) for k, v in figures.items()}

    def count_acks(self, pk: int) -> dict[str, int]:
        """Delivery figures per ACK status counted from the delivery lines."""
        rows = self._db.execute(
            "SELECT status, count(*) FROM deliveries WHERE report IN (SELECT id FROM "
            "report_cursors WHERE campaign = ? AND kind = 'ack') GROUP BY status "
            "ORDER BY status", (pk,))
        return {row[0]: int(row[1]) for row in rows}

    def part_named(self, remote_name: str) -> Part | None:
        row = self._db.execute("SELECT * FROM parts WHERE remote_name = ?",
                               (remote_name,)).fetchone()
        return Part.from_row(row) if row else None

    def report_cursor(self, name: str) -> ReportCursor | None:
        row = self._db.execute("SELECT * FROM report_cursors WHERE name = ?",
                               (name,)).fetchone()
        return ReportCursor.from_row(row) if row else None

    def report_cursors(self) -> list[ReportCursor]:
        rows = self._db.execute("SELECT * FROM report_cursors ORDER BY name").fetchall()
        return [ReportCursor.from_row(row) for row in rows]

    @staticmethod
    def save_cursor(db: sqlite3.Connection, cursor: ReportCursor, at: datetime.datetime) -> int:
        """Write ``cursor`` inside the caller's transaction (with the lines it accounts for);
        its id, the same for a name as long as the cursor is kept."""
        db.execute(
            "INSERT INTO report_cursors (name, kind, campaign, size, mtime, offset, head_sha256,"
            " tail_sha256, lines, complete_at, deleted_at, seen_at, updated_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(name) DO UPDATE SET "
            "kind=excluded.kind, campaign=excluded.campaign, size=excluded.size, "
            "mtime=excluded.mtime, offset=excluded.offset, head_sha256=excluded.head_sha256, "
            "tail_sha256=excluded.tail_sha256, lines=excluded.lines, "
            "complete_at=excluded.complete_at, deleted_at=excluded.deleted_at, "
            "seen_at=excluded.seen_at, updated_at=excluded.updated_at",
            (cursor.name, cursor.kind, cursor.campaign, cursor.size, cursor.mtime, cursor.offset,
             cursor.head_sha256, cursor.tail_sha256, cursor.lines,
             now_iso(cursor.complete_at) if cursor.complete_at else None,
             now_iso(cursor.deleted_at) if cursor.deleted_at else None,
             now_iso(cursor.seen_at), now_iso(at)))
        return int(db.execute("SELECT id FROM report_cursors WHERE name = ?",
                              (cursor.name,)).fetchone()[0])

    def live_report_names(self, cutoff: datetime.datetime) -> set[str]:
        """Report files still on the server, seen since ``cutoff``: their copies are kept."""
        rows = self._db.execute(
            "SELECT name FROM report_cursors WHERE deleted_at IS NULL AND seen_at >= ?",
            (now_iso(cutoff),))
        return {row[0] for row in rows}

    def purge_rows(self, cutoff: datetime.datetime) -> dict[str, int]:
        """Delete personal data recorded before ``cutoff``; rows deleted per table.

        In batches, as bulk writes are (:meth:`suppress_batches`): a million old delivery
        lines hold the write lock a few hundredths of a second at a time. A purge stopped
        half-way is finished by the next one."""
        before = now_iso(cutoff)
        statements = {
            "optouts": "DELETE FROM optouts WHERE id IN "
                       "(SELECT id FROM optouts WHERE at < ? LIMIT ?)",
            "replies": "DELETE FROM replies WHERE id IN "
                       "(SELECT id FROM replies WHERE at < ? LIMIT ?)",
            "report_cursors": "DELETE FROM report_cursors WHERE id IN (SELECT id FROM "
                              "report_cursors WHERE coalesce(deleted_at, seen_at) < ? LIMIT ?)",
            "notifications": "DELETE FROM notifications WHERE id IN "
                             "(SELECT id FROM notifications WHERE sent_at < ? LIMIT ?)",
        }
        deleted = {"deliveries": 0} | dict.fromkeys(statements, 0)
        for table, sql in (("deliveries", ""), *statements.items()):
            size = BULK_FIRST_BATCH
            for _ in range(1_000_000):  # bounded: each batch deletes ``size`` rows or ends
                with self.transaction() as db:
                    if table == "deliveries":  # no rowid: each row by its primary key
                        keys = db.execute("SELECT report, msisdn, idremote FROM deliveries "
                                          "WHERE at < ? LIMIT ?", (before, size)).fetchall()
                        db.executemany("DELETE FROM deliveries WHERE report = ? AND "
                                       "msisdn = ? AND idremote = ?", keys)
                        count = len(keys)
                    else:
                        count = db.execute(sql, (before, size)).rowcount
                deleted[table] += count
                if count < size:
                    break
                size = _next_batch(size, self.last_hold)
                time.sleep(BULK_PAUSE)
        return deleted

    def line_counts(self, report: int, *, stop: bool) -> dict[int, int]:
        """Occurrences of each line (by key) of a STOP (or SMS-MO) file ingested so far."""
        table = "optouts" if stop else "replies"
        rows = self._db.execute(
            f"SELECT key, max(occurrence) FROM {table} WHERE report = ? GROUP BY key",  # noqa: S608
            (report,))
        return {row[0]: int(row[1]) for row in rows}

    def has_lines(self, report: int, *, stop: bool) -> bool:
        table = "optouts" if stop else "replies"
        return self._db.execute(f"SELECT 1 FROM {table} WHERE report = ? LIMIT 1",  # noqa: S608
                                (report,)).fetchone() is not None

    def replies(self, campaign: str | None = None) -> list[dict[str, Any]]:
        query = ("SELECT r.msisdn, r.received_at, r.message, r.idremote, r.opt_out, "
                 "k.name AS report, c.campaign_id FROM replies r "
                 "LEFT JOIN report_cursors k ON k.id = r.report "
                 "LEFT JOIN campaigns c ON c.id = r.campaign")
        args: tuple[Any, ...] = ()
        if campaign is not None:
            query += " WHERE c.campaign_id = ?"
            args = (campaign,)
        rows = self._db.execute(query + " ORDER BY r.received_at, r.id", args)
        return [{**dict(row), "opt_out": bool(row["opt_out"])} for row in rows]

    @staticmethod
    def put_fact(db: sqlite3.Connection, key: str, value: Any) -> None:
        """``set_fact`` inside the caller's transaction."""
        db.execute("INSERT INTO agent (key, value) VALUES (?, ?) ON CONFLICT(key) "
                   "DO UPDATE SET value = excluded.value", (key, json.dumps(value)))

    def fact_in(self, db: sqlite3.Connection, key: str, default: Any = None) -> Any:
        row = db.execute("SELECT value FROM agent WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    # -- the suppression list ------------------------------------------------------------

    def suppress(self, numbers: Iterable[str], *, source: str, at: datetime.datetime,
                 campaign: str | None = None) -> list[str]:
        """Add E.164 numbers; the ones that were new, in order (a repeated number once).
        Committed in batches (:meth:`suppress_batches`)."""
        added: list[str] = []
        for new in self.suppress_batches(numbers, source=source, at=at, campaign=campaign):
            added.extend(new)
        return added

    def suppress_batches(self, numbers: Iterable[str], *, source: str, at: datetime.datetime,
                         campaign: str | None = None) -> Iterator[list[str]]:
        """Add E.164 numbers, taken from ``numbers`` as it goes, one transaction a batch; for
        each batch once committed, its numbers that were new, in order.

        Each batch holds the write lock about :data:`BULK_HOLD_TARGET` seconds (its size
        follows the time the last one took) and the lock is left free :data:`BULK_PAUSE`
        seconds between batches: a million numbers go in beside a running daemon. Sorted
        numbers go in fastest (a batch then touches few pages of the index).
        """
        source_at = now_iso(at)
        size = BULK_FIRST_BATCH
        pending = iter(numbers)
        first = True
        while batch := list(itertools.islice(pending, size)):
            if not first:
                time.sleep(BULK_PAUSE)
            first = False
            with self.transaction() as db:
                present = {row[0] for row in db.execute(
                    "SELECT s.msisdn FROM json_each(?) AS j JOIN suppression AS s "
                    "ON s.msisdn = j.value", (json.dumps(batch),))}
                new = list(dict.fromkeys(n for n in batch if n not in present))
                db.executemany(
                    "INSERT INTO suppression (msisdn, added_at, source, campaign) "
                    "VALUES (?,?,?,?) ON CONFLICT(msisdn) DO NOTHING",
                    [(msisdn, source_at, source, campaign) for msisdn in sorted(new)])
            size = _next_batch(size, self.last_hold)
            yield new

    def unsuppress(self, numbers: Sequence[str]) -> list[str]:
        removed = []
        with self.transaction() as db:
            for msisdn in numbers:
                if db.execute("DELETE FROM suppression WHERE msisdn = ?", (msisdn,)).rowcount:
                    removed.append(msisdn)
        return removed

    def suppressed(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT msisdn FROM suppression")}

    def suppression_entries(self) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT msisdn, added_at, source, campaign FROM suppression ORDER BY added_at, msisdn")
        return [dict(row) for row in rows]

    # -- agent facts ---------------------------------------------------------------------

    def set_fact(self, key: str, value: Any) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO agent (key, value) VALUES (?, ?) ON CONFLICT(key) "
                       "DO UPDATE SET value = excluded.value", (key, json.dumps(value)))

    def fact(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM agent WHERE key = ?", (key,)).fetchone()
        return json.loads(row["value"]) if row else default


_CAMPAIGN_FIELDS = frozenset({
    "campaign_id", "file", "state", "send_at", "upload_at", "rows", "valid", "invalid",
    "duplicates", "suppressed", "segments", "reason", "summary", "updated_at",
})
