"""Contact files as CRM and e-mail tools export them, turned into provider rows.

A contacts file has a header row (``Prénom;Nom;Mobile;Ville;Client ID``), ``;``, ``,`` or tab
between fields with RFC 4180 quoting, and is UTF-8 (with or without a BOM) or CP1252.
:func:`sniff` reads its start and says how to read it: encoding, delimiter, headers, the
phone column (found by its header: "Mobile", "Téléphone portable", "N° de mobile"...) and the
CRM id column. :func:`render` then reads the rows (streaming, a block at a time) and fills the
message template of each; :func:`write_provider_rows` writes what it rendered as a provider
file (``IDREMOTE;MSISDN;OADC;MSG``) for the usual row rules (:mod:`.validation`) to check, and
returns the :class:`LineMap` that takes their errors back to the contact file's lines and
column headers.

Pure: these functions read the file they are given and write to the stream they are given.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from array import array
from bisect import bisect_right
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, TextIO, cast

from ..errors import InputError
from .campaign_file import BOM, CHUNK, MAX_RECORD_LINES, undecodable
from .template import Missing, Template, find_column, shown_headers
from .validation import FIELDS, RowError

DELIMITERS = (";", ",", "\t")
SAMPLE_ROWS = 50
"""Records after the header that :func:`sniff` compares delimiters on."""
PROVIDER_HEADER = ("idremote", "msisdn", "oadc", "msg")

MOBILE_WORDS = frozenset({"mobile", "portable", "gsm", "cellulaire", "cell", "cellphone",
                          "msisdn", "sms", "mobil"})
"""Header words that name a mobile number: preferred over a plain "Téléphone"."""
PHONE_WORDS = MOBILE_WORDS | {"telephone", "tel", "phone", "tele", "telefon", "telefono"}
LANDLINE_WORDS = frozenset({"fixe", "domicile", "bureau", "home", "office", "work", "landline",
                            "pro", "professionnel", "travail"})
"""Header words that name a landline: such a column is taken only when no other matches."""
FILLER_WORDS = frozenset({"n", "no", "nr", "nro", "num", "numero", "number", "de", "du", "d",
                          "of", "the", "principal", "main", "primary", "perso", "personnel",
                          "personal", "prefere", "preferred", "client", "contact", "sur"})
"""Words that may stand beside a phone word in a phone column's header."""
NEVER_WORDS = frozenset({"fax", "telecopie", "indicatif", "prefix", "prefixe", "pays",
                         "country", "code", "ext", "extension", "poste", "operateur",
                         "operator", "type", "optin", "opt", "consentement", "consent", "date"})
"""Words that make a header not a phone number's, whatever else it says ("Fax", "Indicatif
pays", "Date opt-in SMS")."""
PHONE_ALIASES = ("mobile", "portable", "telephone mobile", "telephone portable", "tel portable",
                 "tel mobile", "n mobile", "n de mobile", "numero de mobile", "mobile phone",
                 "phone mobile", "cell phone", "gsm", "cellulaire", "msisdn", "telephone", "tel",
                 "phone", "phone number", "numero", "numero de telephone", "n de telephone")
"""Examples of phone headers (as :func:`header_words` writes them); the rule is
:func:`phone_rank`: any header made of a phone word and filler words is one."""
ID_ALIASES = ("client id", "id client", "customer id", "contact id", "id contact", "crm id",
              "id crm", "identifiant client", "identifiant contact", "identifiant",
              "ref client", "reference client", "code client", "numero client", "n client",
              "no client", "customer number", "external id", "id externe", "record id", "id")
"""Headers of a CRM id column (as :func:`header_words` writes them), the preferred first."""

_SEPARATORS = re.compile("[\\s_\\-./°º()'\u2019#:]+")
_DIGITS = re.compile(r"\d")
_BLANK_LINES = re.compile(r"(?:[ \t\f\v]*(?:\r\n|\r|\n))*")
_LINE_ENDS = re.compile(r"\r\n|\r|\n")


class ContactsError(InputError):
    """A contacts file that cannot be used as a whole; one line naming the file (and line)."""


@dataclass(frozen=True)
class ContactsFormat:
    """How to read one contacts file."""

    encoding: str
    """``"utf-8-sig"`` (a BOM), ``"utf-8"`` or ``"cp1252"``."""
    delimiter: str
    """``";"``, ``","`` or ``"\\t"``."""
    headers: tuple[str, ...]
    phone: int
    """Index of the phone column."""
    id: int | None = None
    """Index of the CRM id column, None when there is none."""
    header_line: int = 1
    """The physical line of the header row (blank lines may come before it)."""

    @property
    def phone_header(self) -> str:
        return self.headers[self.phone]

    @property
    def id_header(self) -> str | None:
        return None if self.id is None else self.headers[self.id]


