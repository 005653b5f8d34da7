"""The state journal: SQLite in WAL mode, the agent's only memory across a crash, and the
only module (with the rest of ``store/``) that speaks SQL.

Campaigns, their provider files (parts) and every state transition with its time. A
transition is committed with ``synchronous=FULL`` before the action that depends on it, so
after a crash the journal says what was intended and the remote listing says what happened.
The state machine (:mod:`sftpd_agent.rules.states`) is enforced here: a move it forbids is
refused (:class:`IllegalTransition`) and nothing is written.

The schema and its migrations are :mod:`.schema`'s, the values read back :mod:`.records`',
the report tables' reads and writes :mod:`.reports`'. The database and every file the agent
writes hold personal data: created 0600 in 0700 folders, whatever the umask.

Several processes write to it (the daemon, ``suppress import``): SQLite lets one write at a
time. A writer that finds the lock taken waits in :meth:`Store.transaction` (bounded
exponential backoff with jitter, up to :data:`BEGIN_DEADLINE`), and no writer keeps the lock
long: bulk writes (:meth:`Store.suppress_batches`, report lines, the retention purge) commit
in batches sized to hold it about :data:`BULK_HOLD_TARGET` and, when another writer waits
for it, leave it free between batches until that writer is in (:meth:`Store.bulk_pause`):
every writer says so on a file beside the journal (``state.db-writers``, a shared ``flock``
taken before BEGIN), which the bulk writer tests between batches. The WAL is copied into
the database by :meth:`Store.checkpoint` between transactions, never inside a COMMIT.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import itertools
import json
import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..files import private_dir, private_file
from ..logs import get_logger
from ..rules.states import IN_FLIGHT, PART_FINAL, CampaignState, PartState, advanced, can_move
from .records import Campaign, Part, PartPlan, now_iso, parse_iso
from .reports import ReportTables
from .schema import GET_FACT, PUT_FACT, SUPPRESS, migrate
from .schema import version as schema_version

log = get_logger(__name__)
# Campaign ... parse_iso live in .records: named here too for modules that still import them
# from here.
__all__ = [
    "BEGIN_DEADLINE", "BULK_PAUSE", "BUSY_TIMEOUT_MS", "IllegalTransition", "JournalBusyError",
    "Store", "next_batch",
]

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
"""Seconds a bulk writer leaves the lock free between batches, at most, while another writer
waits for it (:meth:`Store.bulk_pause`; none when nobody waits)."""
WAITERS_SUFFIX = "-writers"
"""The file beside the journal on which a writer about to begin holds a shared ``flock``."""
BULK_FIRST_BATCH, BULK_MIN_BATCH, BULK_MAX_BATCH = 2_000, 200, 50_000
CACHE_KIB = 16384
"""SQLite's page cache (KiB). Report lines are appended (migrations 7 and 8), so a million of
them need no more: 64 MiB measured the same ingest times with 50 MB more resident."""
LEAN_CACHE_KIB = 2048
"""The page cache while report lines are appended and opt-outs listed
(:meth:`Store.lean_cache`): appends touch the last pages alone, and the listing's sort is held
to the cache's size (1M STOP lines: 122 -> 106 MB while read, 126 -> 97 MB while listed, the same
times)."""
LIST_CACHE_KIB = 1024
"""The cache of the scratch table a listing of opt-out numbers sorts into (the rest on disk)."""
CHECKPOINT_EVERY = 100
"""Transactions between two checkpoints (:meth:`Store.checkpoint`)."""
BULK_PER_CHECKPOINT = 4
"""Bulk batches between two checkpoints (each writes thousands of pages): measured on 1M STOP
lines, one after every batch doubled the ingest time (31-50 s instead of 21-31 s) and its
longest hold (the checkpoint's writes slow the next commit's fsync)."""

# The numbers of the opt-out lines recorded since the last listing, in number order (the first
# line of a number first), into a scratch table whose rowids follow that order; then onto the
# suppression list a slice of rowids at a time.
_TO_LIST = (
    "INSERT INTO temp.optouts_to_list (msisdn, added_at, source, campaign) "
    "SELECT o.msisdn, coalesce(o.received_at, o.at), coalesce(k.name, 'STOP'), c.campaign_id "
    "FROM optouts o LEFT JOIN report_cursors k ON k.id = o.report "
    "LEFT JOIN campaigns c ON c.id = o.campaign "
    "WHERE o.id > ?1 AND o.id <= ?2 AND o.listed ORDER BY o.msisdn, o.id")
_LIST = (
    "INSERT INTO suppression (msisdn, added_at, source, campaign) "
    "SELECT msisdn, added_at, source, campaign FROM temp.optouts_to_list "
    "WHERE rowid BETWEEN ?1 AND ?2 ORDER BY rowid ON CONFLICT(msisdn) DO NOTHING")
# The opt-out lines whose numbers are still to be listed (?1: the mark, ``LISTED_TO``), and
# of those, the ones whose number the list does not hold yet.
_PENDING = "optouts o WHERE o.id > ?1 AND o.listed"
_PENDING_NEW = (_PENDING  # noqa: S608 - constants, no input
                + " AND NOT EXISTS (SELECT 1 FROM suppression s WHERE s.msisdn = o.msisdn)")
# The suppression list as it stands: its entries, and the numbers still to be listed that it
# does not hold yet (each as its first line would list it).
_ENTRIES = (
    "SELECT msisdn, added_at, source, campaign FROM suppression UNION ALL "  # noqa: S608
    "SELECT o.msisdn, coalesce(o.received_at, o.at), coalesce(k.name, 'STOP'), "
    "c.campaign_id FROM (SELECT o.msisdn, o.received_at, o.at, o.report, o.campaign, "
    f"min(o.id) FROM {_PENDING_NEW} GROUP BY o.msisdn) o "
    "LEFT JOIN report_cursors k ON k.id = o.report "
    "LEFT JOIN campaigns c ON c.id = o.campaign "
    "ORDER BY 2, 1")


class JournalBusyError(sqlite3.OperationalError):
    """The journal's write lock stayed taken for :data:`BEGIN_DEADLINE` seconds."""


