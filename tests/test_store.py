"""The journal: schema versions, durable transitions, private files."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from sftpd_agent.files import private_dir
from sftpd_agent.rules.naming import Kind
from sftpd_agent.rules.states import CampaignState, PartState
from sftpd_agent.store import journal as store_module
from sftpd_agent.store.journal import IllegalTransition, Store
from sftpd_agent.store.records import Campaign, PartPlan, ReportCursor
from sftpd_agent.store.schema import MIGRATIONS

T0 = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)
C = CampaignState
P = PartState


def scheduled(store: Store, campaign_id: str, file: str = "promo.csv") -> Campaign:
    c = store.add_campaign(campaign_id=campaign_id, file=file, source=f"1-{file}", at=T0)
    store.move(c.id, C.VALIDATED, at=T0)
    return store.move(c.id, C.SCHEDULED, at=T0)


def test_created_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        store = Store(tmp_path / "state" / "state.db")
    finally:
        os.umask(old)
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "state" / "state.db").stat().st_mode & 0o777 == 0o600
    store.close()


def test_missing_parents_are_private_too(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    old = os.umask(0o022)
    try:
        private_dir(tmp_path / "inbox" / "stop")
    finally:
        os.umask(old)
    assert (tmp_path / "inbox").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "inbox" / "stop").stat().st_mode & 0o777 == 0o700
    assert tmp_path.stat().st_mode & 0o777 == 0o755  # an existing parent is left as it is


def test_schema_version_and_migrations_apply_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    assert store.version == len(MIGRATIONS)
    store.close()
    again = Store(tmp_path / "s.db")  # reopening applies nothing twice
    assert again.version == len(MIGRATIONS)
    mode = sqlite3.connect(tmp_path / "s.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    again.close()


def test_transitions_are_recorded_with_their_times(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    c = store.add_campaign(campaign_id="promo", file="promo.csv", source="1-promo.csv", at=T0)
    store.move(c.id, CampaignState.VALIDATED, at=T0 + dt.timedelta(seconds=1), rows=10)
    store.move(c.id, CampaignState.SCHEDULED, at=T0 + dt.timedelta(seconds=2),
               send_at=T0 + dt.timedelta(hours=1))
    moved = store.campaign(c.id)
    assert moved.state == CampaignState.SCHEDULED and moved.rows == 10
    assert moved.send_at == T0 + dt.timedelta(hours=1)
    assert [(a, b) for a, b, _ in store.transitions(c.id)] == [
        (None, "received"), ("received", "validated"), ("validated", "scheduled")]
    store.close()
    # Durable: a new connection sees everything.
    reopened = Store(tmp_path / "s.db")
    assert reopened.campaign(c.id).state == CampaignState.SCHEDULED
    reopened.close()


def test_parts_are_the_intent_and_names_are_unique(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    c = scheduled(store, "promo")
    plans = [PartPlan("SEND-12345-20261123-1000-promoP1.csv", 10, "ab", 1),
             PartPlan("SEND-12345-20261123-1000-promoP2.csv", 12, "cd", 1)]
    parts = store.add_parts(c.id, plans, at=T0, suppressed=3)
    assert [p.state for p in parts] == [PartState.UPLOADING] * 2
    assert store.campaign(c.id).state == CampaignState.UPLOADING
    assert store.campaign(c.id).suppressed == 3
    assert store.name_taken(plans[0].remote_name)
    other = scheduled(store, "promo", "x.csv")
    with pytest.raises(sqlite3.IntegrityError):
        store.add_parts(other.id, plans[:1], at=T0, suppressed=0)
    assert store.campaign(other.id).state == CampaignState.SCHEDULED  # rolled back whole
    store.move_part(parts[0], PartState.PUBLISHED, at=T0)
    assert store.parts(c.id)[0].published_at == T0
    store.close()


def test_an_illegal_campaign_move_is_refused_and_nothing_written(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    c = store.add_campaign(campaign_id="promo", file="promo.csv", source="1-promo.csv", at=T0)
    with pytest.raises(IllegalTransition, match="received -> uploading"):
        store.move(c.id, C.UPLOADING, at=T0, rows=5)
    with pytest.raises(IllegalTransition, match="received -> uploading"):
        store.add_parts(c.id, [PartPlan("SEND-12345-20261123-1000-p.csv", 1, "ab", 1)],
                        at=T0, suppressed=0)
    assert store.campaign(c.id).state == C.RECEIVED and store.campaign(c.id).rows == 0
    assert store.parts(c.id) == [] and not store.name_taken("SEND-12345-20261123-1000-p.csv")
    store.move(c.id, C.HELD, at=T0, reason="no rows")
    for to in (C.RECEIVED, C.VALIDATED, C.SCHEDULED, C.REPORTED):
        with pytest.raises(IllegalTransition) as refused:
            store.move(c.id, to, at=T0 + dt.timedelta(seconds=1))
        assert (refused.value.before, refused.value.after) == ("held", to)
        assert isinstance(refused.value, ValueError)
    assert store.move(c.id, C.HELD, at=T0, reason="still").reason == "still"  # same state
    assert [b for _, b, _ in store.transitions(c.id)] == ["received", "held"]
    with pytest.raises(KeyError):
        store.move(999, C.VALIDATED, at=T0)
    store.close()


def test_a_part_moves_only_forward(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    c = scheduled(store, "promo")
    (part,) = store.add_parts(c.id, [PartPlan("SEND-12345-20261123-1000-p.csv", 1, "ab", 1)],
                              at=T0, suppressed=0)
    store.move_part(part, P.PROCESSING, at=T0)  # seen .lock without our rename: allowed
    for to in (P.UPLOADING, P.PUBLISHED, P.PROCESSING):
        with pytest.raises(IllegalTransition, match=f"processing -> {to}"):
            store.move_part(part, to, at=T0)  # the stale Part says uploading: the journal rules
    store.move_part(part, P.REJECTED, at=T0 + dt.timedelta(seconds=1))
    with pytest.raises(IllegalTransition, match="rejected -> done"):
        store.move_part(part, P.DONE, at=T0)
    (moved,) = store.parts(c.id)
    assert moved.state == P.REJECTED and moved.outcome_at == T0 + dt.timedelta(seconds=1)
    store.close()


def test_the_store_checkpoints_between_transactions(tmp_path: Path) -> None:
    """SQLite's own checkpoint is off (it ran inside a COMMIT): the store's keeps the WAL
    small, the database file up to date."""
    store = Store(tmp_path / "s.db")
    wal = tmp_path / "s.db-wal"
    for n in range(5 * store_module.CHECKPOINT_EVERY):
        store.set_fact("heartbeat", n)
    # Without checkpoints every commit appends its pages: 500 commits, over 2 MB.
    assert wal.stat().st_size < 1_000_000, wal.stat().st_size
    ack = store.save_report_cursor(ReportCursor("ACK-x.csv", Kind.ACK, None, seen_at=T0), T0)
    assert ack.id is not None
    for batch in range(store_module.BULK_PER_CHECKPOINT):
        store.record_acks(ack, [(ack.id, f"+336{n:08d}", "R", None, "S", "2", "sent", "op",
                                 T0.isoformat()) for n in range(batch * 5000, (batch + 1) * 5000)],
                          T0)
    # Bulk batches are checkpointed every few (beside the writer): the database file alone
    # holds them.
    store.wait_checkpoint()
    copy = tmp_path / "copy.db"
    copy.write_bytes((tmp_path / "s.db").read_bytes())
    with sqlite3.connect(copy) as db:
        assert db.execute("SELECT count(*) FROM deliveries").fetchone()[0] == 20_000
    store.close()


def _in_database_file(path: Path) -> int:
    """The delivery lines the database file holds, without its WAL (a copy of the file)."""
    copy = path.with_name("copy.db")
    copy.write_bytes(path.read_bytes())
    with sqlite3.connect(copy) as db:
        count = int(db.execute("SELECT count(*) FROM deliveries").fetchone()[0])
    db.close()
    copy.unlink()
    return count


def _bulk_batches(store: Store, cursor: ReportCursor, count: int, first: int = 0) -> None:
    assert cursor.id is not None
    for batch in range(first, first + count):
        store.record_acks(cursor, [(cursor.id, f"+336{n:08d}", "R", None, "S", "2", "sent", "op",
                                    T0.isoformat()) for n in range(batch * 100, batch * 100 + 100)],
                          T0)


def test_bulk_checkpoints_run_beside_the_writer_one_at_a_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bulk writer's checkpoint runs on a connection and in a thread of its own: while it
    is held up, the writer goes on committing batches, and checkpoints due meanwhile are
    not piled up behind it; it copies the pages once let go."""
    let_go, copies = threading.Event(), []
    copy = store_module._Aside._copy

    def held_up(aside: Any) -> None:
        copies.append(threading.current_thread().name)
        assert let_go.wait(10)
        copy(aside)

    monkeypatch.setattr(store_module._Aside, "_copy", held_up)
    store = Store(tmp_path / "s.db")
    ack = store.save_report_cursor(ReportCursor("ACK-x.csv", Kind.ACK, None, seen_at=T0), T0)
    _bulk_batches(store, ack, store_module.BULK_PER_CHECKPOINT)  # one checkpoint due
    _bulk_batches(store, ack, 3 * store_module.BULK_PER_CHECKPOINT, first=10)  # 3 more due
    assert store.count_rows("deliveries") == 4 * store_module.BULK_PER_CHECKPOINT * 100
    assert len(copies) == 1 and copies[0].startswith("checkpoint")
    let_go.set()
    store.wait_checkpoint()
    assert len(copies) == 1  # the three due meanwhile were skipped, not queued
    assert _in_database_file(tmp_path / "s.db") >= 100
    store.close()


