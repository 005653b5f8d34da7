"""``sftpd-agent suppress list|add|remove|import|export``: the local suppression list.

The suppression list is read and changed beside a running daemon (SQLite WAL lets both work);
numbers are normalised to E.164 exactly as campaign rows are, so an import matches the rows it
must drop. An import takes a CSV export (the first column holding phone numbers, any
delimiter of ``;``, ``,`` or tab, a header row skipped) or one number per line, and says which
lines it could not read. It commits in short batches, so a million numbers go in beside the
daemon without making it wait.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import io
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, TextIO

from ..config import Settings, load_settings
from ..errors import ConfigError, ExitCode
from ..files import replaced
from ..pipeline.reports import quick_normalize
from ..rules.numbers import NumberNormalizer
from ..store.journal import JournalBusyError, Store

SHOWN_PROBLEMS = 20
"""Unreadable import lines named one by one; the rest are counted."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``suppress`` actions, each a sub-command."""
    commands = parser.add_subparsers(dest="action", required=True, metavar="ACTION",
                                     title="actions")
    listing = commands.add_parser("list", help="every suppressed number",
                                  description="Print every suppressed number: number, date "
                                  "added, source (manual, import:<file>, a report file) and "
                                  "campaign.")
    listing.add_argument("--json", action="store_true", help="one JSON array of entries")
    for name, text in (("add", "add numbers"), ("remove", "remove numbers")):
        action = commands.add_parser(name, help=text, description=f"{text.capitalize()} "
                                     "(any format: normalised to E.164).")
        action.add_argument("numbers", nargs="+", metavar="MSISDN")
    importing = commands.add_parser(
        "import", help="add the numbers of a CSV file or of a file with one number per line",
        description="Add the numbers of a CRM export (CSV with ; , or tab, the numbers in the "
        "first column, a header row skipped) or of a file with one number per line, UTF-8 or "
        "CP1252. Every line that cannot be read is named on stderr.")
    importing.add_argument("file", metavar="FILE")
    exporting = commands.add_parser(
        "export", help="write the list as CSV (msisdn;added_at;source;campaign)",
        description="Write the list as CSV (msisdn;added_at;source;campaign) to FILE (0600, "
        "replaced atomically) or to standard output. An export imports back unchanged.")
    exporting.add_argument("file", nargs="?", metavar="FILE", help="default: standard output")


def run(args: argparse.Namespace) -> int:
    return suppress(args, load_settings(args.config), sys.stdout)


def suppress(args: argparse.Namespace, settings: Settings, out: TextIO,
             err: TextIO = sys.stderr) -> ExitCode:
    store = Store(settings.paths.state_db)
    try:
        if args.action == "list":
            return _list(store, out, as_json=args.json)
        if args.action == "export":
            return _export(store, Path(args.file) if args.file else None, out)
        normalize = quick_normalize(NumberNormalizer(settings.campaign.default_region))
        now = datetime.datetime.now(datetime.UTC)
        if args.action == "import":
            return _import(store, Path(args.file), normalize, now=now, out=out, err=err)
        numbers: list[str] = []
        bad = 0
        for raw in args.numbers:
            e164 = normalize(raw.strip())
            if e164 is None:
                print(f"sftpd-agent: {raw!r} is not a valid phone number", file=err)
                bad += 1
            else:
                numbers.append(e164)
        if args.action == "add":
            changed = store.suppress(numbers, source="manual", at=now)
            print(f"added {len(changed)}, already there {len(numbers) - len(changed)}", file=out)
        else:
            changed = store.unsuppress(numbers)
            print(f"removed {len(changed)}, not there {len(numbers) - len(changed)}", file=out)
        return ExitCode.NOT_OK if bad else ExitCode.OK
    finally:
        store.close()


def _list(store: Store, out: TextIO, *, as_json: bool) -> ExitCode:
    entries = store.suppression_entries()
    if as_json:
        print(json.dumps(entries, ensure_ascii=False), file=out)
        return ExitCode.OK
    for entry in entries:
        campaign = f"  {entry['campaign']}" if entry["campaign"] else ""
        print(f"{entry['msisdn']:<16}  {entry['added_at']}  {entry['source']}{campaign}",
              file=out)
    print(f"{len(entries)} number{'s' if len(entries) != 1 else ''}", file=sys.stderr)
    return ExitCode.OK