class IllegalTransition(ValueError):
    """A move the state machine forbids: refused, nothing written."""

    def __init__(self, what: str, before: str, after: str) -> None:
        super().__init__(f"{what}: {before} -> {after} is not a move the state machine allows")
        self.before, self.after = before, after


def _busy(error: sqlite3.OperationalError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(error) or "busy" in str(error)


def next_batch(size: int, held: float) -> int:
    """The size of a bulk write's next batch: the one that would hold the lock for
    :data:`BULK_HOLD_TARGET`, if the last batch of ``size`` held it ``held`` seconds."""
    wanted = int(size * BULK_HOLD_TARGET / max(held, 0.001))
    return max(BULK_MIN_BATCH, min(BULK_MAX_BATCH, 2 * size, wanted))


class _SharedCursor(sqlite3.Cursor):
    """A cursor of :class:`_SharedConnection`: each statement and each fetch of its rows
    under the connection's lock (rows iterated: fetched :data:`_SHARED_ROWS` at a time)."""

    _lock: threading.RLock
    _rows: Iterator[Any] = iter(())

    def execute(self, sql: str, parameters: Any = (), /) -> _SharedCursor:
        with self._lock:
            super().execute(sql, parameters)
        return self

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any], /) -> _SharedCursor:
        with self._lock:
            super().executemany(sql, seq_of_parameters)
        return self

    def fetchone(self) -> Any:
        with self._lock:
            return super().fetchone()

    def fetchmany(self, size: int | None = None) -> list[Any]:
        with self._lock:
            return super().fetchmany(self.arraysize if size is None else size)

    def fetchall(self) -> list[Any]:
        with self._lock:
            return super().fetchall()

    def __iter__(self) -> _SharedCursor:
        return self

    def __next__(self) -> Any:
        for _ in range(2):  # bounded: the rows at hand, else the next ones
            for row in self._rows:
                return row
            rows = self.fetchmany(_SHARED_ROWS)
            if not rows:
                break
            self._rows = iter(rows)
        raise StopIteration


_SHARED_ROWS = 512
"""Rows a :class:`_SharedCursor` fetches at a time while iterated."""


class _SharedConnection(sqlite3.Connection):
    """The store's one connection, used by the event loop's thread and by worker threads
    (validation, upload preparation, report batches, the listing): every statement and every
    fetch of rows under one re-entrant lock, a transaction's whole block included. sqlite3
    leaves a connection shared by threads to its user: two calls at once read each other's
    errors (``another row available``: a campaign dropped during a million-number ``suppress
    import`` was set aside with it while another one's upload was prepared)."""

    lock: threading.RLock

    def cursor(self, factory: Any = None) -> _SharedCursor:  # type: ignore[override]
        shared = super().cursor(_SharedCursor)
        shared._lock = self.lock
        return shared

    def execute(self, sql: str, parameters: Any = (), /) -> _SharedCursor:
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> _SharedCursor:
        return self.cursor().executemany(sql, parameters)


