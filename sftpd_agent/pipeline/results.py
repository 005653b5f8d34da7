"""A campaign's results, per contact row, for the CRM it came from: ``results.csv``.

One output row per contact row read, in the contact file's order::

    crm_id;msisdn;outcome;code;status;ack_at;optout_at;line;detail

- ``outcome``: ``invalid`` (``code`` = the row's first error code), else ``duplicate`` (its
  number, normalised, was used by an earlier valid row), else ``suppressed`` (on the
  suppression list at upload: ``dropped.csv``), else for a row uploaded ``sent`` / ``failed``
  (the provider's STATUS; ``code`` = its IDSTATUS) / ``pending`` (no ACK yet), and
  ``opted_out`` when a STOP (or a stop-word reply) from the number came at or after the
  campaign was uploaded, whatever the delivery status (kept in ``status``). A row neither
  uploaded nor accounted for is ``not_sent`` with the reason in ``detail`` (held, a foreign
  number dropped, a send-time group not uploaded yet, a file the provider rejected).
- ``msisdn``: E.164 where the number is known, else the raw value as exported.
- ``ack_at`` / ``optout_at``: ISO 8601 with the offset in the configured time zone
  (``--excel``: ``YYYY-MM-DD HH:MM:SS`` local time, which Excel reads as a date).

Where the rows come from: ``contacts.map.csv`` (a manifest's contacts) in the campaign's
folder (``spool/<pk>/``, then its archive folder), else the original provider-shaped file
(``crm_id`` = IDREMOTE). A held campaign's files are in ``failed/``.

Streamed: the contact rows, errors, uploaded files and delivery lines are read as they come;
the one structure the size of the campaign is ``fate``, a dict from E.164 digits (an int) to a
small int of flags and indexes (about 70 bytes a number). The uploaded files are read beside
the contact rows: they hold the surviving rows in the contacts' order, so a contact row is
matched to the next row of one of them by IDREMOTE (and number, for a provider-shaped file,
whose IDREMOTE need not be unique) and takes its E.164 number from there; only the rows not
uploaded have their number normalised again.

Fast where the rows are many (1,000,000 rows in under 4 s), the same bytes as the plain way:
the delivery lines come a status at a time (a few joined strings per slice of an ACK file;
the ordered line-by-line read only when a number has two lines in one file); an uploaded row
whose CRM id and number csv writes as they are is one string from what its file and mark
share (:class:`_Shown`), every other row goes through csv; the rows are written a batch at a
time and none is kept once joined (a million live lists would keep the garbage collector
busy).
"""

from __future__ import annotations

import codecs
import csv
import datetime
import io
import re
from collections.abc import Generator, Iterator, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from itertools import chain, islice, repeat
from pathlib import Path
from typing import IO, Any, BinaryIO, TextIO

from ..config import Settings
from ..files import replaced
from ..rules.campaign_file import CHUNK, is_header, read_records
from ..rules.display import archived_original, local_name
from ..rules.numbers import NumberNormalizer
from ..rules.plan import FOREIGN
from ..rules.states import WAITING, CampaignState, PartState
from ..store.journal import Store
from ..store.records import Campaign, Part
from ..store.results import (
    STATUS_SEPARATOR,
    campaign_deliveries,
    delivery_groups,
    optouts_since,
)
from .intake import row_zone

HEADER = ("crm_id", "msisdn", "outcome", "code", "status", "ack_at", "optout_at", "line",
          "detail")
OUTCOMES = ("sent", "failed", "pending", "opted_out", "invalid", "duplicate", "suppressed",
            "not_sent")
MAP_NAME = "contacts.map.csv"
DROPPED_NAME = "dropped.csv"
ENCODINGS = ("utf-8", "cp1252")
DELIMITERS = (";", ",")

SENT_WORDS = frozenset({"sent", "delivered", "delivrd", "received", "ok", "success"})
"""STATUS words (case ignored) that mean the SMS reached the handset."""
FAILED_WORDS = frozenset({"failed", "failure", "undelivered", "undeliv", "undeliverable",
                          "rejected", "rejectd", "expired", "error", "refused", "deleted",
                          "unknown_number", "blacklisted"})
