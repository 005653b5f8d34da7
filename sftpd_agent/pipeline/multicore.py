"""Checking a big file on every core: the same row rules on slices, merged exactly.

The file is cut at line starts: one big slice per core, then a few small tail slices. This
process checks the first slice while forked workers check the next big ones, with the same
validator (inherited, not pickled: its suppression list may hold a million numbers); each
process then takes tail slices, in order, until none is left, so that every core stays busy
to the end however unequal their speeds. Each slice numbers its lines from its own start (no
pass over the file first). The merge, in file order, shifts line numbers by the lines of the
slices before and takes off as duplicates the rows whose number was already valid in an
earlier slice, exactly as the single pass would have. Whatever the slices cannot decide alone
falls back to the single pass, which is the reference: bytes that are not UTF-8, a slice
ending inside a quoted field, any unreadable slice.

Used by ``check`` (no rows kept) and by the daemon, which keeps the surviving rows in the
uploaded form: each slice's process writes its valid rows to a file of its own, in order (a
row's index in its slice's tracker is its place in that file); once merged, the files are
joined in file order, each copied whole unless the merge took rows of it off as duplicates
(or ``keep_row`` left some out), whose records are then skipped.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import multiprocessing
import os
import tempfile
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from collections.abc import Set as AbstractSet
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import pairwise
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import BinaryIO, cast

from ..files import append_copy
from ..rules.campaign_file import CHUNK, ENCODINGS, WrongEncoding, read_lines
from ..rules.validation import (
    EXAMPLES_PER_CODE,
    ErrorSink,
    Row,
    RowError,
    RowSink,
    Summary,
    Tracker,
    Validator,
)

MIN_BYTES = 16 << 20
"""Below this a single pass is faster than starting workers."""
MAX_WORKERS = 8
TAIL_SHARE = 0.15
"""The part of the file left to tail slices, taken by whichever core is free."""
TAILS_PER_WORKER = 4


@dataclass(frozen=True, slots=True)
class _Slice:
    start: int
    end: int  # exclusive

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass(slots=True)
class SliceResult:
    """One slice checked alone, for :func:`merge_slices`."""

    summary: Summary | None  # None: the slice cannot be decided alone
    lines: int  # physical lines in the slice
    tracker: Tracker
    errors: list[RowError]  # numbered from the slice's start, as the summary's examples
    written: _Written | None = None  # with rows files: what the slice's file holds


@dataclass(slots=True)
class _Written:
    """What a slice's rows file holds, besides its rows."""

    unwritten: list[int] = field(default_factory=list)
    """Valid rows (their index among the slice's valid rows) left out of the file."""
    long: list[tuple[int, int]] = field(default_factory=list)
    """Records over several lines (a message with line breaks): (record, lines after its
    first), in order."""


@dataclass(frozen=True, slots=True)
class _Rows:
    """Where each slice's valid rows are written (upload form, one file per slice), and
    which of them are written: all, or those ``keep`` keeps."""

    folder: Path
    keep: Callable[[Row], bool] | None

    def of(self, index: int) -> Path:
        return self.folder / f"{index}.csv"


def workers_for(size: int, min_bytes: int | None = None) -> int:
    """How many cores work on a file of ``size`` bytes on this machine (one below
    ``min_bytes``, by default :data:`MIN_BYTES`: not worth the processes)."""
    if size < (MIN_BYTES if min_bytes is None else min_bytes) or not hasattr(os, "fork"):
        return 1
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS))


Progress = Callable[[int, int], None]
"""Told (bytes checked, bytes in all), about, as this process reads."""


