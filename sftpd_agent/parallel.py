"""Checking a big file on every core: the same row rules on slices, merged exactly.

The file is cut at line starts into one slice per core. This process checks the first slice
while forked workers check the others; the summaries are then merged, and a row whose number
was already valid in an earlier slice is taken off as a duplicate, exactly as the single pass
would have. Whatever the slices cannot decide alone falls back to the single pass, which is
the reference: bytes that are not UTF-8, line ends that would make line numbers drift (a lone
CR before a cut), a slice ending inside a quoted field, any unreadable slice.

Used by ``check`` (no row sink); the daemon takes campaigns in with the single pass.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .reader import CHUNK, WrongEncoding
from .validation import (
    EXAMPLES_PER_CODE,
    ErrorSink,
    RowError,
    Rules,
    Summary,
    Tracker,
    Validator,
)

MIN_BYTES = 16 << 20
"""Below this a single pass is faster than starting workers."""
MAX_WORKERS = 8


@dataclass(frozen=True, slots=True)
class _Slice:
    start: int
    end: int  # exclusive
    first_line: int


@dataclass(slots=True)
class _Result:
    summary: Summary | None  # None: the slice cannot be decided alone
    tracker: Tracker
    errors: list[RowError]


def workers_for(size: int) -> int:
    """How many slices a file of ``size`` bytes is cut into on this machine."""
    if size < MIN_BYTES or not hasattr(os, "fork"):
        return 1
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS))


Wrap = Callable[[BinaryIO, int], BinaryIO]


def validate_in_parallel(
    path: Path, validator: Validator, *, file: str, on_error: ErrorSink | None = None,
    workers: int | None = None, wrap_first: Wrap | None = None,
) -> Summary | None:
    """The summary of ``path`` checked on ``workers`` cores, or None to run the single pass.

    Errors reach ``on_error`` in file order, after all slices are done (kept in memory only
    when ``on_error`` is given). ``wrap_first`` wraps the first slice's stream, given its
    length (a progress bar).
    """
    count = workers or workers_for(path.stat().st_size)
    if count < 2:
        return None
    slices = _cut(path, count)
    if slices is None:
        return None
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=len(slices) - 1, mp_context=context) as pool:
        keep = on_error is not None
        futures = [pool.submit(_check_slice, path, validator.rules, file, piece, None,
                               keep_errors=keep)
                   for piece in slices[1:]]
        seen: set[int] = set()
        first = _check_slice(path, validator, file, slices[0], seen, keep_errors=keep,
                             wrap=wrap_first)
        results = [first] + [future.result() for future in futures]
    if any(result.summary is None or result.summary.unreadable for result in results):
        return None
    return _merge(results, seen, file, on_error)


def _check_slice(
    path: Path, validator: Validator | Rules, file: str, piece: _Slice, seen: set[int] | None,
    *, keep_errors: bool, wrap: Wrap | None = None,
) -> _Result:
    """Check one slice; in a worker, ``validator`` arrives as its (picklable) rules."""
    if isinstance(validator, Rules):
        validator = Validator(validator)
    tracker = Tracker()
    errors: list[RowError] = []
    with path.open("rb") as raw:
        stream = wrap(raw, piece.end - piece.start) if wrap else raw
        try:
            summary: Summary | None = validator.validate_slice(
                stream, file=file, start=piece.start, limit=piece.end - piece.start,
                first_line=piece.first_line, on_error=errors.append if keep_errors else None,
                track=tracker if seen is None else None, seen=seen,
            )
        except WrongEncoding:
            summary = None
    return _Result(summary, tracker, errors)


def _cut(path: Path, count: int) -> list[_Slice] | None:
    """Slices starting at line starts, with their first line numbers; None when unsafe."""
    size = path.stat().st_size
    targets = [size * i // count for i in range(1, count)]
    cuts: list[int] = [0]
    lines: list[int] = [1]
    newlines = 0
    position = 0
    pending_cr = False
    with path.open("rb") as stream:
        for target in targets:
            # Count line ends up to the target, then find the next line start after it.
            while position < target:
                chunk = stream.read(min(CHUNK * 4, target - position))
                if not chunk:
                    return None
                if not _plain_line_ends(chunk, pending_cr):
                    return None
                pending_cr = chunk.endswith(b"\r")
                newlines += chunk.count(b"\n")
                position += len(chunk)
            window = stream.read(CHUNK)
            found = window.find(b"\n")
            if found < 0 or (pending_cr and found != 0) or not _plain_line_ends(
                window[: found + 1], pending_cr
            ):
                return None
            newlines += 1
            position += found + 1
            stream.seek(position)
            pending_cr = False
            cuts.append(position)
            lines.append(newlines + 1)
    ends = [*cuts[1:], size]
    return [_Slice(start, end, line) for start, end, line in zip(cuts, ends, lines, strict=True)]


def _plain_line_ends(chunk: bytes, pending_cr: bool) -> bool:
    """Whether every CR in ``chunk`` starts a CRLF (a lone CR would shift line numbers)."""
    if b"\r" not in chunk and not pending_cr:
        return True
    if pending_cr and not chunk.startswith(b"\n"):
        return False
    body = chunk[:-1] if chunk.endswith(b"\r") else chunk
    return body.count(b"\r") == body.count(b"\r\n")


def _merge(
    results: list[_Result], seen: set[int], file: str, on_error: ErrorSink | None
) -> Summary:
    merged = Summary(file=file, encoding="utf-8")
    for index, result in enumerate(results):
        part = result.summary
        assert part is not None  # noqa: S101 - checked by the caller
        merged.header = merged.header or part.header
        merged.rows += part.rows
        merged.valid += part.valid
        merged.invalid += part.invalid
        merged.duplicates += part.duplicates
        merged.segments += part.segments
        merged.invalid_by_code.update(part.invalid_by_code)
        merged.replaced.update(part.replaced)
        for code, examples in part.examples.items():
            shown = merged.examples.setdefault(code, [])
            shown.extend(examples[: max(0, EXAMPLES_PER_CODE - len(shown))])
        if index:
            _take_off_earlier_numbers(merged, result.tracker, seen)
        if on_error is not None:
            for error in result.errors:
                on_error(error)
    return merged


def _take_off_earlier_numbers(merged: Summary, tracker: Tracker, seen: set[int]) -> None:
    """Rows valid in their slice whose number was valid in an earlier one are duplicates."""
    fresh: list[int] = []
    for index, key in enumerate(tracker.keys):
        if key in seen:
            merged.valid -= 1
            merged.duplicates += 1
            merged.segments -= tracker.parts[index]
            replaced = tracker.replaced.get(index)
            if replaced:
                merged.replaced.subtract(replaced)
        else:
            fresh.append(key)
    seen.update(fresh)
    merged.replaced += type(merged.replaced)()  # drop counts that fell to zero
