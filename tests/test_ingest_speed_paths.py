"""The fast paths of issue 16 give the answers of the paths they replace.

- ``suppress import`` reads a file's numbers with ``str.split`` when the file allows
  (``first_fields``), normalises them through the shortcut table (``quick_normalize``): the
  same values and numbers as ``read_numbers`` and ``NumberNormalizer.normalize``;
- an ACK batch is read inline and recorded in one statement: the delivery lines are those
  ``parse_ack`` reads, the unreadable lines the same;
- a STOP read numbers a repeated line's occurrences with the store's count of its keys
  (``LineCounts``, an open-addressing table): the counts of ``collections.Counter``, keys that
  share a slot, the key 0 and the extremes included, however far the table grew;
- a bulk writer pauses only while another writer waits: ``Store.others_waiting`` says so
  while another store is held up at BEGIN, and no longer once it is in.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import gc
import json
import random
import sqlite3
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sftpd_agent.commands.suppress import first_fields, read_numbers
from sftpd_agent.config import Settings, SettingsSource
from sftpd_agent.daemon import Agent
from sftpd_agent.pipeline import reports as reports_module
from sftpd_agent.pipeline.reports import Reports, quick_normalize
from sftpd_agent.remote.local import LocalRemote
from sftpd_agent.rules.naming import Kind
from sftpd_agent.rules.numbers import NumberNormalizer
from sftpd_agent.rules.report_lines import (
    BLAKE2B,
    LINE_HASH,
    XXH3,
    line_key,
    line_keys,
    parse_ack,
)
from sftpd_agent.store import journal
from sftpd_agent.store import reports as store_reports
from sftpd_agent.store.journal import Store
from sftpd_agent.store.records import ReportCursor
from sftpd_agent.store.reports import stop_part
from sftpd_agent.store.schema import LISTED_TO, MIGRATIONS

NOW = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)
NAME = "12345-20261123-1000-x"


def _random_number(rng: random.Random) -> str:
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(3, 12)))
    head = rng.choice(["+33", "0", "+", "0033", "", "+262", "06", "+44"])
    noise = rng.choice(["", " ", ".", "-", "a", "(", "\u00a0"])
    return head + digits[:4] + noise + digits[4:]


def test_quick_normalize_gives_the_normalizers_answers() -> None:
    rng = random.Random(16)
    for region in ("FR", "BE", "US"):
        normalizer = NumberNormalizer(region)
        quick = quick_normalize(normalizer)
        samples = ["+33612345678", "0612345678", "0692123456", "+262692123456", "",
                   "+33712345678", "0123456789", "+590690123456", "0690123456"]
        samples += [_random_number(rng) for _ in range(20_000)]
        different = [s for s in samples if quick(s) != normalizer.normalize(s)]
        assert different == []
        assert sum(normalizer.normalize(s) is not None for s in samples) > 100  # some valid


@pytest.mark.parametrize("text", [
    "telephone;nom\r\n+33612345678;a\r\n\r\n 0612345679 ;b\r\n",  # CSV, CRLF, blank line
    "+33612345678\n0612345679\n\n  \n+33612345680",  # one a line, no last line end
    "tel,name\n0612345678,x\n0612345679,y\n",
    "tel\tname\n0612345678\tx\n",
    '"tel";"name"\r\n"0612345678";"a ""b"""\r\n"06 12 34 56 79";"multi\r\nline"\r\n'
    "0612345680;c\r\n",  # quoted, a record over two lines: csv's line numbers
    "tel;n\r0612345678;a\r0612345679;b\r",  # old Mac line ends: csv's reading
    "\ufefftel;name\r\n0612345678;\u00e9\r\n",  # a BOM
])
def test_first_fields_are_read_numbers_values(tmp_path: Path, text: str) -> None:
    path = tmp_path / "crm.csv"
    path.write_bytes(text.encode("utf-8"))
    expected = {line: value for line, value in read_numbers(path) if value}
    found = {line: value for line, value in enumerate(first_fields(path), start=1) if value}
    assert found == expected
    assert expected  # the file has numbers


def test_first_fields_of_a_cp1252_export(tmp_path: Path) -> None:
    path = tmp_path / "crm.csv"
    path.write_bytes("t\u00e9l;nom\r\n0612345678;Ren\u00e9e\r\n".encode("cp1252"))
    assert first_fields(path) == ["t\u00e9l", "0612345678"]
    assert list(read_numbers(path)) == [(1, "t\u00e9l"), (2, "0612345678")]


def _settings(root: Path) -> Settings:
    return Settings(service_id="12345", paths={"root": root},
                    reports={"delete_remote_after_ingest": False})


def _listed(store: Store) -> set[str]:
    """The numbers in the suppression list's table itself (``suppressed`` and ``suppress
    list`` add those still to list), read through a connection of its own."""
    with contextlib.closing(sqlite3.connect(store.path)) as db:
        return {row[0] for row in db.execute("SELECT msisdn FROM suppression")}


async def _ingest(tmp_path: Path, name: str, body: bytes) -> Store:
    provider = tmp_path / "provider"
    (provider / "Report").mkdir(parents=True, exist_ok=True)
    (provider / "Report" / name).write_bytes(body)
    settings = _settings(tmp_path / "agent")
    store = Store(settings.paths.state_db)
    reports = Reports(store, settings, lambda: NOW, lambda *_, **__: None)
    await reports.round(LocalRemote(provider))
    return store


async def test_ack_lines_recorded_as_parse_ack_reads_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reports_module, "BULK_FIRST_BATCH", 7)  # several batches, in a thread
    monkeypatch.setattr(reports_module, "CHUNK", 300)  # and several chunks
    lines = [
        "R1;+33612345678;Shop;Bonjour; -20% ;2 ;sent;op-1",
        " R2 ; +33612345679 ; Shop ;x;3; ;op-2 ",  # no STATUS: its IDSTATUS
        "R3;\u00a0+33612345680\u2003;\u00a0Shop;a;b;c;d;2;sent;\u3000op",  # Unicode spaces
        "",  # blank
        "R4;+33612345681;Shop;2;sent;op",  # six fields: unreadable
        "R5;  ;Shop;m;2;sent;op",  # no MSISDN: unreadable
        "R6;+33612345682;;;;;",  # empty fields
        "R1;+33612345678;Shop;again;2;sent;op-1",  # the same line key again: ignored
        "R7;+33612345683;\u00e9;\u00e9t\u00e9;2;d\u00e9livr\u00e9;op",
    ] + [f"R{n};+3361000{n:04d};S;m{n};2;sent;op" for n in range(8, 40)]
    body = "".join(line + "\r\n" for line in lines).encode("utf-8")
    store = await _ingest(tmp_path, f"ACK-{NAME}.csv", body)
    cursor = store.report_cursor(f"ACK-{NAME}.csv")
    assert cursor is not None and cursor.offset == len(body) and cursor.lines == len(lines)
    expected = {}
    for line in lines:
        ack = parse_ack(line)
        if ack is not None and ack.msisdn:
            expected.setdefault((ack.msisdn, ack.idremote), (
                ack.oadc, ack.idstatus, ack.status or ack.idstatus, ack.operator))
    recorded = {(row[1], row[2]): row[4:8] for row in store.deliveries()}
    assert recorded == expected
    assert all(row[0] == cursor.id and row[3] is None and row[8] == NOW.isoformat()
               for row in store.deliveries())
    store.close()


