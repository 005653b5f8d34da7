"""The provider's side of the protocol: what MTarget does with the files in ``Send/``.

A ``Send/*.csv`` is taken (renamed ``.lock``), checked against the provider's documented rules
and renamed ``.done`` or ``.reject``; a ``.done`` later gets its ``Report/ACK-*.csv``, and its
recipients' opt-outs and replies are appended, over several steps, to ``Report/STOP-*.csv`` and
``Report/SMSMO-*.csv`` (one of which is rewritten once, as a provider may do).

The core is pure: ``check_send_file`` judges a file, ``plan_reports`` decides every report
write of an accepted file up front from a seed. ``Processor`` is the thin shell: it renames,
reads, writes and keeps a journal, and does only what is due at the time its clock gives, so
tests drive it with ``step()`` instead of sleeping.

Report formats chosen here (the provider leaves them open): UTF-8, CRLF line ends, no quoting;
ACK lines ``IDREMOTE;MSISDN;OADC;MSG;IDSTATUS;STATUS;ACKOPERATOR`` with MSG raw (a ``;`` stays,
a line break becomes a space) and IDSTATUS ``2 `` (sent) or ``3 `` (failed); STOP and SMS-MO
lines ``MSISDN;DATE;HOUR;MESSAGE;IDREMOTE`` with DATE ``YYYYMMDD`` and HOUR ``HHMM`` in French
local time, as in the provider's file names.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import json
import math
import os
import random
import re
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, TypeVar
from zoneinfo import ZoneInfo

import structlog

from ..clock import Clock
from ..errors import ConfigError
from ..rules.gsm import Policy, count
from ..rules.naming import Kind, parse_name

_T = TypeVar("_T")
Verdict = Literal["done", "reject"]

PARIS = ZoneInfo("Europe/Paris")
EOL = "\r\n"
MAX_SEGMENTS = 5
SENT_STATUS, FAILED_STATUS = "2 ", "3 "  # the provider's IDSTATUS carries a stray space

# Replies a recipient may send: ordinary answers and opt-out words in the ways people type
# them. None holds a ";" (a test passes its own list for that case).
DEFAULT_MO_TEXTS = (
    "Merci", "C'est où ?", "Oui demain", "Ok merci !", "Non merci", "À quelle heure ?",
    "Arrêt", "stop ", "STOP", " Stop", "arret",
)

_IDREMOTE = re.compile(r"[A-Za-z0-9]{1,40}")
_MSISDN = re.compile(r"\+[1-9][0-9]{6,14}")
_OADC = re.compile(r"[A-Za-z0-9]{1,11}|[0-9]{1,15}")
_LINE_BREAK = re.compile(r"(\r?\n)")
_FIELDS = ("IDREMOTE", "MSISDN", "OADC", "MSG")

log = structlog.stdlib.get_logger("sftpd_agent.simulator")


def system_clock() -> datetime:
    """The real time, aware."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class SimulatorOptions:
    """How the simulated provider behaves; times in seconds, shares between 0 and 1.

    ``lock_seconds``: how long a taken file stays ``.lock`` before its verdict.
    ``ack_delay``: from ``.done`` to the ACK report. ``report_steps`` appends to STOP and
    SMSMO, ``report_interval`` apart, the first one interval after ``.done``.
    ``rewrite_step``: the step (1-based, 0 for never) at which the ``rewrite_kind`` report is
    rewritten in another order through a new file. ``torn_writes``: every append but the last
    ends in the middle of a line, completed by the next one. ``seed``: None for a new run
    each time; a number makes failures, opt-outs and replies repeatable.
    ``journal``: default ``<root>/.simulator/journal.jsonl``. ``file_types``: False makes the
    SFTP server send no file-type bits (every entry of unknown type), as some SFTP v3 servers do.
    """

    service_id: str = "12345"
    lock_seconds: float = 1.0
    ack_delay: float = 30.0
    ack_failure_share: float = 0.05
    stop_share: float = 0.02
    mo_share: float = 0.05
    report_steps: int = 3
    report_interval: float = 10.0
    rewrite_step: int = 2
    rewrite_kind: Literal["STOP", "SMSMO"] = "STOP"
    torn_writes: bool = False
    max_rows: int = 1_000_000
    mo_texts: tuple[str, ...] = DEFAULT_MO_TEXTS
    seed: int | None = None
    journal: Path | None = None
    file_types: bool = True

    def __post_init__(self) -> None:
        for name in ("ack_failure_share", "stop_share", "mo_share"):
            share = getattr(self, name)
            if not 0.0 <= share <= 1.0:
                raise ConfigError(f"simulator {name} must be between 0 and 1, got {share}")
        for name in ("lock_seconds", "ack_delay", "report_interval"):
            seconds = getattr(self, name)
            if not (math.isfinite(seconds) and seconds >= 0):
                raise ConfigError(f"simulator {name} must be a number of seconds >= 0, "
                                  f"got {seconds}")
        if self.report_steps < 1:
            raise ConfigError(f"simulator report_steps must be >= 1, got {self.report_steps}")
        if not 0 <= self.rewrite_step <= self.report_steps:
            raise ConfigError(f"simulator rewrite_step must be 0..{self.report_steps}, "
                              f"got {self.rewrite_step}")
        if self.rewrite_kind not in ("STOP", "SMSMO"):
            raise ConfigError(f"simulator rewrite_kind must be STOP or SMSMO, "
                              f"got {self.rewrite_kind!r}")
        if not re.fullmatch(r"[A-Za-z0-9]{5}", self.service_id):
            raise ConfigError(f"simulator service_id must be 5 letters or digits, "
                              f"got {self.service_id!r}")
        if self.max_rows < 1:
            raise ConfigError(f"simulator max_rows must be >= 1, got {self.max_rows}")
        if not self.mo_texts or any("\n" in text or "\r" in text for text in self.mo_texts):
            raise ConfigError("simulator mo_texts must be one or more single-line texts")