"""STATUS words (case ignored) that mean it never will."""
IDSTATUS_OUTCOME = {"2": "sent", "3": "failed"}
"""IDSTATUS when STATUS is not a known word: the provider's example (``2 ;sent``) and the
simulator's (2 sent, 3 failed). Anything else is intermediate: ``pending``, status shown."""

_GUARDED = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet read a cell as a formula."""

# fate: E.164 digits -> flags | ACK index << _ACK | opt-out index << _OPT (small ints: few
# distinct ACK statuses and times)
_SEEN, _SUPPRESSED = 1, 2
_ACK, _OPT = 2, 26
_MASK = (1 << 24) - 1


class ResultsError(Exception):
    """The results cannot be written: one line saying why."""


@dataclass
class ResultsFigures:
    """Contact rows written, per outcome; ``path`` when written to a file."""

    rows: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    path: Path | None = None

    def as_dict(self) -> dict[str, int]:
        return {"rows": self.rows, **self.counts}

    def line(self) -> str:
        """``1000 rows: sent 950, failed 10, ...`` (the outcomes that occur)."""
        found = ", ".join(f"{name} {count}" for name, count in self.counts.items() if count)
        return f"{self.rows} rows" + (f": {found}" if found else "")


def delivery_outcome(idstatus: str, status: str) -> str:
    """``sent``, ``failed`` or ``pending`` for an ACK line's IDSTATUS and STATUS."""
    word = status.strip().lower()
    if word in SENT_WORDS:
        return "sent"
    if word in FAILED_WORDS:
        return "failed"
    return IDSTATUS_OUTCOME.get(idstatus.strip(), "pending")


def excel_cell(value: str) -> str:
    """``value`` as a spreadsheet shows it and never runs it: one that starts like a formula
    gets a leading ``'``."""
    return "'" + value if value.startswith(_GUARDED) else value


def excel_number(msisdn: str) -> str:
    """An E.164 number as a formula Excel shows as the text itself (``="+33612345678"``):
    plain, Excel would read it as a number and drop the ``+``. Anything but ``+`` and digits
    is guarded as any other cell."""
    digits = msisdn[1:]
    if msisdn[:1] == "+" and digits.isdigit() and digits.isascii():
        return f'="{msisdn}"'
    return excel_cell(msisdn)


def archive_folder(settings: Settings, campaign: Campaign) -> Path:
    """The campaign's archive folder: ``Campaigns.archive_folder``'s, without a Campaigns
    (which creates the agent's folders) for a read-only command."""
    stamp = campaign.received_at.astimezone(settings.tz).strftime("%Y%m%d-%H%M%S")
    return settings.paths.archive / f"{stamp}-{campaign.campaign_id}-{campaign.id}"


def results_path(settings: Settings, campaign: Campaign) -> Path:
    """Where the daemon keeps a reported campaign's results: its archive folder."""
    return archive_folder(settings, campaign) / f"{campaign.campaign_id}.results.csv"


# -- where a campaign's files are ------------------------------------------------------------

@dataclass(frozen=True)
class CampaignFiles:
    """The files of one campaign the results are made from (a path may not exist)."""

    folder: Path | None
    """``spool/<pk>/`` or the archive folder; None for a held campaign (in ``failed/``)."""
    contact_map: Path | None
    original: Path
    errors: Path
    dropped: Path | None


def locate(settings: Settings, campaign: Campaign) -> CampaignFiles:
    """Where ``campaign``'s files are now: the spool, then the archive, then ``failed/``."""
    kept = local_name(campaign.file, room=len(".errors.csv"))
    spool = settings.paths.spool / str(campaign.id)
    if spool.is_dir():
        return CampaignFiles(spool, spool / MAP_NAME,
                             settings.paths.spool / "incoming" / campaign.source,
                             spool / "errors.csv", spool / DROPPED_NAME)
    archive = archive_folder(settings, campaign)
    if archive.is_dir():
        # dropped under its provider name: the original beside the uploaded file of that name
        original = archive / archived_original(campaign.file, {kept})
        return CampaignFiles(archive, archive / MAP_NAME,
                             original if original.exists() else archive / kept,
                             archive / f"{kept}.errors.csv", archive / DROPPED_NAME)
    failed = settings.paths.failed
    # Campaigns.hold: the name, or with the campaign's number when the name was taken.
    tagged = local_name(campaign.file, room=len(".errors.csv"), tag=str(campaign.id))
    name = tagged if (failed / tagged).exists() else kept
    return CampaignFiles(None, None, failed / name, failed / f"{name}.errors.csv", None)