@dataclass(frozen=True, slots=True)
class Contact:
    line: int
    """Physical line of the record's start in the contacts file (the header is line 1)."""
    values: list[str]
    """One value per header (missing ones ""), as written (not stripped)."""


@dataclass(frozen=True, slots=True)
class Rendered:
    """One contact row as a provider row, with where it came from."""

    line: int
    idremote: str
    phone: str
    oadc: str
    message: str
    crm_id: str
    values: Sequence[str] = field(default=(), compare=False)
    """The contact row's values (one per header), when the renderer gives them."""


@dataclass(frozen=True, slots=True)
class ContactRowError(RowError):
    """A contact row that never became a provider row (``template_value_missing``), with what
    ``results`` needs to report it: the row's CRM id and phone number as written."""

    crm_id: str = ""
    phone: str = ""


# -- Headers ---------------------------------------------------------------------------------


def header_words(header: str) -> str:
    """``header`` as phone and id aliases are compared: case and accents ignored, spaces,
    ``_ - . / °`` and the like as one space. ``"Tél. portable"`` -> ``"tel portable"``."""
    decomposed = unicodedata.normalize("NFKD", header)
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    return " ".join(_SEPARATORS.sub(" ", bare.casefold()).split())


def phone_rank(header: str) -> int | None:
    """How surely ``header`` names a column of mobile numbers: 0 a mobile ("Mobile", "Tél.
    portable"), 1 a phone ("Téléphone", "Numéro"), 2 a landline ("Tél. fixe"); None: not a
    phone column."""
    words = header_words(header).split()
    if not words or not NEVER_WORDS.isdisjoint(words):
        return None
    if words == ["numero"]:
        return 1
    if PHONE_WORDS.isdisjoint(words):
        return None
    if any(w not in PHONE_WORDS and w not in FILLER_WORDS and w not in LANDLINE_WORDS
           and not w.isdigit() for w in words):
        return None  # "Téléphone conseiller" is someone else's number
    if not LANDLINE_WORDS.isdisjoint(words):
        return 2
    return 0 if not MOBILE_WORDS.isdisjoint(words) else 1


def find_phone(headers: tuple[str, ...]) -> int | None:
    """The index of the phone column among ``headers``; None when no header names one.

    Raises :class:`LookupError` when several are equally likely (two "Mobile" columns).
    """
    ranked = [(rank, i) for i, h in enumerate(headers) if (rank := phone_rank(h)) is not None]
    if not ranked:
        return None
    best = min(rank for rank, _ in ranked)
    chosen = [i for rank, i in ranked if rank == best]
    if len(chosen) > 1:
        listed = ", ".join(repr(headers[i]) for i in chosen)
        raise LookupError(f"several columns could hold the phone numbers: {listed}")
    return chosen[0]


def find_id(headers: tuple[str, ...]) -> int | None:
    """The index of the CRM id column (the header earliest in :data:`ID_ALIASES`), or None."""
    keys = [header_words(h) for h in headers]
    for alias in ID_ALIASES:
        if alias in keys:
            return keys.index(alias)
    return None


# -- Sniffing --------------------------------------------------------------------------------


def sniff(
    path: Path, *, delimiter: str | None = None, phone: str | None = None,
    id_column: str | None = None,
) -> ContactsFormat:
    """How to read the contacts file at ``path``, from its start.

    ``delimiter`` (``";"``, ``","``, ``"\\t"`` or ``"tab"``), ``phone`` and ``id_column``
    (headers, matched as template placeholders are) are the manifest's, when it states them.
    Raises :class:`ContactsError`.
    """
    name = path.name
    try:
        with path.open("rb") as stream:
            head, encoding = _head(stream, name)
    except OSError as exc:
        raise ContactsError(f"cannot be read: {exc.strerror or exc}", file=name) from None
    text = head.decode("utf-8" if encoding == "utf-8-sig" else encoding, "replace")
    # Blank lines before the header; lines end at CR, LF or CRLF only, as the rows' do.
    skipped = blank.group() if (blank := _BLANK_LINES.match(text)) else ""
    sample = text[len(skipped):]
    if not sample.strip():
        raise ContactsError("the file is empty: a header row and contacts are expected",
                            file=name)
    header_line = 1 + len(_LINE_ENDS.findall(skipped))
    if delimiter is not None:
        delimiter = "\t" if delimiter == "tab" else delimiter
        if delimiter not in DELIMITERS:
            raise ContactsError(f"delimiter {delimiter!r} is not one of ';', ',' or tab",
                                file=name)
    else:
        delimiter = _delimiter(sample)
    header_row = next(csv.reader(io.StringIO(sample), delimiter=delimiter), [])
    headers = [h.strip() for h in header_row]
    while len(headers) > 1 and not headers[-1]:  # "Nom;Mobile;" : a trailing delimiter
        headers.pop()
    fmt_headers = tuple(headers)
    phone_index = _named(name, "phone", phone, fmt_headers) if phone else _phone(name, fmt_headers)
    id_index = (_named(name, "id", id_column, fmt_headers) if id_column
                else find_id(fmt_headers))
    if id_index == phone_index:
        id_index = None if not id_column else id_index
    return ContactsFormat(encoding, delimiter, fmt_headers, phone_index, id_index, header_line)


