"""The provider's reports in the journal: read positions, delivery lines, opt-out lines, replies.

A report file's cursor says how far it has been read; the lines it accounts for are recorded
in the same transaction as the cursor, one batch at a time (:meth:`ReportTables.record_acks`,
:meth:`ReportTables.record_stop_parts`, :meth:`ReportTables.record_lines`; a checkpoint every
few batches), so that a crash leaves the two in step. Each line has a key (ACK: report, MSISDN
and IDREMOTE; STOP and SMS-MO: report, the line's hash and its occurrence): reading a file
again records nothing twice. Delivery and opt-out lines are kept in the order they arrive (a
million of them in a CRM's order would be inserted all over a table keyed by number or hash):
their keys are checked against the report's lines recorded, which the store reads once per
report and keeps (:class:`AckKeys`, :class:`LineCounts`). Opt-out lines' numbers join the
suppression list after them, sorted (``Store.list_new_optouts``).

These are methods of :class:`~sftpd_agent.store.journal.Store` (which inherits them); kept
here so that the report SQL reads in one place.
"""

from __future__ import annotations

import datetime
import json
import sqlite3
import threading
from array import array
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from operator import itemgetter
from typing import Any, Literal, TypeVar

from ..rules.naming import Kind
from .records import (
    DeliveryRow,
    OptOutRow,
    ReplyRow,
    ReportCursor,
    SuppressionRow,
    now_iso,
)
from .schema import GET_FACT, LISTED_TO, PUT_FACT, SUPPRESS

AckPart = tuple[ReportCursor, str]
"""ACK lines new to the journal (``ReportTables.new_acks``), their fields as a JSON array,
with the cursor just after them (``ReportTables.record_ack_parts``)."""
StopPart = tuple[ReportCursor, str, list[str]]
"""STOP lines new to the journal (``ReportTables.record_stop_parts``), with the cursor just
after them: their fields as a JSON array and the numbers of those to be listed
(:func:`stop_part`)."""
_P = TypeVar("_P", AckPart, StopPart)
_L = TypeVar("_L", bound=Sequence[Any])
Tally = Callable[[Any, list[str], int], Any]
"""What a fact becomes once new opt-outs (their numbers) and replies (their count) are added:
``(fact before or None, new opt-out numbers, new replies) -> fact after``."""

lines_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"),
                              check_circular=False).encode
"""A batch of report lines' fields as the JSON one statement records (``json_each``): UTF-8 as
it is, no spaces (a million ACK lines: 0.36 s, ``json.dumps``: 0.51 s)."""
_ESCAPED = ("\\", *map(chr, range(0x20)))
"""What JSON writes escaped in a string, other than the quote."""


def text_lines_json(lines: Sequence[Sequence[str]]) -> str:
    """:data:`lines_json` of ``lines`` (sequences of strings), joined in C when no field has
    a character JSON escapes (checked on the whole: more quotes than two a field, or a
    backslash or a control character, and the lines go to the encoder; so does a line of no
    field, which the joints would write ``[""]``). A million ACK lines: 0.16 s, the encoder
    0.35 s."""
    if not lines:
        return "[]"
    body = '"],["'.join(map('","'.join, lines))
    if (body.count('"') != 2 * sum(map(len, lines)) - 2
            or any(map(body.__contains__, _ESCAPED))):
        return lines_json(lines)
    return f'[["{body}"]]'

_DELIVERY = ("INSERT INTO deliveries (report, msisdn, idremote, campaign, oadc, "
             "idstatus, status, operator, at) VALUES (?,?,?,?,?,?,?,?,?)")
_OPTOUT = ("INSERT INTO optouts (report, key, occurrence, msisdn, received_at, campaign, at, "
           "listed) VALUES (?,?,?,?,?,?,?,?)")
_REPLY = ("INSERT OR IGNORE INTO replies (report, key, occurrence, msisdn, received_at, "
          "message, idremote, campaign, opt_out, at) VALUES (?,?,?,?,?,?,?,?,?,?)")
