"""Taking in one campaign file: validate its rows and plan its sending.

The one place that joins validation and planning, shared by ``check`` and the daemon, so
that both decide exactly alike whether a file is held.
"""

from __future__ import annotations

import csv
import datetime
import os
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, TextIO, cast

from ..config import Settings
from ..rules.plan import FOREIGN, Group, Plan, Timing, plan, plan_groups
from ..rules.upload_file import UploadWriter
from ..rules.validation import EXAMPLES_PER_CODE, Row, RowError, RowSink, Rules, Summary, Validator
from ..rules.zones import METROPOLE, zone_of
from .entries import open_regular, refusal
from .multicore import validate_in_parallel


@dataclass(frozen=True, slots=True)
class Checked:
    """Rows checked before :func:`take_in` is called, never written to a file (a contact
    export rendered and checked at once on every core): the summary, the errors in file
    order (when an errors file is asked for) and what gives every distinct valid number
    (E.164 digits as an int: worked out only when the zones are counted)."""

    summary: Summary
    errors: list[RowError]
    numbers: Callable[[], Iterable[int]]


@dataclass(frozen=True, slots=True)
class Intake:
    path: Path
    summary: Summary
    plan: Plan
    hold_reason: str | None
    groups: tuple[Group, ...] = ()  # marketing: one per distinct send time (recipients' zones)
    foreign: int = 0                # valid rows of other countries (dropped or not)
    foreign_dropped: int = 0        # of which dropped (``foreign = "drop"``)

    def as_dict(self) -> dict[str, Any]:
        data = self.summary.as_dict()
        names = [n for g in self.groups for n in g.names] if self.groups else self.plan.names
        data.update({
            "file": str(self.path),
            "held": self.hold_reason is not None,
            "hold_reason": self.hold_reason,
            "campaign_id": self.plan.campaign_id,
            "send_at": self.plan.send_at.isoformat(),
            "send_at_note": self.plan.note,
            "remote_names": list(names),
            "groups": [group_dict(g) for g in self.groups],
            "foreign": self.foreign,
            "foreign_dropped": self.foreign_dropped,
            # how the name was read: as the provider's or not, the time it asks for (after
            # the daylight-saving rule), what was changed and why the name alone holds it
            "name_read_as": "provider" if self.plan.provider_like else "other",
            "requested_at": (self.plan.requested_at.isoformat()
                             if self.plan.requested_at else None),
            "requested_as_written": (self.plan.requested_wall.isoformat(timespec="minutes")
                                     if self.plan.requested_wall else None),
            "name_notes": list(self.plan.name_notes),
            "name_problem": self.plan.name_problem,
        })
        return data


def rules_from(settings: Settings) -> Rules:
    c = settings.campaign
    return Rules(
        default_sender=c.default_sender,
        default_region=c.default_region,
        max_segments=c.max_segments,
        policy=c.non_gsm,
        max_invalid_percent=c.max_invalid_percent,
        marketing=c.marketing,
        stop_mention=c.stop_mention,
        optout=c.optout_policy,
        sender_blocklist=c.sender_blocklist,
    )


def timing_from(settings: Settings) -> Timing:
    c = settings.campaign
    return Timing(
        service_id=settings.service_id,
        timezone=settings.tz,
        window=c.window() if c.marketing else None,
        hold_outside_window=c.outside_window == "hold",
        upload_lead=datetime.timedelta(minutes=c.upload_lead_minutes),
        max_rows_per_file=c.max_rows_per_file,
        stale_after=datetime.timedelta(minutes=c.stale_after_minutes),
        recipient_local_window=c.recipient_local_window,
    )


def group_dict(group: Group) -> dict[str, Any]:
    """A group as JSON data (``check``, the journal's summary, ``status``)."""
    return {
        "zones": list(group.zones),
        "rows": group.rows,
        "send_at": group.send_at.isoformat(),
        "local": {code: when.isoformat() for code, when in group.local},
        "remote_names": list(group.names),
    }