def _head(stream: BinaryIO, name: str) -> tuple[bytes, str]:
    """The first block of ``stream`` and the file's encoding.

    A block of plain ASCII says nothing about the encoding: then the file is read on, a block
    at a time (cheap: ``bytes.isascii``), to its first byte outside ASCII.
    """
    head = stream.read(CHUNK)
    if b"\0" in head:
        raise ContactsError("NUL byte: this is binary data, not a CSV export", file=name)
    if head.startswith(BOM):
        _check_utf8(head[len(BOM):], name, head)
        return head[len(BOM):], "utf-8-sig"
    block = head
    while block.isascii():
        block = stream.read(CHUNK)
        if not block:
            return head, "utf-8"  # all ASCII: UTF-8 reads it as CP1252 would
    # The first block with a byte outside ASCII decides (it may end inside a character).
    start = len(block) - len(block.lstrip(bytes(range(128))))
    try:
        block[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason != "unexpected end of data":
            return _cp1252(head, block, name)
    return head, "utf-8"


def _check_utf8(data: bytes, name: str, head: bytes) -> None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason != "unexpected end of data":
            line = head[:len(BOM) + exc.start].count(b"\n") + 1
            raise ContactsError(
                f"starts with a UTF-8 mark but byte 0x{data[exc.start]:02X} is not UTF-8",
                file=name, line=line) from None


def _cp1252(head: bytes, block: bytes, name: str) -> tuple[bytes, str]:
    for data in (head, block):
        try:
            data.decode("cp1252")
        except UnicodeDecodeError as exc:
            line = data[:exc.start].count(b"\n") + 1 if data is head else None
            raise ContactsError(
                f"byte 0x{data[exc.start]:02X} is neither UTF-8 nor CP1252: export the "
                "file again as CSV (UTF-8)", file=name, line=line) from None
    return head, "cp1252"


def _delimiter(sample: str) -> str:
    """The delimiter that splits the header line of ``sample`` into the most fields, among
    those that split the next rows consistently with it."""
    best: tuple[bool, int, float] | None = None
    chosen = DELIMITERS[0]
    for candidate in DELIMITERS:
        rows = _sample_rows(sample, candidate)
        if not rows:
            continue
        width = len(rows[0])
        body = rows[1:]
        fitting = sum(1 for row in body if _fits(row, width))
        share = fitting / len(body) if body else 1.0
        score = (width > 1 and share >= 0.9, width if width > 1 else 0, share)
        if best is None or score > best:
            best, chosen = score, candidate
    return chosen


def _sample_rows(sample: str, delimiter: str) -> list[list[str]]:
    rows: list[list[str]] = []
    reader = csv.reader(io.StringIO(sample), delimiter=delimiter)
    try:
        for row in reader:
            if row and any(value.strip() for value in row):
                rows.append(row)
                if len(rows) > SAMPLE_ROWS:
                    break
    except csv.Error:
        pass  # the block may end inside a quoted value
    if rows and len(rows) <= SAMPLE_ROWS and rows[-1] and len(rows) > 1:
        rows.pop()  # the block's last row may be cut
    return rows


def _fits(row: list[str], width: int) -> bool:
    if len(row) == width:
        return True
    return len(row) > width and not any(value.strip() for value in row[width:])


def _named(name: str, what: str, header: str, headers: tuple[str, ...]) -> int:
    try:
        return find_column(header, headers)
    except LookupError as exc:
        raise ContactsError(f"[columns] {what} = {header!r}: {exc}", file=name) from None


def _phone(name: str, headers: tuple[str, ...]) -> int:
    try:
        index = find_phone(headers)
    except LookupError as exc:
        raise ContactsError(f"{exc}; name the right one with [columns] phone = ...",
                            file=name) from None
    if index is not None:
        return index
    if any(len(_DIGITS.findall(h)) >= 6 for h in headers):
        raise ContactsError(
            "the first line looks like a contact, not a header row: the file must start with "
            f"the column names, e.g. Prénom;Nom;Mobile (first line: {shown_headers(headers)})",
            file=name, line=1)
    raise ContactsError(
        f"no column of phone numbers (headers: {shown_headers(headers)}); name it with "
        "[columns] phone = ...", file=name)


def looks_like_contacts(path: Path) -> bool:
    """Whether the file at ``path`` starts like a contacts export: a header row with a phone
    column, and not the provider's own shape (``IDREMOTE;MSISDN;OADC;MSG``, or four fields
    whose second is a number). Never raises: False on any error; only a regular file is
    opened (a FIFO would be waited on, a link is never followed)."""
    try:
        if path.is_symlink() or not path.is_file():
            return False
        with path.open("rb") as stream:
            head = stream.read(65_536)
        if b"\0" in head:
            return False
        try:
            text = head.removeprefix(BOM).decode("utf-8")
        except UnicodeDecodeError as exc:
            text = (head.removeprefix(BOM)[:exc.start].decode("utf-8")
                    if exc.reason == "unexpected end of data" else head.decode("cp1252", "replace"))
        lines = [line for line in text.splitlines()[:50] if line.strip()]
        if not lines:
            return False
        first = lines[0]
        for line in lines[:2]:
            semicolon = line.split(";")
            if len(semicolon) == 4 and len(first.split(";")) == 4 and len(
                    _DIGITS.findall(semicolon[1])) >= 6:
                return False  # provider rows (under a header of any words: "ID;Mobile;...")
        delimiter = _delimiter(text)
        headers = tuple(h.strip() for h in next(csv.reader([first], delimiter=delimiter)))
        if tuple(header_words(h) for h in headers[:4]) == PROVIDER_HEADER:
            return False
        return find_phone(headers) is not None
    except Exception:  # a guess, never a failure
        return False


# -- Reading and rendering -------------------------------------------------------------------


def read_contacts(path: Path, fmt: ContactsFormat) -> Iterator[Contact]:
    """Every contact row of the file at ``path``, after its header, in order.

    Blank rows (nothing but delimiters and white space) are skipped; a row with fewer values
    than headers is padded with "", values beyond the headers are ignored. Raises
    :class:`ContactsError` for what cannot be read: bytes not in ``fmt.encoding``, a quote
    never closed, NUL bytes.
    """
    for line, values in _rows(path, fmt):
        yield Contact(line, values)


@dataclass(frozen=True, slots=True)
class Span:
    """A part of a contacts file that starts and ends at a record boundary: bytes
    ``start`` to ``end`` (exclusive), whose first physical line is ``first_line``."""

    start: int
    end: int
    first_line: int


def _rows(path: Path, fmt: ContactsFormat, span: Span | None = None,
          ) -> Iterator[tuple[int, list[str]]]:
    """``(line, values)`` for every contact row: :func:`read_contacts` without objects; of
    ``span`` only when given (the header is skipped only in a span from the file's start).
    A span that ends inside a quoted value raises :class:`ContactsError`."""
    name = path.name
    width = len(fmt.headers)
    pad = [""] * width
    phone = fmt.phone
    base = 0 if span is None else span.first_line - 1
    try:
        with path.open("rb") as file:
            raw: BinaryIO = file
            encoding = fmt.encoding
            if span is not None:
                file.seek(span.start)
                raw = io.BytesIO(file.read(span.end - span.start))
                if span.start:  # a BOM is the file's first bytes only
                    encoding = encoding.removesuffix("-sig")
            text = io.TextIOWrapper(raw, encoding=encoding, newline="")
            text._CHUNK_SIZE = CHUNK  # type: ignore[attr-defined]  # fewer, bigger decodes
            reader = csv.reader(text, delimiter=fmt.delimiter, strict=True)
            start = base  # lines read before the current record
            header = span is None or not span.start
            try:
                for row in reader:
                    line, start = start + 1, base + reader.line_num
                    if header:
                        if line >= fmt.header_line:
                            header = False
                        continue
                    if start - line >= MAX_RECORD_LINES:
                        raise ContactsError(
                            f"a quoted value opened here is still open {start - line + 1} "
                            "lines later: a quote is probably not closed", file=name, line=line)
                    if len(row) != width:
                        if not row:
                            continue
                        row = (row + pad)[:width]  # noqa: PLW2901
                    if not row[phone].strip() and _blank(row):
                        continue
                    yield line, row
            except csv.Error as exc:
                raise ContactsError(_csv_reason(str(exc)), file=name,
                                    line=start + 1) from None
            except UnicodeDecodeError:
                # Decoding runs a block ahead of the rows: find the byte's line again.
                line, byte = undecodable(raw, encoding)
                raise ContactsError(
                    f"byte 0x{byte:02X} is not {fmt.encoding.removesuffix('-sig').upper()} "
                    "like the start of the file: save the whole file in one encoding",
                    file=name, line=base + line) from None
    except OSError as exc:
        raise ContactsError(f"cannot be read: {exc.strerror or exc}", file=name) from None


def _csv_reason(message: str) -> str:
    if "field larger than field limit" in message or "unexpected end of data" in message:
        return "a quoted value opened here is never closed: a quote is probably missing"
    if "NUL" in message:
        return "NUL byte: this is binary data, not a CSV export"
    return f"malformed quoting: {message}"


def _missing(line: int, missing: Missing, values: list[str], fmt: ContactsFormat
             ) -> ContactRowError:
    crm_id = "" if fmt.id is None else values[fmt.id].strip()
    return ContactRowError(line, "template_value_missing", missing.header, "",
                           f"empty value for {{{missing.header}}} and no default",
                           crm_id, values[fmt.phone].strip())


def idremote_for(crm_id: str, line: int, used: set[str]) -> str:
    """A contact row's IDREMOTE, recorded in ``used`` (the file's so far): its CRM id when
    that is 1..40 ASCII letters or digits not used before, else :func:`_generated`."""
    if len(crm_id) <= 40 and crm_id.isascii() and crm_id.isalnum():
        size = len(used)
        used.add(crm_id)  # one look-up: a million ids do not fit in a cache
        if len(used) != size:
            return crm_id
    idremote = _generated(line, used)
    used.add(idremote)
    return idremote


def _generated(line: int, used: set[str]) -> str:
    """``L<line>``, or ``L<line>X<n>`` with the first ``n`` that is not in ``used``."""
    idremote = f"L{line}"
    number = 0
    while idremote in used:
        number += 1
        idremote = f"L{line}X{number}"
    return idremote


def render(
    path: Path, fmt: ContactsFormat, template: Template, *, sender: str = ""
) -> Iterator[Rendered | RowError]:
    """One item per contact row of ``path``, in order: its :class:`Rendered` provider row, or
    a ``template_value_missing`` :class:`ContactRowError` (line, column header, and the row's
    CRM id and phone) when a value the template needs is empty.

    IDREMOTE is the CRM id when ``fmt.id`` is set and the value is 1..40 ASCII letters or
    digits not used before in the file; else ``L<line>`` (stable: the same file gives the
    same ids), with ``X<n>`` added if that is already taken (unique). (:func:`render_part` does
    the same, with :func:`write_provider_rows`, in one loop.)
    """
    phone, id_column = fmt.phone, fmt.id
    fill = template.fill  # _rows gives every column
    used: set[str] = set()
    for line, values in _rows(path, fmt):
        message = fill(values)
        if isinstance(message, Missing):
            yield _missing(line, message, values, fmt)
            continue
        if id_column is None:
            crm_id, idremote = "", f"L{line}"
        else:
            crm_id = values[id_column].strip()
            idremote = idremote_for(crm_id, line, used)
        yield Rendered(line, idremote, values[phone].strip(), sender, message, crm_id, values)


def split(
    items: Iterable[Rendered | RowError], on_error: Callable[[RowError], None]
) -> Iterator[Rendered]:
    """The :class:`Rendered` items of ``items``; each :class:`RowError` goes to ``on_error``."""
    for item in items:
        if isinstance(item, Rendered):
            yield item
        else:
            on_error(item)


# -- Provider rows and their lines -----------------------------------------------------------


class LineMap:
    """From the physical lines of the file :func:`write_provider_rows` wrote to the contacts
    file's lines.

    Line 1 of the written file is its header row (the contacts' header line); record ``r``
    (from 0) starts on line ``r + 2`` plus the extra lines of the records before it that
    span several lines. Only those few are kept apart: one number per record in all.
    """

    __slots__ = ("_contact", "_header_line", "_spans")

    def __init__(self, header_line: int = 1) -> None:
        self._contact = array("q")
        """The contact line of each record, in order."""
        self._header_line = header_line
        self._spans: tuple[array[int], array[int], array[int], array[int]] = (
            array("q"), array("q"), array("q"), array("q"))
        """The records that span several lines: first line, last line, record index, extra
        lines up to and including it."""

    def add(self, contact_line: int, lines: int = 1) -> None:
        """The next record: from ``contact_line``, ``lines`` physical lines long."""
        if lines > 1:
            self._span(len(self._contact), lines)
        self._contact.append(contact_line)

    def _span(self, index: int, lines: int) -> None:
        starts, ends, indexes, extras = self._spans
        before = extras[-1] if extras else 0
        start = index + 2 + before
        starts.append(start)
        ends.append(start + lines - 1)
        indexes.append(index)
        extras.append(before + lines - 1)

    def __len__(self) -> int:
        return len(self._contact)

    def extend(self, part: LineMap) -> None:
        """Append the records of ``part``, a map of rows written after these (by
        :func:`render_part`, without a header row of their own)."""
        records = len(self._contact)
        extra = self._spans[3][-1] if self._spans[3] else 0
        starts, ends, indexes, extras = self._spans
        their_starts, their_ends, their_indexes, their_extras = part._spans
        starts.extend(array("q", (start + records + extra for start in their_starts)))
        ends.extend(array("q", (end + records + extra for end in their_ends)))
        indexes.extend(array("q", (index + records for index in their_indexes)))
        extras.extend(array("q", (lines + extra for lines in their_extras)))
        self._contact.extend(part._contact)

    def contact_line(self, written_line: int) -> int:
        """The contacts file's line of the record that ``written_line`` belongs to (the
        header's for line 1; the last record's beyond the end)."""
        contact = self._contact
        if written_line < 2 or not contact:
            return self._header_line
        starts, ends, indexes, extras = self._spans
        at = bisect_right(starts, written_line) - 1
        if at >= 0 and written_line <= ends[at]:
            return contact[indexes[at]]
        index = written_line - 2 - (extras[at] if at >= 0 else 0)
        return contact[min(index, len(contact) - 1)]

    def translate(self, error: RowError, fmt: ContactsFormat) -> RowError:
        """``error`` (from validating the written file) as the contacts file's user sees it:
        their line, their column header; value and detail kept."""
        names = {
            FIELDS[0]: fmt.id_header if fmt.id is not None else "IDREMOTE (generated)",
            FIELDS[1]: fmt.phone_header,
            FIELDS[2]: "sender",
            FIELDS[3]: "message",
        }
        return replace(error, line=self.contact_line(error.line),
                       field=names.get(error.field) or error.field)


HEADER_ROW = ";".join(FIELDS)
FLUSH_ROWS = 8192
"""Rows joined and encoded together before they are written."""


class _ProviderRows:
    """Writes provider rows to a binary stream, a batch at a time, as
    :class:`.upload_file.UploadWriter` would write them byte for byte: the usual row (no
    double quote, line break or ``;`` in a value) is joined directly, any other goes through
    :mod:`csv` with the same dialect. Without a stream, the batches are taken instead
    (:meth:`take`)."""

    def __init__(self, out: BinaryIO | None, header_line: int, *, header: bool = True) -> None:
        self.out = out
        self.lines = LineMap(header_line)
        self.batch: list[str] = [HEADER_ROW] if header else []
        self.breaks = False
        """Whether a row of the batch holds a line break (a record over several lines)."""
        self._quoted = io.StringIO()
        self._csv = csv.writer(self._quoted, delimiter=";", quotechar='"',
                               quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")

    def quoted(self, row: tuple[str, str, str, str], contact_line: int) -> None:
        """A row that needs quoting, or holds line breaks."""
        self._quoted.seek(0)
        self._quoted.truncate()
        self._csv.writerow(row)
        text = self._quoted.getvalue()
        self.batch.append(text[:-2])
        lines = _line_ends(text) or 1
        self.breaks = self.breaks or lines > 1
        self.lines.add(contact_line, lines)

    def take(self) -> Batch:
        """The rows of the batch (each without its line end) and whether one holds a line
        break; the batch is emptied."""
        taken = Batch(self.batch[:], self.breaks)
        self.batch.clear()
        self.breaks = False
        return taken

    def flush(self) -> None:
        if self.batch:
            assert self.out is not None  # noqa: S101 - a writer without one is taken from
            self.out.write(("\r\n".join(self.batch) + "\r\n").encode())
            self.batch.clear()
            self.breaks = False


@dataclass(frozen=True, slots=True)
class Batch:
    """Rendered provider rows, each without its line end, as they would be written."""

    rows: list[str]
    breaks: bool
    """Whether a row holds a line break (then it is several lines of the written file)."""


def write_provider_rows(items: Iterable[Rendered], out: BinaryIO, *,
                        header_line: int = 1) -> LineMap:
    """Write ``items`` to ``out`` as a provider file, and map its lines back.

    A header row ``IDREMOTE;MSISDN;OADC;MSG`` first (so that the row rules never take the
    first contact for a header; ``header_line`` is the contacts file's header line), then one
    row per item: UTF-8 without a BOM, ``;``, RFC 4180 quoting exactly as
    :class:`.upload_file.UploadWriter` writes, CRLF. A value holding line breaks takes several
    physical lines; the :class:`LineMap` knows.
    """
    writer = _ProviderRows(out, header_line)
    batch, add = writer.batch, writer.batch.append
    add_line = writer.lines._contact.append
    for item in items:
        row = f"{item.idremote};{item.phone};{item.oadc};{item.message}"
        if '"' in row or "\n" in row or "\r" in row or row.count(";") != 3:
            writer.quoted((item.idremote, item.phone, item.oadc, item.message), item.line)
        else:
            add(row)
            add_line(item.line)
        if len(batch) >= FLUSH_ROWS:
            writer.flush()
    writer.flush()
    return writer.lines


@dataclass
class Part:
    """What :func:`render_part` made of a span of a contacts file, beside the rows it wrote."""

    lines: LineMap
    """Of the rows written, as if under a header row of their own (:meth:`LineMap.extend`)."""
    rejected: list[ContactRowError]
    first: list[Rendered]
    """The first rendered rows (``preview`` at most), with their values."""
    longest: Rendered | None
    """The first rendered row of the greatest message length (none longer than 0)."""
    used: set[str]
    """The IDREMOTEs the ``used`` given and this span's rows hold (empty without an id
    column: then every IDREMOTE is ``L<line>``, unique)."""


def render_part(
    path: Path, fmt: ContactsFormat, template: Template, out: BinaryIO, *,
    span: Span | None = None, used: set[str] | None = None, sender: str = "",
    contact_map: TextIO | None = None, preview: int = 5,
) -> Part:
    """:func:`render` and :func:`write_provider_rows` in one loop, for a million rows, of
    ``span`` (the whole file when None), keeping what ``check`` and ``results`` need instead
    of calling back per row: the rows go to ``out``
    (no header row unless ``span`` starts the file), ``line;crm_id;idremote;phone`` per
    contact row to ``contact_map`` (rejected rows with no IDREMOTE), without its header.

    ``used`` holds the IDREMOTEs of the rows before ``span`` (it is added to): with it, the
    rows written are byte for byte those it writes for them in the whole file.
    """
    batches = render_batches(path, fmt, template, span=span, used=used, sender=sender,
                             contact_map=contact_map, preview=preview)
    write = out.write
    while True:
        try:
            batch = next(batches)
        except StopIteration as done:
            return cast(Part, done.value)
        write(("\r\n".join(batch.rows) + "\r\n").encode())


def render_batches(
    path: Path, fmt: ContactsFormat, template: Template, *,
    span: Span | None = None, used: set[str] | None = None, sender: str = "",
    contact_map: TextIO | None = None, preview: int = 5,
) -> Generator[Batch, None, Part]:
    """:func:`render_part`'s rows a batch at a time, instead of written: what it would
    write, in order; its :class:`Part` is the generator's return value. For rows checked
    as they are rendered, never written."""
    phone, id_column = fmt.phone, fmt.id
    fill = template.fill
    used = set() if used is None else used
    used_add = used.add
    rows = _plain_rows(path, fmt, span) if span is not None else None
    # Rows of a span without quotes hold no '"', line break or (split at ';') ';': when the
    # template's own text and the sender hold none either, no row needs quoting.
    static = sender + "".join(piece if isinstance(piece, str) else piece.default or ""
                              for piece in template.pieces)
    check = rows is None or fmt.delimiter != ";" or any(c in static for c in ';"\r\n')
    writer = _ProviderRows(None, fmt.header_line, header=span is None or not span.start)
    batch, add = writer.batch, writer.batch.append
    add_line = writer.lines._contact.append
    rejected: list[ContactRowError] = []
    first: list[Rendered] = []
    longest, at_longest = 0, None
    kept: list[tuple[int, str, str, str]] = []
    keep = kept.append if contact_map is not None else None
    map_rows = csv.writer(contact_map, delimiter=";", lineterminator="\r\n").writerows \
        if contact_map is not None else None
    # Without quotes and ';' in the values, the map's rows need no csv writer either.
    joined: list[str] | None = [] if contact_map is not None and not check else None
    for line, values in rows if rows is not None else _rows(path, fmt, span):
        message = fill(values)
        if message.__class__ is Missing:
            error = _missing(line, message, values, fmt)
            rejected.append(error)
            if joined is not None:
                joined.append(f"{line};{error.crm_id};;{error.phone}\r\n")
            elif keep is not None:
                keep((line, error.crm_id, "", error.phone))
            continue
        if id_column is None:
            crm_id, idremote = "", f"L{line}"
        else:  # idremote_for, inlined: this is the loop a million rows go through
            idremote = crm_id = values[id_column].strip()
            if len(crm_id) > 40 or not (crm_id.isascii() and crm_id.isalnum()):
                idremote = _generated(line, used)
                used_add(idremote)
            else:
                size = len(used)
                used_add(crm_id)
                if len(used) == size:
                    idremote = _generated(line, used)
                    used_add(idremote)
        number = values[phone].strip()
        row = f"{idremote};{number};{sender};{message}"
        if check and ('"' in row or "\n" in row or "\r" in row or row.count(";") != 3):
            writer.quoted((idremote, number, sender, message), line)  # type: ignore[arg-type]
        else:
            add(row)
            add_line(line)
        if len(message) > longest:  # type: ignore[arg-type]
            longest = len(message)  # type: ignore[arg-type]
            at_longest = (line, idremote, number, sender, message, crm_id, values)
        if len(first) < preview:
            first.append(Rendered(line, idremote, number, sender, message,  # type: ignore[arg-type]
                                  crm_id, values))
        if joined is not None:
            joined.append(f"{line};{crm_id};{idremote};{number}\r\n")
        elif keep is not None:
            keep((line, crm_id, idremote, number))
        if len(batch) >= FLUSH_ROWS:
            yield writer.take()
            _write_map(contact_map, map_rows, kept, joined)
    if batch:
        yield writer.take()
    _write_map(contact_map, map_rows, kept, joined)
    return Part(writer.lines, rejected, first,
                Rendered(*at_longest) if at_longest is not None else None,  # type: ignore[arg-type]
                used if id_column is not None else set())


def _write_map(contact_map: TextIO | None,
               map_rows: Callable[[Iterable[tuple[int, str, str, str]]], object] | None,
               kept: list[tuple[int, str, str, str]], joined: list[str] | None) -> None:
    """Write the contact map rows kept so far, in line order, and forget them."""
    if contact_map is None or map_rows is None:
        return
    if joined is not None:
        contact_map.write("".join(joined))
        joined.clear()
        return
    map_rows(kept)
    kept.clear()


def _plain_rows(path: Path, fmt: ContactsFormat, span: Span,
                ) -> Iterator[tuple[int, list[str]]] | None:
    """:func:`_rows` of ``span`` when it holds no quote: then a record is a line and its
    values are the line split at the delimiter, as :mod:`csv` reads it, without :mod:`csv`
    (faster). None when the span has a quote, a NUL byte, a CR that does not end a CRLF, a
    line longer than a value may be, or bytes not in ``fmt.encoding``: :func:`_rows` reads it
    (and says what is wrong)."""
    with path.open("rb") as file:
        file.seek(span.start)
        data = file.read(span.end - span.start)
    if b'"' in data or b"\0" in data:
        return None
    end = "\n"
    if b"\r" in data:
        if data.count(b"\r") != data.count(b"\r\n"):
            return None
        end = "\r\n"
    encoding = fmt.encoding.removesuffix("-sig") if span.start else fmt.encoding
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        return None
    del data
    lines = text.split(end)
    if text.endswith(end):
        lines.pop()
    if max(map(len, lines), default=0) > csv.field_size_limit():
        return None
    skip = 0 if span.start else fmt.header_line  # the header, and blank lines before it
    return _split_rows(lines, skip, span.first_line, fmt)


def _split_rows(lines: list[str], skip: int, first_line: int, fmt: ContactsFormat,
                ) -> Iterator[tuple[int, list[str]]]:
    width = len(fmt.headers)
    pad = [""] * width
    phone, delimiter = fmt.phone, fmt.delimiter
    for line, text in enumerate(lines[skip:] if skip else lines, first_line + skip):
        values = text.split(delimiter)
        if len(values) != width:
            if not text:
                continue
            values = (values + pad)[:width]
        if not values[phone].strip() and _blank(values):
            continue
        yield line, values


def _blank(values: list[str]) -> bool:
    """Whether a row holds no value at all (a line of delimiters): not a contact."""
    return not any(value.strip() for value in values)


def _line_ends(text: str) -> int:
    """Line ends in ``text``: CRLF, CR and LF each one, as the provider file reader counts."""
    return text.count("\n") + text.count("\r") - text.count("\r\n")