# -- reading ---------------------------------------------------------------------------------

ContactRow = Sequence[str]
"""(line in the contact file, CRM id, IDREMOTE, phone as exported): the contact map's row
as csv reads it (a row of other length, or a line not digits, is no contact)."""


BATCH = 8192
"""Contact rows joined, then written, at a time (their lines kept meanwhile)."""


def _map_rows(handle: TextIO) -> Iterator[ContactRow]:
    """The contact map's rows: csv reads them, as csv writes them (``contacts.render_part``),
    one C call a row."""
    reader = csv.reader(handle, delimiter=";")
    next(reader, None)  # line;crm_id;idremote;phone
    return reader


def _file_encoding(path: Path, hint: object) -> str:
    """How to read the original: as validation read it (its summary), else found out."""
    if hint == "cp1252":
        return "cp1252"
    if hint == "utf-8":
        return "utf-8-sig"
    decoder = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as handle:
        try:
            while chunk := handle.read(1 << 20):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return "cp1252"
    return "utf-8-sig"


def _original_rows(path: Path, encoding: str) -> Generator[ContactRow, None, None]:
    with path.open("rb") as handle:
        first = True
        for line, fields in read_records(handle, encoding):
            if first:
                first = False
                if is_header(fields):
                    continue
            yield str(line), fields[0], fields[0], fields[1] if len(fields) > 1 else ""


def _errors(path: Path) -> dict[int, tuple[str, str]]:
    """Line -> (its first error's code, what was wrong), from ``line;code;field;value;detail``:
    the invalid rows only (a few per hundred, or a held campaign's)."""
    found: dict[int, tuple[str, str]] = {}
    try:
        handle = path.open(encoding="utf-8", newline="")
    except FileNotFoundError:
        return found
    with handle:
        reader = csv.reader(handle, delimiter=";")
        next(reader, None)
        for row in reader:
            if len(row) < 5 or not row[0].isdigit():
                continue
            line = int(row[0])
            if line not in found:
                found[line] = (row[1], f"{row[2]} {row[3]!r}: {row[4]}")
    return found


# -- joining ---------------------------------------------------------------------------------

ResultRow = tuple[str, str, str, str, str, str, str, int, str]
"""One output row: crm_id, msisdn, outcome, code, status, ack_at, optout_at, line, detail."""


@dataclass
class _Ack:
    idstatus: str
    status: str
    at: str
    outcome: str


@dataclass(slots=True)
class _Shown:
    """How an uploaded row of one file with one mark is written, but for its CRM id, number
    and line: ``crm_id;msisdn`` + ``middle`` + line + ``tail``; how many were."""

    middle: str
    tail: str
    outcome: str
    seen: int
    """The mark once seen: the fate of their numbers after them."""
    rows: int = 0


_END: tuple[Any, str] = (None, "")
"""An uploaded file's (IDREMOTE, MSISDN) after its last row."""


class _Uploaded:
    """One provider file read along the contact rows: its rows are theirs, in their order
    (less the ones left out), so its next row is the one a contact row may be. The join
    moves on with ``idremote, msisdn = next(pairs, _END)`` (a row's IDREMOTE and MSISDN)."""

    __slots__ = ("_handle", "idremote", "msisdn", "pairs", "part", "shown")

    def __init__(self, part: Part, path: Path) -> None:
        self.part = part
        self._handle = path.open("rb")
        self.pairs: Iterator[tuple[str, str]]
        if _unquoted(self._handle):
            self.pairs = chain.from_iterable(_pair_blocks(self._handle))
        else:  # a quoted field may hold ; or a line break: the reader's way, row by row
            self.pairs = ((fields[0], fields[1])
                          for _, fields in read_records(self._handle, "utf-8"))
        self.idremote: str | None
        self.msisdn: str
        self.idremote, self.msisdn = next(self.pairs, _END)
        self.shown: dict[int, _Shown] = {}
        """A fate mark -> how this file's rows with it are written (few distinct marks)."""

    def close(self) -> None:
        self._handle.close()


