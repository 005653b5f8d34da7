"""Benchmark: an idle poll round against a long history, beside the old queries, in one run.

    python benchmarks/history.py [--campaigns 10000] [--deliveries 50000000] [--keep DIR]

Builds a synthetic ``state.db`` (SQL ``INSERT ... SELECT`` from recursive CTEs, in big
transactions): ``--campaigns`` finished campaigns (90% ``reported`` with one ``done`` part
and its ingested, deleted ACK; 5% ``rejected``; 5% ``held``), five transitions each, and
``--deliveries`` delivery lines spread over the ACKs. A copy built once is reused with
``--keep`` (the same folder and sizes).

Then the real components do one poll round with nothing new, as the daemon does it
(``Agent._round``: ``Publisher.round`` and ``Reports.round`` against a ``LocalRemote`` whose
``Send/`` and ``Report/`` are empty; ``Agent._after_round``: the archive check, the overdue
scan; ``Agent._write_metrics``: the Prometheus file), and the CPU time of the round
(``time.process_time``) is printed, median of ``--rounds`` after one warm-up round, beside
two baselines from the same run:

- the same round on the same journal with the queries as they were before issue 16
  (``Campaigns.unarchived`` read every campaign and its parts; the report round every
  ``done`` or ``rejected`` campaign, its parts and cursors);
- the same round on an empty journal.

Target (issue 16): <= 50 ms of CPU per idle round with 10,000 campaigns and 50,000,000
delivery lines.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TARGET_MS = 50.0
NOW = datetime.datetime(2026, 11, 23, 9, 0, tzinfo=datetime.UTC)
PAST = "2026-01-01T10:00:00+00:00"


def build(db_path: Path, campaigns: int, deliveries: int) -> float:
    """The synthetic journal; seconds it took."""
    from sftpd_agent.store.journal import Store

    started = time.perf_counter()
    Store(db_path).close()  # the schema, every migration
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-262144")
    summary = json.dumps({"rows": 5000, "invalid_by_code": {"E_NUMBER": 3, "E_EMPTY": 1},
                          "groups": [], "acks": {"sent": 4900, "failed": 100}})
    # n(i) = 1..?; i % 20: 0 rejected, 1 held, else reported (with its ACK)
    db.execute("BEGIN")
    db.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
        "INSERT INTO campaigns (id, campaign_id, file, source, state, received_at, send_at, "
        "upload_at, rows, valid, invalid, duplicates, suppressed, segments, summary, "
        "updated_at) SELECT i, 'c' || i, 'c' || i || '.csv', i || '.csv', CASE i % 20 "
        "WHEN 0 THEN 'rejected' WHEN 1 THEN 'held' ELSE 'reported' END, ?, ?, ?, "
        "5000, 4996, 4, 0, 0, 5000, ?, ? FROM n", (campaigns, PAST, PAST, PAST, summary, PAST))
    db.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
        "INSERT INTO parts (id, campaign, number, remote_name, state, size, sha256, rows, "
        "published_at, outcome_at, updated_at) SELECT i, i, 1, "
        "'SEND-12345-20260101-1000-c' || i || '.csv', "
        "CASE i % 20 WHEN 0 THEN 'rejected' ELSE 'done' END, 400000, '', 5000, ?, ?, ? "
        "FROM n WHERE i % 20 != 1", (campaigns, PAST, PAST, PAST))
    db.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
        "INSERT INTO transitions (campaign, part, from_state, to_state, at) "
        "SELECT i, NULL, NULL, s.value, ? FROM n, json_each(?) AS s",
        (campaigns, PAST, json.dumps(["received", "validated", "scheduled", "uploading",
                                      "done"])))
    db.execute(
        "INSERT INTO report_cursors (name, kind, campaign, size, mtime, offset, lines, "
        "complete_at, deleted_at, seen_at, updated_at) SELECT "
        "'ACK-' || substr(remote_name, 6), 'ACK', campaign, 1, 1, 1, 1, ?, ?, ?, ? "
        "FROM parts WHERE campaign IN (SELECT id FROM campaigns WHERE state = 'reported') "
        "ORDER BY campaign", (PAST, PAST, PAST, PAST))
    db.execute("COMMIT")
    reports = [row[0] for row in db.execute("SELECT id FROM report_cursors ORDER BY id")]
    each, extra = divmod(deliveries, len(reports))
    pending = 0
    db.execute("BEGIN")
    for index, report in enumerate(reports):
        count = each + (1 if index < extra else 0)
        db.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO deliveries (report, msisdn, idremote, campaign, oadc, idstatus, "
            "status, operator, at) SELECT ?, printf('+3366%07d', i), 'R' || i, "
            "(SELECT campaign FROM report_cursors WHERE id = ?), 'Shop', '2', "
            "CASE WHEN i % 50 THEN 'sent' ELSE 'failed' END, 'Orange', ? FROM n",
            (count, report, report, PAST))
        pending += count
        if pending >= 2_000_000:
            db.execute("COMMIT")
            db.execute("BEGIN")
            pending = 0
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return time.perf_counter() - started


# -- the queries as they were before issue 16 (the baseline) --------------------------------

def old_unarchived(self: Any) -> list[Any]:
    from sftpd_agent.rules.states import WAITING, CampaignState, PartState

    return [c for c in self.store.campaigns()
            if c.state not in WAITING | {CampaignState.HELD}
            and self.folder(c).exists()
            and all(p.state != PartState.UPLOADING for p in self.store.parts(c.id))]


def old_report_campaigns(self: Any) -> None:
    from sftpd_agent.rules.report_lines import ack_name
    from sftpd_agent.rules.states import OUTCOME, CampaignState, PartState

    waiting = {c.id: c for c in self.store.campaigns(*OUTCOME)}
    for pk in self._touched - waiting.keys():
        waiting[pk] = self.store.campaign(pk)
    for campaign in waiting.values():
        parts = self.store.parts(campaign.id)
        done = [p for p in parts if p.state == PartState.DONE]
        cursors = [self.store.report_cursor(ack_name(p.remote_name)) for p in done]
        if not any(cursors):
            continue
        figures = self.store.count_acks(campaign.id)
        if figures and figures != campaign.summary.get("acks"):
            self.store.update_campaign(campaign.id,
                                       summary={**campaign.summary, "acks": figures})
        complete = all(c is not None and c.complete_at is not None for c in cursors)
        if campaign.state != CampaignState.REPORTED and complete and done:
            self.transitions.campaign(campaign, CampaignState.REPORTED, detail="ACK ingested",
                                      say={"acks": figures})


def old_indexes(db_path: Path) -> Callable[[], None]:
    """Drop migration 5's indexes (the journal as it was); the function that puts them back."""
    from sftpd_agent.store.schema import MIGRATIONS

    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("DROP INDEX IF EXISTS parts_campaign")
    db.execute("DROP INDEX IF EXISTS report_cursors_campaign")
    db.close()

    def restore() -> None:
        again = sqlite3.connect(db_path, isolation_level=None)
        again.executescript(MIGRATIONS[4])
        again.close()

    return restore