# The same, a batch in one statement from a JSON array of the lines' own fields: one
# ``sqlite3_step`` for the batch, which runs without the GIL (the lines are recorded in a
# worker thread while the next batch is parsed).
_DELIVERIES = (
    "INSERT INTO deliveries (report, msisdn, idremote, campaign, oadc, idstatus, "
    "status, operator, at) SELECT ?1, value->>0, value->>1, ?2, value->>2, value->>3, "
    "value->>4, value->>5, ?3 FROM json_each(?4)")
_OPTOUTS = (
    "INSERT INTO optouts (report, key, occurrence, msisdn, received_at, campaign, at, listed) "
    "SELECT ?1, value->>0, value->>1, value->>2, value->>3, ?2, ?3, value->>4 "
    "FROM json_each(?4)")
_LINES_TABLE = {Kind.STOP: "optouts", Kind.SMSMO: "replies"}
_PASS_CACHE_KIB = 8192
"""Memory for the scratch count of a file read again from its start (the rest on disk)."""


class ReportTables:
    """The report tables' reads and writes (mixed into ``Store``)."""

    _db: sqlite3.Connection
    _lock: threading.RLock
    """The Store's: held by every transaction. The scratch table's statements take it too:
    a report batch is recorded in a worker thread on the same connection, and a statement of
    this thread inside that transaction would join it, or find the table locked."""

    def transaction(self, *, synced: bool = True) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError  # pragma: no cover - the Store's

    def bulk_written(self) -> None:
        raise NotImplementedError  # pragma: no cover - the Store's

    def others_waiting(self) -> bool:
        raise NotImplementedError  # pragma: no cover - the Store's

    def bulk_pause(self) -> float:
        raise NotImplementedError  # pragma: no cover - the Store's

    # -- cursors ---------------------------------------------------------------------------

    def report_cursor(self, name: str) -> ReportCursor | None:
        row = self._db.execute("SELECT * FROM report_cursors WHERE name = ?",
                               (name,)).fetchone()
        return ReportCursor.from_row(row) if row else None

    def report_cursors(self) -> list[ReportCursor]:
        rows = self._db.execute("SELECT * FROM report_cursors ORDER BY name").fetchall()
        return [ReportCursor.from_row(row) for row in rows]

    def save_report_cursor(self, cursor: ReportCursor, at: datetime.datetime) -> ReportCursor:
        """Write ``cursor`` alone (a file seen, settled or deleted); it with its id, the same
        for a name as long as the cursor is kept."""
        with self.transaction() as db:
            pk = _save_cursor(db, cursor, at)
            scheme = int(db.execute("SELECT line_hash FROM report_cursors WHERE id = ?",
                                    (pk,)).fetchone()[0])
        if cursor.id == pk and cursor.line_hash == scheme:
            return cursor
        # A file seen again after its cursor was deleted keeps its lines and their keys' scheme.
        return replace(cursor, id=pk, line_hash=scheme)

    def live_report_names(self, cutoff: datetime.datetime) -> set[str]:
        """Report files still on the server, seen since ``cutoff``: their copies are kept."""
        rows = self._db.execute(
            "SELECT name FROM report_cursors WHERE deleted_at IS NULL AND seen_at >= ?",
            (now_iso(cutoff),))
        return {row[0] for row in rows}

    # -- lines, with the cursor that accounts for them -------------------------------------

    def record_acks(self, cursor: ReportCursor, rows: Sequence[DeliveryRow],
                    at: datetime.datetime) -> None:
        """ACK lines and the cursor just after them, in one transaction (a line already
        recorded is left as it is)."""
        with self._known_kept(), self.transaction() as db:
            for report in dict.fromkeys(row[0] for row in rows):
                known = self._ack_keys(db, report)
                db.executemany(_DELIVERY, known.new([row for row in rows if row[0] == report],
                                                    1, 2))
            _save_cursor(db, cursor, at)
        self.bulk_written()

    def new_acks(self, report: int, lines: Sequence[Sequence[str]], *,
                 expected: int = 0) -> list[Sequence[str]]:
        """Of ``lines`` (ACK lines' fields ``[msisdn, idremote, oadc, idstatus, status,
        operator]``), those whose MSISDN and IDREMOTE no line of report ``report`` has: none
        recorded, none before them, none an earlier call gave. They count as recorded from
        now on: :meth:`record_ack_parts` records them next, in order, or, if that fails,
        :meth:`forget_ack_keys` must be called. (Done while the batch before is recorded in
        another thread, so that thread only runs SQL.) ``expected``: about how many lines
        the report may have, to size its keys' table once."""
        known = self._ack_known
        if known is None or known.report != report:
            with self._lock:  # read from the journal once, never inside another's batch
                known = self._ack_keys(self._db, report, expected)
        return known.new(lines, 0, 1)

    def record_ack_parts(self, campaign: int | None, parts: Sequence[AckPart],
                         at: datetime.datetime) -> None:
        """:meth:`record_acks` for lines :meth:`new_acks` gave (the report, campaign and time
        the same for all), a part in one statement (run without the GIL), parts in a
        transaction (:meth:`_record_parts`)."""
        def write(db: sqlite3.Connection, part: AckPart) -> None:
            db.execute(_DELIVERIES, (report_id(part[0]), campaign, now_iso(at), part[1]))

        with self._known_kept():
            self._record_parts(parts, write, at)

    _ack_known: AckKeys | None = None
    """One report's delivery keys recorded; None: none loaded."""

    def _ack_keys(self, db: sqlite3.Connection, report: int, expected: int = 0) -> AckKeys:
        """The keys of report ``report``'s delivery lines recorded: read from the journal
        when another report's are loaded (a new report has none: found through an index at
        once), then added to as lines are recorded. One report at a time: an ACK file is
        read alone."""
        if self._ack_known is None or self._ack_known.report != report:
            self._ack_known = None
            known = AckKeys(report, max(expected, int(db.execute(
                "SELECT count(*) FROM deliveries WHERE report = ?", (report,)).fetchone()[0])))
            recorded = db.execute("SELECT msisdn, idremote FROM deliveries WHERE report = ?",
                                  (report,))
            while chunk := recorded.fetchmany(50_000):
                known.new(chunk, 0, 1)
            self._ack_known = known
        return self._ack_known

    @contextmanager
    def _known_kept(self) -> Iterator[None]:
        """Keys (ACK) or counts (STOP) added for lines of a write that does not commit are
        not recorded: all are forgotten (read again from the journal next time)."""
        try:
            yield
        except BaseException:
            self._ack_known = self._stop_known = None
            raise

    def forget_ack_keys(self) -> None:
        """The keys loaded are not to be trusted any more (lines deleted) or needed (an ACK
        file read to its end): read again when needed."""
        self._ack_known = None

    def stop_counts(self, report: int, *, expected: int = 0) -> LineCounts:
        """The lines of STOP file ``report`` recorded, counted by key: read from the journal
        when another file's are loaded (a file with none: found through an index at once),
        then added to by the reader as it numbers new lines (:meth:`record_stop_parts`
        records them next, or, if that fails, :meth:`forget_stop_counts` must be called).
        One file at a time; ``expected``: about how many lines it may have."""
        known = self._stop_known
        if known is None or known.report != report:
            self._stop_known = None
            known = LineCounts(report, expected)
            with self._lock:  # never inside a batch another thread is recording
                recorded = self._db.execute("SELECT key FROM optouts WHERE report = ?",
                                            (report,))
                while chunk := recorded.fetchmany(50_000):
                    for (key,) in chunk:
                        known.add(key)
            self._stop_known = known
        return known

    _stop_known: LineCounts | None = None

    def forget_stop_counts(self) -> None:
        """The counts loaded are not to be trusted any more (lines not recorded, or deleted):
        read again when needed."""
        self._stop_known = None

    def record_stop_parts(
        self, parts: Sequence[StopPart], *, at: datetime.datetime,
        tally: tuple[str, Tally] | None = None,
    ) -> None:
        """STOP lines new to the journal, given as ``[key, occurrence, msisdn, received_at,
        listed]`` (their occurrences counted by :meth:`stop_counts`; a part made by
        :func:`stop_part`, in the reading thread), appended a part in one statement (run
        without the GIL), parts in a transaction (:meth:`_record_parts`);
        ``tally`` adds up the listed numbers. Their numbers join the suppression list next
        (:meth:`list_new_optouts`)."""
        def write(db: sqlite3.Connection, part: StopPart) -> None:
            cursor, lines, numbers = part
            db.execute(_OPTOUTS, (report_id(cursor), cursor.campaign, now_iso(at), lines))
            if tally is not None and numbers:
                key, change = tally
                found = db.execute(GET_FACT, (key,)).fetchone()
                after = change(json.loads(found[0]) if found else None, numbers, 0)
                db.execute(PUT_FACT, (key, json.dumps(after)))

        with self._known_kept():
            self._record_parts(parts, write, at)

    def _record_parts(self, parts: Sequence[_P], write: Callable[[sqlite3.Connection, _P], None],
                      at: datetime.datetime) -> None:
        """Record ``parts`` (each: the cursor just after its lines, then what ``write`` takes)
        in as few transactions as no other writer waits for: one, unless another writer is
        seen waiting between two parts; then the transaction ends at once, with the cursor
        of its last part, and the lock is left to that writer (``bulk_pause``) before the
        rest. Another writer waits a part (a few milliseconds), not a batch."""
        done = 0
        for _ in range(len(parts)):  # bounded: each transaction records a part at least
            if done == len(parts):
                break
            with self.transaction(synced=False) as db:  # synced by the read's last save
                while True:
                    write(db, parts[done])
                    done += 1
                    if done == len(parts) or self.others_waiting():
                        break
                _save_cursor(db, parts[done - 1][0], at)
            self.bulk_written()
            if done < len(parts):
                self.bulk_pause()

    def record_lines(
        self, cursor: ReportCursor, rows: Sequence[OptOutRow | ReplyRow],
        optouts: Sequence[SuppressionRow | None], *, bulk: bool, at: datetime.datetime,
        tally: tuple[str, Tally] | None = None,
    ) -> tuple[list[str], int]:
        """STOP (:class:`OptOutRow`) or SMS-MO (:class:`ReplyRow`) lines and the cursor just
        after them, in one transaction; each new line's opt-out (``optouts[i]`` for
        ``rows[i]``, None when it is none) onto the suppression list. The new opt-outs'
        numbers and the number of new replies; ``tally`` (a fact's key and how it changes)
        adds them up in the same transaction.

        A line already recorded changes nothing, so a number an operator removed from the
        list does not come back with an old line. ``bulk``: nothing of this file is recorded
        yet (its first read): every line is new, inserted in bulk. STOP lines are always
        taken as new (the reader numbers them against :meth:`stop_counts`); their numbers are
        listed here, and the listing of :meth:`Store.list_new_optouts` moved past them when
        it had none left to list before them.
        """
        stop = cursor.kind == Kind.STOP
        with self.transaction() as db:
            if stop:
                listed_all = self._listed_to() >= self._last_optout()
                db.executemany(_OPTOUT, [(*row, optout is not None)
                                         for row, optout in zip(rows, optouts, strict=True)])
                suppressed = [o for o in optouts if o is not None]
                db.executemany(SUPPRESS, suppressed)
                new_optouts, new_replies = [o[0] for o in suppressed], 0
                if listed_all:
                    self._move_listed_to(db, self._last_optout())
            elif bulk:
                db.executemany(_REPLY, rows)
                db.executemany(SUPPRESS, [o for o in optouts if o is not None])
                new_optouts = [o[0] for o in optouts if o is not None]
                new_replies = len(rows)
            else:
                new_optouts, new_replies = [], 0
                for row, optout in zip(rows, optouts, strict=True):
                    if db.execute(_REPLY, row).rowcount:
                        new_replies += 1
                        if optout is not None:
                            db.execute(SUPPRESS, optout)
                            new_optouts.append(optout[0])
            if tally is not None and (new_optouts or new_replies):
                key, change = tally
                found = db.execute(GET_FACT, (key,)).fetchone()
                after = change(json.loads(found[0]) if found else None, new_optouts,
                               new_replies)
                db.execute(PUT_FACT, (key, json.dumps(after)))
            _save_cursor(db, cursor, at)
        self.bulk_written()
        return new_optouts, new_replies

    def _listed_to(self, db: sqlite3.Connection | None = None) -> int:
        """:data:`~sftpd_agent.store.schema.LISTED_TO`: the last opt-out line whose number
        is listed (read on ``db``, else the store's connection)."""
        found = (self._db if db is None else db).execute(GET_FACT, (LISTED_TO,)).fetchone()
        return int(json.loads(found[0])) if found else 0

    @staticmethod
    def _move_listed_to(db: sqlite3.Connection, line: int) -> None:
        """:data:`~sftpd_agent.store.schema.LISTED_TO` moved up to ``line``, never down (two
        listings, of two processes, may end in either order)."""
        db.execute("INSERT INTO agent (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE "
                   "SET value = excluded.value WHERE CAST(value AS INTEGER) < ?3",
                   (LISTED_TO, json.dumps(line), line))

    def _last_optout(self) -> int:
        """The id of the last opt-out line recorded (0: none ever)."""
        return int(self._db.execute("SELECT coalesce(max(id), 0) FROM optouts").fetchone()[0])

    def line_counts(self, report: int, kind: Kind,
                    keys: Collection[int] | None = None) -> dict[int, int]:
        """Occurrences of each line (by key) of a STOP or SMS-MO file recorded so far: the
        highest recorded. Of the lines of ``keys`` only, when given (those with none are left
        out): a few index lookups, however many lines the file has."""
        table = _LINES_TABLE[kind]
        with self._lock:  # never inside a batch another thread is recording
            if keys is None:
                rows = self._db.execute(
                    f"SELECT key, max(occurrence) FROM {table} "  # noqa: S608
                    "WHERE report = ? GROUP BY key", (report,)).fetchall()
            else:
                rows = self._db.execute(
                    f"SELECT key, max(occurrence) FROM {table} WHERE report = ? "  # noqa: S608
                    "AND key IN (SELECT value FROM json_each(?)) GROUP BY key",
                    (report, json.dumps(list(keys)))).fetchall()
        return {row[0]: int(row[1]) for row in rows}

    # -- a read's own count of its lines, apart from what is recorded -------------------------

    def begin_line_pass(self) -> None:
        """Start counting a read's lines apart from the recorded ones (a file read again from
        its start: its lines are numbered from 1 again), in a scratch table of this
        connection (``temp``: on disk past a small cache, never under the write lock)."""
        with self._lock:
            self._db.execute(f"PRAGMA temp.cache_size = -{_PASS_CACHE_KIB}")
            self._db.execute("CREATE TEMP TABLE IF NOT EXISTS line_pass "
                             "(key INTEGER PRIMARY KEY, seen INTEGER NOT NULL)")
            self._db.execute("DELETE FROM temp.line_pass")

    def line_pass_counts(self, keys: Collection[int]) -> dict[int, int]:
        """How many times this read has met each of ``keys`` (those it has not: left out)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key, seen FROM temp.line_pass WHERE key IN "
                "(SELECT value FROM json_each(?))", (json.dumps(list(keys)),)).fetchall()
        return {row[0]: int(row[1]) for row in rows}

    def add_line_pass(self, counts: dict[int, int]) -> None:
        """This read has met each key of ``counts`` that many times in all, so far."""
        # One statement: one (scratch) transaction for the lot.
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO temp.line_pass (key, seen) SELECT "
                "json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?)",
                (json.dumps(list(counts.items())),))

    def has_lines(self, report: int, kind: Kind) -> bool:
        """Whether any line of this STOP or SMS-MO file is recorded."""
        return self._db.execute(
            f"SELECT 1 FROM {_LINES_TABLE[kind]} WHERE report = ? LIMIT 1",  # noqa: S608
            (report,)).fetchone() is not None

    # -- reading back ----------------------------------------------------------------------

    def count_acks(self, pk: int) -> dict[str, int]:
        """Delivery figures per ACK status counted from the delivery lines."""
        rows = self._db.execute(
            "SELECT status, count(*) FROM deliveries WHERE report IN (SELECT id FROM "
            "report_cursors WHERE campaign = ? AND kind = ?) GROUP BY status "
            "ORDER BY status", (pk, Kind.ACK.word))
        return {row[0]: int(row[1]) for row in rows}

    def deliveries(self) -> list[DeliveryRow]:
        """Every delivery line recorded, by report, MSISDN and IDREMOTE."""
        rows = self._db.execute(
            "SELECT report, msisdn, idremote, campaign, oadc, idstatus, status, operator, at "
            "FROM deliveries ORDER BY report, msisdn, idremote")
        return [tuple(row) for row in rows]

    def replies(self, campaign: str | None = None) -> list[dict[str, Any]]:
        """The replies recorded (of one campaign, by its id, when given), oldest first."""
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

    def count_rows(self, table: Literal["deliveries", "optouts", "replies", "suppression",
                                        "report_cursors"]) -> int:
        """Rows in one of the report tables or the suppression list (figures, tests)."""
        if table not in ("deliveries", "optouts", "replies", "suppression", "report_cursors"):
            raise ValueError(f"not a report table: {table}")
        return int(self._db.execute(f"SELECT count(*) FROM {table}")  # noqa: S608
                   .fetchone()[0])


class KeyTable:
    """64-bit keys in an open-addressing table of 64-bit slots (0: empty), at most 5/8 full:
    a million keys in 16 MiB (a ``set`` of ints: ~60 MB more; sorted buckets: half the memory,
    twice the time), each looked up in a few steps of the interpreter. The key 0 is kept
    apart."""

    def __init__(self, report: int, expected: int = 0) -> None:
        self.report = report
        size = 1 << 12
        while size * 5 < expected * 8:
            size <<= 1
        self._slots = array("q", bytes(8 * size))
        self._mask = size - 1
        self._used = 0  # slots taken
        self._zero = 0  # the key 0's count

    def __len__(self) -> int:
        return self._used + (self._zero > 0)

    def _reserve(self, more: int) -> None:
        """Room for ``more`` keys without going over 5/8 full (the table doubled as needed)."""
        while (self._used + more) * 8 > len(self._slots) * 5:
            old = self._slots
            size = 2 * len(old)
            slots, mask = array("q", bytes(8 * size)), size - 1
            for key in old:
                if key:
                    place = key & mask
                    while slots[place]:
                        place = (place + 1) & mask
                    slots[place] = key
            self._slots, self._mask = slots, mask


class AckKeys(KeyTable):
    """The keys of a report's delivery lines: ``hash((msisdn, idremote))``."""

    def new(self, lines: Sequence[_L], msisdn_at: int, idremote_at: int) -> list[_L]:
        """The ``lines`` whose MSISDN and IDREMOTE (at those places) are not known yet, nor
        those of a line before them; they are known from now on."""
        self._reserve(len(lines))
        slots, mask, used = self._slots, self._mask, self._used
        keys = map(hash, zip(map(itemgetter(msisdn_at), lines),  # in C, not line by line
                             map(itemgetter(idremote_at), lines), strict=True))
        new = []
        for key, line in zip(keys, lines, strict=True):
            if not key:  # pragma: no cover - a pair whose hash is 0 (1 in 2**64)
                self._zero += 1
                if self._zero == 1:
                    new.append(line)
                continue
            place = key & mask
            while (found := slots[place]) and found != key:
                place = (place + 1) & mask
            if not found:
                slots[place] = key
                used += 1
                new.append(line)
        self._used = used
        return new