def test_a_failed_bulk_checkpoint_is_said_and_taken_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy, failures = store_module._Aside._copy, []

    def fails_once(aside: Any) -> None:
        if not failures:
            failures.append(1)
            raise sqlite3.OperationalError("disk I/O error")
        copy(aside)

    monkeypatch.setattr(store_module._Aside, "_copy", fails_once)
    store = Store(tmp_path / "s.db")
    ack = store.save_report_cursor(ReportCursor("ACK-x.csv", Kind.ACK, None, seen_at=T0), T0)
    with capture_logs() as logs:
        _bulk_batches(store, ack, store_module.BULK_PER_CHECKPOINT)
        store.wait_checkpoint()
        _bulk_batches(store, ack, store_module.BULK_PER_CHECKPOINT, first=10)
        store.wait_checkpoint()
    assert [entry["error"] for entry in logs if entry["event"] == "checkpoint_failed"] == [
        "disk I/O error"]
    assert _in_database_file(tmp_path / "s.db") == 2 * store_module.BULK_PER_CHECKPOINT * 100
    store.close()


def test_a_transaction_without_its_own_fsync_leaves_the_others_theirs(
        tmp_path: Path) -> None:
    """``synced=False`` commits with ``synchronous=NORMAL`` and puts FULL back, also when
    its block fails: no other transaction on the connection goes without its fsync."""
    store = Store(tmp_path / "s.db")

    def synchronous(db: sqlite3.Connection) -> int:
        return int(db.execute("PRAGMA synchronous").fetchone()[0])

    with store.transaction(synced=False) as db:
        assert synchronous(db) == 1  # NORMAL
        db.execute("INSERT INTO agent (key, value) VALUES ('a', '1')")
    with store.transaction() as db:
        assert synchronous(db) == 2  # FULL
    with pytest.raises(RuntimeError), store.transaction(synced=False) as db:
        raise RuntimeError("a batch that fails")
    with store.transaction() as db:
        assert synchronous(db) == 2
    assert store.fact("a") == 1
    store.close()