# --- judging a Send file (pure) --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    idremote: str
    msisdn: str
    oadc: str
    msg: str


@dataclass(frozen=True, slots=True)
class Judgement:
    """The provider's verdict on one file: its rows, and why it is refused (None: accepted)."""

    rows: tuple[Row, ...]
    reason: str | None

    @property
    def verdict(self) -> Verdict:
        return "done" if self.reason is None else "reject"


class _Malformed(Exception):
    """A file that is not RFC 4180 CSV; the message is the reject reason."""


def check_send_file(name: str, data: bytes, *, service_id: str = "12345",
                    max_rows: int = 1_000_000) -> Judgement:
    """Judge a ``Send/`` file the way the provider documents it; the first problem wins.

    ``rows`` holds every record read (even those after the first problem), so the journal
    can say how big a rejected file was; it is empty when the file cannot be decoded.
    """
    reasons: list[str] = []
    provider_name = parse_name(name)
    if provider_name is None or provider_name.kind != Kind.SEND or \
            provider_name.extension != ".csv":
        reasons.append(f"file name {name!r} is not SEND-SERVICEID-YYYYMMDD-HHMM-CAMPAIGNID.csv")
    elif provider_name.service_id != service_id:
        reasons.append(f"service id {provider_name.service_id!r} is not ours ({service_id!r})")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Judgement((), _first([*reasons, f"not UTF-8 at byte {exc.start}"]))
    if text.startswith("\ufeff"):
        reasons.append("starts with a byte order mark")
        text = text[1:]
    rows: list[Row] = []
    seen: dict[str, int] = {}
    try:
        for line, fields in _records(text):
            if len(rows) == max_rows:
                reasons.append(f"more than {max_rows} rows")
                break
            if len(fields) != len(_FIELDS):
                reasons.append(f"line {line}: {len(fields)} fields, expected 4 "
                               "(every delimiter must be present)")
                continue
            row = Row(*fields)
            problem = _row_problem(row, seen.get(row.msisdn))
            if problem is not None:
                reasons.append(f"line {line}: {problem}")
            seen.setdefault(row.msisdn, line)
            rows.append(row)
    except _Malformed as exc:
        reasons.append(str(exc))
    if not rows and not reasons:
        reasons.append("no rows")
    return Judgement(tuple(rows), _first(reasons))