def _unquoted(handle: BinaryIO) -> bool:
    """Whether the file holds no double quote (then a line is a row); read from the start
    after."""
    try:
        while data := handle.read(CHUNK):
            if b'"' in data:
                return False
        return True
    finally:
        handle.seek(0)


def _pair_blocks(handle: BinaryIO) -> Iterator[Iterator[tuple[str, str]]]:
    """(IDREMOTE, MSISDN) of each row of a provider file without quotes, a block at a time:
    its lines end with CRLF, LF or CR, as :func:`read_records` reads them; a line without
    ``;`` (blank) is no row. A block's values are kept as two lists of strings: no
    container a row, that the garbage collector would go through."""
    carry = b""
    while True:
        data = handle.read(CHUNK)
        block = carry + data
        if data:  # cut after the last line end (a CR at the end may be half a CRLF)
            last_lf = block.rfind(b"\n")
            cut = max(last_lf, block.rfind(b"\r", last_lf + 1, len(block) - 1)) + 1
            block, carry = block[:cut], block[cut:]
        text = block.decode("utf-8")
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        lines = [line for line in text.split("\n") if ";" in line]
        yield zip([line.partition(";")[0] for line in lines],
                  [line.split(";", 2)[1] for line in lines], strict=True)
        if not data:
            return