def _export(store: Store, target: Path | None, out: TextIO) -> ExitCode:
    entries = store.suppression_entries()
    if target is None:
        _write_csv(out, entries)
        return ExitCode.OK
    try:
        with replaced(target, newline="") as handle:  # personal data: 0600
            _write_csv(handle, entries)
    except OSError as exc:
        raise ConfigError(f"export: cannot write {target}: {exc.strerror}") from None
    print(f"exported {len(entries)} numbers to {target}", file=out)
    return ExitCode.OK


def _write_csv(handle: IO[str], entries: Sequence[dict[str, object]]) -> None:
    writer = csv.writer(handle, delimiter=";", lineterminator="\r\n")
    writer.writerow(["msisdn", "added_at", "source", "campaign"])
    for entry in entries:
        writer.writerow([entry["msisdn"], entry["added_at"], entry["source"],
                         entry["campaign"] or ""])


def _text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"import: cannot read {path}: {exc.strerror}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _delimiter(text: str) -> str | None:
    first = text.split("\n", 1)[0]
    return next((d for d in (";", ",", "\t") if d in first), None)


def first_fields(path: Path) -> list[str]:
    """The number of every line (its first field, stripped; "" for a blank line), line ``n``
    at index ``n - 1``: :func:`read_numbers`' values, taken with ``str.split`` when the
    file allows (no quote, no NUL, no line end but LF or CRLF), else from it."""
    text = _text(path)
    delimiter = _delimiter(text)
    if '"' in text or "\0" in text or text.count("\r") != text.count("\r\n"):
        found: list[str] = []
        for line, value in _numbers_in(text, delimiter):
            found.extend([""] * (line - 1 - len(found)))
            found.append(value)
        return found
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    if delimiter is None:
        return [line.strip() for line in lines]
    return [line.split(delimiter, 1)[0].strip() for line in lines]


def read_numbers(path: Path) -> Iterator[tuple[int, str]]:
    """(line, value) for the number of every line of a CSV or one-number-per-line file."""
    text = _text(path)
    return _numbers_in(text, _delimiter(text))


def _numbers_in(text: str, delimiter: str | None) -> Iterator[tuple[int, str]]:
    lines = io.StringIO(text, newline="")
    if delimiter is None:
        for number, line in enumerate(lines, start=1):
            yield number, line.strip()
        return
    reader = csv.reader(lines, delimiter=delimiter)
    for record in reader:
        if record:
            yield reader.line_num, record[0].strip()


def _import(store: Store, path: Path, normalize: Callable[[str], str | None], *,
            now: datetime.datetime, out: TextIO, err: TextIO) -> ExitCode:
    """The numbers go in sorted, in batches that each hold the journal's write lock a few
    hundredths of a second (a running daemon writes between them; sorted, a batch touches few
    pages). Stopped half-way, the batches committed stay: importing again adds the rest."""
    numbers: list[str] = []
    bad = 0
    for line, value in enumerate(first_fields(path), start=1):
        if not value:
            continue
        e164 = normalize(value)
        if e164 is None:
            if line == 1:
                continue  # a header row
            bad += 1
            if bad <= SHOWN_PROBLEMS:
                print(f"{path}:{line}: MSISDN {value!r} is not a phone number", file=err)
            continue
        numbers.append(e164)
    if bad > SHOWN_PROBLEMS:
        print(f"{path}: {bad - SHOWN_PROBLEMS} more unreadable lines", file=err)
    numbers.sort()
    added = 0
    try:
        for new in store.suppress_batches(numbers, source=f"import:{path.name}", at=now):
            added += len(new)
    except JournalBusyError as exc:
        print(f"sftpd-agent: import stopped: {exc}; {added} new numbers were imported before "
              "it, importing the file again adds the rest", file=err)
        return ExitCode.NOT_OK
    print(f"imported {added} new, {len(numbers) - added} already there "
          f"or repeated, {bad} unreadable", file=out)
    return ExitCode.NOT_OK if bad else ExitCode.OK
