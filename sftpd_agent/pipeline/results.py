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
from ..rules.display import archived_original, local_name
from ..rules.numbers import NumberNormalizer
from ..rules.plan import FOREIGN
from ..rules.states import WAITING, CampaignState, PartState
from ..store.journal import Store
from ..store.records import Campaign, Part
from ..store.results import STATUS_SEPARATOR, campaign_deliveries, optouts_since
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

ContactRow = tuple[int, str, str, str]
"""(line in the contact file, CRM id, IDREMOTE, phone as exported)."""


def _map_rows(path: Path) -> Iterator[ContactRow]:
    with path.open("rb") as handle:
        records = read_records(handle, "utf-8-sig")
        next(records, None)  # line;crm_id;idremote;phone
        for _, fields in records:
            if len(fields) >= 4 and fields[0].isdigit():
                yield int(fields[0]), fields[1], fields[2], fields[3]


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
            yield line, fields[0], fields[0], fields[1] if len(fields) > 1 else ""


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


class _Uploaded:
    """One provider file read along the contact rows: its rows are theirs, in their order
    (less the ones left out), so its next row is the one a contact row may be."""

    def __init__(self, part: Part, path: Path) -> None:
        self.part = part
        self._handle = path.open("rb")
        self._records = read_records(self._handle, "utf-8")
        self.idremote: str | None = None
        self.msisdn = ""
        self.advance()

    def advance(self) -> None:
        record = next(self._records, None)
        if record is None:
            self.idremote = None
            self._handle.close()
        else:
            self.idremote, self.msisdn = record[1][0], record[1][1]

    def close(self) -> None:
        self._handle.close()


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
        fate, acks = self.fate, self.acks
        marks: dict[str, int] = {}  # a status string -> its mark
        for msisdn, joined in campaign_deliveries(self.store, self.campaign.id):
            mark = marks.get(joined)
            if mark is None:
                idstatus, status, at = joined.split(STATUS_SEPARATOR)
                acks.append(_Ack(idstatus, status, at, delivery_outcome(idstatus, status)))
                mark = marks[joined] = len(acks) << _ACK
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

    def rows(self, contacts: Iterator[ContactRow]) -> Iterator[ResultRow]:
        errors = _errors(self.files.errors)
        normalize = NumberNormalizer(self.settings.campaign.default_region).normalize
        fate, acks, when, verify = self.fate, self.acks, self.when, self.verify
        streams = self._streams()
        try:
            for line, crm_id, idremote, phone in contacts:
                error = errors.get(line)
                if error is not None:
                    raw = phone.strip()
                    yield crm_id, (normalize(raw) if raw else None) or phone, "invalid", \
                        error[0], "", "", "", line, error[1]
                    continue
                part = None
                for stream in streams:
                    if stream.idremote == idremote:
                        if not verify or phone == stream.msisdn or \
                                normalize(phone.strip()) == stream.msisdn:
                            part, e164 = stream.part, stream.msisdn
                            stream.advance()
                        break
                if part is None:  # not uploaded: duplicate, suppressed, or not sent
                    raw = phone.strip()
                    found = normalize(raw) if raw else None
                    if found is None:  # validation took it: not expected
                        yield crm_id, phone, "not_sent", "", "", "", "", line, \
                            "number not understood"
                        continue
                    e164 = found
                key = int(e164)
                mark = fate.get(key, 0)
                fate[key] = mark | _SEEN
                if part is None:
                    if mark & _SEEN:
                        yield crm_id, e164, "duplicate", "", "", "", "", line, \
                            "the number of an earlier row"
                        continue
                    if mark & _SUPPRESSED:
                        yield crm_id, e164, "suppressed", "", "", "", "", line, \
                            "on the suppression list at upload"
                        continue
                    if not mark >> _ACK & _MASK:
                        yield crm_id, e164, "not_sent", "", "", "", "", line, \
                            self._why_not(e164)
                        continue
                elif part.state == PartState.REJECTED:
                    yield crm_id, e164, "not_sent", "", "", "", "", line, \
                        f"the provider rejected {part.remote_name}"
                    continue
                ack_index, opt_index = mark >> _ACK & _MASK, mark >> _OPT
                optout_at = when(self.optout_times[opt_index - 1]) if opt_index else ""
                if ack_index:
                    ack = acks[ack_index - 1]
                    yield crm_id, e164, "opted_out" if opt_index else ack.outcome, \
                        ack.idstatus, ack.status, when(ack.at), optout_at, line, ""
                else:
                    assert part is not None  # noqa: S101 - no ACK: matched to its file
                    yield crm_id, e164, "opted_out" if opt_index else "pending", "", "", "", \
                        optout_at, line, f"no delivery report yet ({part.remote_name} " \
                        f"{part.state})"
            left = [s for s in streams if s.idremote is not None]
            if left:
                raise ResultsError(
                    f"{left[0].part.remote_name}: its row IDREMOTE {left[0].idremote} matches "
                    "no contact row in order: the campaign's files disagree, no results "
                    "written")
        finally:
            for stream in streams:
                stream.close()

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
        contacts_verify = False
    elif campaign.file.endswith(".toml"):
        raise ResultsError(f"campaign {campaign.campaign_id} (number {campaign.id}): its "
                           f"contact map ({MAP_NAME}) is gone; kept {_kept(settings)}")
    elif files.original.exists():
        encoding = _file_encoding(files.original, campaign.summary.get("encoding"))
        contacts = _original_rows(files.original, encoding)
        contacts_verify = True
    else:
        raise ResultsError(f"campaign {campaign.campaign_id} (number {campaign.id}): its "
                           f"file is gone ({files.original} not found); kept "
                           f"{_kept(settings)}")
    join = _Join(store, settings, campaign, files, excel=excel, verify=contacts_verify)
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
