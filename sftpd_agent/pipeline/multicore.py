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

Used by ``check`` (no row sink); the daemon takes campaigns in with the single pass.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from array import array
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from itertools import pairwise
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import BinaryIO, cast

from ..rules.campaign_file import CHUNK, WrongEncoding
from ..rules.validation import EXAMPLES_PER_CODE, ErrorSink, RowError, Summary, Tracker, Validator

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
class _Result:
    summary: Summary | None  # None: the slice cannot be decided alone
    lines: int  # physical lines in the slice
    tracker: Tracker
    errors: list[RowError]  # numbered from the slice's start, as the summary's examples


def workers_for(size: int) -> int:
    """How many cores check a file of ``size`` bytes on this machine."""
    if size < MIN_BYTES or not hasattr(os, "fork"):
        return 1
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS))


Progress = Callable[[int, int], None]
"""Told (bytes checked, bytes in all), about, as this process reads."""


def validate_in_parallel(
    path: Path, validator: Validator, *, file: str, on_error: ErrorSink | None = None,
    workers: int | None = None, progress: Progress | None = None,
    numbers: Callable[[Iterable[int]], None] | None = None,
) -> Summary | None:
    """The summary of ``path`` checked on ``workers`` cores, or None to run the single pass.

    Errors reach ``on_error`` in file order, after all slices are done (kept in memory only
    when ``on_error`` is given). ``progress`` is told how far the check is (a progress bar).
    ``numbers`` is given every distinct valid number once (E.164 digits as an int), e.g. to
    count them per time zone without reading the file again.
    """
    size = path.stat().st_size
    count = workers or workers_for(size)
    if count < 2:
        return None
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
                             initargs=(validator, next_tail)) as pool:
        mains = {index: pool.submit(_work, path, file, slices, index, keep_errors=keep)
                 for index in range(1, count)}
        tails = [pool.submit(_work, path, file, slices, None, keep_errors=keep)
                 for _ in range(1, count)]  # in each worker after its main slice
        seen: set[int] = set()
        reading = _Reading.maker(slices, count, size, progress)
        results = {0: _check_slice(path, validator, file, slices[0], seen, keep_errors=keep,
                                   wrap=reading(0))}
        in_first: dict[int, list[int]] = {}  # rows of a slice whose number the first has
        for index in _taken(next_tail, len(slices)):
            # Between two tails, the merge's biggest part for the main slices done.
            _against_first(mains, results, seen, in_first, done_only=True)
            results[index] = _check_slice(path, validator, file, slices[index], None,
                                          keep_errors=keep, wrap=reading(index))
        for future in tails:
            results.update(future.result())
        _against_first(mains, results, seen, in_first, done_only=False)
    ordered = [results[index] for index in range(len(slices))]
    if any(result.summary is None or result.summary.unreadable for result in ordered):
        return None
    merged = _merge(ordered, seen, in_first, file=file, on_error=on_error,
                    suppressed=validator.suppressed)
    if numbers is not None:
        numbers(seen.union(*(result.tracker.keys for result in ordered[1:])))
    return merged


def _against_first(mains: dict[int, Future[dict[int, _Result]]], results: dict[int, _Result],
                   seen: set[int], in_first: dict[int, list[int]], *, done_only: bool) -> None:
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


def _inherit(validator: Validator, next_tail: Synchronized[int]) -> None:
    """A worker's initializer: with fork, its arguments are inherited, not pickled."""
    _inherited.update(validator=validator, next_tail=next_tail)


def _work(path: Path, file: str, slices: list[_Slice], index: int | None, *,
          keep_errors: bool) -> dict[int, _Result]:
    """In a worker: check slice ``index``, or tail slices until none is left."""
    validator = cast(Validator, _inherited["validator"])
    next_tail = cast("Synchronized[int]", _inherited["next_tail"])
    taken = [index] if index is not None else _taken(next_tail, len(slices))
    return {taken_index: _check_slice(path, validator, file, slices[taken_index], None,
                                      keep_errors=keep_errors)
            for taken_index in taken}


def _taken(next_tail: Synchronized[int], count: int) -> Iterable[int]:
    """The tail slices this process takes, one at a time, until none is left."""
    while True:
        with next_tail.get_lock():
            index = next_tail.value
            next_tail.value = index + 1
        if index >= count:
            return
        yield index


def _check_slice(
    path: Path, validator: Validator, file: str, piece: _Slice, seen: set[int] | None,
    *, keep_errors: bool, wrap: Callable[[BinaryIO], BinaryIO] | None = None,
) -> _Result:
    """Check one slice: into ``seen`` (the first), else with a tracker of its valid rows."""
    tracker = Tracker()
    errors: list[RowError] = []
    with path.open("rb") as raw:
        stream = wrap(raw) if wrap else raw
        try:
            summary, lines = validator.validate_slice(
                stream, file=file, start=piece.start, limit=piece.length,
                on_error=errors.append if keep_errors else None,
                track=tracker if seen is None else None, seen=seen,
            )
        except WrongEncoding:
            return _Result(None, 0, tracker, errors)
    return _Result(summary, lines, tracker, errors)


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


def _merge(
    results: list[_Result], seen: set[int], in_first: dict[int, list[int]], *, file: str,
    on_error: ErrorSink | None, suppressed: AbstractSet[str] | None,
) -> Summary:
    """The slices' summaries as one, in file order.

    ``seen`` holds the first slice's valid numbers, ``in_first`` what is known already of
    the rows of other slices whose number is one of them.
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