class LineCounts(KeyTable):
    """How many lines of each key (a 64-bit line hash: ``rules.report_lines.line_key``) a
    report file has: the keys in the table, the counts above 1 in a dict."""

    def __init__(self, report: int, expected: int = 0) -> None:
        super().__init__(report, expected)
        self._more: dict[int, int] = {}

    def add(self, key: int) -> int:
        """One more line of ``key``; how many there are now."""
        if not key:
            self._zero += 1
            return self._zero
        slots, mask = self._slots, self._mask
        place = key & mask
        while (found := slots[place]) and found != key:
            place = (place + 1) & mask
        if found:
            count = self._more[key] = self._more.get(key, 1) + 1
            return count
        slots[place] = key
        self._used += 1
        if self._used * 8 > len(slots) * 5:
            self._reserve(1)
        return 1

    def add_all(self, keys: Sequence[int]) -> list[int]:
        """:meth:`add` of each of ``keys`` in turn; how many lines of its key each made."""
        self._reserve(len(keys))
        slots, mask, more, used = self._slots, self._mask, self._more, self._used
        occurrences = []
        try:
            for key in keys:
                if not key:
                    self._zero += 1
                    occurrences.append(self._zero)
                    continue
                place = key & mask
                while (found := slots[place]) and found != key:
                    place = (place + 1) & mask
                if found:
                    count = more[key] = more.get(key, 1) + 1
                    occurrences.append(count)
                else:
                    slots[place] = key
                    used += 1
                    occurrences.append(1)
        finally:
            self._used = used
        return occurrences

    def get(self, key: int) -> int:
        """How many lines of ``key`` there are."""
        if not key:
            return self._zero
        slots, mask = self._slots, self._mask
        place = key & mask
        while (found := slots[place]) and found != key:
            place = (place + 1) & mask
        return self._more.get(key, 1) if found else 0