def test_a_lean_cache_is_for_its_block_alone(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")

    def cache(db: sqlite3.Connection) -> int:
        return int(db.execute("PRAGMA cache_size").fetchone()[0])

    with store.transaction() as db:
        assert cache(db) == -store_module.CACHE_KIB
    with pytest.raises(RuntimeError), store.lean_cache():
        with store.transaction() as db:
            assert cache(db) == -store_module.LEAN_CACHE_KIB
        raise RuntimeError("a read that fails")
    with store.transaction() as db:
        assert cache(db) == -store_module.CACHE_KIB
    store.close()


def test_facts(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    assert store.fact("last_poll") is None
    store.set_fact("last_poll", "x")
    store.set_fact("last_poll", "y")
    assert store.fact("last_poll") == "y"
    store.close()
    ro = Store(tmp_path / "s.db", readonly=True)
    assert ro.fact("last_poll") == "y"
    ro.close()


def test_suppress_returns_the_new_numbers_in_order_across_batches(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "BULK_FIRST_BATCH", 3)
    monkeypatch.setattr(store_module, "BULK_MAX_BATCH", 3)
    monkeypatch.setattr(store_module, "BULK_MIN_BATCH", 3)
    monkeypatch.setattr(store_module, "BULK_PAUSE", 0)
    store = Store(tmp_path / "s.db")
    assert store.suppress(["+33600000009"], source="manual", at=T0) == ["+33600000009"]
    given = ["+33600000003", "+33600000001", "+33600000003",  # a repeat in the same batch
             "+33600000009", "+33600000002", "+33600000001",  # on the list; a later repeat
             "+33600000004"]
    batches = list(store.suppress_batches(given, source="import:x.csv", at=T0))
    assert batches == [["+33600000003", "+33600000001"], ["+33600000002"], ["+33600000004"]]
    assert store.suppress(given, source="again", at=T0) == []
    assert store.suppressed() == {f"+3360000000{n}" for n in (1, 2, 3, 4, 9)}
    sources = {e["msisdn"]: e["source"] for e in store.suppression_entries()}
    assert sources["+33600000009"] == "manual" and sources["+33600000004"] == "import:x.csv"
    store.close()


def test_a_large_suppress_commits_in_short_batches(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    numbers = (f"+3361{i:07d}" for i in range(60_000))  # taken as it goes: any iterable
    holds = []
    added = 0
    for new in store.suppress_batches(numbers, source="import:big.csv", at=T0):
        holds.append(store.last_hold)
        added += len(new)
    assert added == 60_000 and len(store.suppressed()) == 60_000
    assert len(holds) >= 3  # not one transaction for all
    assert sorted(holds)[len(holds) // 2] < 0.1  # the typical batch holds the lock < 100 ms
    store.close()


def test_purge_deletes_in_batches_and_keeps_what_is_recent(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("BULK_FIRST_BATCH", 2), ("BULK_MIN_BATCH", 2), ("BULK_MAX_BATCH", 2),
                        ("BULK_PAUSE", 0)):
        monkeypatch.setattr(store_module, name, value)
    store = Store(tmp_path / "s.db")
    old, new = T0.isoformat(), (T0 + dt.timedelta(days=2)).isoformat()
    ack = store.save_report_cursor(ReportCursor("ACK-x.csv", Kind.ACK, None, seen_at=T0), T0)
    stop = store.save_report_cursor(ReportCursor("STOP-x.csv", Kind.STOP, None,
                                                 seen_at=T0 + dt.timedelta(days=2)), T0)
    assert ack.id is not None and stop.id is not None
    store.record_acks(ack, [(ack.id, f"+3361234567{n}", f"R{n}", None, "S", "2", "sent", "op",
                             old if n < 5 else new) for n in range(7)], T0)
    store.record_lines(stop, [(stop.id, n, 1, "+33612345678", None, None, old if n < 3 else new)
                              for n in range(4)], [None] * 4, bulk=True, at=T0)
    holds = []
    original = store.transaction

    def counted() -> object:
        holds.append(1)
        return original()

    monkeypatch.setattr(store, "transaction", counted)
    deleted = store.purge_rows(T0 + dt.timedelta(days=1))
    assert deleted["deliveries"] == 5 and deleted["optouts"] == 3
    assert len(holds) >= 3 + 2 + 3  # 2 rows a transaction: 3 for 5 lines, 2 for 3 opt-outs
    left = store.deliveries()
    assert [idremote for _, _, idremote, *_ in left] == ["R5", "R6"]
    assert store.count_rows("optouts") == 1
    store.close()


def _plan(db: sqlite3.Connection, sql: str, *args: object) -> str:
    return " | ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql, args))


def test_a_poll_finds_what_is_in_flight_through_indexes(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    done, rejected, reported, waiting = (scheduled(store, f"c{i}", f"c{i}.csv")
                                         for i in range(4))
    outcome = {done.id: P.DONE, rejected.id: P.REJECTED, reported.id: P.DONE}
    for c in (done, rejected, reported, waiting):
        (part,) = store.add_parts(c.id, [PartPlan(f"SEND-12345-20261123-1000-{c.campaign_id}.csv",
                                                  10, "ab", 1)], at=T0, suppressed=0)
        if c.id in outcome:
            store.move_part(part, outcome[c.id], at=T0)
            store.move(c.id, C.DONE if outcome[c.id] == P.DONE else C.REJECTED, at=T0)
        if c is not rejected:  # an ACK file for each but the rejected one
            store.save_report_cursor(ReportCursor(
                f"ACK-12345-20261123-1000-{c.campaign_id}.csv", Kind.ACK, c.id, seen_at=T0), T0)
    store.move(reported.id, C.REPORTED, at=T0)
    # The report round: only the campaign with an outcome and an ACK of a done part.
    assert [c.id for c in store.campaigns_with_acks(C.DONE, C.REJECTED)] == [done.id]
    # The archive check: the campaigns asked for, by id, an unknown one left out.
    assert [c.id for c in store.campaigns_among([waiting.id, 999, done.id])] == [
        done.id, waiting.id]
    # Every query of an idle poll searches an index, none reads a table whole.
    db = sqlite3.connect(tmp_path / "s.db")
    plans = [
        _plan(db, "SELECT * FROM parts WHERE 1=1 AND campaign = ? ORDER BY campaign, "
              "number", done.id),
        _plan(db, "SELECT * FROM parts WHERE 1=1 AND state IN (?,?,?) ORDER BY "
              "campaign, number", P.UPLOADING, P.PUBLISHED, P.PROCESSING),
        _plan(db, "SELECT * FROM campaigns WHERE id IN (SELECT value FROM json_each(?))",
              "[1]"),
        _plan(db, "SELECT * FROM campaigns AS c WHERE c.state IN (?,?) AND EXISTS ("
              "SELECT 1 FROM parts AS p JOIN report_cursors AS k ON k.name = 'ACK-' || "
              "substr(p.remote_name, instr(p.remote_name, '-') + 1) WHERE p.campaign = c.id "
              "AND p.state = ?)", C.DONE, C.REJECTED, P.DONE),
        _plan(db, "SELECT id FROM report_cursors WHERE campaign = ?", done.id),
    ]
    for plan in plans:
        assert "SCAN parts" not in plan and "SCAN campaigns" not in plan, plan
        assert "SCAN report_cursors" not in plan, plan
    db.close()
    store.close()


def test_migration_5_adds_the_poll_indexes_to_an_older_journal(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:4], start=1):
        db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
    db.execute("INSERT INTO campaigns (campaign_id, file, source, state, received_at, "
               "updated_at) VALUES ('old', 'old.csv', '1-old.csv', 'reported', ?, ?)",
               (T0.isoformat(), T0.isoformat()))
    db.close()
    store = Store(tmp_path / "s.db")
    assert store.version == len(MIGRATIONS) >= 5
    assert [c.campaign_id for c in store.campaigns()] == ["old"]
    store.close()
    names = {row[0] for row in sqlite3.connect(tmp_path / "s.db").execute(
        "SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"parts_campaign", "report_cursors_campaign"} <= names


def test_line_counts_of_some_keys_are_those_of_the_whole_file(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    cursor = store.save_report_cursor(
        ReportCursor("STOP-12345-20261123-1000-x.csv", Kind.STOP, None, seen_at=T0), T0)
    assert cursor.id is not None
    rows = [(cursor.id, key, occurrence, "+33612345678", None, None, T0.isoformat())
            for key, occurrence in ((-5, 1), (7, 1), (7, 2), (2**63 - 1, 1), (7, 3))]
    store.record_lines(cursor, rows, [None] * len(rows), bulk=True, at=T0)
    whole = store.line_counts(cursor.id, Kind.STOP)
    assert whole == {-5: 1, 7: 3, 2**63 - 1: 1}
    assert store.line_counts(cursor.id, Kind.STOP, [7, 2**63 - 1, 11]) == {7: 3, 2**63 - 1: 1}
    # A read's own count, apart from what is recorded: starts empty, adds up.
    store.begin_line_pass()
    assert store.line_pass_counts([7, -5]) == {}
    store.add_line_pass({7: 1, -(2**63): 2})
    store.add_line_pass({7: 3})
    assert store.line_pass_counts([7, -(2**63), 11]) == {7: 3, -(2**63): 2}
    store.begin_line_pass()
    assert store.line_pass_counts([7]) == {}
    store.close()