class _Join:
    """The campaign's facts by number (``fate``: E.164 digits as an int -> flags and
    indexes), then the contact rows against them and the uploaded files."""

    def __init__(self, store: Store, settings: Settings, campaign: Campaign,
                 files: CampaignFiles, *, excel: bool, verify: bool) -> None:
        self.store, self.settings, self.campaign, self.files = store, settings, campaign, files
        self.excel = excel
        self.verify = verify
        """Match a contact row to an uploaded row by its number too, not IDREMOTE alone (a
        provider-shaped file's IDREMOTE need not be unique; a manifest's is)."""
        self.parts: list[Part] = store.parts(campaign.id)
        self.fate: dict[int, int] = {}
        self.acks: list[_Ack] = []
        self.optout_times: list[str] = []
        self.missing_parts: list[str] = []
        self.times: dict[str, str] = {}

    def when(self, iso: str) -> str:
        """A journal time as the file shows it (few distinct ones: kept)."""
        shown = self.times.get(iso)
        if shown is None:
            local = datetime.datetime.fromisoformat(iso).astimezone(self.settings.tz)
            shown = local.strftime("%Y-%m-%d %H:%M:%S") if self.excel else local.isoformat()
            self.times[iso] = shown
        return shown

    def load(self) -> None:
        self._load_acks()
        fate = self.fate
        dropped = self.files.dropped
        if dropped is not None and dropped.exists():
            with dropped.open(encoding="utf-8", newline="") as handle:
                reader = csv.reader(handle, delimiter=";")
                next(reader, None)  # idremote;msisdn;reason
                for row in reader:
                    key = _key(row[1]) if len(row) >= 2 else None
                    if key is not None:
                        fate[key] = fate.get(key, 0) | _SUPPRESSED
        self._load_optouts()

    def _load_acks(self) -> None:
        if not self._load_ack_groups():
            self._load_ack_lines()

    def _new_mark(self, joined: str) -> int:
        """A new mark for an ACK status (``idstatus``, ``status`` and ``at`` joined)."""
        idstatus, status, at = joined.split(STATUS_SEPARATOR)
        self.acks.append(_Ack(idstatus, status, at, delivery_outcome(idstatus, status)))
        return len(self.acks) << _ACK

    def _load_ack_groups(self) -> bool:
        """The delivery lines by ACK file and status (:func:`delivery_groups`: no Python
        object a line but its number's key). A number already there from an earlier file
        keeps the line the ordered rule keeps (:meth:`_load_ack_lines`: the final status,
        then the latest, else the later file's), a key at a time (files that repeat each
        other's numbers: as fast as that rule goes). False as soon as a number comes twice
        in one file, whose order is lost here: then the ordered read goes over what is
        there, and keeps for each number the line it would keep alone. A msisdn that holds
        the separator: False, nothing of its group kept."""
        fate, rank = self.fate, self._rank
        marks: dict[tuple[int, str], int] = {}  # (file, status) -> its mark: one a file
        file_of: dict[int, int] = {}  # a mark -> its file
        for report, joined, count, msisdns in delivery_groups(self.store, self.campaign.id):
            if msisdns.count(STATUS_SEPARATOR) + 1 != count:
                return False
            mark = marks.get((report, joined))
            if mark is None:
                mark = marks[report, joined] = self._new_mark(joined)
                file_of[mark] = report
            for pieces in _split(msisdns, STATUS_SEPARATOR):
                try:
                    numbers = list(map(int, pieces))
                except ValueError:  # not a number: no row of ours
                    numbers = [key for key in map(_int, pieces) if key is not None]
                size = len(fate) + len(numbers)
                if fate.keys().isdisjoint(numbers):
                    fate.update(zip(numbers, repeat(mark)))
                    if len(fate) != size:  # one number twice in the piece
                        return False
                    continue
                for key in numbers:
                    before = fate.get(key)
                    if before is None:
                        fate[key] = mark
                    elif file_of[before] == report:
                        return False
                    elif before != mark and rank(before) <= rank(mark):
                        fate[key] = mark
        return True

    def _load_ack_lines(self) -> None:
        """The delivery lines one by one in the table's order: when a number has two, the
        final status, then the latest, wins (the later line when they tie)."""
        fate = self.fate
        marks: dict[str, int] = {}  # a status -> its mark
        for msisdn, joined in campaign_deliveries(self.store, self.campaign.id):
            mark = marks.get(joined)
            if mark is None:
                mark = marks[joined] = self._new_mark(joined)
            try:
                key = int(msisdn)
            except ValueError:
                continue  # not a number: no row of ours
            before = fate.get(key)
            if before is not None and before != mark and self._rank(before) > self._rank(mark):
                continue  # two lines for a number: the final status, then the latest, wins
            fate[key] = mark

    def _rank(self, mark: int) -> tuple[bool, str]:
        ack = self.acks[(mark >> _ACK & _MASK) - 1]
        return ack.outcome != "pending", ack.at

    def _load_optouts(self) -> None:
        sent = [p.published_at for p in self.parts if p.published_at is not None]
        since = min(sent) if sent else self.campaign.send_at
        if since is None or not self.parts:
            return
        # The provider's STOP times are to the minute: a STOP in the minute of the upload
        # counts as after it.
        since = since.replace(second=0, microsecond=0)
        fate, times = self.fate, self.optout_times
        for msisdn, at in optouts_since(self.store, since):
            key = _key(msisdn)
            if key is None:
                continue
            mark = fate.get(key, 0)
            if not mark >> _OPT:
                times.append(at)
                fate[key] = mark | len(times) << _OPT

    def _streams(self) -> list[_Uploaded]:
        folder = self.files.folder
        streams = []
        for part in self.parts:
            path = folder / part.remote_name if folder is not None else None
            if path is None or not path.exists():
                self.missing_parts.append(part.remote_name)
            else:
                streams.append(_Uploaded(part, path))
        return streams

    def write(self, contacts: Iterator[ContactRow], out: _Out) -> None:
        """The contact rows' results, in their order, to ``out``. A row uploaded, its CRM id
        and number plain, is written as a string from what its file and mark share
        (:class:`_Shown`); any other through csv (:meth:`_Out.row`)."""
        errors = _errors(self.files.errors)
        normalize = NumberNormalizer(self.settings.campaign.default_region).normalize
        fate, verify, result, end = self.fate, self.verify, self.result, _END
        general, append, shown_as, plain = out.row, out.lines.append, out.shown, out.plain
        before, after = out.delimiter + out.before, out.after  # around the number
        streams = self._streams()
        try:
            # a batch at a time, each row let go once joined (kept, a million lists would
            # set the garbage collector going, for nothing)
            while (first := next(contacts, None)) is not None:
                for fields in chain((first,), islice(contacts, BATCH - 1)):
                    try:
                        text, crm_id, idremote, phone = fields
                    except ValueError:
                        if len(fields) < 4:
                            continue
                        text, crm_id, idremote, phone = fields[:4]
                    if not text.isdigit():
                        continue
                    line = int(text)
                    error = errors.get(line)
                    if error is not None:
                        raw = phone.strip()
                        general((crm_id, (normalize(raw) if raw else None) or phone,
                                 "invalid", error[0], "", "", "", line, error[1]))
                        continue
                    hit = None
                    for stream in streams:
                        if stream.idremote == idremote:
                            e164 = stream.msisdn
                            if not verify or phone == e164 or normalize(phone.strip()) == e164:
                                hit = stream
                                stream.idremote, stream.msisdn = next(stream.pairs, end)
                            break
                    if hit is None:  # not uploaded: duplicate, suppressed, or not sent
                        raw = phone.strip()
                        found = normalize(raw) if raw else None
                        if found is None:  # validation took it: not expected
                            general((crm_id, phone, "not_sent", "", "", "", "", line,
                                     "number not understood"))
                            continue
                        e164 = found
                    key = int(e164)
                    mark = fate.get(key, 0)
                    if hit is None:
                        fate[key] = mark | _SEEN
                        general(result(crm_id, e164, line, mark, None))
                        continue
                    shown = hit.shown.get(mark)
                    if shown is None:
                        shown = hit.shown[mark] = shown_as(result("", "", 0, mark, hit.part),
                                                           seen=mark | _SEEN)
                    fate[key] = shown.seen  # one int for all: not a new one a row
                    if (crm_id.isalnum() or plain(crm_id)) and _E164(e164):
                        append(f"{crm_id}{before}{e164}{after}{shown.middle}{line}{shown.tail}")
                        shown.rows += 1
                    else:
                        general(result(crm_id, e164, line, mark, hit.part))
                out.flush()
            left = [s for s in streams if s.idremote is not None]
            if left:
                raise ResultsError(
                    f"{left[0].part.remote_name}: its row IDREMOTE {left[0].idremote} matches "
                    "no contact row in order: the campaign's files disagree, no results "
                    "written")
        finally:
            for stream in streams:
                stream.close()
        for stream in streams:
            for shown in stream.shown.values():
                out.counts[shown.outcome] += shown.rows

    def result(self, crm_id: str, e164: str, line: int, mark: int,
               part: Part | None) -> ResultRow:
        """The row of a contact whose number is known: ``mark`` its fate before this row,
        ``part`` the file it was matched to, if any. For a row matched to a file, only its
        first, second and eighth values are its own."""
        if part is None:
            if mark & _SEEN:
                return crm_id, e164, "duplicate", "", "", "", "", line, \
                    "the number of an earlier row"
            if mark & _SUPPRESSED:
                return crm_id, e164, "suppressed", "", "", "", "", line, \
                    "on the suppression list at upload"
            if not mark >> _ACK & _MASK:
                return crm_id, e164, "not_sent", "", "", "", "", line, self._why_not(e164)
        elif part.state == PartState.REJECTED:
            return crm_id, e164, "not_sent", "", "", "", "", line, \
                f"the provider rejected {part.remote_name}"
        when = self.when
        ack_index, opt_index = mark >> _ACK & _MASK, mark >> _OPT
        optout_at = when(self.optout_times[opt_index - 1]) if opt_index else ""
        if ack_index:
            ack = self.acks[ack_index - 1]
            return crm_id, e164, "opted_out" if opt_index else ack.outcome, \
                ack.idstatus, ack.status, when(ack.at), optout_at, line, ""
        assert part is not None  # noqa: S101 - no ACK: matched to its file
        return crm_id, e164, "opted_out" if opt_index else "pending", "", "", "", \
            optout_at, line, f"no delivery report yet ({part.remote_name} {part.state})"

    def _why_not(self, e164: str) -> str:
        campaign = self.campaign
        if campaign.state == CampaignState.HELD:
            return f"held: {campaign.reason or 'no reason recorded'}"
        if campaign.state in WAITING:
            return f"not uploaded yet (campaign {campaign.state})"
        if self.missing_parts:
            return f"uploaded file(s) not found: {', '.join(self.missing_parts)}"
        if campaign.summary.get("foreign_dropped") and row_zone(e164) == FOREIGN:
            return "a number of another country, dropped (foreign = drop)"
        later = getattr(campaign, "next_upload_at", None)
        if later is not None:
            local = later.astimezone(self.settings.tz).strftime("%Y-%m-%d %H:%M")
            return f"its send-time group is not uploaded yet (next upload {local})"
        return "not in the uploaded files"