# -- one idle round ----------------------------------------------------------------------

def rounds(root: Path, count: int, *, old: bool) -> list[float]:
    """CPU seconds of ``count`` idle poll rounds (after one warm-up round)."""
    from sftpd_agent.config import Settings, SettingsSource
    from sftpd_agent.daemon import Agent
    from sftpd_agent.remote.local import LocalRemote
    from sftpd_agent.store.journal import Store

    provider = root / "provider"
    for folder in ("Send", "Report"):
        (provider / folder).mkdir(parents=True, exist_ok=True)
    settings = Settings(service_id="12345", paths={"root": root / "agent"},
                        metrics={"textfile": str(root / "agent.prom")})
    store = Store(settings.paths.state_db)
    remote = LocalRemote(provider)

    def connect(_: Settings) -> Any:
        raise AssertionError("not used")  # pragma: no cover

    async def run() -> list[float]:
        agent = Agent(SettingsSource(settings), store=store, connect=connect,
                      clock=lambda: NOW)
        if old:
            agent.campaigns.unarchived = types.MethodType(  # type: ignore[method-assign]
                old_unarchived, agent.campaigns)
            agent.reports._report_campaigns = types.MethodType(  # type: ignore[method-assign]
                old_report_campaigns, agent.reports)
        times = []
        for _ in range(count + 1):
            started = time.process_time()
            await agent._round(remote)
            agent._after_round(True)
            agent._write_metrics()
            times.append(time.process_time() - started)
        return times[1:]

    try:
        return asyncio.run(run())
    finally:
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaigns", type=int, default=10_000)
    parser.add_argument("--deliveries", type=int, default=50_000_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--keep", type=Path, help="build the journal here once, reuse it")
    args = parser.parse_args()

    folder = args.keep or Path(tempfile.mkdtemp(prefix="sftpd-bench-history-"))
    history, empty = folder / "history", folder / "empty"
    db_path = history / "agent" / "state.db"
    sizes = history / "sizes.json"
    wanted = {"campaigns": args.campaigns, "deliveries": args.deliveries}
    try:
        if not (sizes.exists() and json.loads(sizes.read_text()) == wanted):
            shutil.rmtree(history, ignore_errors=True)
            seconds = build(db_path, args.campaigns, args.deliveries)
            sizes.write_text(json.dumps(wanted))
            print(f"built {args.campaigns:,} campaigns and {args.deliveries:,} delivery lines "
                  f"in {seconds:.0f} s ({db_path.stat().st_size / 1e9:.1f} GB)")
        else:
            print(f"reusing the journal in {history} ({db_path.stat().st_size / 1e9:.1f} GB)")
        shutil.rmtree(empty, ignore_errors=True)
        ours = rounds(history, args.rounds, old=False)
        restore = old_indexes(db_path)
        try:
            before = rounds(history, args.rounds, old=True)
        finally:
            restore()
        nothing = rounds(empty, args.rounds, old=False)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)

    print(f"one idle poll round, CPU ms over {args.rounds} rounds "
          f"({args.campaigns:,} campaigns, {args.deliveries:,} delivery lines):")
    print(f"{'':40}{'median':>9}{'max':>9}")
    for label, times in (("ours", ours), ("baseline: the queries before issue 16", before),
                         ("baseline: an empty journal", nothing)):
        print(f"{label:40}{statistics.median(times) * 1000:9.1f}{max(times) * 1000:9.1f}")
    median = statistics.median(ours) * 1000
    met = median <= TARGET_MS
    print(f"idle round: {median:.1f} ms of CPU (target <= {TARGET_MS:g} ms), "
          f"{statistics.median(before) / statistics.median(ours):.1f}x less than before")
    print("target met" if met else "TARGET MISSED")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