def _read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to the journal at ``path`` (autocommit: WAL lets it read beside
    a writer)."""
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)


class _Aside:
    """PASSIVE checkpoints of a bulk writer's journal, on a connection of their own in a
    thread of their own: WAL lets a checkpoint copy committed pages into the database file
    while a writer appends to the log, so neither waits for the other. One at a time: one
    due while another runs is skipped (the next one copies those pages too). A checkpoint
    that fails is logged and taken again next time; the store's own (``Store.checkpoint``)
    are unchanged."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
        self._db: sqlite3.Connection | None = None
        self._running: Future[None] | None = None

    def checkpoint(self) -> None:
        if self._running is not None and not self._running.done():
            return
        self._said()
        self._running = self._pool.submit(self._copy)

    def _copy(self) -> None:
        if self._db is None:
            self._db = sqlite3.connect(self._path, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _said(self) -> None:
        """The last checkpoint's failure, if any, logged (once)."""
        done, self._running = self._running, None
        if done is not None and (error := done.exception()) is not None:
            log.warning("checkpoint_failed", journal=str(self._path), error=str(error))

    def wait(self) -> None:
        """Wait for the checkpoint under way, if any (its failure logged)."""
        if self._running is not None:
            with contextlib.suppress(Exception):
                self._running.result()
        self._said()

    def close(self) -> None:
        """Wait for the checkpoint under way, then close its connection."""
        self.wait()
        self._pool.shutdown(wait=True)
        if self._db is not None:
            self._db.close()
            self._db = None


class Store(ReportTables):
    """The journal. One connection shared by the event loop and worker threads, its
    statements one at a time; transactions one at a time (a bulk writer's checkpoints and the
    suppression list's snapshot read on connections of their own)."""

    def __init__(self, path: Path, *, readonly: bool = False,
                 begin_deadline: float = BEGIN_DEADLINE) -> None:
        self.path = path
        self.begin_deadline = begin_deadline
        self.last_hold = 0.0
        """Seconds the last transaction held the write lock (BEGIN to the end of COMMIT)."""
        # Validation, upload preparation and report batches run in worker threads: every
        # statement on the shared connection under this lock (:class:`_SharedConnection`),
        # a transaction's whole block included.
        self._lock = threading.RLock()
        self._rng = random.Random()  # noqa: S311  (jitter, not secrets)
        self._unchecked = 0  # transactions since the last checkpoint
        self._aside: _Aside | None = None  # bulk writes' checkpoints (a writer's store only)
        # The -writers file (a writer's store only), twice: to say this store waits, and to
        # see whether any store waits (its own included: another open file's lock).
        self._waiters: int | None = None
        self._probe: int | None = None
        if readonly:
            # For ``status`` and friends beside a running daemon: WAL lets both read.
            self._db = _read_only(path)
            self._db.row_factory = sqlite3.Row
            return
        private_dir(path.parent)
        if not path.exists():
            os.close(private_file(path))
        # Opening (WAL mode, migrations) may wait for another writer SQLite's own way.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                   timeout=begin_deadline, factory=_SharedConnection)
        self._db.lock = self._lock
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        self._migrate()
        self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        # Checkpoints are ours (:meth:`checkpoint`), between transactions: SQLite's automatic
        # one runs inside the COMMIT that filled the WAL, doubling that commit's time.
        self._db.execute("PRAGMA wal_autocheckpoint=0")
        waiters = path.with_name(path.name + WAITERS_SUFFIX)
        self._waiters = private_file(waiters)
        self._probe = os.open(waiters, os.O_RDONLY)
        for suffix in ("-wal", "-shm"):
            sidecar = path.with_name(path.name + suffix)
            if sidecar.exists():
                sidecar.chmod(0o600)

    def close(self) -> None:
        if self._aside is not None:
            self._aside.close()
            self._aside = None
        self._db.close()
        for fd in (self._waiters, self._probe):
            if fd is not None:
                os.close(fd)
        self._waiters = self._probe = None

    @property
    def version(self) -> int:
        return schema_version(self._db)

    def _migrate(self) -> None:
        migrate(self._db)

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open on this store's connection."""
        return self._db.in_transaction

    @contextmanager
    def transaction(self, *, synced: bool = True) -> Iterator[sqlite3.Connection]:
        """One atomic, durable unit: committed (fsynced) when the block ends.

        Begins once the write lock is free (:meth:`_begin`); keep the block short, another
        process may be waiting for it. Rolled back when the block raises or the COMMIT fails;
        the error goes on either way.

        ``synced=False`` (a report file's batches of lines, each with its cursor): committed
        without its own fsync (``synchronous=NORMAL``: atomic, never corrupt), durable with
        the next transaction that has one, which every read of a report file ends with (its
        cursor saved) before anything depends on its lines. A power loss in between loses the
        batches and their cursors together: the file is read from the cursor before them
        (1M ACK lines: 160 fsyncs fewer, ~0.2 s).
        """
        with self._lock:
            if not synced:
                self._db.execute("PRAGMA synchronous=NORMAL")
            try:
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
            finally:
                if not synced:
                    self._db.execute("PRAGMA synchronous=FULL")
            self._unchecked += 1
            if self._unchecked >= CHECKPOINT_EVERY:
                self.checkpoint()

    def checkpoint(self) -> None:
        """Copy what the WAL holds into the database file, outside any transaction.

        PASSIVE: it neither waits for nor blocks another writer (pages a reader still needs
        wait for the next one). Every :data:`CHECKPOINT_EVERY` transactions, or
        :data:`BULK_PER_CHECKPOINT` bulk batches, so that the WAL stays small without a
        checkpoint inside a COMMIT.

        Never raises: it comes after a transaction that committed. While a statement of this
        connection is still reading (rows of another thread's read, fetched a few at a
        time), SQLite refuses it (``database table is locked``): it is taken after the next
        transaction instead (the WAL grows a little meanwhile).
        """
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as exc:
                log.debug("checkpoint_deferred", journal=str(self.path), error=str(exc))
                return
            self._unchecked = 0

    def bulk_written(self) -> None:
        """A bulk batch was committed: it counts for many transactions towards the next
        checkpoint, taken when due on a connection of its own, in a thread (:class:`_Aside`):
        the bulk writer records its next batch meanwhile (1M ACK lines: 0.23 s of the
        recording thread's 2.7 s were checkpoints)."""
        self._unchecked += CHECKPOINT_EVERY // BULK_PER_CHECKPOINT - 1
        if self._unchecked >= CHECKPOINT_EVERY:
            self._unchecked = 0
            if self._aside is None:
                self._aside = _Aside(self.path)
            self._aside.checkpoint()

    @contextmanager
    def lean_cache(self) -> Iterator[None]:
        """For the block: the page cache at :data:`LEAN_CACHE_KIB` (the pages over it let
        go at once), then back at :data:`CACHE_KIB`, also when the block fails."""
        with self._lock:
            self._db.execute(f"PRAGMA cache_size=-{LEAN_CACHE_KIB}")
        try:
            yield
        finally:
            with self._lock:
                self._db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")

    def wait_checkpoint(self) -> None:
        """Wait for a bulk write's checkpoint under way (:meth:`bulk_written`), if any."""
        if self._aside is not None:
            self._aside.wait()

    def _begin(self) -> None:
        """``BEGIN IMMEDIATE``, tried again while another connection writes: sleeps doubling
        from :data:`BACKOFF_FIRST` to :data:`BACKOFF_CEILING` with jitter (each try also waits
        up to :data:`BUSY_TIMEOUT_MS` inside SQLite), for at most ``begin_deadline`` seconds."""
        with self._waiting():
            self._begin_until(time.monotonic() + self.begin_deadline)

    @contextmanager
    def _waiting(self) -> Iterator[None]:
        """Say, for as long as the block lasts, that this store wants the write lock: a shared
        ``flock`` on the -writers file, which a bulk writer in another process (or another
        store) sees (:meth:`others_waiting`)."""
        said = False
        if self._waiters is not None:
            try:  # waits only while a probe holds it (microseconds)
                fcntl.flock(self._waiters, fcntl.LOCK_SH)
                said = True
            except OSError:  # no locks on this file system: bulk writers always pause
                pass
        try:
            yield
        finally:
            if said and self._waiters is not None:
                fcntl.flock(self._waiters, fcntl.LOCK_UN)

    def others_waiting(self) -> bool:
        """Whether another writer is about to begin a write, or waiting to (another store, or
        another thread of this one): a probe, a few microseconds."""
        if self._probe is None:
            return False
        try:
            fcntl.flock(self._probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:  # no locks on this file system: someone may wait (pause as before)
            return True
        fcntl.flock(self._probe, fcntl.LOCK_UN)
        return False

    def bulk_pause(self) -> float:
        """Between two batches of a bulk write: while another writer waits for the write lock,
        leave it free (until it is in, :data:`BULK_PAUSE` at most); seconds paused (0 when
        nobody waits: no time lost)."""
        began = time.monotonic()
        for _ in range(1000):  # bounded by the time below
            if not self.others_waiting() or time.monotonic() - began >= BULK_PAUSE:
                break
            time.sleep(0.001)
        return time.monotonic() - began

    def _begin_until(self, deadline: float) -> None:
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

    def campaigns_among(self, pks: Iterable[int]) -> list[Campaign]:
        """The campaigns of these ids (an unknown id is left out), by id."""
        rows = self._db.execute(
            "SELECT * FROM campaigns WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id",
            (json.dumps(sorted(set(pks))),)).fetchall()
        return [Campaign.from_row(row) for row in rows]

    def campaigns_with_acks(self, *states: CampaignState) -> list[Campaign]:
        """The campaigns in ``states`` with a ``done`` provider file whose delivery report
        (ACK) has a cursor, by id: the ones a report round has anything to do for. A
        campaign and its parts through indexes; the history is not read."""
        marks = ",".join("?" * len(states))
        rows = self._db.execute(
            f"SELECT * FROM campaigns AS c WHERE c.state IN ({marks}) AND EXISTS ("  # noqa: S608
            "SELECT 1 FROM parts AS p JOIN report_cursors AS k ON k.name = 'ACK-' || "
            "substr(p.remote_name, instr(p.remote_name, '-') + 1) "
            "WHERE p.campaign = c.id AND p.state = ?) ORDER BY c.id",
            (*states, PartState.DONE)).fetchall()
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
            if not can_move(CampaignState(before["state"]), to):
                raise IllegalTransition(f"campaign {pk}", before["state"], to)
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
        self, pk: int, plans: Sequence[PartPlan], *, at: datetime.datetime, suppressed: int,
        **fields: Any,
    ) -> list[Part]:
        """Record provider files of the campaign: the intent, with any campaign ``fields``
        (its groups still to go) in the same transaction.

        A ``scheduled`` campaign moves to ``uploading``. A campaign already on its way whose
        next group of send times is due gets that group's files (numbered after the others)
        and keeps its state: its parts move it. Refused (:class:`IllegalTransition`)
        otherwise. ``suppressed`` is the campaign's total so far."""
        with self.transaction() as db:
            before = db.execute("SELECT state, next_upload_at FROM campaigns WHERE id = ?",
                                (pk,)).fetchone()
            if before is None:
                raise KeyError(pk)
            state = CampaignState(before["state"])
            later_group = before["next_upload_at"] is not None and state in IN_FLIGHT
            if not later_group and not can_move(state, CampaignState.UPLOADING):
                raise IllegalTransition(f"campaign {pk}", before["state"],
                                        CampaignState.UPLOADING)
            first = int(db.execute("SELECT coalesce(max(number), 0) FROM parts "
                                   "WHERE campaign = ?", (pk,)).fetchone()[0]) + 1
            for number, plan in enumerate(plans, start=first):
                db.execute(
                    "INSERT INTO parts (campaign, number, remote_name, state, size, sha256, rows,"
                    " updated_at) VALUES (?,?,?,?,?,?,?,?)",
                    (pk, number, plan.remote_name, PartState.UPLOADING, plan.size, plan.sha256,
                     plan.rows, now_iso(at)),
                )
            if later_group:
                self._update_campaign(db, pk, suppressed=suppressed, updated_at=now_iso(at),
                                      **fields)
            else:
                self._update_campaign(db, pk, state=CampaignState.UPLOADING,
                                      suppressed=suppressed, updated_at=now_iso(at), **fields)
                db.execute(
                    "INSERT INTO transitions (campaign, from_state, to_state, at) "
                    "VALUES (?,?,?,?)", (pk, before["state"], CampaignState.UPLOADING, now_iso(at)),
                )
        return self.parts(pk)

    def due(self, now: datetime.datetime) -> list[Campaign]:
        """The campaigns with provider files to prepare by ``now``: scheduled ones at their
        upload time, and those on their way whose next group of send times is due. Through
        indexes: the history is not read."""
        rows = self._db.execute(
            "SELECT * FROM campaigns WHERE state = ? AND upload_at <= ? UNION "
            "SELECT * FROM campaigns WHERE next_upload_at IS NOT NULL AND next_upload_at <= ? "
            "ORDER BY id", (CampaignState.SCHEDULED, now_iso(now), now_iso(now))).fetchall()
        return [Campaign.from_row(row) for row in rows]

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
        """Record a provider file's transition: only forward (``states.advanced``) from the
        state the journal holds, else :class:`IllegalTransition`."""
        with self.transaction() as db:
            row = db.execute("SELECT state FROM parts WHERE id = ?", (part.id,)).fetchone()
            if row is None:
                raise KeyError(part.id)
            before = PartState(row["state"])
            if not advanced(before, to):
                raise IllegalTransition(f"part {part.remote_name}", before, to)
            fields = ["state = ?", "updated_at = ?"]
            values: list[Any] = [to, now_iso(at)]
            if to != PartState.UPLOADING:
                # Seen as .lock or later without our rename recorded: published by then.
                fields.append("published_at = coalesce(published_at, ?)")
                values.append(now_iso(at))
            if to in PART_FINAL:
                fields.append("outcome_at = ?")
                values.append(now_iso(at))
            db.execute(f"UPDATE parts SET {', '.join(fields)} WHERE id = ?",  # noqa: S608
                       (*values, part.id))
            db.execute(
                "INSERT INTO transitions (campaign, part, from_state, to_state, at) "
                "VALUES (?,?,?,?,?)", (part.campaign, part.id, before, to, now_iso(at)),
            )

    # -- the provider's reports ---------------------------------------------------------

    def acks(self, pk: int) -> dict[str, int]:
        """Delivery figures per ACK status, as last counted (kept after retention purges)."""
        summary = self.campaign(pk).summary
        figures = summary.get("acks", {})
        return {str(k): int(v) for k, v in figures.items()}

    # -- figures (metrics): aggregates, no table loaded into Python -----------------------

    def campaign_counts(self) -> dict[CampaignState, int]:
        """Campaigns per state, every state named (0 when none)."""
        counts = dict.fromkeys(CampaignState, 0)
        for row in self._db.execute("SELECT state, COUNT(*) FROM campaigns GROUP BY state"):
            counts[CampaignState(row[0])] = int(row[1])
        return counts

    def campaign_totals(self) -> dict[str, int]:
        """The figures (rows ... segments) summed over every campaign."""
        row = self._db.execute(
            "SELECT " + ", ".join(f"COALESCE(SUM({name}), 0)" for name in _FIGURES)  # noqa: S608
            + " FROM campaigns").fetchone()
        return {name: int(value) for name, value in zip(_FIGURES, row, strict=True)}

    def invalid_by_code(self) -> dict[str, int]:
        """Invalid rows per error code, summed over the campaigns' summaries."""
        rows = self._db.execute(
            "SELECT codes.key, SUM(codes.value) FROM campaigns, "
            "json_each(campaigns.summary, '$.invalid_by_code') AS codes "
            "WHERE campaigns.summary IS NOT NULL GROUP BY codes.key")
        return {row[0]: int(row[1]) for row in rows}

    def part_rows(self, *states: PartState) -> int:
        """Rows of the provider files in ``states``."""
        marks = ",".join("?" * len(states))
        return int(self._db.execute(
            f"SELECT COALESCE(SUM(rows), 0) FROM parts WHERE state IN ({marks})",  # noqa: S608
            states).fetchone()[0])

    def oldest_part(self, *states: PartState) -> datetime.datetime | None:
        """When the longest waiting provider file in ``states`` was published (for one seen
        going straight from uploading to processing, its move: the best lower bound)."""
        marks = ",".join("?" * len(states))
        # Journal times are UTC ISO strings of one shape: the smallest string is the oldest.
        oldest = self._db.execute(
            f"SELECT MIN(COALESCE(published_at, updated_at)) FROM parts "  # noqa: S608
            f"WHERE state IN ({marks})", states).fetchone()[0]
        return parse_iso(oldest)

    def part_named(self, remote_name: str) -> Part | None:
        row = self._db.execute("SELECT * FROM parts WHERE remote_name = ?",
                               (remote_name,)).fetchone()
        return Part.from_row(row) if row else None

    def purge_rows(self, cutoff: datetime.datetime) -> dict[str, int]:
        """Delete personal data recorded before ``cutoff``; rows deleted per table.

        In batches, as bulk writes are (:meth:`suppress_batches`): a million old delivery
        lines hold the write lock a few hundredths of a second at a time. A purge stopped
        half-way is finished by the next one."""
        before = now_iso(cutoff)
        statements = {
            "deliveries": "DELETE FROM deliveries WHERE id IN "
                          "(SELECT id FROM deliveries WHERE at < ? LIMIT ?)",
            "optouts": "DELETE FROM optouts WHERE id IN "
                       "(SELECT id FROM optouts WHERE at < ? LIMIT ?)",
            "replies": "DELETE FROM replies WHERE id IN "
                       "(SELECT id FROM replies WHERE at < ? LIMIT ?)",
            "report_cursors": "DELETE FROM report_cursors WHERE id IN (SELECT id FROM "
                              "report_cursors WHERE coalesce(deleted_at, seen_at) < ? LIMIT ?)",
            "notifications": "DELETE FROM notifications WHERE id IN "
                             "(SELECT id FROM notifications WHERE sent_at < ? LIMIT ?)",
        }
        deleted = dict.fromkeys(statements, 0)
        self.forget_ack_keys()  # those of deleted lines must not count as recorded
        self.forget_stop_counts()
        for table, sql in statements.items():
            size = BULK_FIRST_BATCH
            for _ in range(1_000_000):  # bounded: each batch deletes ``size`` rows or ends
                with self.transaction() as db:
                    count = db.execute(sql, (before, size)).rowcount
                deleted[table] += count
                self.bulk_written()
                if count < size:
                    break
                size = next_batch(size, self.last_hold)
                self.bulk_pause()
        return deleted

    @staticmethod
    def put_fact(db: sqlite3.Connection, key: str, value: Any) -> None:
        """``set_fact`` inside the caller's transaction."""
        db.execute(PUT_FACT, (key, json.dumps(value)))

    def fact_in(self, db: sqlite3.Connection, key: str, default: Any = None) -> Any:
        row = db.execute(GET_FACT, (key,)).fetchone()
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
        follows the time the last one took) and the lock is left free between batches while
        another writer waits (:meth:`bulk_pause`): a million numbers go in beside a running
        daemon. Sorted numbers go in fastest (a batch then touches few pages of the index).
        """
        source_at = now_iso(at)
        size = BULK_FIRST_BATCH
        pending = iter(numbers)
        first = True
        while batch := list(itertools.islice(pending, size)):
            if not first:
                self.bulk_pause()
            first = False
            with self.transaction() as db:
                present = {row[0] for row in db.execute(
                    "SELECT s.msisdn FROM json_each(?) AS j JOIN suppression AS s "
                    "ON s.msisdn = j.value", (json.dumps(batch),))}
                new = list(dict.fromkeys(n for n in batch if n not in present))
                db.executemany(
                    SUPPRESS, [(msisdn, source_at, source, campaign) for msisdn in sorted(new)])
            size = next_batch(size, self.last_hold)
            self.bulk_written()
            yield new

    def list_new_optouts(self) -> int:
        """Put the numbers of the opt-out lines recorded since the last call on the
        suppression list (a number already there is left as it is); how many opt-out lines were
        looked at.

        Sorted first (by number, a number's first line first, in a scratch table outside any
        transaction), then a slice at a time, each holding the write lock about
        :data:`BULK_HOLD_TARGET`, the lock left to another writer that waits between two
        (:meth:`bulk_pause`): a slice of sorted numbers touches a few pages of the list's
        index, where the lines' own order touched all of them at every commit (a million
        numbers: ~10 s). The last slice moves :data:`LISTED_TO` past them. Stopped half-way,
        the next call lists them all again (numbers listed already are left as they are)."""
        with self._lock:
            done = self._listed_to()
            top = self._last_optout()
            if top <= done:
                return 0
        with self.lean_cache():
            return self._list_optouts(done, top)

    def _list_optouts(self, done: int, top: int) -> int:
        """:meth:`list_new_optouts` of the lines after ``done`` up to ``top``."""
        with self._lock:
            # Written and read in rowid order: a small cache does (8 MiB: 7 MB more resident).
            self._db.execute(f"PRAGMA temp.cache_size = -{LIST_CACHE_KIB}")
            self._db.execute("CREATE TEMP TABLE IF NOT EXISTS optouts_to_list (msisdn TEXT "
                             "NOT NULL, added_at TEXT NOT NULL, source TEXT NOT NULL, "
                             "campaign TEXT)")
            self._db.execute("DELETE FROM temp.optouts_to_list")
            self._db.execute(_TO_LIST, (done, top))
            count = int(self._db.execute(
                "SELECT coalesce(max(rowid), 0) FROM temp.optouts_to_list").fetchone()[0])
        low, size = 1, BULK_FIRST_BATCH
        for _ in range(count + 1):  # bounded: each slice lists one number at least
            high = low + size - 1
            with self.transaction() as db:
                if self._listed_to() >= top:
                    break  # another listing (another process's) did them: an operator may
                    # have removed one of the numbers since, which must stay removed
                db.execute(_LIST, (low, high))
                if high >= count:
                    self._move_listed_to(db, top)
            self.bulk_written()
            if high >= count:
                break
            low, size = high + 1, next_batch(size, self.last_hold)
            self.bulk_pause()
        with self._lock:
            self._db.execute("DELETE FROM temp.optouts_to_list")
        return top - done

    def unlisted_optouts(self) -> int:
        """Opt-out lines whose number is still to join the suppression list (the seconds
        between a STOP file's lines and their listing; after a crash, until the start)."""
        return int(self._db.execute(f"SELECT count(*) FROM {_PENDING}",  # noqa: S608
                                    (self._listed_to(),)).fetchone()[0])

    def unsuppress(self, numbers: Sequence[str]) -> list[str]:
        """Take ``numbers`` off the suppression list; those that were on it. The opt-out
        lines still to be listed are listed first: a number removed must not come back when
        they are."""
        self.list_new_optouts()
        removed = []
        with self.transaction() as db:
            for msisdn in numbers:
                if db.execute("DELETE FROM suppression WHERE msisdn = ?", (msisdn,)).rowcount:
                    removed.append(msisdn)
        return removed

    def suppressed(self) -> set[str]:
        """The numbers not to send to: the suppression list's, and those of opt-out lines
        still to be listed (a STOP file's numbers join the list just after its lines; in
        between, or after a crash before the next poll, they are no less opted out).

        Read in one snapshot on a connection of its own: an upload's preparation asks it in a
        worker thread, and a million numbers read on the shared connection would hold its
        lock (the event loop's statements waiting) and cost a Python call a row."""
        db = _read_only(self.path)
        try:
            db.execute("BEGIN")  # one snapshot for the mark and both reads
            numbers = {row[0] for row in db.execute("SELECT msisdn FROM suppression")}
            numbers.update(row[0] for row in db.execute(
                f"SELECT o.msisdn FROM {_PENDING}", (self._listed_to(db),)))  # noqa: S608
            return numbers
        finally:
            db.close()

    def suppression_size(self) -> int:
        """How many numbers :meth:`suppression_entries` has, without reading them (the
        numbers still to be listed are none, but for seconds after a STOP file)."""
        listed = int(self._db.execute("SELECT count(*) FROM suppression").fetchone()[0])
        pending = self._db.execute(
            f"SELECT count(DISTINCT o.msisdn) FROM {_PENDING_NEW}",  # noqa: S608
            (self._listed_to(),)).fetchone()[0]
        return listed + int(pending)

    def suppression_entries(self) -> list[dict[str, Any]]:
        """The suppression list, oldest first: its entries and the numbers of opt-out lines
        not listed yet (a STOP file's numbers are listed after its lines and the event that
        announces them; they are no less on the list)."""
        rows = self._db.execute(_ENTRIES, (self._listed_to(),))
        return [dict(row) for row in rows]

    # -- agent facts ---------------------------------------------------------------------

    def set_fact(self, key: str, value: Any) -> None:
        with self.transaction() as db:
            db.execute(PUT_FACT, (key, json.dumps(value)))

    def fact(self, key: str, default: Any = None) -> Any:
        row = self._db.execute(GET_FACT, (key,)).fetchone()
        return json.loads(row["value"]) if row else default


_FIGURES = ("rows", "valid", "invalid", "duplicates", "suppressed", "segments")
_CAMPAIGN_FIELDS = frozenset({
    "campaign_id", "file", "state", "send_at", "upload_at", "rows", "valid", "invalid",
    "duplicates", "suppressed", "segments", "reason", "summary", "updated_at", "next_upload_at",
})
