"""The provider's reports in ``report_dir``: ACK, STOP and SMS-MO files, read incrementally.

One listing per poll. Each remote report file has a cursor in the journal: the byte offset
just after the last complete line ingested, the size and mtime last listed, and hashes of the
first and last 4 KiB before the offset. A poll reads only the bytes after the offset (SFTP
random access), ingests the complete lines (a trailing partial line waits for the next
poll) and commits them with the cursor. Lines are read and parsed before any transaction,
then committed in batches sized to hold the journal's write lock about
``store.journal.BULK_HOLD_TARGET`` (each with the cursor at its last line's end), the lock
left free ``BULK_PAUSE`` between them: a million-line STOP file never keeps another writer
(``suppress import``, the daemon's own loops) waiting. A file that shrank,
whose checked bytes changed, or whose local copy does not match the cursor is read again from
the start: every line has a key in the journal, so reading twice counts nothing twice.

- ``ACK-<name>.csv`` (the lines' grammar: :mod:`sftpd_agent.rules.report_lines`): one
  delivery line per (file, MSISDN, IDREMOTE). Linked to the campaign whose part is
  ``SEND-<name>.csv``; complete once it holds as many lines as the part had rows (or is
  unchanged over a poll), then the campaign is ``reported`` and the remote file deleted when
  configured.
- ``STOP-<name>.csv`` and ``SMSMO-<name>.csv``: ``MSISDN;DATE;HOUR;MESSAGE;IDREMOTE``,
  appended in place while the campaign lives, never deleted. A line's key is its text and
  its occurrence (the 2nd identical line is a second line, wherever a rewrite moves it).
  STOP numbers join the suppression list (sorted, once the file's new lines are in: a crash
  between the two is made good at the start and at the next round's start, and uploads
  count them meanwhile); so does a reply that is a stop keyword (with its line).

Raw copies of exactly the bytes ingested are kept in ``inbox/ack|stop|mo/``, replaced
atomically after each read.

Remote names are data, never paths: only a name of the provider's grammar
(``ACK|STOP|SMSMO-<5 letters or digits>-<YYYYMMDD>-<HHMM>-<1..20 letters or digits>.csv``)
is read, and only such a name is joined into a local path. Any other name that looks like a
report (a report prefix or ``.csv``, any case), or that is not UTF-8, is skipped. Each report
file is read inside its own boundary: whatever goes wrong with one (a local copy, the journal,
its content, a permission on the server) skips that file for this poll, and the others are
read; only a lost connection ends the round. Skipped files are logged once (``report_skipped``,
one line) and listed, with the reason, in the agent fact ``report_skipped`` that ``status``
shows; a failed file is tried again at every poll.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import gc
import hashlib
import itertools
import operator
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..boundary import describe
from ..clock import Clock
from ..config import Settings, SettingsLike, settings_getter
from ..errors import PermanentRemoteError, RemoteError, RetryableRemoteError
from ..events import Events
from ..files import private_dir, replaced
from ..logs import get_logger
from ..memory import BIG_UNIT, give_back
from ..remote.base import Remote, RemoteEntry, join
from ..rules.display import shown
from ..rules.naming import Kind
from ..rules.numbers import NumberNormalizer, Shortcut
from ..rules.report_lines import (
    ReportLine,
    ack_name,
    fold,
    line_key,
    line_keys,
    name_problem,
    parse_report_line,
    report_kind,
    send_name,
)
from ..rules.states import OUTCOME, CampaignState, PartState, can_move
from ..store.journal import BULK_FIRST_BATCH, BULK_PAUSE, Store, next_batch
from ..store.records import (
    Campaign,
    ReplyRow,
    ReportCursor,
    SuppressionRow,
    now_iso,
)
from ..store.reports import LineCounts, Tally, report_id, stop_part, text_lines_json
from .transitions import Transitions

log = get_logger("sftpd_agent.reports")
C = CampaignState

CHUNK = 1 << 20
"""Bytes read (and committed) at a time: bounds memory, whatever the file's size (its lines'
objects take ~6x its bytes: 8 MiB chunks kept a 1M-line STOP ingest above 150 MB)."""
WINDOW = 4096
"""Bytes hashed at each end of what was read, to notice a rewritten file."""
MAX_LINE = 1 << 16
"""A "line" longer than this without a line end is not a report line: skipped, logged."""
SEEN_EVERY = datetime.timedelta(hours=1)
"""How often an unchanged report file's "still on the server" time is recorded (retention
needs days, not seconds: no durable write per file per poll)."""
MAX_EVENT_NUMBERS = 1000
"""Opt-outs named in one ``optout.received`` event (the count is always whole)."""
UNANNOUNCED = "unannounced_reports"
"""The agent fact adding up opt-outs and replies read but not yet announced."""
MAX_WARNINGS = 10
"""Unreadable lines logged one by one per file and read; the rest are counted."""
SKIPPED = "report_skipped"
"""The agent fact listing the report files skipped, ``{shown name: reason}``, for status."""
HANDOFF_SECONDS = 0.0002
"""The interpreter's switch interval (``sys.setswitchinterval``; 5 ms by default) while a
report file is read: the worker thread recording a batch needs the GIL back after each
statement, and waited up to the whole interval each time while the reader parsed (1M ACK
lines: 4.1-4.2 s -> 3.5-3.7 s; 1M STOP lines: 7.2 s -> 6.2 s)."""
ACK_FIELDS = 7
"""An ACK line's fields: IDREMOTE;MSISDN;OADC;MSG;IDSTATUS;STATUS;ACKOPERATOR (a message may
hold more)."""
ACK_LINE_BYTES = 96
"""About the bytes an ACK line takes (a message and an operator id of 36): the lines expected of
an ACK file whose part is not ours (shorter lines: the table grows)."""
YOUNG_OBJECTS = 100_000
"""The collector's first threshold while a report file is read (700 otherwise): a million
lines' lists made it run thousands of times for nothing (1M STOP lines: 6.4 s -> 5.7 s; ACK:
3.3-3.4 s -> 3.1-3.2 s)."""
STOP_LINE_BYTES = 40
"""About the bytes a STOP line takes (``+33612345678;20261123;1000;STOP;R0000001``, 42 with its
line end): a file's size over this sizes the count of its lines' keys (``LineCounts``) once;
more lines, it grows. 32 sized a million such lines' table for 1.3M lines, one over the
power of two: 32 MiB instead of 16."""


NO_SHORTCUT: Shortcut = (re.compile("(?!)").fullmatch, 0, 0)
"""A number shape no shortcut decides: its check always fails."""


def quick_normalize(normalizer: NumberNormalizer) -> Callable[[str], str | None]:
    """``normalizer.normalize``, with the commonest shapes (the default region's numbers,
    national or with its calling code) decided by its shortcut table: a million numbers in
    well under a second, with the same answers (``NumberNormalizer.shortcuts``)."""
    shortcuts = normalizer.shortcuts()
    normalize = normalizer.normalize

    def e164(raw: str) -> str | None:
        check, offset, base = shortcuts.get(raw[:4], NO_SHORTCUT)
        if check(nsn := raw[offset:]):
            # "+<code><national number>" of the checked length is its own E.164 form.
            return raw if raw[0] == "+" else f"+{base + int(nsn)}"
        return normalize(raw)

    return e164


@contextmanager
def _bulk_read() -> Iterator[None]:
    """For the block (a report file read): the interpreter's switch interval at
    :data:`HANDOFF_SECONDS`, and the collection of young objects every
    :data:`YOUNG_OBJECTS` (a batch's lines are thousands of lists that hold no cycles)."""
    interval, thresholds = sys.getswitchinterval(), gc.get_threshold()
    sys.setswitchinterval(min(interval, HANDOFF_SECONDS))
    gc.set_threshold(max(thresholds[0], YOUNG_OBJECTS), *thresholds[1:])
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        gc.set_threshold(*thresholds)


def skip_reason(entry: RemoteEntry) -> str | None:
    """Why a listed entry is not read as a report, when it looks like one (a report prefix or
    ``.csv``, any case) or is not UTF-8; None for a report, or a name that is none of our
    business."""
    if entry.undecodable:
        return "name is not UTF-8"
    return name_problem(entry.name)


async def _prefix_ends(remote: Remote, path: str, offset: int) -> tuple[bytes, bytes]:
    """The first and the last ``WINDOW`` bytes of ``path`` before ``offset`` (one read when
    they are the same bytes)."""
    if offset == 0:
        return b"", b""
    head = await remote.read(path, 0, min(WINDOW, offset))
    if offset <= WINDOW:
        return head, head
    return head, await remote.read(path, offset - WINDOW, WINDOW)


async def _alive(remote: Remote, directory: str) -> bool:
    """Whether the connection still answers, after a retryable failure on one file: an SFTP
    failure of that file (a folder listed as a file, a busy file) skips it; a lost
    connection ends the round."""
    try:
        await remote.stat(directory)
    except RemoteError:
        return False
    return True


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _RawCopy:
    """The local copy of a report: the bytes kept so far, plus the new ones, replaced
    atomically on ``commit`` (``files.replaced``), left as it was on ``discard``.

    The new bytes are written by a thread of its own, a chunk at a time behind the reader
    (the one before waited for, its error raised, by the next ``write``): a 1 MiB write into
    the page cache held the event loop 3-5 ms, a quarter of its busy time during a
    million-line ACK. Every :data:`DROP_EVERY` bytes the thread makes them durable and lets
    their pages go (``fdatasync``, ``POSIX_FADV_DONTNEED``): the copy is not read again, and
    its next bytes reuse those pages (pages never used before cost the most: 115 MB into
    fresh pages took 0.4-0.95 s, a few reused ones 0.14-0.22 s); the commit's ``fsync`` has
    little left to do."""

    def __init__(self, final: Path, keep: int) -> None:
        self._writing = replaced(final, text=False)
        self._out = self._writing.__enter__()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="report-copy")
        self._last: Future[None] | None = None
        self._open = True
        self._unsynced = 0  # bytes written since the last were let go
        if keep:
            with final.open("rb") as old:
                remaining = keep
                while remaining and (block := old.read(min(remaining, 1 << 20))):
                    self._out.write(block)
                    remaining -= len(block)

    def write(self, data: bytes) -> None:
        self._written()
        self._last = self._writer.submit(self._append, data)

    def _append(self, data: bytes) -> None:
        """In the writer's thread: ``data`` written; the pages of what is written let go
        every :data:`DROP_EVERY` bytes."""
        self._out.write(data)
        self._unsynced += len(data)
        if self._unsynced >= DROP_EVERY and hasattr(os, "posix_fadvise"):
            self._out.flush()
            os.fdatasync(self._out.fileno())
            os.posix_fadvise(self._out.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)  # to its end
            self._unsynced = 0

    def _written(self) -> None:
        """Wait for the write under way, if any (its error raised)."""
        last, self._last = self._last, None
        if last is not None:
            last.result()

    def commit(self) -> None:
        self._written()
        self._close(None)

    def discard(self) -> None:
        with contextlib.suppress(Exception):  # the copy is not kept: its error says nothing
            self._written()
        self._close(_Discarded())

    def _close(self, stop: _Discarded | None) -> None:
        """Stop the writer, then keep the copy (``stop`` None) or not; once."""
        if not self._open:
            return
        self._open = False
        self._writer.shutdown()
        self._writing.__exit__(None if stop is None else _Discarded, stop, None)