def _first(reasons: Sequence[str]) -> str | None:
    return reasons[0] if reasons else None


def _row_problem(row: Row, duplicate_of: int | None) -> str | None:
    if _IDREMOTE.fullmatch(row.idremote) is None:
        return f"IDREMOTE {row.idremote!r} is not 1 to 40 letters or digits"
    if _MSISDN.fullmatch(row.msisdn) is None:
        return f"MSISDN {row.msisdn!r} is not in international format (+ and 7 to 15 digits)"
    if duplicate_of is not None:
        return f"MSISDN {row.msisdn} already on line {duplicate_of}"
    # An empty OADC takes the account's default sender.
    if row.oadc and _OADC.fullmatch(row.oadc) is None:
        return f"OADC {row.oadc!r} is not 1 to 11 letters or digits, nor up to 15 digits"
    if not row.msg:
        return "MSG is empty"
    counted = count(row.msg, Policy.REJECT)
    if counted.unsendable:
        return f"MSG holds characters outside GSM 03.38: {''.join(counted.unsendable)!r}"
    if counted.segments > MAX_SEGMENTS:
        return f"MSG needs {counted.segments} SMS, at most {MAX_SEGMENTS}"
    return None


def _records(text: str) -> Iterator[tuple[int, list[str]]]:
    """RFC 4180 records with ``;`` and CRLF or LF line ends, each with its first line number.

    Strict where the RFC is: a quote inside an unquoted field, text after a closing quote,
    a bare CR outside quotes and an unterminated quoted field are refused.
    """
    pieces = _LINE_BREAK.split(text)  # line, break, line, break, ..., line
    if pieces[-1] == "":
        pieces.pop()  # the final line end is optional
        if pieces:
            pieces.pop()
    index, line = 0, 1
    while index < len(pieces):
        start = line
        record = pieces[index]
        if '"' not in record:  # the common case, at C speed
            if "\r" in record:
                raise _Malformed(f"line {start}: bare CR outside a quoted field")
            fields = record.split(";")
            index += 2
            line += 1
        else:
            fields, index, line = _quoted_record(pieces, index, line)
        yield start, fields


def _quoted_record(pieces: list[str], index: int, line: int) -> tuple[list[str], int, int]:
    """Parse one record holding quotes, which may run over several lines."""
    start = line
    text = pieces[index]
    index += 2
    line += 1
    fields: list[str] = []
    at = 0
    while True:
        if text.startswith('"', at):
            parts: list[str] = []
            cursor = at + 1
            while True:
                quote = text.find('"', cursor)
                if quote == -1:
                    if index - 1 >= len(pieces):
                        raise _Malformed(f"line {start}: quoted field never closed")
                    text += pieces[index - 1] + pieces[index]  # the line break is data
                    index += 2
                    line += 1
                    continue
                if text.startswith('"', quote + 1):
                    parts.append(text[cursor:quote + 1])
                    cursor = quote + 2
                    continue
                parts.append(text[cursor:quote])
                at = quote + 1
                break
            fields.append("".join(parts))
            if at == len(text):
                return fields, index, line
            if text[at] != ";":
                raise _Malformed(f"line {line - 1}: text after a closing quote")
            at += 1
            if at == len(text):
                fields.append("")
                return fields, index, line
        else:
            semicolon = text.find(";", at)
            value = text[at:] if semicolon == -1 else text[at:semicolon]
            if '"' in value:
                raise _Malformed(f"line {line - 1}: quote inside an unquoted field")
            if "\r" in value:
                raise _Malformed(f"line {line - 1}: bare CR outside a quoted field")
            fields.append(value)
            if semicolon == -1:
                return fields, index, line
            at = semicolon + 1