def _key(number: str) -> int | None:
    """A number's key in ``fate``: its digits as an int (``+`` or not), None if not digits."""
    digits = number.strip().removeprefix("+")
    return int(digits) if digits.isdigit() and digits.isascii() else None


def _prepared(store: Store, settings: Settings, campaign: Campaign, stack: ExitStack, *,
              excel: bool) -> tuple[_Join, Iterator[ContactRow]]:
    """The join of ``campaign``, its facts loaded, and its contact rows, in the contact file's
    order (read from a file that ``stack`` closes).

    Raises :class:`ResultsError` when the campaign's rows cannot be found (its archive
    purged after ``retention_days``, a manifest's contact map missing)."""
    if campaign.state == CampaignState.RECEIVED:
        raise ResultsError(f"campaign {campaign.campaign_id} (number {campaign.id}) is "
                           "received, not validated yet: its results come once it is")
    files = locate(settings, campaign)
    contacts: Iterator[ContactRow]
    if files.contact_map is not None and files.contact_map.exists():
        contacts = _map_rows(stack.enter_context(
            files.contact_map.open(encoding="utf-8-sig", newline="")))
        contacts_verify = False
    elif campaign.file.endswith(".toml"):
        raise ResultsError(f"campaign {campaign.campaign_id} (number {campaign.id}): its "
                           f"contact map ({MAP_NAME}) is gone; kept {_kept(settings)}")
    elif files.original.exists():
        encoding = _file_encoding(files.original, campaign.summary.get("encoding"))
        contacts = stack.enter_context(closing(_original_rows(files.original, encoding)))
        contacts_verify = True
    else:
        raise ResultsError(f"campaign {campaign.campaign_id} (number {campaign.id}): its "
                           f"file is gone ({files.original} not found); kept "
                           f"{_kept(settings)}")
    join = _Join(store, settings, campaign, files, excel=excel, verify=contacts_verify)
    join.load()
    return join, contacts


