"""The daily purge: personal data older than ``retention_days`` goes, opt-outs never do."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from sftpd_agent.config import Settings
from sftpd_agent.pipeline.retention import purge
from sftpd_agent.rules.naming import Kind
from sftpd_agent.store.journal import Store
from sftpd_agent.store.records import ReportCursor

NOW = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)
OLD = NOW - dt.timedelta(days=91)
RECENT = NOW - dt.timedelta(days=89)


def aged(path: Path, when: dt.datetime) -> Path:
    os.utime(path, (when.timestamp(), when.timestamp()))
    return path


def test_old_personal_data_is_purged_and_the_suppression_list_kept(tmp_path: Path) -> None:
    paths = Settings(service_id="12345", paths={"root": tmp_path}).paths
    store = Store(paths.state_db)
    for folder in (paths.archive / "old-campaign", paths.archive / "new-campaign", paths.failed,
                   paths.inbox / "stop", paths.inbox / "ack"):
        folder.mkdir(parents=True, exist_ok=True)
    (paths.archive / "old-campaign" / "a.csv").write_text("x")
    aged(paths.archive / "old-campaign" / "a.csv", OLD)
    (paths.archive / "new-campaign" / "b.csv").write_text("x")
    aged(paths.archive / "new-campaign" / "b.csv", RECENT)
    for name, when in (("old.csv", OLD), ("new.csv", RECENT)):
        (paths.failed / name).write_text("x")
        aged(paths.failed / name, when)
    # A STOP file the provider still shows is kept even when its copy is old.
    for name in ("STOP-live.csv", "STOP-gone.csv"):
        (paths.inbox / "stop" / name).write_text("x")
        aged(paths.inbox / "stop" / name, OLD)
    store.save_report_cursor(ReportCursor("STOP-live.csv", Kind.STOP, None, seen_at=NOW), NOW)
    store.save_report_cursor(ReportCursor("STOP-gone.csv", Kind.STOP, None, seen_at=OLD), OLD)
    ack = store.save_report_cursor(ReportCursor("ACK-x.csv", Kind.ACK, None, seen_at=NOW), NOW)
    mo = store.save_report_cursor(ReportCursor("SMSMO-x.csv", Kind.SMSMO, None, seen_at=NOW),
                                  NOW)
    assert ack.id is not None and mo.id is not None
    for at, number in ((OLD, "+33612345678"), (RECENT, "+33612345679")):
        store.record_acks(ack, [(ack.id, number, "R", None, "S", "2", "sent", "op",
                                 at.isoformat())], NOW)
        store.record_lines(mo, [(mo.id, int(number), 1, number, None, "Stop", "R", None, True,
                                 at.isoformat())], [None], bulk=False, at=NOW)
    store.suppress(["+33612345678"], source="STOP-x.csv", at=OLD - dt.timedelta(days=400))

    purged = purge(store, paths, 90, now=NOW)

    assert not (paths.archive / "old-campaign").exists()
    assert (paths.archive / "new-campaign" / "b.csv").exists()
    assert sorted(p.name for p in paths.failed.iterdir()) == ["new.csv"]
    assert sorted(p.name for p in (paths.inbox / "stop").iterdir()) == ["STOP-live.csv"]
    assert purged.rows["deliveries"] == 1 and purged.rows["replies"] == 1
    assert purged.rows["report_cursors"] == 1
    assert store.report_cursor("STOP-live.csv") is not None
    assert store.suppressed() == {"+33612345678"}
    assert purged.files == 3


def test_held_symbolic_links_are_purged_as_links_never_followed(tmp_path: Path) -> None:
    """A held link in failed/ (dangling, or to an old folder elsewhere) is aged and removed
    by its own time; its target is never read, walked or deleted; the rows still go."""
    paths = Settings(service_id="12345", paths={"root": tmp_path / "agent"}).paths
    store = Store(paths.state_db)
    paths.failed.mkdir(parents=True, exist_ok=True)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "inside").mkdir(parents=True)
    aged(elsewhere / "inside", OLD)
    (paths.failed / "dangling.csv").symlink_to(tmp_path / "nothing")
    (paths.failed / "folder.csv").symlink_to(elsewhere)
    for link in ("dangling.csv", "folder.csv"):
        os.utime(paths.failed / link, (OLD.timestamp(),) * 2, follow_symlinks=False)
    (paths.failed / "recent.csv").symlink_to(tmp_path / "nothing")
    purged = purge(store, paths, 90, now=NOW)
    assert sorted(p.name for p in paths.failed.iterdir()) == ["recent.csv"]
    assert (elsewhere / "inside").is_dir()  # the target untouched
    assert purged.files == 2 and "deliveries" in purged.rows
    store.close()