_UNSEEN = ""
"""Not a time a STOP line's DATE and HOUR were read as yet (None: not a time)."""
DROP_EVERY = 8 << 20
"""Bytes of a report's raw copy written between two lettings go of its pages."""


class _Discarded(Exception):
    """Ends a raw copy's writing without keeping it."""


@dataclass
class _Read:
    """One pass over a report file's new bytes."""

    cursor: ReportCursor
    head: bytes = b""
    tail: bytes = b""
    first_read: bool = False  # nothing of this file recorded yet: bulk inserts
    apart: bool = False  # read again from its start over recorded lines: counted apart
    expected: int = 0  # about how many lines the file holds (to size a table of keys once)
    counts: LineCounts | None = None  # a STOP file's lines recorded, by key (the store's)
    passed: LineCounts | None = None  # a STOP file read again from its start: this read's
    warnings: int = 0
    unreadable: int = 0
    batch: int = BULK_FIRST_BATCH  # lines in the next transaction
    pool: ThreadPoolExecutor | None = None  # records a batch while the next one is parsed
    pending: collections.deque[tuple[Future[Any], int]] = field(
        default_factory=collections.deque)  # the batches being recorded, with their sizes
    failed: bool = False  # a batch was not recorded: none after it may be
    # The campaign id of a STOP or SMS-MO file, read once: a read of the journal between two
    # chunks waits for the batch being recorded (its transaction holds the store's lock).
    campaign_id: str | None = None