def _kept(settings: Settings) -> str:
    return f"paths.retention_days = {settings.paths.retention_days} days"


def write_results(store: Store, settings: Settings, campaign: Campaign,
                  out: Path | BinaryIO, *, excel: bool = False, encoding: str = "utf-8",
                  delimiter: str = ";") -> ResultsFigures:
    """Write ``campaign``'s results to ``out`` (a path, replaced atomically, or a binary
    stream); the rows per outcome.

    ``excel``: what a French Excel opens without a wizard: UTF-8 with a BOM, ``;``, CRLF, a
    value that starts like a formula (``= + - @``) with a leading ``'``, the E.164 numbers as
    ``="+33612345678"`` (shown as that text); ``encoding`` and ``delimiter`` are then ignored.
    Else ``encoding`` (``utf-8`` or ``cp1252``) and ``delimiter`` (``;`` or ``,``), values as
    they are. A value ``cp1252`` cannot hold is a :class:`ResultsError` naming its line and
    column (a CRM id changed to ``?`` would match no contact); nothing is left at ``out`` when
    it is a path.
    """
    if not excel and encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}")
    if not excel and delimiter not in DELIMITERS:
        raise ValueError(f"delimiter must be one of {' '.join(DELIMITERS)}")
    with ExitStack() as stack:
        join, contacts = _prepared(store, settings, campaign, stack, excel=excel)
        if isinstance(out, Path):
            with replaced(out, text=False) as handle:
                figures = _write(join, contacts, handle, excel=excel, encoding=encoding,
                                 delimiter=delimiter)
            figures.path = out
            return figures
        return _write(join, contacts, out, excel=excel, encoding=encoding, delimiter=delimiter)


def _write(join: _Join, contacts: Iterator[ContactRow], out: IO[bytes] | BinaryIO, *,
           excel: bool, encoding: str, delimiter: str) -> ResultsFigures:
    codec = "utf-8-sig" if excel else encoding
    text = io.TextIOWrapper(out, encoding=codec, errors="strict", newline="",
                            write_through=False)
    try:
        lines = _Out(text, codec=codec, excel=excel, delimiter=";" if excel else delimiter)
        lines.writer.writerow(HEADER)
        join.write(contacts, lines)
        lines.flush()
        text.flush()
    finally:
        text.detach()  # the caller's stream stays open
    figures = ResultsFigures(counts=lines.counts)
    figures.rows = sum(lines.counts.values())
    return figures