def _ack_reference(lines: list[str]) -> list[tuple[str, ...]]:
    """The fields ``_ack_fields`` gives for ``lines``, by ``parse_ack``."""
    found = []
    for line in lines:
        ack = parse_ack(line)
        if ack is not None and ack.msisdn:
            found.append((ack.msisdn, ack.idremote, ack.oadc, ack.idstatus,
                          ack.status or ack.idstatus, ack.operator))
    return found


def test_ack_batches_read_a_column_at_a_time_give_parse_ack_s_fields(tmp_path: Path) -> None:
    """A batch of lines of as many fields (7, or more with the same ``;`` in every message)
    is read a column at a time (one split of the whole); any other batch line by line: the
    same fields either way, for spaces (Unicode ones too) around any field, empty STATUS or
    other fields, a carriage return, a line with a ``;`` more or less, or a blank line among
    them."""
    rng = random.Random(16)
    spaces = ["", "", "", " ", "  ", "\t", "\u00a0", "\u3000"]

    def field(text: str) -> str:
        return rng.choice(spaces) + text + rng.choice(spaces)

    def line(n: int, semicolons: int) -> str:
        message = ";".join(rng.choice(["Bonjour", " -20 % ", "", "a,b"])
                           for _ in range(semicolons + 1))
        fields = [field(f"R{n}"), field(f"+336{n:08d}"),
                  field(rng.choice(["Shop", "", "\u00e9t\u00e9"])),
                  message, field(rng.choice(["2", "3", ""])),
                  field(rng.choice(["sent", "failed", ""])),
                  field(rng.choice(["op", "", "Orange France"]))]
        return ";".join(fields) + rng.choice(["", "", "\r"])

    odd = ["", "   ", "R;+33612345678;S;a;b;2;sent;op", "R;+33612345678;S;2;sent;op",
           "R; ;S;m;2;s;o"]
    settings = _settings(tmp_path / "agent")
    store = Store(settings.paths.state_db)
    reports = Reports(store, settings, lambda: NOW, lambda *_, **__: None)
    state = reports_module._Read(ReportCursor(f"ACK-{NAME}.csv", Kind.ACK, None, seen_at=NOW))
    columns = 0
    for size in [0, 1, 2, 7, 100, 1000]:
        for plain in (True, False) if size > 1 else (True,):
            semicolons = rng.choice([0, 0, 1, 3])  # in the message: the same on every line
            lines = [line(n, semicolons) for n in range(size)]
            if not plain:
                lines[rng.randrange(size)] = rng.choice(  # not as many fields, or no MSISDN
                    [other for other in [*odd, line(size, semicolons + 1)]
                     if other.count(";") != semicolons + 6 or other.startswith("R; ")])
            found = reports._ack_fields(state, lines, 1)
            assert [tuple(fields) for fields in found] == _ack_reference(lines), (size, plain)
            # read a column at a time when all are 7-field lines (its lines are tuples)
            columns += sum(type(fields) is tuple for fields in found)
    assert columns == 1 + 2 + 7 + 100 + 1000  # every line of the plain batches
    store.close()


def test_text_lines_json_is_the_encoders_json() -> None:
    """Lines of strings joined in C are the JSON of the encoder, for any character and any
    number of fields: those JSON escapes (quotes, backslashes, control characters) send
    them to the encoder."""
    rng = random.Random(16)
    alphabet = ['a', '9', ' ', '"', '\\', '\x00', '\x1f', '\n', '\t', '\u00e9', '\u2028', ',',
                '[', ']', '\x7f', '\U0001f600']
    for _ in range(300):
        width = rng.randint(1, 7)
        rare = rng.random() < 0.5  # most lines plain: the joined path
        lines = [tuple("".join(rng.choice(alphabet if rare else "ab9 ,")
                               for _ in range(rng.randint(0, 6))) for _ in range(width))
                 for _ in range(rng.randint(0, 30))]
        if lines and rng.random() < 0.2:  # lines of other widths too
            lines.append(tuple(lines[0][:rng.randint(0, width)]))
        text = store_reports.text_lines_json(lines)
        assert text == store_reports.lines_json(lines)
        assert json.loads(text) == [list(fields) for fields in lines]


def _report_file(tmp_path: Path, kind: str, count: int) -> tuple[Path, str]:
    """An ACK or STOP file of ``count`` lines in a provider folder: the folder, its name."""
    provider = tmp_path / "provider"
    (provider / "Report").mkdir(parents=True)
    if kind == "ACK":
        lines = [f"R{n};+336{n:08d};Shop;Bonjour;2 ;sent;op" for n in range(count)]
    else:
        lines = _stop_lines(list(range(count)))
    name = f"{kind}-{NAME}.csv"
    (provider / "Report" / name).write_text("\n".join(lines) + "\n")
    return provider, name


