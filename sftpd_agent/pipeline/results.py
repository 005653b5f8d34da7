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
the one structure the size of the campaign is ``fate``, a dict from E.164 number to a small
int of flags and indexes (about 100 bytes a number).
"""

from __future__ import annotations

import codecs
import csv
import datetime
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO

from ..config import Settings
from ..files import replaced
from ..rules.campaign_file import is_header, read_records
from ..rules.display import local_name
from ..rules.numbers import NumberNormalizer
from ..rules.plan import FOREIGN
from ..rules.states import WAITING, CampaignState, PartState
from ..store.journal import Store
from ..store.records import Campaign, Part
from ..store.results import campaign_deliveries, optouts_since
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

# fate: E.164 number -> flags | part index << PART | ack index << ACK | opt-out index << OPT
_SEEN, _UPLOADED, _SUPPRESSED = 1, 2, 4
_PART, _ACK, _OPT = 3, 27, 51
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
        return CampaignFiles(archive, archive / MAP_NAME, archive / kept,
                             archive / f"{kept}.errors.csv", archive / DROPPED_NAME)
    failed = settings.paths.failed
    # Campaigns.hold: the name, or with the campaign's number when the name was taken.
    tagged = local_name(campaign.file, room=len(".errors.csv"), tag=str(campaign.id))
    name = tagged if (failed / tagged).exists() else kept
    return CampaignFiles(None, None, failed / name, failed / f"{name}.errors.csv", None)


# -- reading ---------------------------------------------------------------------------------

ContactRow = tuple[int, str, str]
"""(line in the contact file, CRM id, phone as exported)."""


def _map_rows(path: Path) -> Iterator[ContactRow]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter=";")
        next(reader, None)  # line;crm_id;idremote;phone
        for row in reader:
            if len(row) >= 4:
                yield int(row[0]), row[1], row[3]


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


def _original_rows(path: Path, encoding: str) -> Iterator[ContactRow]:
    with path.open("rb") as handle:
        first = True
        for line, fields in read_records(handle, encoding):
            if first:
                first = False
                if is_header(fields):
                    continue
            yield line, fields[0], fields[1] if len(fields) > 1 else ""


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


class _Join:
    """The campaign's facts by E.164 number (``fate``), then the contact rows against them."""

    def __init__(self, store: Store, settings: Settings, campaign: Campaign,
                 files: CampaignFiles, *, excel: bool) -> None:
        self.store, self.settings, self.campaign, self.files = store, settings, campaign, files
        self.excel = excel
        self.parts: list[Part] = store.parts(campaign.id)
        self.fate: dict[str, int] = {}
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
        fate = self.fate
        folder = self.files.folder
        for index, part in enumerate(self.parts):
            path = folder / part.remote_name if folder is not None else None
            if path is None or not path.exists():
                self.missing_parts.append(part.remote_name)
                continue
            mark = _UPLOADED | (index + 1) << _PART
            with path.open("rb") as handle:
                for _, fields in read_records(handle, "utf-8"):
                    fate[fields[1]] = mark
        dropped = self.files.dropped
        if dropped is not None and dropped.exists():
            with dropped.open(encoding="utf-8", newline="") as handle:
                reader = csv.reader(handle, delimiter=";")
                next(reader, None)  # idremote;msisdn;reason
                for row in reader:
                    if len(row) >= 2:
                        fate[row[1]] = fate.get(row[1], 0) | _SUPPRESSED
        self._load_acks()
        self._load_optouts()

    def _load_acks(self) -> None:
        fate, acks = self.fate, self.acks
        known: dict[tuple[str, str, str], int] = {}
        for msisdn, idstatus, status, at in campaign_deliveries(self.store, self.campaign.id):
            number = msisdn if msisdn in fate or msisdn[:1] == "+" else "+" + msisdn
            mark = fate.get(number)
            if mark is None or not mark & _UPLOADED:
                continue  # a line about no row of ours
            key = (idstatus, status, at)
            index = known.get(key)
            if index is None:
                acks.append(_Ack(idstatus, status, at, delivery_outcome(idstatus, status)))
                index = known[key] = len(acks)
            before = mark >> _ACK & _MASK
            if before and acks[before - 1].outcome != "pending" and \
                    acks[index - 1].outcome == "pending":
                continue  # a final status is not undone by an intermediate one
            fate[number] = mark & ~(_MASK << _ACK) | index << _ACK

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
            mark = fate.get(msisdn)
            if mark is None or not mark & _UPLOADED or mark >> _OPT:
                continue
            times.append(at)
            fate[msisdn] = mark | len(times) << _OPT

    def rows(self, contacts: Iterator[ContactRow]) -> Iterator[ResultRow]:
        errors = _errors(self.files.errors)
        normalize = NumberNormalizer(self.settings.campaign.default_region).normalize
        fate, parts, acks, when = self.fate, self.parts, self.acks, self.when
        for line, crm_id, phone in contacts:
            error = errors.get(line)
            raw = phone.strip()
            e164 = normalize(raw) if raw else None
            shown = e164 or phone
            if error is not None:
                yield crm_id, shown, "invalid", error[0], "", "", "", line, error[1]
                continue
            if e164 is None:  # validation took it: not expected
                yield crm_id, shown, "not_sent", "", "", "", "", line, "number not understood"
                continue
            mark = fate.get(e164, 0)
            if mark & _SEEN:
                yield crm_id, e164, "duplicate", "", "", "", "", line, \
                    "the number of an earlier row"
                continue
            fate[e164] = mark | _SEEN
            if mark & _SUPPRESSED:
                yield crm_id, e164, "suppressed", "", "", "", "", line, \
                    "on the suppression list at upload"
                continue
            if not mark & _UPLOADED:
                yield crm_id, e164, "not_sent", "", "", "", "", line, self._why_not(e164)
                continue
            part = parts[(mark >> _PART & _MASK) - 1]
            if part.state == PartState.REJECTED:
                yield crm_id, e164, "not_sent", "", "", "", "", line, \
                    f"the provider rejected {part.remote_name}"
                continue
            ack_index, opt_index = mark >> _ACK & _MASK, mark >> _OPT
            optout_at = when(self.optout_times[opt_index - 1]) if opt_index else ""
            if ack_index:
                ack = acks[ack_index - 1]
                outcome = "opted_out" if opt_index else ack.outcome
                yield crm_id, e164, outcome, ack.idstatus, ack.status, when(ack.at), \
                    optout_at, line, ""
            else:
                outcome = "opted_out" if opt_index else "pending"
                yield crm_id, e164, outcome, "", "", "", optout_at, line, \
                    f"no delivery report yet ({part.remote_name} {part.state})"

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