_E164 = re.compile(r"\+[0-9]+").fullmatch
"""An E.164 number as the uploaded files hold it: written as it is (``--excel``: between
the same ``="`` and ``"`` whatever its digits)."""

_QUOTED = ('"', "\r", "\n")
"""What csv quotes a value for, besides the delimiter."""


class _Out:
    """The results file's lines as csv writes them, kept and written a batch at a time
    (:meth:`flush`), and the rows per outcome."""

    def __init__(self, text: io.TextIOWrapper, *, codec: str, excel: bool,
                 delimiter: str) -> None:
        self.text, self.codec, self.excel, self.delimiter = text, codec, excel, delimiter
        self.lines: list[str] = []
        self.writer = csv.writer(_Appender(self.lines), delimiter=delimiter,
                                 lineterminator="\r\n")
        self.counts = dict.fromkeys(OUTCOMES, 0)
        self._one: list[str] = []
        self._field_writer = csv.writer(_Appender(self._one), delimiter=delimiter,
                                        lineterminator="\r\n")
        self.before, self.after = self.field(excel_number("+0") if excel else "+0").split("+0")
        """What csv writes before and after an E.164 number (``--excel``: a formula)."""

    def row(self, row: ResultRow) -> None:
        """One row, through csv."""
        self.counts[row[2]] += 1
        self.writer.writerow(self.cells(row))

    def cells(self, row: ResultRow) -> tuple[object, ...]:
        if not self.excel:
            return row
        return (excel_cell(row[0]), excel_number(row[1]), *row[2:4], excel_cell(row[4]),
                *row[5:8], excel_cell(row[8]))

    def field(self, value: object) -> str:
        """``value`` as csv writes it in a row (quoted when it must be)."""
        self._field_writer.writerow(("", value))
        written = self._one.pop()
        return written[len(self.delimiter):-2]

    def plain(self, crm_id: str) -> bool:
        """Whether a CRM id is written as it is: nothing csv quotes, no formula start."""
        return (self.delimiter not in crm_id and not any(c in crm_id for c in _QUOTED)
                and not (self.excel and crm_id.startswith(_GUARDED)))

    def shown(self, row: ResultRow, *, seen: int) -> _Shown:
        """How uploaded rows that share ``row``'s values but the CRM id, number and line are
        written (``seen``: their numbers' fate after them)."""
        cells = self.cells(row)
        sep = self.delimiter
        return _Shown(sep + sep.join(map(self.field, cells[2:7])) + sep,
                      sep + self.field(cells[8]) + "\r\n", row[2], seen)

    def flush(self) -> None:
        """Write the lines kept. A value the encoding cannot hold: the lines before its
        line, then a :class:`ResultsError` naming it."""
        lines = self.lines
        try:
            self.text.write("".join(lines))
        except UnicodeEncodeError:
            for line in lines:
                try:
                    self.text.write(line)
                except UnicodeEncodeError as exc:
                    values = next(csv.reader([line], delimiter=self.delimiter))
                    raise ResultsError(_unencodable(values, self.codec, exc)) from None
        lines.clear()


class _Appender:
    """A list as the stream a csv writer writes lines to."""

    def __init__(self, lines: list[str]) -> None:
        self.write = lines.append


def _split(text: str, separator: str, size: int = 1 << 20) -> Iterator[list[str]]:
    """``text.split(separator)``, a piece of about ``size`` characters at a time."""
    start = 0
    while (end := text.find(separator, start + size)) >= 0:
        yield text[start:end].split(separator)
        start = end + 1
    yield text[start:].split(separator)


def _int(number: str) -> int | None:
    try:
        return int(number)
    except ValueError:
        return None


def _unencodable(row: Sequence[object], codec: str, exc: UnicodeEncodeError) -> str:
    for name, value in zip(HEADER, row, strict=True):
        try:
            str(value).encode(codec)
        except UnicodeEncodeError as inner:
            char = inner.object[inner.start]
            return (f"contact line {row[7]}: the {name} value {value!r} holds {char!r}, "
                    f"which {codec} cannot write: use --encoding utf-8 (or --excel)")
    return f"contact line {row[7]}: {exc.reason} in {codec}"