def stop_part(cursor: ReportCursor, lines: Sequence[Sequence[Any]]) -> StopPart:
    """STOP lines ``[key, occurrence, msisdn, received_at, listed]`` as
    :meth:`ReportTables.record_stop_parts` takes them, the cursor just after them: the JSON
    and the numbers are made by the caller's thread, so that the recording thread only runs
    SQL (1M lines: 0.35 s of its time, with the GIL)."""
    return cursor, lines_json(lines), [line[2] for line in lines if line[4]]


def report_id(cursor: ReportCursor) -> int:
    """The journal's id of ``cursor``'s report (saved before any of its lines is read)."""
    if cursor.id is None:  # pragma: no cover - saved before any line is read
        raise ValueError(f"report cursor {cursor.name} not saved yet")
    return cursor.id


def _save_cursor(db: sqlite3.Connection, cursor: ReportCursor, at: datetime.datetime) -> int:
    """Write ``cursor`` inside the caller's transaction; its id."""
    db.execute(
        "INSERT INTO report_cursors (name, kind, campaign, size, mtime, offset, head_sha256,"
        " tail_sha256, lines, complete_at, deleted_at, seen_at, updated_at, line_hash) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(name) DO UPDATE SET "
        "kind=excluded.kind, campaign=excluded.campaign, size=excluded.size, "
        "mtime=excluded.mtime, offset=excluded.offset, head_sha256=excluded.head_sha256, "
        "tail_sha256=excluded.tail_sha256, lines=excluded.lines, "
        "complete_at=excluded.complete_at, deleted_at=excluded.deleted_at, "
        "seen_at=excluded.seen_at, updated_at=excluded.updated_at",
        (cursor.name, cursor.kind.word, cursor.campaign, cursor.size, cursor.mtime,
         cursor.offset, cursor.head_sha256, cursor.tail_sha256, cursor.lines,
         now_iso(cursor.complete_at) if cursor.complete_at else None,
         now_iso(cursor.deleted_at) if cursor.deleted_at else None,
         now_iso(cursor.seen_at), now_iso(at), cursor.line_hash))
    return int(db.execute("SELECT id FROM report_cursors WHERE name = ?",
                          (cursor.name,)).fetchone()[0])