# --- planning the reports of an accepted file (pure) -------------------------------------


@dataclass(frozen=True, slots=True)
class ReportWrite:
    """One write into ``Report/``: appended in place, or replacing the file atomically."""

    at: datetime
    name: str
    text: str
    replace: bool


def plan_reports(middle: str, rows: Sequence[Row], options: SimulatorOptions,
                 done_at: datetime) -> tuple[ReportWrite, ...]:
    """Every report write of the accepted file ``SEND-<middle>.csv``, in time order.

    Repeatable: the outcome depends only on ``options.seed`` and ``middle`` (not on the order
    files are processed in). Failed rows neither opt out nor reply.
    """
    rng = random.Random(f"{options.seed}/{middle}") if options.seed is not None \
        else random.Random()  # noqa: S311 - simulated outcomes, not secrets
    n = len(rows)
    failed = frozenset(rng.sample(range(n), _share(n, options.ack_failure_share)))
    ack = "".join(
        _ack_line(row, index in failed, uuid.UUID(int=rng.getrandbits(128), version=4))
        for index, row in enumerate(rows)
    )
    writes = [ReportWrite(done_at + timedelta(seconds=options.ack_delay),
                          f"ACK-{middle}.csv", ack, replace=True)]
    reached = [row for index, row in enumerate(rows) if index not in failed]
    stops = rng.sample(reached, _share(len(reached), options.stop_share))
    replies = rng.sample(reached, _share(len(reached), options.mo_share))
    reply_texts = [rng.choice(options.mo_texts) for _ in replies]
    times = [done_at + timedelta(seconds=options.report_interval * step)
             for step in range(1, options.report_steps + 1)]
    for kind, chosen, messages in (("STOP", stops, ["STOP"] * len(stops)),
                                   ("SMSMO", replies, reply_texts)):
        chunks = _spread(list(zip(chosen, messages, strict=True)), options.report_steps)
        lines = [[_report_line(row, when, message) for row, message in chunk]
                 for chunk, when in zip(chunks, times, strict=True)]
        rewrite = options.rewrite_step if kind == options.rewrite_kind else 0
        texts_by_step = _file_writes(lines, rewrite, torn=options.torn_writes)
        writes += [ReportWrite(when, f"{kind}-{middle}.csv", text, replace)
                   for when, (text, replace) in zip(times, texts_by_step, strict=True)
                   if text]
    writes.sort(key=lambda write: write.at)  # stable: ACK before reports due at once
    return tuple(writes)


def _share(n: int, share: float) -> int:
    """``share`` of ``n``, rounded half up."""
    return min(n, math.floor(n * share + 0.5))


def _spread(items: list[_T], parts: int) -> list[list[_T]]:
    """``items`` cut in ``parts`` runs as even as possible (the first ones longer)."""
    size, extra = divmod(len(items), parts)
    runs: list[list[_T]] = []
    start = 0
    for part in range(parts):
        end = start + size + (1 if part < extra else 0)
        runs.append(items[start:end])
        start = end
    return runs


def _ack_line(row: Row, failed: bool, operator: uuid.UUID) -> str:
    msg = row.msg.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    status = f"{FAILED_STATUS};failed" if failed else f"{SENT_STATUS};sent"
    return f"{row.idremote};{row.msisdn};{row.oadc};{msg};{status};{operator}{EOL}"


def _report_line(row: Row, when: datetime, message: str) -> str:
    local = when.astimezone(PARIS)
    return f"{row.msisdn};{local:%Y%m%d};{local:%H%M};{message};{row.idremote}"