def row_zone(msisdn: str) -> str:
    """The group key of a normalised number: its zone's code, or ``foreign``."""
    zone = zone_of(msisdn)
    return FOREIGN if zone is None else zone.code


class _Zones:
    """Counts the surviving rows per zone and drops foreign ones (``foreign = "drop"``)
    before they reach ``on_row``."""

    def __init__(self, on_row: RowSink | None, drop_foreign: bool) -> None:
        self.rows: Counter[str] = Counter()
        self.dropped = 0
        self._on_row = on_row
        self._drop = drop_foreign

    def __call__(self, row: Row) -> None:
        code = row_zone(row.msisdn)
        if code == FOREIGN and self._drop:
            self.dropped += 1
            return
        self.rows[code] += 1
        if self._on_row is not None:
            self._on_row(row)

    def count(self, numbers: Iterable[int]) -> None:
        """Count distinct valid numbers (E.164 digits as ints) per zone, as :meth:`__call__`
        counts rows: the multi-core check's way, which never sees the rows."""
        french = 0
        for key in numbers:
            if _FRANCE_LOW <= key < _FRANCE_HIGH:  # +33 and nine digits: metropolitan
                french += 1
                continue
            code = row_zone(f"+{key}")
            if code == FOREIGN and self._drop:
                self.dropped += 1
            else:
                self.rows[code] += 1
        if french:
            self.rows[METROPOLE.code] += french


_FRANCE_LOW, _FRANCE_HIGH = 33 * 10**9, 34 * 10**9
_METROPOLE_PREFIX = "+33"
_METROPOLE_LENGTH = 12  # "+33" and nine digits


_METROPOLITAN_NUMBER = (re.escape(_METROPOLE_PREFIX)
                        + rf"\d{{{_METROPOLE_LENGTH - len(_METROPOLE_PREFIX)}}}")
_METROPOLITAN = re.compile(rf"{_METROPOLITAN_NUMBER}(?:;{_METROPOLITAN_NUMBER})*")


def in_zones(numbers: list[str], zones: AbstractSet[str]) -> bool:
    """Whether the :func:`row_zone` of every number of ``numbers`` is one of ``zones``: when
    metropolitan numbers are, those checked all at once (one match over them joined)."""
    if METROPOLE.code in zones and _METROPOLITAN.fullmatch(";".join(numbers)):
        return True
    return all(row_zone(msisdn) in zones for msisdn in numbers)


def _not_foreign(row: Row) -> bool:
    """Whether ``row`` is kept under ``foreign = "drop"``: what :class:`_Zones` keeps, in
    the cores' processes (metropolitan numbers first, without a look-up)."""
    msisdn = row.msisdn
    if len(msisdn) == _METROPOLE_LENGTH and msisdn.startswith(_METROPOLE_PREFIX):
        return True
    return row_zone(msisdn) != FOREIGN


def _upload_writer(on_row: RowSink | None) -> UploadWriter | None:
    """The writer whose ``write`` ``on_row`` is, if it is one: its rows can be written by
    the cores (a caller that passes ``on_row=writer.write``, e.g. a manifest's)."""
    owner = getattr(on_row, "__self__", None)
    if isinstance(owner, UploadWriter) and getattr(on_row, "__func__", None) is (
            UploadWriter.write):
        return owner
    return None


def _binary(writer: UploadWriter) -> BinaryIO:
    """The stream under ``writer``, for rows already in the uploaded form (what it has
    buffered written first)."""
    text = writer._text  # UploadWriter has no accessor for it (yet)
    text.flush()
    return text.buffer