@dataclass
class Reports:
    """Owns the provider's ``Report/`` side: one listing per poll, each report file read from
    its cursor (only new complete lines), delivery figures per campaign (a campaign becomes
    ``reported``), opt-outs into the suppression list, replies; one bad file skipped alone."""

    store: Store
    config: SettingsLike
    clock: Clock
    events: Events
    on_reported: Callable[[Campaign], None] | None = None
    on_progress: Callable[[], None] | None = None
    """Told after every batch of report lines: a million-line file is work going on, not a
    stalled loop (the systemd watchdog is fed by it)."""
    before_reported: Callable[[Campaign], dict[str, object]] | None = None
    """Called as a campaign's every ACK is in, before it becomes ``reported``: what it
    returns goes into the event (the results file written for the CRM)."""
    hooks: Callable[[str, str], None] | None = None  # test fault points: ("report_chunk", name)
    _dir_error: str | None = None
    _touched: set[int] = field(default_factory=set)
    _times: dict[tuple[str, str], str | None] = field(default_factory=dict)
    _skipped: dict[str, str] | None = None  # what the fact says; None: not read yet
    # (region, its normalizer, quick_normalize of it): for the default region in force
    _numbers: tuple[str, NumberNormalizer, Callable[[str], str | None]] | None = None

    # -- a poll ----------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        """The settings in force (a reload reaches this at once)."""
        return settings_getter(self.config)()

    def __post_init__(self) -> None:
        self.transitions = Transitions(self.store, self.clock, self.events)

    async def round(self, remote: Remote) -> None:
        """One listing of ``report_dir``; read what is new in every report file."""
        await self._list_optouts()  # any left by a read that failed, or before a crash
        directory = self.settings.remote.report_dir
        try:
            entries = await remote.list(directory)
        except PermanentRemoteError as exc:
            # A missing report folder must not stop uploads: said once, tried every poll.
            if self._dir_error != str(exc):
                log.error("report_dir_unavailable", error=str(exc))  # noqa: TRY400
                self._dir_error = str(exc)
            return
        self._dir_error = None
        skipped: dict[str, str] = {}
        reports = []
        for entry in entries:
            reason = skip_reason(entry)
            if reason is not None:
                skipped[shown(entry.name)] = reason
            elif report_kind(entry.name) is not None:
                reports.append(entry)
        reports.sort(key=lambda e: e.name)
        try:
            for entry in reports:
                # The boundary of one report file: anything but a lost connection skips it.
                try:
                    await self._file(remote, entry)
                except RetryableRemoteError as exc:
                    if not await _alive(remote, directory):
                        raise  # the connection is lost: the session reconnects
                    skipped[shown(entry.name)] = describe(exc)  # the file's own failure
                except Exception as exc:  # one file's failure is that file's alone
                    skipped[shown(entry.name)] = describe(exc)
                    log.debug("report_skipped_trace", file=shown(entry.name), exc_info=True)
        except RetryableRemoteError:
            # Not all files were looked at: what was skipped before still stands.
            self._record_skipped({**self._skipped_before(), **skipped})
            raise
        self._record_skipped(skipped)
        self._report_campaigns()
        self.announce()
        self._touched.clear()
        # The opt-outs are in force from their lines on (``Store.suppressed``, ``suppress
        # list``): the event need not wait for the list's own index of them.
        await self._list_optouts()

    async def _file(self, remote: Remote, entry: RemoteEntry) -> None:
        now = self.clock()
        kind = report_kind(entry.name)
        if kind is None:
            return
        path = join(self.settings.remote.report_dir, entry.name)
        cursor = self.store.report_cursor(entry.name)
        last_seen = cursor.seen_at if cursor is not None else now
        if cursor is None or cursor.deleted_at is not None:
            # New, or one we deleted uploaded again: read whole (the line keys dedupe).
            cursor = ReportCursor(entry.name, kind, self._campaign_pk(entry.name), seen_at=now)
        else:
            cursor = replace(cursor, seen_at=now)
        if entry.size == cursor.size and entry.mtime == cursor.mtime:
            if kind is Kind.ACK and (cursor.complete_at is None or self._deletable(cursor)):
                await self._settle_ack(remote, path, entry, cursor)
            elif now - last_seen >= SEEN_EVERY:
                self._save(cursor)  # for retention: still on the server (not each poll)
            return
        start, head, tail = await self._resume_at(remote, path, entry, cursor)
        cursor = await self._read(remote, path, entry, cursor, start, head=head, tail=tail)
        if kind is Kind.ACK:
            await self._settle_ack(remote, path, entry, cursor, fresh=True)

    async def _resume_at(self, remote: Remote, path: str, entry: RemoteEntry,
                         cursor: ReportCursor) -> tuple[int, bytes, bytes]:
        """Where to read from, with the checked first and last 4 KiB before it: the cursor's
        offset, or 0 when what was read has changed."""
        if cursor.offset == 0:
            return 0, b"", b""
        reason = None
        copy = self._copy_path(cursor)
        if entry.size < cursor.offset:
            reason = "shrank"
        elif not copy.exists() or copy.stat().st_size != cursor.offset:
            reason = "local copy out of step"
        else:
            head, tail = await _prefix_ends(remote, path, cursor.offset)
            if _sha256(head) != cursor.head_sha256 or _sha256(tail) != cursor.tail_sha256:
                reason = "rewritten"
            else:
                return cursor.offset, head, tail
        log.info("report_reread", file=entry.name, reason=reason, offset=cursor.offset,
                 size=entry.size)
        return 0, b"", b""

    async def _read(self, remote: Remote, path: str, entry: RemoteEntry,
                    cursor: ReportCursor, start: int, *, head: bytes, tail: bytes,
                    last_line: bool = False) -> ReportCursor:
        """Ingest the complete lines of ``[start, entry.size)``; the cursor after them.

        ``head`` and ``tail`` are the first and last 4 KiB before ``start``. With
        ``last_line`` a final line without a line end is ingested too.
        """
        if start == 0:
            cursor = replace(cursor, offset=0, lines=0, head_sha256="", tail_sha256="",
                             complete_at=None, deleted_at=None)
        if cursor.id is None:
            cursor = self.store.save_report_cursor(cursor, self.clock())
        state = _Read(cursor, head=head, tail=tail)
        if cursor.kind is Kind.ACK:
            state.expected = self._expected_rows(cursor) or entry.size // ACK_LINE_BYTES
        else:
            state.campaign_id = self._campaign_id(cursor.campaign)
        if cursor.kind is Kind.STOP:
            # A line's occurrence: 1 + the times its text came before, in the lines recorded
            # or, for a file read again from its start over lines recorded, in this read; it
            # is new when above the lines of its text recorded.
            state.counts = self.store.stop_counts(report_id(cursor),
                                                  expected=entry.size // STOP_LINE_BYTES)
            if start == 0 and len(state.counts):
                state.passed = LineCounts(report_id(cursor), len(state.counts))
        elif cursor.kind is Kind.SMSMO and cursor.id is not None:
            state.first_read = not self.store.has_lines(cursor.id, cursor.kind)
            # A line's occurrence: 1 + the times its text came before, in the lines recorded
            # (a first read, or one from the cursor: the journal holds exactly the lines
            # before, or more of the lines before when resuming) or, for a file read again
            # from its start over lines recorded before, in this read alone.
            state.apart = start == 0 and not state.first_read
            if state.apart:
                self.store.begin_line_pass()
        copy = _RawCopy(self._copy_path(cursor), keep=start)
        # Leaving the block waits for a batch still being recorded (an error included).
        with _bulk_read(), self.store.lean_cache(), \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="report-lines") as pool:
            state.pool = pool
            cursor = await self._read_into(remote, path, entry, state, copy=copy, start=start,
                                           last_line=last_line)
        if entry.size - start >= BIG_UNIT:
            give_back()  # a million lines' memory, not kept while idle
        return cursor

    async def _list_optouts(self) -> None:
        """The numbers of the STOP lines recorded onto the suppression list, sorted
        (:meth:`Store.list_new_optouts`), in a thread: the event loop runs meanwhile. At the
        end of a round, once its files are read and their opt-outs announced, and at its
        start (lines recorded by a round that failed half-way, or before a crash)."""
        began = time.monotonic()
        listed = await asyncio.to_thread(self.store.list_new_optouts)
        if listed:
            log.info("optouts_listed", lines=listed,
                     seconds=round(time.monotonic() - began, 3))
            if self.on_progress is not None:
                self.on_progress()

    async def _read_into(self, remote: Remote, path: str, entry: RemoteEntry, state: _Read, *,
                         copy: _RawCopy, start: int, last_line: bool) -> ReportCursor:
        ahead: asyncio.Future[bytes] | None = None  # the next chunk, read while this one is in
        try:
            position, carry = start, b""
            while position < entry.size:
                if ahead is None:
                    data = await remote.read(path, position, min(CHUNK, entry.size - position))
                else:
                    data, ahead = await ahead, None
                if not data:
                    break  # shorter than listed: the next poll looks again
                position += len(data)
                if position < entry.size:
                    ahead = asyncio.ensure_future(
                        remote.read(path, position, min(CHUNK, entry.size - position)))
                buffer = carry + data
                cut = buffer.rfind(b"\n") + 1
                complete, carry = buffer[:cut], buffer[cut:]
                if len(carry) > MAX_LINE:
                    complete, carry = buffer, b""  # no line end in sight: not a report line
                if complete:
                    await self._ingest(state, complete)
                    copy.write(complete)
                    if self.hooks is not None:  # a fault point: after the chunk's lines are in
                        await self._recorded(state)
                    self._point("report_chunk", entry.name)
            await remote.release()  # the file is read: not kept open meanwhile
            if last_line and carry and position >= entry.size:
                await self._ingest(state, carry)
                copy.write(carry)
            await self._recorded(state)
            if position >= entry.size:
                state.cursor = replace(state.cursor, size=entry.size, mtime=entry.mtime)
            self._save(state.cursor)
            copy.commit()
        except BaseException as exc:
            cancelled = isinstance(exc, asyncio.CancelledError)
            await _given_up(ahead, cancel=cancelled)
            if not cancelled:
                await remote.release()
            copy.discard()
            if state.cursor.kind is Kind.ACK:  # lines taken as new may not be recorded
                self.store.forget_ack_keys()
            elif state.cursor.kind is Kind.STOP:  # lines counted may not be recorded
                self.store.forget_stop_counts()
            raise
        if state.unreadable:
            log.warning("report_lines_unreadable", file=entry.name, count=state.unreadable)
        return state.cursor

    async def _ingest(self, state: _Read, complete: bytes) -> None:
        """Record the lines of ``complete`` and move the cursor past them.

        In batches, one transaction each, sized to hold the write lock about
        ``BULK_HOLD_TARGET`` (from the last one's hold). A batch's lines are parsed and
        normalised before its transaction begins, while the lock is free; an ACK batch or
        a STOP file's first read is recorded in a worker thread (one statement, run without
        the GIL) while the next batch is parsed. Between two transactions the lock is left
        to another writer that waits for it (``Store.others_waiting``), ``BULK_PAUSE`` at
        most; nobody waiting, no time is lost. Each batch moves the cursor to its last
        line's end: a crash between two leaves the journal in step (and the raw copy,
        replaced only at the end, out of step: the file is read again from the start, and
        its line keys count nothing twice).
        """
        cursor = state.cursor
        try:
            text = complete.decode("utf-8")
        except UnicodeDecodeError:
            text = complete.decode("cp1252", errors="replace")
        lines = text.split("\n")
        pieces = complete.split(b"\n")  # the same lines (no codec makes or eats a b"\n")
        if lines and lines[-1] == "":
            lines.pop()
            pieces.pop()
        # Each line's end in ``complete`` (its length and its b"\n", added up in C).
        ends = list(itertools.accumulate(map(operator.add, map(len, pieces),
                                             itertools.repeat(1))))
        if ends and not complete.endswith(b"\n"):
            ends[-1] -= 1  # a last line without its line end (taken once the file is stable)
        first = cursor.lines + 1
        now = self.clock()
        ack, stop = cursor.kind is Kind.ACK, cursor.kind is Kind.STOP
        campaign_id = state.campaign_id
        keywords = {fold(word) for word in self.settings.reports.stop_keywords}
        start = 0
        while start < len(lines):
            end = min(len(lines), start + state.batch)
            batch = lines[start:end]
            # An ACK or STOP batch goes in parts (ends of its lines, from ``start``): another
            # writer seen waiting between two parts ends the transaction (``_record_parts``).
            bounds = _parts(start, end) if ack or stop else [end]
            if ack:  # the new lines, as JSON: the worker thread only runs SQL
                fields = [text_lines_json(self.store.new_acks(
                              report_id(cursor), self._ack_fields(state, lines[a:b], first + a),
                              expected=state.expected))
                          for a, b in itertools.pairwise([start, *bounds])]
            elif stop:
                stops = [self._stops(state, lines[a:b], first + a)
                         for a, b in itertools.pairwise([start, *bounds])]
            # One batch queued behind the one being recorded: the worker thread never waits
            # for the reader between two (1M ACK lines in-process: 3.2 s -> 2.8 s).
            await self._recorded(state, behind=1)
            if not (ack or stop):
                replies, optouts_or_none = self._replies(
                    state, batch, first + start, now, campaign_id=campaign_id,
                    keywords=keywords)
            await self._let_others_in()
            cursors = []
            for a, b in itertools.pairwise([start, *bounds]):
                piece = complete[(ends[a - 1] if a else 0):ends[b - 1]]
                if len(state.head) < WINDOW:
                    state.head += piece[:WINDOW - len(state.head)]
                state.tail = (state.tail + piece[-WINDOW:])[-WINDOW:]
                cursors.append(replace(cursor, offset=cursor.offset + ends[b - 1],
                                       lines=cursor.lines + b, head_sha256=_sha256(state.head),
                                       tail_sha256=_sha256(state.tail)))
            if ack:
                self._in_thread(state, end - start, self.store.record_ack_parts,
                                cursor.campaign, list(zip(cursors, fields, strict=True)), now)
            elif stop:
                self._in_thread(state, end - start, self.store.record_stop_parts,
                                [stop_part(cursor, lines)
                                 for cursor, lines in zip(cursors, stops, strict=True)], at=now,
                                tally=self._tally(cursor, campaign_id))
            else:
                self.store.record_lines(cursors[-1], replies, optouts_or_none,
                                        bulk=state.first_read, at=now,
                                        tally=self._tally(cursor, campaign_id))
                state.batch = next_batch(end - start, self.store.last_hold)
            state.cursor = cursors[-1]
            start = end

    def _in_thread(self, state: _Read, size: int, record: Callable[..., Any], *args: Any,
                   **kwargs: Any) -> None:
        """Record a batch in the read's worker thread, after those queued before it; none is
        recorded after one that was not (its cursor would pass the lines of that one).
        :meth:`_recorded` waits for them."""
        if state.pool is None:  # pragma: no cover - _read gives every read its pool
            raise RuntimeError("no worker thread for this read")

        def in_turn() -> Any:
            if state.failed:
                raise RuntimeError("a batch before this one was not recorded")
            try:
                return record(*args, **kwargs)
            except BaseException:
                state.failed = True
                raise

        state.pending.append((state.pool.submit(in_turn), size))

    async def _recorded(self, state: _Read, *, behind: int = 0) -> None:
        """Wait until at most ``behind`` batches are still being recorded (the first error
        raised here); the next batch's size follows the time the last one held the write
        lock."""
        for _ in range(len(state.pending) - behind):  # bounded: one batch each
            pending, size = state.pending.popleft()
            await asyncio.wrap_future(pending)
            state.batch = next_batch(size, self.store.last_hold)

    async def _let_others_in(self) -> None:
        """Between two transactions: while another writer waits for the write lock (a
        daemon's step, ``suppress import``), leave it free until that writer is in,
        ``BULK_PAUSE`` at most. The event loop runs meanwhile, and at least once."""
        if self.on_progress is not None:
            self.on_progress()
        began = time.monotonic()
        for _ in range(1000):  # bounded by the time below
            if not self.store.others_waiting() or time.monotonic() - began >= BULK_PAUSE:
                break
            await asyncio.sleep(0.001)
        await asyncio.sleep(0)

    def _ack_fields(self, state: _Read, lines: list[str],
                    first: int) -> Sequence[Sequence[str]]:
        """The ACK lines' fields as recorded (``Store.record_ack_parts``): ``[msisdn,
        idremote, oadc, idstatus, status, operator]``; a blank or unreadable line is left out.
        ``parse_ack``'s reading, inlined for a million lines: when every line has as many
        fields (7, or more with ``;`` in the message) and an MSISDN, a column at a time,
        from one split of the whole (1M lines: 0.67 s -> 0.58 s); else a line at a
        time. ``lines``: lines of the file, none holding a ``"\n"``."""
        if state.cursor.campaign is not None:
            self._touched.add(state.cursor.campaign)
        # The lines' fields in one list, a "\n" after each line's (no field holds one): at
        # every ``stride``-th place, when every line has as many fields (7, or more with
        # ``;`` in the message: the same template on every line).
        joined, count = ";\n;".join(lines), len(lines)
        # The lines' own fields: their own ";" (those of the joints taken off), one more each.
        width, uneven = divmod(joined.count(";") - 2 * (count - 1) + count, max(count, 1))
        if count and not uneven and width >= ACK_FIELDS:
            columns, stride = joined.split(";"), width + 1
            if (columns[width::stride].count("\n") == count - 1
                    and all(msisdns := list(map(str.strip, columns[1::stride])))):
                idstatuses = list(map(str.strip, columns[width - 3::stride]))
                statuses = list(map(str.strip, columns[width - 2::stride]))
                if not all(statuses):
                    statuses = [status or idstatus for status, idstatus
                                in zip(statuses, idstatuses, strict=True)]
                return list(zip(msisdns, map(str.strip, columns[0::stride]),
                                map(str.strip, columns[2::stride]), idstatuses, statuses,
                                map(str.strip, columns[width - 1::stride]), strict=True))
            del columns  # not kept while the lines are read one by one
        del joined
        rows = [raw.split(";") for raw in lines]
        if min(map(len, rows), default=ACK_FIELDS) >= ACK_FIELDS:  # 7 fields or more each
            found = [[fields[1].strip(), fields[0].strip(), fields[2].strip(),
                      idstatus := fields[-3].strip(), fields[-2].strip() or idstatus,
                      fields[-1].strip()] for fields in rows]
            if all(map(operator.itemgetter(0), found)):  # and an MSISDN each: all recorded
                return found
        found = []
        for number, raw, fields in zip(itertools.count(first), lines, rows):
            if len(fields) >= ACK_FIELDS and (msisdn := fields[1].strip()):
                idstatus = fields[-3].strip()
                found.append([msisdn, fields[0].strip(), fields[2].strip(), idstatus,
                              fields[-2].strip() or idstatus, fields[-1].strip()])
                continue
            if not raw.strip():
                continue  # a blank line
            short = len(fields) < ACK_FIELDS  # else: no MSISDN
            self._unreadable(state, number, "IDSTATUS" if short else "MSISDN",
                             "fewer than 7 fields" if short else "empty")
        return found

    def _stops(self, state: _Read, lines: list[str], first: int) -> list[list[Any]]:
        """The STOP lines new to the journal as recorded (``Store.record_stop_parts``):
        ``[key, occurrence, msisdn, received_at, listed]``, a line's occurrence 1 + the lines
        of its text before it (``state.counts`` recorded, or ``state.passed`` met in a read
        from the start); a blank or unreadable line is left out, and so is a line recorded
        already. ``listed``: its number is a phone number, for the suppression list.
        ``_replies``' reading, inlined for a million lines: the keys hashed and counted for
        the batch at once, the commonest numbers and times decided here."""
        counts, passed = state.counts, state.passed
        if counts is None:  # pragma: no cover - _read gives every STOP read its counts
            raise RuntimeError("not a STOP read")
        texts = [raw.strip() for raw in lines]
        rows = [text.split(";") for text in texts]
        numbers: Sequence[int] = range(first, first + len(lines))  # each line's number
        if not all(texts) or min(map(len, rows), default=5) < 5:  # blank or short lines
            numbers, texts, rows = self._readable(state, numbers, texts, rows)
        keys = line_keys(texts, state.cursor.line_hash)
        occurrences = (counts if passed is None else passed).add_all(keys)
        quick, number_of = self._quick_numbers(), self._number_reader()
        times, received_at = self._times, self._received_at
        stops: list[list[Any]] = []
        for number, fields, key, occurrence in zip(numbers, rows, keys, occurrences,
                                                   strict=True):
            if passed is not None:
                if occurrence <= counts.get(key):
                    continue  # recorded already: changes nothing
                counts.add(key)
            given = fields[0].strip()
            check, offset, base = quick(given[:4], NO_SHORTCUT)
            if check(nsn := given[offset:]):  # quick_normalize's shortcut, inlined
                msisdn: str | None = given if given[0] == "+" else f"+{base + int(nsn)}"
            elif (msisdn := number_of(given)) is None:
                self._unreadable(state, number, "MSISDN", "not a phone number")
            when = (fields[1], fields[2])  # as written: _received_at strips them
            if (at := times.get(when, _UNSEEN)) is _UNSEEN:
                at = received_at(*when)
            stops.append([key, occurrence, msisdn or given, at, msisdn is not None])
        return stops

    def _readable(self, state: _Read, numbers: Sequence[int], texts: list[str],
                  rows: list[list[str]]) -> tuple[list[int], list[str], list[list[str]]]:
        """Of a batch's STOP lines (stripped, split), those with 5 fields or more, a blank
        line left out, a short one told as unreadable."""
        kept: tuple[list[int], list[str], list[list[str]]] = ([], [], [])
        for number, text, fields in zip(numbers, texts, rows, strict=True):
            if not text:
                continue
            if len(fields) < 5:
                self._unreadable(state, number, "IDREMOTE", "fewer than 5 fields")
                continue
            kept[0].append(number)
            kept[1].append(text)
            kept[2].append(fields)
        return kept

    def _replies(
        self, state: _Read, lines: list[str], first: int, now: datetime.datetime, *,
        campaign_id: str | None, keywords: set[str],
    ) -> tuple[list[ReplyRow], list[SuppressionRow | None]]:
        """The SMS-MO lines as recorded (a blank or unreadable line is left out) and, beside
        each, the number it puts on the suppression list (None when none): a reply's that is
        a stop keyword."""
        cursor = state.cursor
        at = now_iso(now)
        report = report_id(cursor)
        records: list[ReplyRow] = []
        optouts: list[SuppressionRow | None] = []
        parsed: list[tuple[ReportLine, int, str | None]] = []
        number_of = self._number_reader()
        for number, raw in enumerate(lines, start=first):
            line = raw.rstrip("\r").strip()
            if not line:
                continue
            record = parse_report_line(line)
            if record is None:
                self._unreadable(state, number, "IDREMOTE", "fewer than 5 fields")
                continue
            msisdn = number_of(record.msisdn)
            if msisdn is None:
                self._unreadable(state, number, "MSISDN", "not a phone number")
            parsed.append((record, line_key(line, cursor.line_hash), msisdn))
        # The keys' occurrences before this batch, then each line's own (its key's n-th).
        counts = self._counts_before(state, {key for _, key, _ in parsed})
        for record, key, msisdn in parsed:
            occurrence = counts[key] = counts.get(key, 0) + 1
            received = self._received_at(record.date, record.hour)
            opt_out = fold(record.message) in keywords
            records.append((report, key, occurrence, msisdn or record.msisdn, received,
                            record.message, record.idremote, cursor.campaign, opt_out, at))
            optouts.append((msisdn, received or at, cursor.name, campaign_id)
                           if opt_out and msisdn is not None else None)
        if state.apart and counts:
            self.store.add_line_pass(counts)
        return records, optouts

    def _counts_before(self, state: _Read, keys: set[int]) -> dict[int, int]:
        """How many lines of each of ``keys`` came before this batch (see ``_read``): asked
        of the journal for this batch's keys alone, so that memory follows the batch, not the
        file."""
        if not keys:
            return {}
        if state.apart:
            return self.store.line_pass_counts(keys)
        return self.store.line_counts(report_id(state.cursor), state.cursor.kind, keys)

    # -- ACK files: complete, reported, deleted ----------------------------------------------

    async def _settle_ack(self, remote: Remote, path: str, entry: RemoteEntry,
                          cursor: ReportCursor, *, fresh: bool = False) -> None:
        """Complete an ACK that holds every row, or is unchanged over a poll; then delete it."""
        if cursor.complete_at is None:
            expected = self._expected_rows(cursor)
            stable = not fresh
            if stable and cursor.offset < entry.size:
                # Unchanged over a poll with a last line that has no line end: take it.
                head, tail = await _prefix_ends(remote, path, cursor.offset)
                cursor = await self._read(remote, path, entry, cursor, cursor.offset,
                                          head=head, tail=tail, last_line=True)
            if cursor.offset >= entry.size and (
                    stable or (expected is not None and cursor.lines >= expected)):
                cursor = replace(cursor, complete_at=self.clock())
                self.store.forget_ack_keys()  # read whole: its keys are not needed again
                log.info("ack_ingested", file=entry.name, lines=cursor.lines)
        cursor = self._save(cursor)
        if cursor.complete_at is not None and self._deletable(cursor):
            await remote.remove(path)
            self._save(replace(cursor, deleted_at=self.clock()))
            log.info("ack_deleted", file=entry.name)

    def _deletable(self, cursor: ReportCursor) -> bool:
        """An ACK of ours, to delete once ingested when configured (others' are left)."""
        return (cursor.campaign is not None
                and self.settings.reports.delete_remote_after_ingest)

    def _expected_rows(self, cursor: ReportCursor) -> int | None:
        part = self.store.part_named(send_name(cursor.name))
        return part.rows if part is not None else None

    def _report_campaigns(self) -> None:
        """Refresh delivery figures; a campaign whose every done part has its ACK: reported."""
        # Only the campaigns with an ACK to count: a campaign whose done parts have none yet
        # (a rejected one, say) is skipped below anyway, and the history is never read.
        waiting = {c.id: c for c in self.store.campaigns_with_acks(*OUTCOME)}
        for pk in self._touched - waiting.keys():
            waiting[pk] = self.store.campaign(pk)
        for campaign in waiting.values():
            parts = self.store.parts(campaign.id)
            done = [p for p in parts if p.state == PartState.DONE]
            cursors = [self.store.report_cursor(ack_name(p.remote_name)) for p in done]
            if not any(cursors):
                continue
            figures = self.store.count_acks(campaign.id)
            if figures and figures != campaign.summary.get("acks"):
                self.store.update_campaign(campaign.id,
                                           summary={**campaign.summary, "acks": figures})
            complete = all(c is not None and c.complete_at is not None for c in cursors)
            # Only a campaign whose every part has its outcome may become reported (a part
            # of another send time may still be on its way).
            if complete and done and can_move(campaign.state, C.REPORTED) \
                    and campaign.state != C.REPORTED:
                extra = self.before_reported(campaign) if self.before_reported else {}
                moved = self.transitions.campaign(campaign, C.REPORTED, detail="ACK ingested",
                                                  say={"acks": figures, **extra})
                if self.on_reported is not None:
                    self.on_reported(moved)

    # -- events ----------------------------------------------------------------------------

    def announce(self) -> None:
        """One ``optout.received`` and one ``reply.received`` for what this poll brought.

        What is new is added up in the same transaction as the lines (the ``unannounced``
        fact), so a crash between reading and announcing delays the events, never loses them.
        """
        found = self.store.fact(UNANNOUNCED)
        if not found:
            return
        if found["optouts"]:
            # An event names at most MAX_EVENT_NUMBERS; ``suppress export`` has them all.
            self.events("optout.received", None, count=found["optouts"],
                        numbers=found["numbers"],
                        truncated=found["optouts"] > len(found["numbers"]),
                        campaigns=found["campaigns"], files=found["files"])
        if found["replies"]:
            self.events("reply.received", None, count=found["replies"],
                        opt_outs=found["reply_optouts"], campaigns=found["reply_campaigns"])
        self.store.set_fact(UNANNOUNCED, None)

    def _tally(self, cursor: ReportCursor, campaign: str | None) -> tuple[str, Tally]:
        """How new opt-outs and replies of ``cursor``'s file (of ``campaign``) add up to what
        the next ``announce`` tells: the fact's key and its change, made in the lines'
        transaction."""
        stop = cursor.kind is Kind.STOP

        def change(found: Any, optouts: list[str], replies: int) -> Any:
            found = found or {
                "optouts": 0, "numbers": [], "campaigns": [], "files": [], "replies": 0,
                "reply_optouts": 0, "reply_campaigns": []}
            if optouts:
                found["optouts"] += len(optouts)
                room = MAX_EVENT_NUMBERS - len(found["numbers"])
                if room > 0:
                    found["numbers"] += [n for n in dict.fromkeys(optouts)
                                         if n not in found["numbers"]][:room]
                if campaign and campaign not in found["campaigns"]:
                    found["campaigns"].append(campaign)
                if cursor.name not in found["files"]:
                    found["files"].append(cursor.name)
            if replies:
                found["replies"] += replies
                found["reply_optouts"] += 0 if stop else len(optouts)
                if campaign and campaign not in found["reply_campaigns"]:
                    found["reply_campaigns"].append(campaign)
            return found

        return UNANNOUNCED, change

    # -- helpers ---------------------------------------------------------------------------

    def _campaign_pk(self, report: str) -> int | None:
        part = self.store.part_named(send_name(report))
        return part.campaign if part is not None else None

    def _campaign_id(self, pk: int | None) -> str | None:
        return self.store.campaign(pk).campaign_id if pk is not None else None

    def _copy_path(self, cursor: ReportCursor) -> Path:
        # The remote name becomes a local file name: only one of the provider's grammar,
        # which holds no "/", no "..", nothing but ASCII letters, digits, "-" and ".csv".
        if report_kind(cursor.name) is None:
            raise ValueError(f"not a report name, never a local path: {shown(cursor.name)!r}")
        return private_dir(self.settings.paths.inbox / cursor.kind.word) / cursor.name

    # -- skipped files ---------------------------------------------------------------------

    def _skipped_before(self) -> dict[str, str]:
        if self._skipped is None:
            found = self.store.fact(SKIPPED)
            self._skipped = dict(found) if isinstance(found, dict) else {}
        return self._skipped

    def _record_skipped(self, skipped: dict[str, str]) -> None:
        """Log each newly skipped file (or new reason) once; keep the fact for status.

        The fact is written only when it changes: no durable write per poll."""
        before = self._skipped_before()
        for name, reason in skipped.items():
            if before.get(name) != reason:
                log.warning("report_skipped", file=name, reason=reason)
        for name in before.keys() - skipped.keys():
            log.info("report_no_longer_skipped", file=name)
        if skipped != before:
            self.store.set_fact(SKIPPED, skipped or None)
            self._skipped = dict(skipped)

    def _number_reader(self) -> Callable[[str], str | None]:
        """The E.164 form of a number in a report, under the settings in force (asked once
        for a batch, not for each line); digits the library cannot place are kept as
        ``+<digits>`` rather than lose an opt-out."""
        normalize = self._region_numbers()[2]

        def number(raw: str) -> str | None:
            found = normalize(raw)
            if found is None and raw and not raw.startswith("+"):
                found = normalize("+" + raw)
            if found is None:
                digits = raw.removeprefix("+").removeprefix("00")
                if digits.isdigit() and digits.isascii() and 8 <= len(digits) <= 15:
                    found = "+" + digits
            return found

        return number

    def _quick_numbers(self) -> Callable[[str, Shortcut], Shortcut]:
        """The shortcut table's ``get`` (``NumberNormalizer.shortcuts``) of the default
        region in force, for a loop that decides the commonest numbers itself."""
        return self._region_numbers()[1].shortcuts().get

    def _region_numbers(self) -> tuple[str, NumberNormalizer, Callable[[str], str | None]]:
        """The default region in force, its normalizer and ``quick_normalize`` of it: made
        once for a region (its shortcut table with it)."""
        region = self.settings.campaign.default_region
        if self._numbers is None or self._numbers[0] != region:
            normalizer = NumberNormalizer(region)
            self._numbers = (region, normalizer, quick_normalize(normalizer))
        return self._numbers

    def _received_at(self, date: str, hour: str) -> str | None:
        """A report line's DATE and HOUR as written (spaces around them allowed) as a time,
        kept for the next lines with the same."""
        key = (date, hour)
        if key not in self._times:
            if len(self._times) > 100_000:
                self._times.clear()
            self._times[key] = self._parse_time(date.strip(), hour.strip())
        return self._times[key]

    def _parse_time(self, date: str, hour: str) -> str | None:
        try:
            local = datetime.datetime.strptime(date + hour.zfill(4), "%Y%m%d%H%M")
        except ValueError:
            return None
        return now_iso(local.replace(tzinfo=self.settings.tz))

    def _unreadable(self, state: _Read, line: int, field_name: str, detail: str) -> None:
        state.unreadable += 1
        if state.warnings < MAX_WARNINGS:
            state.warnings += 1
            log.warning("report_line_unreadable", file=state.cursor.name, line=line,
                        field=field_name, detail=detail)

    def _save(self, cursor: ReportCursor) -> ReportCursor:
        return self.store.save_report_cursor(cursor, self.clock())

    def _point(self, name: str, subject: str) -> None:
        if self.hooks is not None:
            self.hooks(name, subject)


async def _given_up(ahead: asyncio.Future[bytes] | None, *, cancel: bool) -> None:
    """A read ahead no longer wanted: left to end (the remote closes its file), or cancelled
    when the read itself is; its outcome dropped."""
    if ahead is None:
        return
    if cancel:
        ahead.cancel()
    with contextlib.suppress(BaseException):
        await ahead


PARTS = 2
"""Parts of a batch recorded in a worker thread: another writer seen waiting between two
parts ends the transaction (it waits a part, ~20 ms, not a whole batch). Each part costs the
recording thread a few turns of the GIL: 8 parts took 1M ACK lines 2.75 s, 2 parts 2.58 s
(another writer's longest wait beside them: 32-44 ms)."""


def _parts(start: int, stop: int) -> list[int]:
    """The ends of the parts of lines ``[start, stop)``: up to :data:`PARTS`, of 100 lines
    at least."""
    size = max(100, -(-(stop - start) // PARTS))
    return [*range(start + size, stop, size), stop]