def validate_in_parallel(
    path: Path, validator: Validator, *, file: str, on_error: ErrorSink | None = None,
    workers: int | None = None, progress: Progress | None = None,
    numbers: Callable[[Iterable[int]], None] | None = None,
    rows_to: BinaryIO | None = None, keep_row: Callable[[Row], bool] | None = None,
    scratch: Path | None = None,
) -> Summary | None:
    """The summary of ``path`` checked on ``workers`` cores, or None to run the single pass.

    Errors reach ``on_error`` in file order, after all slices are done (kept in memory only
    when ``on_error`` is given). ``progress`` is told how far the check is (a progress bar).
    ``numbers`` is given every distinct valid number once (E.164 digits as an int), e.g. to
    count them per time zone without reading the file again.

    ``rows_to``: the surviving rows are written there in the uploaded form, in input order,
    as :class:`UploadWriter` writes them (only those ``keep_row`` keeps, when given), byte
    for byte what the single pass's row sink would have written; nothing is written when
    None is returned. The slices' rows wait meanwhile in a temporary folder in ``scratch``
    (default: beside ``path``); none can be made there: None.
    """
    size = path.stat().st_size
    count = workers or workers_for(size)
    if count < 2:
        return None
    if rows_to is None:
        checked = _validate(path, validator, file=file, on_error=on_error, count=count,
                            progress=progress, numbers=numbers, rows=None)
        return None if checked is None else checked[0]
    try:
        folder = tempfile.TemporaryDirectory(prefix=".rows-", dir=scratch or path.parent)
    except OSError:
        return None
    with folder as name:
        rows = _Rows(Path(name), keep_row)
        off: dict[int, list[int]] = {}
        merged = _validate(path, validator, file=file, on_error=on_error, count=count,
                           progress=progress, numbers=numbers, rows=rows, off=off)
        if merged is not None:
            _join(rows, merged[1], off, rows_to)
    return None if merged is None else merged[0]


def _validate(
    path: Path, validator: Validator, *, file: str, on_error: ErrorSink | None, count: int,
    progress: Progress | None, numbers: Callable[[Iterable[int]], None] | None,
    rows: _Rows | None, off: dict[int, list[int]] | None = None,
) -> tuple[Summary, list[_Written]] | None:
    """:func:`validate_in_parallel` on ``count`` cores: the merged summary and, per slice,
    its rows left out of its rows file; ``off`` receives, per slice, the rows taken off as
    duplicates (indices among the slice's valid rows)."""
    size = path.stat().st_size
    tail_count = count * TAILS_PER_WORKER
    main = (1 - TAIL_SHARE) / count
    marks = [int(size * main * i) for i in range(1, count + 1)]
    marks += [int(size * (1 - TAIL_SHARE * (1 - i / tail_count))) for i in range(1, tail_count)]
    slices = _cut(path, marks)
    if slices is None:
        return None
    keep = on_error is not None
    context = multiprocessing.get_context("fork")
    next_tail = context.Value("i", count)  # the next slice nobody has taken
    with ProcessPoolExecutor(max_workers=count - 1, mp_context=context, initializer=_inherit,
                             initargs=(validator, next_tail, rows)) as pool:
        mains = {index: pool.submit(_work, path, file, slices, index, keep_errors=keep)
                 for index in range(1, count)}
        tails = [pool.submit(_work, path, file, slices, None, keep_errors=keep)
                 for _ in range(1, count)]  # in each worker after its main slice
        seen: set[int] = set()
        reading = _Reading.maker(slices, count, size, progress)
        results = {0: _check_slice(path, validator, file, slices, 0, seen=seen,
                                   keep_errors=keep, wrap=reading(0), rows=rows)}
        in_first: dict[int, list[int]] = {}  # rows of a slice whose number the first has
        for index in taken(next_tail, len(slices)):
            # Between two tails, the merge's biggest part for the main slices done.
            _against_first(mains, results, seen, in_first, done_only=True)
            results[index] = _check_slice(path, validator, file, slices, index, seen=None,
                                          keep_errors=keep, wrap=reading(index), rows=rows)
        for future in tails:
            results.update(future.result())
        _against_first(mains, results, seen, in_first, done_only=False)
    ordered = [results[index] for index in range(len(slices))]
    if any(result.summary is None or result.summary.unreadable for result in ordered):
        return None
    merged = merge_slices(ordered, seen, in_first, file=file, on_error=on_error,
                    suppressed=validator.suppressed, off=off)
    if numbers is not None:
        numbers(seen.union(*(result.tracker.keys for result in ordered[1:])))
    return merged, [result.written or _Written() for result in ordered]