def take_in(
    path: Path,
    settings: Settings,
    *,
    now: datetime.datetime,
    validator: Validator | None = None,
    name: str | None = None,
    on_row: RowSink | None = None,
    errors_to: Path | None = None,
    progress: TextIO | None = None,
    suppressed: Collection[str] | None = None,
    translate: Callable[[RowError], RowError] | None = None,
    rejected: Sequence[RowError] = (),
    rows_to: UploadWriter | None = None,
    scratch: Path | None = None,
    checked: Checked | None = None,
) -> Intake:
    """Validate ``path`` and plan it as if it had been dropped under ``name`` at ``now``.

    Rejected rows go to ``errors_to`` (``line;code;field;value;detail``) when given; the file
    is written only if there is an error to put in it. ``suppressed`` (E.164 numbers, the
    suppression list) makes the summary count the valid rows it would drop at upload; give
    it here or to the ``validator``, not both.

    A file rendered from a contact export (a manifest) passes ``translate`` (its rows' errors
    as the user's file has them: line, column header) and ``rejected``: the rows that never
    became provider rows (a template value missing), by line, counted as invalid rows and
    merged into the errors in line order.

    ``rows_to`` receives the surviving rows, in input order, as ``on_row=rows_to.write``
    would (an ``on_row`` that is an :class:`UploadWriter`'s ``write`` is taken as
    ``rows_to``), but lets a big file be validated on every core; the cores' rows wait in
    ``scratch`` meanwhile (default: beside ``path``). Any other ``on_row`` keeps the
    single pass.

    ``checked``: the rows were checked already (:class:`Checked`); ``path`` is not read, and
    no row sink may be given.
    """
    rules = rules_from(settings)
    if validator is None:
        validator = Validator(rules, suppressed=suppressed)
    elif suppressed is not None:
        raise ValueError("give the suppression list to take_in or to its validator, not both")
    if rows_to is None:
        rows_to = _upload_writer(on_row)
    elif on_row is not None:
        raise ValueError("give take_in a row sink or an UploadWriter, not both")
    if rows_to is not None:
        on_row = rows_to.write
    if checked is not None and on_row is not None:
        raise ValueError("rows checked already give take_in no rows to keep")
    name = name or path.name
    timing = timing_from(settings)
    refused = refusal(path) if checked is None else None
    if refused is not None:  # a link, a FIFO, no permission: nothing is read
        nothing = Summary(file=name, unreadable=refused)
        return Intake(path, nothing, plan(name, 0, now=now, timing=timing),
                      nothing.hold_reason(rules))
    bar = _Bar(progress, name) if progress else None
    marketing = timing.window is not None
    drop_foreign = settings.campaign.foreign == "drop"
    zones = _Zones(on_row, drop_foreign) if marketing else None
    sink = zones if zones is not None else on_row
    with _errors_file(errors_to, translate, rejected) as on_error:
        summary = None
        if checked is not None:
            summary = checked.summary
            if on_error is not None:
                for error in checked.errors:
                    on_error(error)
            if zones is not None:
                zones.count(checked.numbers())
        elif on_row is None or rows_to is not None:
            summary = validate_in_parallel(
                path, validator, file=name, on_error=on_error,
                progress=bar.draw if bar else None,
                numbers=zones.count if zones is not None else None,
                rows_to=_binary(rows_to) if rows_to is not None else None,
                keep_row=_not_foreign if zones is not None and drop_foreign else None,
                scratch=scratch)
            if summary is not None and bar:
                bar.finish()  # other cores read the rest
            if summary is not None and rows_to is not None:
                rows_to.rows += summary.valid - (zones.dropped if zones is not None else 0)
        if summary is None:
            with open_regular(path) as raw:
                stream = cast(BinaryIO, _Progress(raw, bar)) if bar else raw
                summary = validator.validate(stream, file=name, on_row=sink,
                                             on_error=on_error)
    if translate is not None or rejected:
        _count_rejected(summary, rejected, translate)
    planned = plan(name, summary.valid, now=now, timing=timing)
    hold = summary.hold_reason(rules) or planned.hold_reason
    if zones is None:
        return Intake(path, summary, planned, hold)
    foreign = zones.rows[FOREIGN] + zones.dropped
    if hold is None and foreign and settings.campaign.foreign == "hold":
        hold = (f"{foreign} row(s) have numbers of other countries and foreign = hold "
                "(their recipients' hours are not known)")
    if hold is None and summary.valid and not zones.rows:
        hold = "no row left: every number is of another country and foreign = drop"
    groups = () if hold else plan_groups(planned, zones.rows, timing)
    return Intake(path, summary, planned, hold, groups, foreign, zones.dropped)