def _file_writes(lines: list[list[str]], rewrite_step: int, *,
                 torn: bool) -> list[tuple[str, bool]]:
    """What each step writes to one report file: (text, replace); text "" means nothing.

    The file holds complete lines plus, with ``torn``, the first half of the next step's
    first line. A rewrite puts the lines so far in reverse order (a new prefix as soon as
    there are two) into a new file.
    """
    steps: list[tuple[str, bool]] = []
    written: list[str] = []  # complete lines, in file order
    tail = ""  # the part of the next line already in the file
    for step, chunk in enumerate(lines, start=1):
        following = lines[step][0] if torn and step < len(lines) and lines[step] else ""
        new_tail = following[: len(following) // 2]
        if step == rewrite_step and (written or chunk):
            written = list(reversed(written + chunk))
            steps.append(("".join(line + EOL for line in written) + new_tail, True))
        elif chunk:
            text = "".join(line + EOL for line in chunk)[len(tail):] + new_tail
            written += chunk
            steps.append((text, False))
        else:
            steps.append(("", False))
            continue
        tail = new_tail
    return steps


# --- the journal ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One file the provider took: what it held and what became of it."""

    name: str  # as uploaded, ``.csv``
    sha256: str
    size: int
    rows: int
    verdict: Verdict
    reason: str | None
    time: datetime

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "sha256": self.sha256, "size": self.size,
                           "rows": self.rows, "verdict": self.verdict, "reason": self.reason,
                           "time": self.time.isoformat()}, ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> JournalEntry:
        data = json.loads(line)
        verdict: Verdict = "done" if data["verdict"] == "done" else "reject"
        return cls(data["name"], data["sha256"], data["size"], data["rows"], verdict,
                   data["reason"], datetime.fromisoformat(data["time"]))


