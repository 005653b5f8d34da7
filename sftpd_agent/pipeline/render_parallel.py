"""Rendering a big contact export on every core: the same files, byte for byte.

    contacts.csv --cut at record boundaries--> spans, each with the number of its first line
        --render_part, the first span here into rendered.csv itself, the others by forked
          workers and this process alike (whoever is free takes the next)--> a part file of
          provider rows and of contact map rows per span
        --in file order--> rendered.csv and contacts.map.csv, one LineMap, the rejected rows,
                           the first rows and the longest, as the single pass gives them

A cut is a line start (after a LF, so a CRLF is never cut) where the count of ``"`` before
it is even: in RFC 4180 a line break is inside quotes iff that count is odd. A stray quote
inside an unquoted value can fool the count, but never silently: a span that ends inside a
quoted value fails (the strict CSV reader will not end a record there), and any span that
fails sends the whole file back to the single pass, the reference, which reports the file's
error exactly. Line numbers are those of the whole file (line ends counted before each cut
as the reader counts them: CRLF, CR and LF), so generated IDREMOTEs ``L<line>`` and errors
come out as the single pass writes them.

A CRM id is the IDREMOTE only if no row before it in the FILE used it: each span is rendered
alone, then the hashes of the spans' ids are compared; when an id may be in two spans, every
span is rendered again, here, in order, each from the ids of the spans before (the single
pass's way). Rare: a CRM export's ids are unique.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import shutil
from array import array
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from itertools import chain
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import BinaryIO, Protocol, TextIO, cast

from ..errors import InputError
from ..rules.campaign_file import CHUNK, as_read
from ..rules.contacts import (
    Batch,
    ContactsFormat,
    LineMap,
    Part,
    Rendered,
    Span,
    render_batches,
    render_part,
)
from ..rules.template import Template
from ..rules.validation import RowError, Tracker, Validator
from .intake import Checked
from .manifests import PREVIEW_ROWS, Described, Rendering, open_contact_map
from .multicore import SliceResult, merge_slices, taken
from .multicore import workers_for as cores_for

MIN_BYTES = 4 << 20
"""Below this the single pass is about as fast as starting workers."""
SPANS_PER_WORKER = 3
"""Spans per process: whoever is free takes the next, so that a slower core holds no one up."""


def workers_for(size: int) -> int:
    """How many cores render a contacts file of ``size`` bytes on this machine."""
    return cores_for(size, MIN_BYTES)


def render_in_parallel(described: Described, out_path: Path, map_to: Path | None, *,
                       workers: int | None = None) -> Rendering | None:
    """:func:`.manifests.render_to`'s :class:`.manifests.Rendering` of ``described``, and its
    files (``out_path``, ``map_to`` when given) byte for byte, rendered on ``workers`` cores;
    None when the file is too small, cannot be cut, or a span fails: then the caller renders
    with the single pass (which raises what the file's error is)."""
    contacts, fmt = described.contacts, described.format
    cut_for = _spans_of(described, workers)
    if cut_for is None:
        return None
    spans, processes = cut_for
    job = _Job(contacts, fmt, described.template, spans, out_path, map_to)
    try:
        done = _render_all(job, processes)
        if done is None:
            return None
        return _join(job, done)
    except (InputError, OSError, BrokenProcessPool):
        return None
    finally:
        for index in range(1, len(spans)):
            job.rows_file(index).unlink(missing_ok=True)
            if map_to is not None:
                job.map_file(index).unlink(missing_ok=True)
        if map_to is not None:
            job.map_file(0).unlink(missing_ok=True)


def check_in_parallel(described: Described, validator: Validator, out_path: Path, *,
                      keep_errors: bool, workers: int | None = None,
                      ) -> tuple[Checked, Rendering] | None:
    """``described``'s contacts rendered and checked at once on ``workers`` cores, the rows
    never written: what :func:`.intake.take_in` of the rendered file would find (the
    :class:`.intake.Checked` to give it, the errors kept when ``keep_errors``), and the
    :class:`.manifests.Rendering` of ``out_path`` but for the file itself (not written).
    ``check``'s way, which keeps no row. None as for :func:`render_in_parallel`, or when a
    span's rows cannot be checked alone: then the caller renders the file and checks it."""
    contacts, fmt = described.contacts, described.format
    cut_for = _spans_of(described, workers)
    if cut_for is None:
        return None
    spans, processes = cut_for
    # Nothing a check says depends on which IDREMOTE a row gets (a CRM id, or L<line> when
    # it has none or one used before: never an invalid one), so the rows are rendered as if
    # the file had no id column: no ids to keep per span, none to compare across spans.
    job = _CheckJob(contacts, dataclasses.replace(fmt, id=None), described.template, spans,
                    validator, described.plan_name, keep_errors)
    try:
        done = _render_all(job, processes)
        if done is None:
            return None
    except (InputError, OSError, BrokenProcessPool):
        return None
    results = [cast(SliceResult, item.checked) for item in done]
    errors: list[RowError] = []
    summary = merge_slices(results, job.seen, {}, file=job.file,
                           on_error=errors.append if keep_errors else None,
                           suppressed=validator.suppressed)
    seen = job.seen

    def numbers() -> Iterable[int]:
        return seen.union(*(result.tracker.keys for result in results[1:]))

    return (Checked(summary, errors, numbers),
            _rendering(out_path, fmt, [item.part for item in done]))


# -- Cutting ---------------------------------------------------------------------------------


def _spans_of(described: Described, workers: int | None) -> tuple[list[Span], int] | None:
    """``described``'s contacts cut for ``workers`` cores (by default, as many as its size
    is worth), and the processes to do them; None when one core is enough or the file cannot
    be cut."""
    size = described.contacts.stat().st_size
    count = workers or workers_for(size)
    if count < 2 or size < MIN_BYTES:
        return None
    spans = cut(described.contacts, count * SPANS_PER_WORKER, described.format.header_line)
    return (spans, min(count, len(spans))) if len(spans) >= 2 else None


def cut(path: Path, count: int, header_line: int = 1) -> list[Span]:
    """``path`` cut in about ``count`` spans of equal size, each starting at a line start
    after the header where the ``"`` before it are even; fewer (one: the whole file) when no
    such line start follows a mark. One read of the file, counting bytes per block."""
    size = path.stat().st_size
    marks = [size * i // count for i in range(1, count)]
    cuts = [(0, 1)]  # (byte, its line)
    at = lines = quotes = 0  # before the block
    with path.open("rb") as stream:
        while marks and (block := _block(stream)):
            end = at + len(block)
            while marks and marks[0] < end:
                found = _even_line_start(block, max(marks[0] - at, 0), quotes)
                if found < 0:
                    marks[0] = end  # the next block's first line start
                    break
                line = 1 + lines + _line_ends(block, found)
                if at + found > cuts[-1][0] and line > header_line:
                    cuts.append((at + found, line))
                marks.pop(0)
            at, lines, quotes = end, lines + _line_ends(block, len(block)), \
                quotes + block.count(b'"')
    bounds = [*cuts[1:], (size, 0)]
    return [Span(start, end, line) for (start, line), (end, _) in zip(cuts, bounds, strict=True)
            if end > start]


def _block(stream: BinaryIO) -> bytes:
    """The next block of ``stream``, never ending with a CR (a CRLF is counted whole)."""
    block = stream.read(CHUNK)
    while block.endswith(b"\r") and (more := stream.read(1)):
        block += more
    return block


def _even_line_start(block: bytes, start: int, quotes: int) -> int:
    """The first line start after a LF at or after ``start`` in ``block`` with an even count
    of ``"`` before it (``quotes`` before the block); -1 when none is in the block."""
    found = block.find(b"\n", start)
    while found >= 0 and (quotes + block.count(b'"', 0, found)) % 2:
        found = block.find(b"\n", found + 1)
    return found + 1 if found >= 0 else -1


def _line_ends(block: bytes, end: int) -> int:
    """Line ends in ``block[:end]`` as the reader counts them: CRLF, CR and LF each one."""
    crs = block.count(b"\r", 0, end)
    lfs = block.count(b"\n", 0, end)
    return lfs + crs - block.count(b"\r\n", 0, end) if crs else lfs


# -- Rendering the spans ---------------------------------------------------------------------


@dataclass(slots=True)
class _Done:
    part: Part
    """What the span made (its ``used`` ids let go: see ``ids``)."""
    ids: array[int]
    """The hashes of the span's IDREMOTEs (8 bytes each, one object to pickle: a million
    ids as strings took 125 MB in this process). A forked worker hashes as this process."""
    checked: SliceResult | None = None
    """The span's rows checked (when rendered to be checked, not written)."""


class _Spans(Protocol):
    """Work done span by span, the same in this process and in a worker."""

    @property
    def spans(self) -> list[Span]: ...

    @property
    def format(self) -> ContactsFormat: ...

    def do(self, index: int, used: set[str] | None = None) -> _Done:
        """Span ``index`` rendered (again, when ``used`` is given: the ids before it)."""
        ...


@dataclass(frozen=True)
class _Job:
    """Rendering spans into part files, joined afterwards."""

    contacts: Path
    format: ContactsFormat
    template: Template
    spans: list[Span]
    out_path: Path
    map_to: Path | None

    def rows_file(self, index: int) -> Path:
        """Where span ``index`` writes its rows: the first into the target itself."""
        if not index:
            return self.out_path
        return self.out_path.with_name(f".{self.out_path.name}.{index}.part")

    def map_file(self, index: int) -> Path:
        return self.out_path.with_name(f".{self.out_path.name}.{index}.map.part")

    def do(self, index: int, used: set[str] | None = None) -> _Done:
        """Render span ``index`` into its part files (again, if it was)."""
        with self.rows_file(index).open("wb") as out:
            if self.map_to is None:
                part = render_part(self.contacts, self.format, self.template, out,
                                   span=self.spans[index], used=used, preview=PREVIEW_ROWS)
            else:
                with self.map_file(index).open("w", encoding="utf-8", newline="") as mapped:
                    part = render_part(self.contacts, self.format, self.template, out,
                                       span=self.spans[index], used=used,
                                       contact_map=mapped, preview=PREVIEW_ROWS)
        return _done(part)


@dataclass(frozen=True)
class _CheckJob:
    """Rendering spans and checking their rows as they come, nothing written."""

    contacts: Path
    format: ContactsFormat
    template: Template
    spans: list[Span]
    validator: Validator
    file: str
    keep_errors: bool
    seen: set[int] = field(default_factory=set)
    """The first span's valid numbers (it is checked in this process)."""

    def do(self, index: int, used: set[str] | None = None) -> _Done:
        """Render span ``index`` and check its rows (again, if it was): the first span
        into ``seen``, any other with a tracker, as :mod:`.multicore` checks slices."""
        batches = render_batches(self.contacts, self.format, self.template,
                                 span=self.spans[index], used=used, preview=PREVIEW_ROWS)
        parts: list[Part] = []
        tracker = Tracker()
        errors: list[RowError] = []
        summary, lines = self.validator.validate_lines(
            chain.from_iterable(_as_read(batches, parts)), file=self.file,
            header=not index, on_error=errors.append if self.keep_errors else None,
            track=tracker if index else None, seen=None if index else self.seen)
        if summary.unreadable or not parts:  # the rendering failed: the reference will say
            raise InputError(summary.unreadable or "not rendered")
        return _done(parts[0], SliceResult(summary, lines, tracker, errors))


def _as_read(batches: Generator[Batch, None, Part], parts: list[Part]) -> Iterator[list[str]]:
    """The lines of ``batches`` as a file of them would be read; their :class:`Part` into
    ``parts`` once all are rendered."""
    while True:
        try:
            batch = next(batches)
        except StopIteration as done:
            parts.append(done.value)
            return
        yield as_read(batch.rows, breaks=batch.breaks)


_inherited: dict[str, object] = {}
"""In a worker process only: what the process that forked it handed down."""


def _inherit(job: _Spans, next_span: Synchronized[int]) -> None:
    """A worker's initializer: with fork, its arguments are inherited, not pickled (the
    template holds functions, the validator a suppression list)."""
    _inherited.update(job=job, next_span=next_span)


def _render_all(job: _Spans, count: int) -> list[_Done] | None:
    """Every span done: the first here, the others by whoever is free; None when a span
    cannot be done alone (the single pass will say why)."""
    context = multiprocessing.get_context("fork")
    next_span = context.Value("i", 1)  # the next span nobody has taken
    done: dict[int, _Done | None] = {}
    with ProcessPoolExecutor(max_workers=count - 1, mp_context=context, initializer=_inherit,
                             initargs=(job, next_span)) as pool:
        futures = [pool.submit(_work) for _ in range(count - 1)]
        for index in chain((0,), taken(next_span, len(job.spans))):
            try:
                done[index] = job.do(index)
            except InputError:
                done[index] = None
                break
        for future in futures:
            done.update(future.result())
    if len(done) < len(job.spans) or any(item is None for item in done.values()):
        return None
    return [cast(_Done, done[index]) for index in range(len(job.spans))]


def _work() -> dict[int, _Done | None]:
    """In a worker: do spans until none is left (or one fails)."""
    job = cast(_Spans, _inherited["job"])
    next_span = cast("Synchronized[int]", _inherited["next_span"])
    done: dict[int, _Done | None] = {}
    for index in taken(next_span, len(job.spans)):
        try:
            item = job.do(index)
        except InputError:
            done[index] = None
            break
        done[index] = item
    return done


# -- Joining ---------------------------------------------------------------------------------


def _join(job: _Job, done: list[_Done]) -> Rendering:
    """The spans' parts as one, in file order: a span that used an IDREMOTE of the spans
    before is rendered again first."""
    _unique_ids(job, done)
    with job.out_path.open("ab") as out:
        for index in range(1, len(done)):
            _append(out, job.rows_file(index))
    if job.map_to is not None:
        _write_map(job.map_to, [job.map_file(index) for index in range(len(done))])
    return _rendering(job.out_path, job.format, [item.part for item in done])


def _rendering(path: Path, fmt: ContactsFormat, parts: list[Part]) -> Rendering:
    """The :class:`.manifests.Rendering` of the spans' ``parts``, in file order."""
    lines = LineMap(fmt.header_line)
    rejected: list[RowError] = []
    first: list[Rendered] = []
    longest: Rendered | None = None
    for part in parts:
        lines.extend(part.lines)
        rejected.extend(part.rejected)
        first.extend(part.first[:PREVIEW_ROWS - len(first)])
        if part.longest is not None and (
                longest is None or len(part.longest.message) > len(longest.message)):
            longest = part.longest
    return Rendering(path, lines, fmt, rejected, first, longest)


def _done(part: Part, checked: SliceResult | None = None) -> _Done:
    """A span done: its ids kept as hashes, the set of them let go."""
    ids = array("q", map(hash, part.used))
    part.used = set()
    return _Done(part, ids, checked)


def _unique_ids(job: _Spans, done: list[_Done]) -> None:
    """When an IDREMOTE is in two spans (their hashes say it may be), do every span again,
    here, in order, each from the ids of the spans before: what the single pass does. (Rare:
    a CRM export's ids are unique; a false alarm of the hashes only costs that time.)"""
    if job.format.id is None:
        return  # every IDREMOTE is L<line>
    together: set[int] = set()
    for item in done:
        together.update(item.ids)
    if len(together) == sum(len(item.ids) for item in done):
        return
    del together
    before: set[str] = set()
    for index in range(len(done)):
        done[index] = job.do(index, used=before)  # which adds the span's ids to ``before``
def _append(out: BinaryIO, part: Path) -> None:
    """Append the file ``part`` at the end of ``out`` (in the kernel where it can)."""
    out.flush()
    start = out.seek(0, os.SEEK_END)
    with part.open("rb") as source:
        size = os.fstat(source.fileno()).st_size
        copied = 0
        try:
            while copied < size:
                sent = os.sendfile(out.fileno(), source.fileno(), copied, size - copied)
                if not sent:
                    break
                copied += sent
        except OSError:
            copied = -1
        if copied != size:  # no sendfile between files here: copy it again, the usual way
            out.seek(start)
            out.truncate()
            shutil.copyfileobj(source, out)
        out.seek(0, os.SEEK_END)


def _write_map(target: Path, parts: list[Path]) -> None:
    """``contacts.map.csv`` as the single pass writes it (:func:`.manifests.open_contact_map`),
    its rows the parts' in order."""
    with open_contact_map(target) as opened:
        handle = cast(TextIO, opened)  # a path given: a handle
        handle.flush()
        out = handle.buffer
        for part in parts:
            _append(out, part)
        out.flush()