def _count_rejected(summary: Summary, rejected: Sequence[RowError],
                    translate: Callable[[RowError], RowError] | None) -> None:
    """The summary of a rendered file as the user's: the rows that never became provider
    rows counted as invalid, the examples in the user's lines and headers."""
    if summary.unreadable:
        return
    if translate is not None:
        summary.examples = {code: [translate(e) for e in errors]
                            for code, errors in summary.examples.items()}
    summary.rows += len(rejected)
    summary.invalid += len(rejected)
    for error in rejected:
        summary.invalid_by_code[error.code] += 1
        shown = summary.examples.setdefault(error.code, [])
        if len(shown) < EXAMPLES_PER_CODE:
            shown.append(error)


@contextmanager
def _errors_file(path: Path | None, translate: Callable[[RowError], RowError] | None = None,
                 rejected: Sequence[RowError] = ()) -> Iterator[Any]:
    if path is None:
        yield None
        return
    handle: IO[str] | None = None
    writer: Any = None
    waiting = iter(rejected)  # by line: merged in
    next_rejected = next(waiting, None)

    def write(error: RowError) -> None:
        nonlocal handle, writer
        if writer is None:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            handle = os.fdopen(fd, "w", encoding="utf-8", newline="")
            writer = csv.writer(handle, delimiter=";", lineterminator="\r\n")
            writer.writerow(["line", "code", "field", "value", "detail"])
        writer.writerow(error.as_csv_row())

    def on_error(error: RowError) -> None:
        nonlocal next_rejected
        if translate is not None:
            error = translate(error)
        while next_rejected is not None and next_rejected.line < error.line:
            write(next_rejected)
            next_rejected = next(waiting, None)
        write(error)

    try:
        yield on_error
        while next_rejected is not None:
            write(next_rejected)
            next_rejected = next(waiting, None)
    finally:
        if handle is not None:
            handle.close()


BAR_BYTES = 8 << 20
"""Files over this get a progress bar (when there is a terminal to draw it on)."""


class _Bar:
    """A progress bar drawn on a terminal, for files over :data:`BAR_BYTES`."""

    def __init__(self, out: TextIO, name: str) -> None:
        self._out = out
        self._name = name
        self._shown = -1

    def draw(self, done: int, total: int) -> None:
        if total <= BAR_BYTES:
            return
        percent = min(100, int(100 * done / total))
        if percent != self._shown:
            self._shown = percent
            end = "\n" if percent >= 100 else ""
            self._out.write(f"\r{self._name}: [{'#' * (percent // 4):<25}] {percent:3d}%{end}")
            self._out.flush()

    def restart(self) -> None:
        self._shown = -1

    def finish(self) -> None:
        if 0 <= self._shown < 100:
            self.draw(BAR_BYTES + 1, BAR_BYTES + 1)


class _Progress:
    """A read-through wrapper drawing ``bar`` for the whole file, from its last seek."""

    def __init__(self, raw: BinaryIO, bar: _Bar) -> None:
        self._raw = raw
        self._bar = bar
        self._size = max(os.fstat(raw.fileno()).st_size, 1)
        self._base = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._bar.draw(self._raw.tell() - self._base, self._size)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        self._base = self._raw.seek(offset, whence)
        self._bar.restart()
        return self._base

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)