def read_journal(path: Path) -> list[JournalEntry]:
    """Every journal entry, oldest first; none when the simulator has taken nothing yet."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [JournalEntry.from_json(line) for line in text.splitlines() if line]


# --- the shell -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepReport:
    """What one ``step()`` did: files taken (``.lock`` names), judged, report files written."""

    taken: tuple[str, ...] = ()
    judged: tuple[JournalEntry, ...] = ()
    written: tuple[str, ...] = ()


@dataclass(order=True)
class _Due:
    at: datetime
    sequence: int
    write: ReportWrite = field(compare=False)


class Processor:
    """The provider's processing of one folder holding ``Send/`` and ``Report/``.

    Not an SFTP server: it works on the local folder that one exposes. ``step()`` is
    thread-safe, so a test may call it while ``run()`` loops in another thread. What is
    pending (locks, report writes) lives in memory: a new Processor over the same folder
    judges leftover ``.lock`` files again but does not resume reports.
    """

    def __init__(self, root: Path, options: SimulatorOptions | None = None, *,
                 clock: Clock = system_clock) -> None:
        self.root = Path(root)
        self.options = options if options is not None else SimulatorOptions()
        self.send_dir = self.root / "Send"
        self.report_dir = self.root / "Report"
        self.journal_path = self.options.journal or self.root / ".simulator" / "journal.jsonl"
        self._clock = clock
        self._lock = threading.Lock()
        self._locked: dict[str, datetime] = {}  # .lock name -> when taken
        self._due: list[_Due] = []
        self._sequence = 0

    def make_layout(self) -> None:
        """Create ``Send/`` and ``Report/`` when missing."""
        self.send_dir.mkdir(parents=True, exist_ok=True)
        self.report_dir.mkdir(parents=True, exist_ok=True)

    def now(self) -> datetime:
        return self._clock()

    def step(self) -> StepReport:
        """Do everything due now: take new files, judge locked ones, write due reports."""
        with self._lock:
            now = self._clock()
            taken = self._take(now)
            judged = self._judge(now)
            written = self._write_due(now)
            return StepReport(taken, judged, written)

    def next_due(self) -> datetime | None:
        """When the next verdict or report write falls due; None when nothing is pending."""
        with self._lock:
            times = [at + timedelta(seconds=self.options.lock_seconds)
                     for at in self._locked.values()]
            times += [due.at for due in self._due[:1]]
            return min(times, default=None)

    def journal(self) -> list[JournalEntry]:
        return read_journal(self.journal_path)

    async def run(self, interval: float) -> None:
        """Step every ``interval`` seconds until cancelled; a failing step is logged."""
        while True:
            task = asyncio.ensure_future(asyncio.to_thread(self.step))
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                await asyncio.wait([task])  # never stop half-way through renames
                raise
            except OSError as exc:
                log.warning("simulator_step_failed", error=str(exc))
            await asyncio.sleep(interval)

    def _take(self, now: datetime) -> tuple[str, ...]:
        taken: list[str] = []
        for name in _listing(self.send_dir):
            if name.endswith(".lock") and name not in self._locked:
                self._locked[name] = now  # left by an earlier run
            if not name.endswith(".csv"):
                continue
            lock = name[: -len(".csv")] + ".lock"
            try:
                (self.send_dir / name).rename(self.send_dir / lock)
            except FileNotFoundError:
                continue  # renamed or removed meanwhile
            self._locked[lock] = now
            taken.append(lock)
            log.info("simulator_file_taken", file=name)
        return tuple(taken)

    def _judge(self, now: datetime) -> tuple[JournalEntry, ...]:
        ready = [name for name, at in self._locked.items()
                 if now >= at + timedelta(seconds=self.options.lock_seconds)]
        entries = []
        for lock in sorted(ready):
            del self._locked[lock]
            entry = self._judge_one(lock, now)
            if entry is not None:
                entries.append(entry)
        return tuple(entries)

    def _judge_one(self, lock: str, now: datetime) -> JournalEntry | None:
        stem = lock[: -len(".lock")]
        path = self.send_dir / lock
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            log.warning("simulator_lock_vanished", file=lock)
            return None
        judgement = check_send_file(stem + ".csv", data, service_id=self.options.service_id,
                                    max_rows=self.options.max_rows)
        entry = JournalEntry(stem + ".csv", hashlib.sha256(data).hexdigest(), len(data),
                             len(judgement.rows), judgement.verdict, judgement.reason, now)
        self._record(entry)  # first: whoever sees the verdict's name finds it journaled
        path.replace(self.send_dir / f"{stem}.{judgement.verdict}")
        log.info("simulator_file_judged", file=entry.name, verdict=entry.verdict,
                 rows=entry.rows, reason=entry.reason)
        if judgement.reason is None:
            middle = stem[len("SEND-"):]
            for write in plan_reports(middle, judgement.rows, self.options, now):
                self._sequence += 1
                heapq.heappush(self._due, _Due(write.at, self._sequence, write))
        return entry

    def _record(self, entry: JournalEntry) -> None:
        self.journal_path.parent.mkdir(parents=True, exist_ok=True)
        with self.journal_path.open("a", encoding="utf-8") as journal:
            journal.write(entry.to_json() + "\n")

    def _write_due(self, now: datetime) -> tuple[str, ...]:
        written: list[str] = []
        while self._due and self._due[0].at <= now:
            due = heapq.heappop(self._due)
            self._write(due.write, due.sequence)
            written.append(due.write.name)
        return tuple(written)

    def _write(self, write: ReportWrite, sequence: int) -> None:
        self.report_dir.mkdir(parents=True, exist_ok=True)
        target = self.report_dir / write.name
        if write.replace:
            # A dot name ending in .part: outside every pattern the agent lists.
            temporary = self.report_dir / f".{write.name}.{sequence}.part"
            with temporary.open("w", encoding="utf-8", newline="") as file:
                file.write(write.text)
            temporary.replace(target)
        else:
            with target.open("a", encoding="utf-8", newline="") as file:
                file.write(write.text)
        log.info("simulator_report_written", file=write.name, replace=write.replace)


def _listing(folder: Path) -> list[str]:
    """Names of the regular files in ``folder``, sorted; none when it is missing."""
    try:
        with os.scandir(folder) as entries:
            return sorted(entry.name for entry in entries
                          if entry.is_file(follow_symlinks=False))
    except FileNotFoundError:
        return []