def _against_first(mains: dict[int, Future[dict[int, SliceResult]]],
                   results: dict[int, SliceResult], seen: set[int],
                   in_first: dict[int, list[int]], *, done_only: bool) -> None:
    """Collect the main slices checked by workers (those done, or all), and find their rows
    whose number the first slice has."""
    for index, future in mains.items():
        if index not in results and (future.done() or not done_only):
            results.update(future.result())
            keys = results[index].tracker.keys
            common = seen.intersection(keys)
            in_first[index] = [row for row, key in enumerate(keys) if key in common] if (
                common) else []


_inherited: dict[str, object] = {}
"""In a worker process only: what the process that forked it handed down."""


def _inherit(validator: Validator, next_tail: Synchronized[int], rows: _Rows | None) -> None:
    """A worker's initializer: with fork, its arguments are inherited, not pickled."""
    _inherited.update(validator=validator, next_tail=next_tail, rows=rows)


def _work(path: Path, file: str, slices: list[_Slice], index: int | None, *,
          keep_errors: bool) -> dict[int, SliceResult]:
    """In a worker: check slice ``index``, or tail slices until none is left."""
    validator = cast(Validator, _inherited["validator"])
    next_tail = cast("Synchronized[int]", _inherited["next_tail"])
    rows = cast("_Rows | None", _inherited["rows"])
    mine = [index] if index is not None else taken(next_tail, len(slices))
    return {taken_index: _check_slice(path, validator, file, slices, taken_index, seen=None,
                                      keep_errors=keep_errors, rows=rows)
            for taken_index in mine}


def taken(next_free: Synchronized[int], count: int) -> Iterable[int]:
    """The pieces of work (of ``count``) this process takes, one at a time, from the shared
    counter of the next one nobody has, until none is left."""
    while True:
        with next_free.get_lock():
            index = next_free.value
            next_free.value = index + 1
        if index >= count:
            return
        yield index


def _check_slice(
    path: Path, validator: Validator, file: str, slices: list[_Slice], index: int, *,
    seen: set[int] | None, keep_errors: bool,
    wrap: Callable[[BinaryIO], BinaryIO] | None = None, rows: _Rows | None = None,
) -> SliceResult:
    """Check slice ``index``: into ``seen`` (the first), else with a tracker of its valid
    rows; with ``rows``, write its valid rows to its rows file."""
    piece = slices[index]
    tracker = Tracker()
    errors: list[RowError] = []
    with path.open("rb") as raw, _slice_rows(rows, index) as (on_row, written):
        stream = wrap(raw) if wrap else raw
        try:
            summary, lines = _validate_slice(
                validator, stream, file=file, start=piece.start, limit=piece.length,
                on_error=errors.append if keep_errors else None,
                track=tracker if seen is None else None, seen=seen, on_row=on_row,
            )
        except WrongEncoding:
            return SliceResult(None, 0, tracker, errors)
    return SliceResult(summary, lines, tracker, errors, written)


def _validate_slice(
    validator: Validator, stream: BinaryIO, *, file: str, start: int, limit: int,
    on_error: ErrorSink | None, track: Tracker | None, seen: set[int] | None,
    on_row: RowSink | None,
) -> tuple[Summary, int]:
    """Check the UTF-8 rows of ``limit`` bytes of ``stream`` from byte ``start``, a line
    start; lines numbered from the slice's start (the caller adds the lines of the slices
    before), a BOM and a header looked for only at the file's start."""
    stream.seek(start)
    lines = read_lines(stream, ENCODINGS[0], limit=limit, at_start=start == 0)
    return validator.validate_lines(lines, file=file, header=start == 0, on_row=on_row,
                                    on_error=on_error, track=track, seen=seen)