def result_rows(store: Store, settings: Settings, campaign: Campaign, *,
                excel: bool = False) -> Iterator[ResultRow]:
    """The results of ``campaign``, one row per contact row, in the contact file's order.

    Raises :class:`ResultsError` when the campaign's rows cannot be found (its archive
    purged after ``retention_days``, a manifest's contact map missing)."""
    if campaign.state == CampaignState.RECEIVED:
        raise ResultsError(f"campaign {campaign.campaign_id} (number {campaign.id}) is "
                           "received, not validated yet: its results come once it is")
    files = locate(settings, campaign)
    contacts: Iterator[ContactRow]
    if files.contact_map is not None and files.contact_map.exists():
        contacts = _map_rows(files.contact_map)
    elif campaign.file.endswith(".toml"):
        raise ResultsError(f"campaign {campaign.campaign_id} (number {campaign.id}): its "
                           f"contact map ({MAP_NAME}) is gone; kept {_kept(settings)}")
    elif files.original.exists():
        encoding = _file_encoding(files.original, campaign.summary.get("encoding"))
        contacts = _original_rows(files.original, encoding)
    else:
        raise ResultsError(f"campaign {campaign.campaign_id} (number {campaign.id}): its "
                           f"file is gone ({files.original} not found); kept "
                           f"{_kept(settings)}")
    join = _Join(store, settings, campaign, files, excel=excel)
    join.load()
    return join.rows(contacts)


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
    rows = result_rows(store, settings, campaign, excel=excel)
    if isinstance(out, Path):
        with replaced(out, text=False) as handle:
            figures = _write(rows, handle, excel=excel, encoding=encoding, delimiter=delimiter)
        figures.path = out
        return figures
    return _write(rows, out, excel=excel, encoding=encoding, delimiter=delimiter)


def _write(rows: Iterator[ResultRow], out: IO[bytes] | BinaryIO, *, excel: bool,
           encoding: str, delimiter: str) -> ResultsFigures:
    codec = "utf-8-sig" if excel else encoding
    text = io.TextIOWrapper(out, encoding=codec, errors="strict", newline="",
                            write_through=False)
    writer = csv.writer(text, delimiter=";" if excel else delimiter, lineterminator="\r\n")
    figures = ResultsFigures()
    counts = figures.counts
    try:
        writer.writerow(HEADER)
        for row in rows:
            counts[row[2]] += 1
            if excel:
                cells: tuple[object, ...] = (
                    excel_cell(row[0]), excel_number(row[1]), *row[2:4],
                    excel_cell(row[4]), *row[5:8], excel_cell(row[8]))
            else:
                cells = row
            try:
                writer.writerow(cells)
            except UnicodeEncodeError as exc:
                raise ResultsError(_unencodable(row, codec, exc)) from None
        figures.rows = sum(counts.values())
        text.flush()
    finally:
        text.detach()  # the caller's stream stays open
    return figures


def _unencodable(row: ResultRow, codec: str, exc: UnicodeEncodeError) -> str:
    for name, value in zip(HEADER, row, strict=True):
        try:
            str(value).encode(codec)
        except UnicodeEncodeError as inner:
            char = inner.object[inner.start]
            return (f"contact line {row[7]}: the {name} value {value!r} holds {char!r}, "
                    f"which {codec} cannot write: use --encoding utf-8 (or --excel)")
    return f"contact line {row[7]}: {exc.reason} in {codec}"