@pytest.mark.parametrize("kind", ["ACK", "STOP"])
def test_a_report_read_ends_with_an_fsynced_transaction(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """A report file's batches are committed without an fsync of their own; the read ends
    with one that has it (its cursor saved), before the round goes on to anything that
    depends on the lines (an ACK deleted from the server, the listing, the events). The
    batches run with the lean page cache; the store has its own back afterwards."""
    provider, _ = _report_file(tmp_path, kind, 5000)
    settings = _settings(tmp_path / "agent")
    store = Store(settings.paths.state_db)
    synced: list[object] = []  # each transaction's ``synced``, and where the read ended
    caches: list[int] = []
    transaction = store.transaction

    def noted(**kwargs: Any) -> Any:
        synced.append(kwargs.get("synced", True))
        if not kwargs.get("synced", True):  # a batch of lines: with the lean page cache
            caches.append(int(store._db.execute("PRAGMA cache_size").fetchone()[0]))
        return transaction(**kwargs)

    monkeypatch.setattr(store, "transaction", noted)
    read_into = Reports._read_into

    async def marked(self: Reports, *args: Any, **kwargs: Any) -> Any:
        cursor = await read_into(self, *args, **kwargs)
        synced.append("read")
        return cursor

    monkeypatch.setattr(Reports, "_read_into", marked)
    asyncio.run(Reports(store, settings, lambda: NOW, lambda *_, **__: None)
                .round(LocalRemote(provider)))
    read = synced.index("read")
    assert False in synced[:read] and synced[read - 1] is True
    assert set(caches) == {-journal.LEAN_CACHE_KIB}
    assert int(store._db.execute("PRAGMA cache_size").fetchone()[0]) == -journal.CACHE_KIB
    store.close()


def test_line_counts_count_as_a_counter_does() -> None:
    rng = random.Random(8)
    keys = [rng.getrandbits(64) - 2**63 for _ in range(20_000)]
    keys += [5, 5 + 4096, 5 + 2 * 4096, 5 - 4096]  # one slot of the first table, four keys
    keys += [*rng.sample(keys, 3000), 0, 0, 0, -(2**63), 2**63 - 1, 2**63 - 1]
    rng.shuffle(keys)
    counts, expected = store_reports.LineCounts(report=1), collections.Counter[int]()
    for key in keys:  # grows from 4096 slots to 65536 on the way
        expected[key] += 1
        assert counts.add(key) == expected[key]
    assert len(counts) == len(expected)
    assert all(counts.get(key) == n for key, n in expected.items())
    assert counts.get(6) == counts.get(5 + 3 * 4096) == 0
    sized = store_reports.LineCounts(report=1, expected=len(keys))
    for key in keys:
        sized.add(key)
    assert all(sized.get(key) == n for key, n in expected.items())


def test_a_million_stop_lines_of_the_documented_shape_take_the_least_table() -> None:
    # ``MSISDN;DATE;HOUR;MESSAGE;IDREMOTE``: a million such lines fit 2**21 slots at 5/8
    # full (16 MiB); a file's size over STOP_LINE_BYTES must not size it for 2**22 (32 MiB).
    line = b"+33612345678;20261123;1000;STOP;R0000001\r\n"
    size = len(line) * 1_000_000
    table = store_reports.LineCounts(report=1, expected=size // reports_module.STOP_LINE_BYTES)
    assert len(table._slots) == 1 << 21
    assert len(table._slots) * 5 >= 1_000_000 * 8  # and holds them without growing


def test_ack_keys_keep_the_first_line_of_each_number_and_idremote() -> None:
    rng = random.Random(9)
    pairs = [(f"+336{rng.randrange(10**8):08d}", f"R{rng.randrange(10**6)}")
             for _ in range(30_000)]
    pairs += rng.sample(pairs, 5000)  # repeated, later
    rng.shuffle(pairs)
    keys, seen = store_reports.AckKeys(report=1), set()
    lines = [[msisdn, idremote, n] for n, (msisdn, idremote) in enumerate(pairs)]
    new = []
    for start in range(0, len(lines), 997):  # grows from 4096 slots on the way
        new += keys.new(lines[start:start + 997], 0, 1)
    expected = [line for line in lines
                if (line[0], line[1]) not in seen and not seen.add((line[0], line[1]))]
    assert new == expected and len(keys) == len(set(pairs))
    assert keys.new([["+33600000000", "R1", 0], [*lines[5][:2], 1]], 0, 1) == [
        ["+33600000000", "R1", 0]]
    swapped = [[idremote, msisdn] for msisdn, idremote, _ in lines[:10]]
    assert keys.new(swapped, 1, 0) == []  # the same pairs, read from other places


async def test_a_stop_read_counts_repeated_lines_across_batches(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reports_module, "BULK_FIRST_BATCH", 4)
    same = "+33612340001;20261123;1000;STOP;R1"
    lines = [same, "+33612340002;20261123;1000;STOP;R2", same, same,  # 1st batch: 3 copies
             "+33612340003;20261123;1001;STOP;R3", same, "", "x;y",  # blank, unreadable
             "+33612340002;20261123;1000;STOP;R2", "bad number;20261123;1000;STOP;R9"]
    body = "".join(line + "\n" for line in lines).encode("utf-8")
    store = await _ingest(tmp_path, f"STOP-{NAME}.csv", body)
    # Every readable line once: 4 copies of one, 2 of another, and two more.
    assert store.count_rows("optouts") == 8
    assert _listed(store) == {"+33612340001", "+33612340002", "+33612340003"}
    cursor = store.report_cursor(f"STOP-{NAME}.csv")
    assert cursor is not None and cursor.id is not None
    store.forget_stop_counts()  # read again from the journal
    counts = store.stop_counts(cursor.id)
    readable = collections.Counter(line for line in lines if line.count(";") >= 4)
    assert len(counts) == len(readable) == 4
    assert {line: counts.get(line_key(line)) for line in readable} == readable
    store.close()


async def test_stop_lines_recorded_as_the_general_readers_read_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The inlined STOP reading (a batch of readable lines at once, times kept by DATE and
    HOUR as written) records what the normalizer and the time parser say of each line."""
    monkeypatch.setattr(reports_module, "BULK_FIRST_BATCH", 5)  # batches with and without
    monkeypatch.setattr(reports_module, "CHUNK", 200)  # blank or short lines, chunks
    lines = [
        "+33612345678;20261123;1000;STOP;R1",
        " 0612345679 ; 20261123 ; 1001 ;STOP;R2 ",  # national, spaces around every field
        "+33612345680;20261123 ;930;STOP;R3",  # a short HOUR, DATE with a space
        "",  # blank
        "+33612345681;20261123;1000",  # short: unreadable
        "\u00a0+33690123456\u2003;20261123;1000;STOP;R4",  # no shortcut, Unicode spaces
        "not a number;20261123;1000;STOP;R5",  # kept, not listed
        "+33612345682;2026-11-23;10h;STOP;R6",  # no time
        "   ",  # blank once stripped
    ] + [f"+3361000{n:04d};20261123;{1000 + n % 3};STOP;R{n}" for n in range(7, 30)]
    body = "".join(line + "\r\n" for line in lines).encode("utf-8")
    store = await _ingest(tmp_path, f"STOP-{NAME}.csv", body)

    reference = Reports(store, _settings(tmp_path / "other"), lambda: NOW,
                        lambda *_, **__: None)
    normalize = reference._number_reader()
    expected = []
    for line in (raw.strip() for raw in lines):
        fields = line.split(";")
        if line and len(fields) >= 5:
            msisdn = normalize(fields[0].strip())
            expected.append((msisdn or fields[0].strip(),
                             reference._parse_time(fields[1].strip(), fields[2].strip()),
                             int(msisdn is not None)))
    with contextlib.closing(sqlite3.connect(store.path)) as db:
        recorded = db.execute(
            "SELECT msisdn, received_at, listed FROM optouts ORDER BY id").fetchall()
    assert recorded == expected
    # The Unicode spaces stripped, the number read by the full normalizer (no shortcut).
    assert ("+33690123456", "2026-11-23T09:00:00+00:00", 1) in recorded
    assert sum(1 for row in recorded if row[1] is None) == 1
    store.close()


def test_others_waiting_while_another_store_is_held_up_at_begin(tmp_path: Path) -> None:
    bulk = Store(tmp_path / "state.db")
    other = Store(tmp_path / "state.db")
    assert not bulk.others_waiting() and bulk.bulk_pause() < 0.01  # nobody: no pause
    holder = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # the write lock, taken
    writing = threading.Thread(target=other.set_fact, args=("heartbeat", 1))
    writing.start()
    seen = False
    deadline = time.monotonic() + 5
    for _ in range(500):  # bounded: the writer says it waits within milliseconds
        seen = bulk.others_waiting()
        if seen or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert seen
    assert other.others_waiting()  # seen by the waiting store too (for its other threads)
    holder.execute("COMMIT")  # the lock free: the writer gets in, and says so no more
    writing.join(5)
    assert not writing.is_alive()
    assert not bulk.others_waiting()
    assert other.fact("heartbeat") == 1
    holder.close()
    other.close()
    bulk.close()


@pytest.mark.parametrize(("waiting", "transactions"), [(False, 1), (True, 3)])
def test_parts_share_a_transaction_unless_another_writer_waits(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, waiting: bool,
        transactions: int) -> None:
    monkeypatch.setattr(journal, "BULK_PAUSE", 0)
    store = Store(tmp_path / "state.db")
    cursor = store.save_report_cursor(ReportCursor(f"ACK-{NAME}.csv", Kind.ACK, None,
                                                   seen_at=NOW), NOW)
    parts = [(replace(cursor, offset=10 * n, lines=n),
              json.dumps([[f"+3361234567{n}", f"R{n}", "S", "2", "sent", "op"]]))
             for n in (1, 2, 3)]
    began = []
    transaction = store.transaction

    def counted(**kwargs: Any) -> Any:
        began.append(1)
        return transaction(**kwargs)

    monkeypatch.setattr(store, "transaction", counted)
    monkeypatch.setattr(store, "others_waiting", lambda: waiting)
    store.record_ack_parts(None, parts, NOW)
    assert len(began) == transactions
    assert len(store.deliveries()) == 3
    saved = store.report_cursor(cursor.name)
    assert saved is not None and (saved.offset, saved.lines) == (30, 3)
    store.close()


def test_scratch_statements_wait_for_a_transaction_of_another_thread(tmp_path: Path) -> None:
    """A report batch is recorded in a worker thread on the store's connection; the reading
    thread's scratch-table statements wait for that transaction instead of joining it (or
    finding the table locked: seen as a STOP file skipped and read again)."""
    store = Store(tmp_path / "state.db")
    store.begin_line_pass()
    inside, release, done = threading.Event(), threading.Event(), threading.Event()

    def writer() -> None:
        with store.transaction():
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=writer)
    thread.start()
    assert inside.wait(5)
    counting = threading.Thread(target=lambda: (store.add_line_pass({7: 2}), done.set()))
    counting.start()
    assert not done.wait(0.3)  # held back while the other thread's transaction is open
    release.set()
    assert done.wait(5)
    thread.join(5)
    counting.join(5)
    assert store.line_pass_counts({7, 8}) == {7: 2}
    store.close()


async def test_a_long_ingest_reports_progress_batch_by_batch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A million-line report is work going on: each batch tells the daemon (whose watchdog
    is fed by it), so a long ingest is never taken for a stalled loop and killed."""
    monkeypatch.setattr(reports_module, "BULK_FIRST_BATCH", 7)
    monkeypatch.setattr(reports_module, "CHUNK", 300)
    body = "".join(f"R{n};+3361000{n:04d};S;m{n};2;sent;op\r\n" for n in range(200))
    provider = tmp_path / "provider"
    (provider / "Report").mkdir(parents=True)
    (provider / "Report" / f"ACK-{NAME}.csv").write_bytes(body.encode())
    settings = _settings(tmp_path / "agent")
    store = Store(settings.paths.state_db)
    told: list[float] = []
    reports = Reports(store, settings, lambda: NOW, lambda *_, **__: None,
                      on_progress=lambda: told.append(time.monotonic()))
    await reports.round(LocalRemote(provider))
    assert store.count_rows("deliveries") == 200
    assert len(told) >= 10  # 200 lines in batches of a few lines each
    store.close()


def _ack_part(store: Store, cursor: ReportCursor, lines: int, numbers: list[int]) -> Any:
    """A part of ACK lines of ``numbers``, as the pipeline hands it over: the new ones."""
    assert cursor.id is not None
    new = store.new_acks(cursor.id, [[f"+336123456{n:02d}", f"R{n}", "S", "2", "sent", "op"]
                                     for n in numbers])
    return replace(cursor, offset=10 * lines, lines=lines), json.dumps(new)


def test_a_delivery_line_recorded_before_is_not_recorded_again(tmp_path: Path) -> None:
    """Delivery lines are kept in arrival order, with no key in the table: the store checks
    each line against its report's lines recorded, read from the journal by another process
    (a restart) and kept meanwhile; a line twice in one part counts once; another report's
    line of the same number and IDREMOTE is its own."""
    store = Store(tmp_path / "state.db")
    ack = store.save_report_cursor(ReportCursor(f"ACK-{NAME}.csv", Kind.ACK, None,
                                                seen_at=NOW), NOW)
    store.record_ack_parts(None, [_ack_part(store, ack, 3, [1, 2, 2])], NOW)
    assert len(store.deliveries()) == 2
    store.close()
    again = Store(tmp_path / "state.db")  # the daemon restarted: nothing kept in memory
    store_parts = [_ack_part(again, ack, 5, [1, 2, 3]), _ack_part(again, ack, 6, [3, 4])]
    again.record_ack_parts(None, store_parts, NOW)
    other = again.save_report_cursor(ReportCursor(f"ACK-{NAME}2.csv", Kind.ACK, None,
                                                  seen_at=NOW), NOW)
    again.record_ack_parts(None, [_ack_part(again, other, 1, [1])], NOW)
    again.record_ack_parts(None, [_ack_part(again, ack, 7, [4, 5])], NOW)  # its keys read again
    rows = again.deliveries()
    assert [(row[0], row[1]) for row in rows] == [
        (ack.id, f"+336123456{n:02d}") for n in (1, 2, 3, 4, 5)] + [(other.id, "+33612345601")]
    again.close()


def test_keys_of_lines_not_committed_are_forgotten(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch whose transaction fails records nothing: its lines, read again, go in once."""
    store = Store(tmp_path / "state.db")
    ack = store.save_report_cursor(ReportCursor(f"ACK-{NAME}.csv", Kind.ACK, None,
                                                seen_at=NOW), NOW)
    store.record_ack_parts(None, [_ack_part(store, ack, 1, [1])], NOW)
    original = store_reports._save_cursor

    def full_disk(*args: Any) -> int:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store_reports, "_save_cursor", full_disk)
    with pytest.raises(sqlite3.OperationalError):
        store.record_ack_parts(None, [_ack_part(store, ack, 3, [2, 3])], NOW)
    monkeypatch.setattr(store_reports, "_save_cursor", original)  # the next read
    store.record_ack_parts(None, [_ack_part(store, ack, 3, [2, 3])], NOW)
    assert [row[1] for row in store.deliveries()] == [
        f"+336123456{n:02d}" for n in (1, 2, 3)]
    store.close()


def _journal_at(path: Path, version: int, report: str, kind: str) -> sqlite3.Connection:
    """A journal of an older agent, at schema ``version``, with one report file's cursor
    (id 1): the connection, to add the lines that version kept."""
    db = sqlite3.connect(path, isolation_level=None)
    for number in range(version):
        db.executescript(f"BEGIN; {MIGRATIONS[number]}; PRAGMA user_version = {number + 1}; "
                         "COMMIT;")
    db.execute("INSERT INTO report_cursors (name, kind, seen_at, updated_at) VALUES "
               "(?, ?, ?, ?)", (report, kind, NOW.isoformat(), NOW.isoformat()))
    return db


def test_delivery_lines_of_an_older_journal_are_kept_and_still_count(tmp_path: Path) -> None:
    """Migration 7 moves the delivery lines of a journal keyed by number into the table kept
    in arrival order; those lines are known to a read of their file again."""
    path = tmp_path / "state.db"
    db = _journal_at(path, 6, f"ACK-{NAME}.csv", "ACK")
    db.executemany("INSERT INTO deliveries VALUES (1, ?, ?, NULL, 'S', '2', 'sent', 'op', 'x')",
                   [(f"+336123456{n:02d}", f"R{n}") for n in (2, 1)])
    db.close()
    store = Store(path)
    assert store.version == len(MIGRATIONS) >= 7
    ack = store.report_cursor(f"ACK-{NAME}.csv")
    assert ack is not None
    store.record_ack_parts(None, [_ack_part(store, ack, 3, [1, 2, 3])], NOW)
    assert [row[1] for row in store.deliveries()] == [
        f"+336123456{n:02d}" for n in (1, 2, 3)]
    store.close()


def _fail_second_call(monkeypatch: pytest.MonkeyPatch, store: Store, method: str) -> None:
    """The store's ``method`` fails (a disk error) the second time it is called, only then."""
    original, calls = getattr(store, method), []

    def fails_once(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise sqlite3.OperationalError("disk I/O error")
        original(*args, **kwargs)

    monkeypatch.setattr(store, method, fails_once)


def test_an_ack_batch_not_recorded_is_read_again_and_recorded_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pipeline takes a batch's lines as new before the batch before is in; when a
    recording fails, the file is read again from its cursor at the next poll, and the lines
    taken as new but never recorded go in then (none lost, none twice)."""
    provider = tmp_path / "provider"
    (provider / "Report").mkdir(parents=True)
    lines = [f"R{n};+336{n:08d};Shop;Bonjour;2 ;sent;op" for n in range(6000)]
    (provider / "Report" / f"ACK-{NAME}.csv").write_text("\r\n".join(lines) + "\r\n")
    settings = Settings(service_id="12345", paths={"root": tmp_path / "agent"},
                        reports={"delete_remote_after_ingest": False})
    store = Store(settings.paths.state_db)
    reports = Reports(store, settings, lambda: NOW, lambda *_, **__: None)
    _fail_second_call(monkeypatch, store, "record_ack_parts")
    asyncio.run(reports.round(LocalRemote(provider)))
    recorded = store.count_rows("deliveries")
    assert 0 < recorded < 6000  # the first batch is in, the file skipped after it
    asyncio.run(reports.round(LocalRemote(provider)))
    assert store.count_rows("deliveries") == 6000
    assert len({(row[1], row[2]) for row in store.deliveries()}) == 6000
    store.close()


@pytest.mark.parametrize("kind", ["ACK", "STOP"])
def test_no_batch_queued_behind_one_that_failed_is_recorded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """A batch is queued behind the one being recorded; when that one fails, the one behind
    it is not recorded either (its cursor would pass the failed lines, never read again):
    the journal holds the first batch and its cursor, and the next poll reads the rest."""
    monkeypatch.setattr(reports_module, "next_batch", lambda size, held: 1000)
    first = journal.BULK_FIRST_BATCH  # the first batch, then batches of 1000
    provider, name = _report_file(tmp_path, kind, 5000)
    settings = _settings(tmp_path / "agent")
    store = Store(settings.paths.state_db)
    reports = Reports(store, settings, lambda: NOW, lambda *_, **__: None)
    _fail_second_call(monkeypatch, store,
                      "record_ack_parts" if kind == "ACK" else "record_stop_parts")
    table = "deliveries" if kind == "ACK" else "optouts"
    asyncio.run(reports.round(LocalRemote(provider)))
    assert store.count_rows(table) == first
    cursor = store.report_cursor(name)
    assert cursor is not None and cursor.lines == first
    asyncio.run(reports.round(LocalRemote(provider)))
    assert store.count_rows(table) == 5000
    store.close()


class _SlowReads(LocalRemote):
    """A provider folder whose reads take a few milliseconds each (a network's), and say
    when they begin and end."""

    def __init__(self, root: Path, said: list[str]) -> None:
        super().__init__(root)
        self.said = said
        self.under_way = 0

    async def read(self, path: str, offset: int, length: int | None = None) -> bytes:
        self.under_way += 1
        self.said.append(f"read {offset}")
        try:
            await asyncio.sleep(0.005)
            return await super().read(path, offset, length)
        finally:
            self.under_way -= 1


@pytest.mark.parametrize("fails", [False, True])
def test_the_next_chunk_is_read_while_one_is_ingested(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fails: bool) -> None:
    """A report file's next chunk is asked for before the lines of the one read are in, so
    that the network's time and the ingest's overlap; a read that fails half-way leaves no
    read of the remote under way (the one ahead ends before the file is given up)."""
    monkeypatch.setattr(reports_module, "CHUNK", 4000)
    lines = [f"R{n};+336{n:08d};Shop;Bonjour;2 ;sent;op" for n in range(1000)]
    (tmp_path / "provider" / "Report").mkdir(parents=True)
    (tmp_path / "provider" / "Report" / f"ACK-{NAME}.csv").write_text("\n".join(lines) + "\n")
    settings = _settings(tmp_path / "agent")
    store = Store(settings.paths.state_db)
    said: list[str] = []
    remote = _SlowReads(tmp_path / "provider", said)

    def hooks(point: str, name: str) -> None:
        if point == "report_chunk":
            said.append("chunk in")
            if fails and said.count("chunk in") == 3:
                raise OSError("disk full")

    forget = store.forget_ack_keys  # called once the failed read is given up
    monkeypatch.setattr(store, "forget_ack_keys",
                        lambda: said.append(f"given up, {remote.under_way} under way") or forget())
    reports = Reports(store, settings, lambda: NOW, lambda *_, **__: None, hooks=hooks)
    asyncio.run(reports.round(remote))
    reads = [entry for entry in said if entry.startswith("read")]
    assert said[:4] == ["read 0", "read 4000", "chunk in", "read 8000"]  # one ahead
    if fails:
        assert store.count_rows("deliveries") < 1000
        assert said[-2:] == ["chunk in", "given up, 0 under way"]
    else:
        assert store.count_rows("deliveries") == 1000
        assert len(reads) == len(set(reads)) == -(-len("\n".join(lines) + "\n") // 4000)
    store.close()


# -- STOP lines in arrival order, their numbers listed after them (migration 8) -------------


def _stop_file(store: Store) -> ReportCursor:
    """The journal's cursor of a STOP file, saved."""
    return store.save_report_cursor(ReportCursor(f"STOP-{NAME}.csv", Kind.STOP, None,
                                                 seen_at=NOW), NOW)


def _listing_slices_of(monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    """Every slice of a listing ``size`` numbers, and no pause between two."""
    for name, value in (("BULK_FIRST_BATCH", size), ("BULK_MIN_BATCH", size),
                        ("BULK_MAX_BATCH", size), ("BULK_PAUSE", 0)):
        monkeypatch.setattr(journal, name, value)


def _stop_lines(numbers: list[int]) -> list[str]:
    return [f"+336123{n:05d};20261123;1000;STOP;R{n}" for n in numbers]


def _counted(store: Store, cursor: ReportCursor, lines: list[str], upto: int) -> Any:
    """STOP lines as the pipeline reads them: the new ones, counted, and the cursor after
    them."""
    assert cursor.id is not None
    counts = store.stop_counts(cursor.id)
    new = [[line_key(line, cursor.line_hash), counts.add(line_key(line, cursor.line_hash)),
            line.split(";")[0],
            "2026-11-23T09:00:00+00:00", True] for line in lines]
    return replace(cursor, offset=10 * upto, lines=upto), new


def _stop_part(store: Store, cursor: ReportCursor, lines: list[str], upto: int) -> Any:
    """A part of STOP lines as the pipeline hands it over."""
    return stop_part(*_counted(store, cursor, lines, upto))


async def _crashed_before_listing(tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """A STOP file of 4 lines (3 numbers) recorded, the process gone before the listing;
    what ``suppress list`` showed then."""
    body = "".join(line + "\r\n" for line in _stop_lines([1, 2, 3, 2])).encode()
    with monkeypatch.context() as crash:
        crash.setattr(Store, "list_new_optouts", lambda self: 0)
        store = await _ingest(tmp_path, f"STOP-{NAME}.csv", body)
    assert store.count_rows("optouts") == 4 and store.unlisted_optouts() == 4
    assert store.count_rows("suppression") == 0
    # Not in the list's table yet, and no less opted out: an upload prepared now leaves them
    # out, and ``suppress list`` shows them, each as its first line will list it.
    assert store.suppressed() == {f"+336123{n:05d}" for n in (1, 2, 3)}
    entries = store.suppression_entries()
    assert [(e["msisdn"], e["source"]) for e in entries] == [
        (f"+336123{n:05d}", f"STOP-{NAME}.csv") for n in (1, 2, 3)]
    store.close()
    return entries


async def test_stop_lines_recorded_before_a_crash_are_listed_at_the_next_round(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A STOP file's lines go in with its cursor; their numbers join the suppression list
    after them. Stopped between the two (a crash), the next round lists them, although the
    file has not changed and is not read again."""
    before = await _crashed_before_listing(tmp_path, monkeypatch)
    settings = _settings(tmp_path / "agent")
    again = Store(settings.paths.state_db)  # the daemon restarted
    reports = Reports(again, settings, lambda: NOW, lambda *_, **__: None)
    await reports.round(LocalRemote(tmp_path / "provider"))
    assert again.count_rows("optouts") == 4  # not read again
    assert again.count_rows("suppression") == 3
    assert again.suppression_entries() == before  # listed as they were shown
    assert again.fact(LISTED_TO) == 4 and again.unlisted_optouts() == 0
    again.close()


async def test_stop_lines_recorded_before_a_crash_are_listed_at_start_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon's start lists them before anything else, the provider reachable or not."""
    await _crashed_before_listing(tmp_path, monkeypatch)
    settings = _settings(tmp_path / "agent")
    store = Store(settings.paths.state_db)
    agent = Agent(SettingsSource(settings), store=store, connect=_unreachable,
                  clock=lambda: NOW)
    await agent.startup()
    agent.scheduler.shutdown(wait=False)
    assert store.unlisted_optouts() == 0
    assert store.count_rows("suppression") == 3
    store.close()


async def _unreachable(settings: Settings) -> Any:
    raise OSError("no route to host")


async def test_a_stop_batch_not_recorded_is_read_again_and_recorded_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader counts a batch's lines before the batch before is in; when a recording
    fails, the counts are forgotten and the file is read again from its cursor: every line
    once, every number listed, a repeated line counted as such."""
    lines = _stop_lines(list(range(3000)) * 2 + [7])  # batches of 2000 lines, then more
    body = "".join(line + "\n" for line in lines).encode()
    settings = _settings(tmp_path / "agent")
    (tmp_path / "provider" / "Report").mkdir(parents=True)
    (tmp_path / "provider" / "Report" / f"STOP-{NAME}.csv").write_bytes(body)
    store = Store(settings.paths.state_db)
    reports = Reports(store, settings, lambda: NOW, lambda *_, **__: None)
    _fail_second_call(monkeypatch, store, "record_stop_parts")
    await reports.round(LocalRemote(tmp_path / "provider"))
    assert 0 < store.count_rows("optouts") < len(lines)
    await reports.round(LocalRemote(tmp_path / "provider"))
    assert store.count_rows("optouts") == len(lines)
    assert _listed(store) == {f"+336123{n:05d}" for n in range(3000)}
    cursor = store.report_cursor(f"STOP-{NAME}.csv")
    assert cursor is not None and cursor.id is not None
    store.forget_stop_counts()
    counts = store.stop_counts(cursor.id)
    assert {line: counts.get(line_key(line)) for line in lines} == collections.Counter(lines)
    store.close()


def test_numbers_are_listed_in_slices_and_a_listing_stopped_half_way_lists_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The listing goes in slices of sorted numbers, one transaction each; stopped after
    some, it lists them all at the next call (those in are left as they are), and only then
    moves past the lines. A number of several lines keeps its first line's time."""
    _listing_slices_of(monkeypatch, 3)
    store = Store(tmp_path / "state.db")
    stop = _stop_file(store)
    numbers = [9, 4, 7, 1, 8, 2, 6, 3, 5, 4]
    cursor, lines = _counted(store, stop, _stop_lines(numbers), 10)
    lines[-1][3] = "2026-11-23T10:00:00+00:00"  # the second line of +33612300004: later
    lines[2][4] = False  # a line whose number is not to be listed
    store.record_stop_parts([stop_part(cursor, lines)], at=NOW)
    transaction, began = store.transaction, []

    def fails_third() -> Any:
        began.append(1)
        if len(began) == 3:
            raise sqlite3.OperationalError("disk I/O error")
        return transaction()

    monkeypatch.setattr(store, "transaction", fails_third)
    with pytest.raises(sqlite3.OperationalError):
        store.list_new_optouts()
    # Two slices of three lines in, in number order: 1, 2, 3, then 4 (twice) and 5.
    assert _listed(store) == {f"+336123{n:05d}" for n in (1, 2, 3, 4, 5)}
    assert (store.fact(LISTED_TO) or 0) == 0
    monkeypatch.setattr(store, "transaction", transaction)
    assert store.list_new_optouts() == 10
    assert _listed(store) == {f"+336123{n:05d}" for n in numbers} - {"+33612300007"}
    assert store.fact(LISTED_TO) == 10
    assert store.list_new_optouts() == 0
    added = {e["msisdn"]: e["added_at"] for e in store.suppression_entries()}
    assert added["+33612300004"] == "2026-11-23T09:00:00+00:00"
    assert {e["source"] for e in store.suppression_entries()} == {stop.name}
    store.close()


def test_suppress_list_shows_numbers_still_to_list_as_their_listing_will(
        tmp_path: Path) -> None:
    """Between a STOP file's lines and their listing, ``suppress list`` already shows their
    numbers: each once, with its first line's time and file, none the list holds already
    (that entry stays as it is); afterwards it shows exactly the same."""
    store = Store(tmp_path / "state.db")
    store.suppress(["+33612300002"], source="manual", at=NOW - dt.timedelta(days=1))
    stop = _stop_file(store)
    cursor, lines = _counted(store, stop, _stop_lines([3, 2, 1, 3]), 4)
    lines[0][3] = "2026-11-23T10:00:00+00:00"  # +33612300003's first line: later than the rest
    lines[3][3] = "2026-11-23T08:00:00+00:00"  # ... and its second: earlier, not shown
    store.record_stop_parts([stop_part(cursor, lines)], at=NOW)
    shown = store.suppression_entries()
    assert [(e["msisdn"], e["added_at"], e["source"]) for e in shown] == [
        ("+33612300002", "2026-11-22T09:00:00+00:00", "manual"),
        ("+33612300001", "2026-11-23T09:00:00+00:00", stop.name),
        ("+33612300003", "2026-11-23T10:00:00+00:00", stop.name)]
    assert _listed(store) == {"+33612300002"}
    assert store.suppression_size() == len(shown) == 3
    assert store.list_new_optouts() == 4
    assert store.suppression_entries() == shown
    assert store.suppression_size() == 3
    store.close()


async def test_opt_outs_are_in_force_when_announced_and_listed_by_the_round_s_end(
        tmp_path: Path) -> None:
    """``optout.received`` comes once a round's files are read, before the list's table
    holds their numbers (listing a million of them takes a second or two): at that moment an
    upload leaves them out and ``suppress list`` shows them; when the round ends they are in
    the table."""
    body = "".join(line + "\n" for line in _stop_lines([3, 1, 2, 1])).encode()
    provider = tmp_path / "provider"
    (provider / "Report").mkdir(parents=True)
    (provider / "Report" / f"STOP-{NAME}.csv").write_bytes(body)
    settings = _settings(tmp_path / "agent")
    store = Store(settings.paths.state_db)
    seen: list[tuple[set[str], set[str], set[str]]] = []

    def events(name: str, *_: Any, **fields: Any) -> None:
        if name == "optout.received":
            seen.append((set(fields["numbers"]), store.suppressed(),
                         {e["msisdn"] for e in store.suppression_entries()}))

    reports = Reports(store, settings, lambda: NOW, events)
    await reports.round(LocalRemote(provider))
    numbers = {f"+336123{n:05d}" for n in (1, 2, 3)}
    assert seen == [(numbers, numbers, numbers)]
    assert _listed(store) == numbers and store.unlisted_optouts() == 0
    store.close()


def test_a_number_removed_before_its_line_is_listed_stays_removed(tmp_path: Path) -> None:
    """``suppress remove`` of a number whose opt-out line is not listed yet lists the lines
    first, then removes it: no later listing brings it back."""
    store = Store(tmp_path / "state.db")
    stop = _stop_file(store)
    store.record_stop_parts([_stop_part(store, stop, _stop_lines([1, 2]), 2)], at=NOW)
    assert store.unsuppress(["+33612300001"]) == ["+33612300001"]
    assert store.list_new_optouts() == 0
    assert _listed(store) == {"+33612300002"}
    assert store.suppressed() == {"+33612300002"}
    store.close()


def test_a_listing_overtaken_by_another_process_leaves_a_removal_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes list the same lines: the daemon, a slice at a time, and ``suppress
    remove`` in between two of its slices (it lists them all, then removes a number). The
    daemon's next slice sees the lines listed and stops: the number stays removed, and the
    mark never moves back."""
    _listing_slices_of(monkeypatch, 2)
    daemon = Store(tmp_path / "state.db")
    stop = _stop_file(daemon)
    daemon.record_stop_parts([_stop_part(daemon, stop, _stop_lines([1, 2, 3, 4, 5, 6]), 6)],
                             at=NOW)
    operator = Store(tmp_path / "state.db")
    removed: list[str] = []

    def operator_removes() -> None:
        if not removed:
            removed.extend(operator.unsuppress(["+33612300005"]))

    monkeypatch.setattr(daemon, "bulk_pause", operator_removes)
    daemon.list_new_optouts()
    assert removed == ["+33612300005"]
    assert _listed(daemon) == {f"+336123{n:05d}" for n in (1, 2, 3, 4, 6)}
    assert daemon.fact(LISTED_TO) == 6 and daemon.list_new_optouts() == 0
    operator.close()
    daemon.close()


def test_stop_lines_after_a_purge_emptied_the_table_are_listed(tmp_path: Path) -> None:
    """Opt-out lines' ids are never reused: lines recorded after a purge deleted every line
    are above the listing's mark, and listed. The lines deleted no longer count (as for a
    store opened after the purge)."""
    store = Store(tmp_path / "state.db")
    stop = _stop_file(store)
    assert stop.id is not None
    store.record_stop_parts([_stop_part(store, stop, _stop_lines([1, 2]), 2)], at=NOW)
    assert store.list_new_optouts() == 2
    assert len(store.stop_counts(stop.id)) == 2
    store.purge_rows(NOW + dt.timedelta(days=1))
    assert store.count_rows("optouts") == 0
    assert len(store.stop_counts(stop.id)) == 0
    store.record_stop_parts([_stop_part(store, stop, _stop_lines([3]), 3)], at=NOW)
    assert store.list_new_optouts() == 1
    assert "+33612300003" in _listed(store)
    store.close()


def test_opt_out_lines_of_an_older_journal_are_kept_and_not_listed_again(
        tmp_path: Path) -> None:
    """Migration 8 moves the opt-out lines of a journal with a key index into the table kept
    in arrival order, as listed already: a number an operator took off the list stays off;
    the lines are known to a read of their file again."""
    path = tmp_path / "state.db"
    db = _journal_at(path, 7, f"STOP-{NAME}.csv", "stop")
    lines = _stop_lines([1, 2, 1])
    db.executemany("INSERT INTO optouts (id, report, key, occurrence, msisdn, at) "
                   "VALUES (?, 1, ?, ?, ?, 'x')",
                   [(10, line_key(lines[0], BLAKE2B), 1, "+33612300001"),
                    (11, line_key(lines[1], BLAKE2B), 1, "+33612300002"),
                    (12, line_key(lines[2], BLAKE2B), 2, "+33612300001")])
    db.execute("INSERT INTO suppression VALUES ('+33612300002', 'x', 'STOP', NULL)")
    db.close()  # +33612300001 was taken off the list by an operator
    store = Store(path)
    assert store.version == len(MIGRATIONS) >= 8
    assert store.fact(LISTED_TO) == 12
    assert store.list_new_optouts() == 0
    assert _listed(store) == {"+33612300002"}
    counts = store.stop_counts(1)
    assert (counts.get(line_key(lines[0], BLAKE2B)),
            counts.get(line_key(lines[1], BLAKE2B))) == (2, 1)
    stop = store.report_cursor(f"STOP-{NAME}.csv")
    assert stop is not None and stop.line_hash == BLAKE2B
    store.record_stop_parts([_stop_part(store, stop, _stop_lines([3]), 4)], at=NOW)
    assert store.list_new_optouts() == 1  # id 13: after the lines moved
    assert _listed(store) == {"+33612300002", "+33612300003"}
    store.close()


async def test_a_stop_file_read_before_migration_9_keeps_its_line_keys(
        tmp_path: Path) -> None:
    """Line keys were BLAKE2b until migration 9, XXH3 since. A STOP file two of whose lines
    an older agent recorded, read again from its start (it changed at its head), is read
    with the keys of its lines: the two are found, the third alone recorded. A file first
    seen now gets XXH3, and a file whose cursor was deleted keeps its scheme when it comes
    back."""
    name = f"STOP-{NAME}.csv"
    lines = _stop_lines([1, 2, 3])
    (tmp_path / "agent").mkdir(mode=0o700)
    db = _journal_at(tmp_path / "agent" / "state.db", 8, name, "stop")
    db.execute("UPDATE report_cursors SET size = 10, offset = 10, lines = 2, "
               "head_sha256 = 'changed' WHERE id = 1")
    db.executemany("INSERT INTO optouts (report, key, occurrence, msisdn, at, listed) "
                   "VALUES (1, ?, 1, ?, 'x', 1)",
                   [(line_key(line, BLAKE2B), line[:12]) for line in lines[:2]])
    db.execute("UPDATE agent SET value = '2' WHERE key = ?", (LISTED_TO,))
    db.close()
    store = await _ingest(tmp_path, name, "".join(line + "\n" for line in lines).encode())
    assert store.version == len(MIGRATIONS) >= 9
    assert store.count_rows("optouts") == 3
    stop = store.report_cursor(name)
    assert stop is not None and stop.line_hash == BLAKE2B and stop.lines == 3
    assert store.unlisted_optouts() == 0 and _listed(store) == {"+33612300003"}
    new = store.save_report_cursor(ReportCursor(f"STOP-{NAME}-2.csv", Kind.STOP, None,
                                                seen_at=NOW), NOW)
    assert new.line_hash == XXH3 == LINE_HASH
    again = store.save_report_cursor(ReportCursor(name, Kind.STOP, None, seen_at=NOW), NOW)
    assert again.id == stop.id and again.line_hash == BLAKE2B
    store.close()


def test_line_keys_are_line_key_for_every_scheme() -> None:
    lines = ["+33612300001;20261123;1000;STOP;R1", "caf\u00e9 \u2014 \ud800", ""]
    for scheme in (BLAKE2B, XXH3):
        keys = line_keys(lines, scheme)
        assert keys == [line_key(line, scheme) for line in lines]
        assert all(-(1 << 63) <= key < (1 << 63) for key in keys)
    assert line_keys(lines, BLAKE2B) != line_keys(lines, XXH3)


async def test_a_report_read_hands_the_gil_over_sooner_and_puts_everything_back(
        tmp_path: Path) -> None:
    """While a report file is read, the recording thread gets the GIL back within
    ``HANDOFF_SECONDS`` and young objects are collected less often; after the read (a
    failed one too), the interpreter's settings are what they were."""
    provider = tmp_path / "provider"
    (provider / "Report").mkdir(parents=True)
    (provider / "Report" / f"STOP-{NAME}.csv").write_text(
        "".join(line + "\n" for line in _stop_lines([1, 2])))
    settings = _settings(tmp_path / "agent")
    store = Store(settings.paths.state_db)
    seen: list[tuple[float, int]] = []

    def during(name: str, _subject: str) -> None:
        seen.append((sys.getswitchinterval(), gc.get_threshold()[0]))
        if len(seen) == 2:
            raise OSError("disk full")

    reports = Reports(store, settings, lambda: NOW, lambda *_, **__: None, hooks=during)
    interval, thresholds = sys.getswitchinterval(), gc.get_threshold()
    await reports.round(LocalRemote(provider))  # read: the hook saw the settings
    (provider / "Report" / f"STOP-{NAME}.csv").write_text(
        "".join(line + "\n" for line in _stop_lines([1, 2, 3])))
    await reports.round(LocalRemote(provider))  # read again: the hook fails it
    assert [(round(every, 6), young) for every, young in seen] == [
        (reports_module.HANDOFF_SECONDS, reports_module.YOUNG_OBJECTS)] * 2
    assert (sys.getswitchinterval(), gc.get_threshold()) == (interval, thresholds)
    assert store.fact("report_skipped") == {f"STOP-{NAME}.csv": "disk full"}
    store.close()