@contextmanager
def _slice_rows(rows: _Rows | None, index: int,
                ) -> Iterator[tuple[RowSink | None, _Written | None]]:
    """The row sink writing slice ``index``'s valid rows to its file, and what the file
    will hold besides (None, None without ``rows``)."""
    if rows is None:
        yield None, None
        return
    with rows.of(index).open("wb") as out:
        writer = _RowsWriter(out)
        written = _Written(long=writer.long)
        keep = rows.keep
        if keep is None:
            yield writer.write, written
        else:
            write = writer.write
            left_out = written.unwritten.append
            counted = 0

            def sink(row: Row) -> None:
                nonlocal counted
                if keep(row):
                    write(row)
                else:
                    left_out(counted)
                counted += 1

            yield sink, written
        writer.flush()


FLUSH_ROWS = 8192
"""Rows joined and encoded together before they are written."""


class _RowsWriter:
    """Writes rows in the uploaded form byte for byte as :class:`.upload_file.UploadWriter`
    does, at a fraction of its cost: joined directly, a batch at a time, the message quoted
    as :mod:`csv` quotes a field (when it holds a double quote, ``;`` or a line break); a row
    whose other fields would need quoting (never seen) goes through :mod:`csv` itself.
    ``long`` lists the records written over several lines."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._batch: list[str] = []
        self._quoted = io.StringIO()
        self._csv = csv.writer(self._quoted, delimiter=";", quotechar='"',
                               quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
        self.rows = 0
        self.long: list[tuple[int, int]] = []

    def write(self, row: Row) -> None:
        head = f"{row.idremote};{row.msisdn};{row.oadc};"
        text = row.text
        if '"' in head or "\n" in head or "\r" in head or head.count(";") != 3:
            self._quoted.seek(0)  # not seen: these three fields are letters, digits and +
            self._quoted.truncate()
            self._csv.writerow((row.idremote, row.msisdn, row.oadc, text))
            self._line(self._quoted.getvalue()[:-2])
        elif ";" in text or '"' in text or "\n" in text or "\r" in text:
            self._line(head + '"' + text.replace('"', '""') + '"')  # as csv quotes a field
        else:
            self._batch.append(head + text)
        self.rows += 1
        if len(self._batch) >= FLUSH_ROWS:
            self.flush()

    def _line(self, line: str) -> None:
        if "\n" in line:
            self.long.append((self.rows, line.count("\n")))
        self._batch.append(line)

    def flush(self) -> None:
        if self._batch:
            self._out.write(("\r\n".join(self._batch) + "\r\n").encode())
            self._batch.clear()


def _join(rows: _Rows, written: list[_Written], off: dict[int, list[int]],
          out: BinaryIO) -> None:
    """The slices' rows files into ``out``, in order, without the rows taken off (what is
    copied whole, copied by the kernel when ``out`` is a file)."""
    for index, holds in enumerate(written):
        skip = _places(sorted(off.get(index, ())), holds.unwritten)
        with rows.of(index).open("rb") as source:
            if skip:
                _copy_without(source, out, _lines(skip, holds.long))
            at = source.tell()
            append_copy(source, out, at, os.fstat(source.fileno()).st_size - at)


def _places(taken_off: list[int], left_out: list[int]) -> list[int]:
    """The places in a rows file of the rows ``taken_off`` (sorted indices among the
    slice's valid rows), the file lacking the rows ``left_out`` (sorted)."""
    if not left_out:
        return taken_off
    absent = set(left_out)
    return [row - bisect_left(left_out, row) for row in taken_off if row not in absent]


def _lines(places: list[int], long: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The records at ``places`` (sorted) of a rows file as (first line, lines), numbered
    from 0; ``long``: its records over several lines, (record, lines after its first)."""
    spans = []
    extra = 0  # lines after their first of the long records before ``place``
    at = 0  # the first long record not passed yet
    for place in places:
        while at < len(long) and long[at][0] < place:
            extra += long[at][1]
            at += 1
        lines = 1 + long[at][1] if at < len(long) and long[at][0] == place else 1
        spans.append((place + extra, lines))
    return spans


def _copy_without(source: BinaryIO, out: BinaryIO, spans: list[tuple[int, int]]) -> None:
    """Copy the lines of ``source`` to ``out`` up to the last of ``spans``, but those
    ``spans`` (first line from 0, lines; sorted, apart). A block at a time, split and joined
    in C: a line is never handled alone in Python."""
    skipped = iter([line for first, lines in spans for line in range(first, first + lines)])
    next_skipped = next(skipped, -1)
    at = 0  # the line ``rest`` starts
    rest = b""  # the start of a line not ended in the blocks read
    while next_skipped >= 0:
        block = source.read(CHUNK)
        if not block:
            raise ValueError("a rows file is shorter than its rows")
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        kept = 0  # lines of this block written or skipped
        while 0 <= next_skipped < at + len(lines):
            line = next_skipped - at
            if line > kept:
                out.write(b"\n".join(lines[kept:line]) + b"\n")
            kept = line + 1
            next_skipped = next(skipped, -1)
        if kept < len(lines):
            out.write(b"\n".join(lines[kept:]) + b"\n")
        at += len(lines)
    out.write(rest)


def _cut(path: Path, marks: list[int]) -> list[_Slice] | None:
    """Slices starting at the first line start after each mark (after an LF: a CRLF is never
    cut), maybe empty; None when a line is too long to find its end."""
    size = path.stat().st_size
    cuts = [0]
    with path.open("rb") as stream:
        for mark in marks:
            target = max(mark, cuts[-1])
            stream.seek(target)
            window = stream.read(CHUNK)
            found = window.find(b"\n")
            if found < 0 and len(window) == CHUNK:
                return None
            cuts.append(size if found < 0 else target + found + 1)
    return [_Slice(start, end) for start, end in pairwise([*cuts, size])]


class _Reading:
    """A stream that tells ``progress`` how far the whole check is, about, as it is read."""

    def __init__(self, raw: BinaryIO, before: int, factor: int, size: int,
                 progress: Progress) -> None:
        self._raw = raw
        self._before = before  # bytes checked before this slice, by every process
        self._factor = factor  # processes reading as fast as this one, for the first slices
        self._size = size
        self._progress = progress
        self._start = 0

    @classmethod
    def maker(cls, slices: list[_Slice], count: int, size: int, progress: Progress | None,
              ) -> Callable[[int], Callable[[BinaryIO], BinaryIO] | None]:
        """What wraps the stream of slice ``index`` in this process: the first slices are
        read by all processes at once, the tails in order."""
        def wrap(index: int) -> Callable[[BinaryIO], BinaryIO] | None:
            if progress is None:
                return None
            if index == 0:
                return lambda raw: cast(BinaryIO, cls(raw, 0, count, size, progress))
            before = slices[index].start
            return lambda raw: cast(BinaryIO, cls(raw, before, 1, size, progress))
        return wrap

    def seek(self, offset: int, whence: int = 0) -> int:
        self._start = self._raw.seek(offset, whence)
        return self._start

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        done = self._before + self._factor * (self._raw.tell() - self._start)
        self._progress(min(done, self._size), self._size)
        return data


def merge_slices(
    results: list[SliceResult], seen: set[int], in_first: dict[int, list[int]], *, file: str,
    on_error: ErrorSink | None, suppressed: AbstractSet[str] | None,
    off: dict[int, list[int]] | None = None,
) -> Summary:
    """The slices' summaries as one, in file order.

    ``seen`` holds the first slice's valid numbers, ``in_first`` what is known already of
    the rows of other slices whose number is one of them. ``off`` receives, per slice, the
    rows taken off as duplicates of an earlier slice's (indices in its tracker).
    """
    merged = Summary(file=file, encoding="utf-8")
    if suppressed is not None:
        merged.suppressed = 0
    repeated = _repeated([result.tracker.keys for result in results[1:]])
    kept: set[int] = set()  # numbers of ``repeated`` met in a slice before, in file order
    offset = 0  # lines in the slices before
    for index, result in enumerate(results):
        part = result.summary
        assert part is not None  # noqa: S101 - checked by the caller
        merged.header = merged.header or part.header
        merged.rows += part.rows
        merged.valid += part.valid
        merged.invalid += part.invalid
        merged.duplicates += part.duplicates
        merged.segments += part.segments
        merged.per_row.update(part.per_row)
        merged.optout_appended += part.optout_appended
        if merged.suppressed is not None and part.suppressed is not None:
            merged.suppressed += part.suppressed
        merged.invalid_by_code.update(part.invalid_by_code)
        merged.replaced.update(part.replaced)
        for code, examples in part.examples.items():
            shown = merged.examples.setdefault(code, [])
            shown.extend(_shifted(error, offset)
                         for error in examples[: max(0, EXAMPLES_PER_CODE - len(shown))])
        if index:
            keys = result.tracker.keys
            rows = in_first.get(index)
            if rows is None:
                common = seen.intersection(keys)
                rows = [row for row, key in enumerate(keys) if key in common] if common else []
            rows += _met_before(keys, seen, repeated, kept, first=index == 1)
            _take_off(merged, result.tracker, rows, suppressed)
            if off is not None and rows:
                off[index] = rows
        if on_error is not None:
            for error in result.errors:
                on_error(_shifted(error, offset))
        offset += result.lines
    return merged


def _repeated(slices: list[array[int]]) -> set[int]:
    """The numbers valid in more than one of ``slices`` (a slice's numbers are distinct).

    The biggest slice's numbers are only looked up, never put in a set: putting hundreds of
    thousands of numbers in a set is the cost the merge must keep small.
    """
    repeated: set[int] = set()
    if len(slices) < 2:
        return repeated
    biggest = max(slices, key=len)
    others: set[int] = set()
    for keys in slices:
        if keys is not biggest:
            repeated |= others.intersection(keys)
            others.update(keys)
    return repeated | others.intersection(biggest)


def _met_before(keys: array[int], seen: set[int], repeated: set[int], kept: set[int], *,
                first: bool) -> list[int]:
    """The rows (indices in ``keys``) whose number, not the first slice's, was valid in
    another slice before: ``kept`` holds the ``repeated`` numbers met so far, in file order.
    In the ``first`` slice after the first, every one is met for the first time."""
    mine = repeated.intersection(keys) - seen if repeated else None
    if not mine:
        return []
    if first:
        kept |= mine
        return []
    rows = []
    for row in [row for row, key in enumerate(keys) if key in mine]:
        if keys[row] in kept:
            rows.append(row)
        else:
            kept.add(keys[row])
    return rows


def _take_off(merged: Summary, tracker: Tracker, rows: list[int],
              suppressed: AbstractSet[str] | None) -> None:
    """Take off ``rows`` of ``tracker`` (by index), valid in their slice, as duplicates."""
    keys, parts, replaced, appended = (tracker.keys, tracker.parts, tracker.replaced,
                                       tracker.appended)
    for index in rows:
        merged.valid -= 1
        merged.duplicates += 1
        merged.segments -= parts[index]
        merged.per_row[parts[index]] -= 1
        if appended and appended[index]:
            merged.optout_appended -= 1
        if index in replaced:
            merged.replaced.subtract(replaced[index])
        if merged.suppressed is not None and suppressed and f"+{keys[index]}" in suppressed:
            merged.suppressed -= 1
    if rows:
        merged.replaced += type(merged.replaced)()  # drop counts that fell to zero


def _shifted(error: RowError, offset: int) -> RowError:
    return dataclasses.replace(error, line=error.line + offset) if offset else error
