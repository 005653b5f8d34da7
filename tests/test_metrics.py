"""The Prometheus text file: figures read back from a real journal, written atomically."""

from __future__ import annotations

import datetime as dt
import os
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sftpd_agent.errors import ConfigError
from sftpd_agent.pipeline.metrics import write_textfile
from sftpd_agent.rules.naming import Kind
from sftpd_agent.rules.states import CampaignState, PartState
from sftpd_agent.rules.validation import CODES
from sftpd_agent.store.journal import Store
from sftpd_agent.store.records import PartPlan, ReportCursor, now_iso

T0 = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
C = CampaignState
P = PartState

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def read(path: Path) -> tuple[Samples, dict[str, tuple[str, str]]]:
    """Samples by (name, labels) and, by family name, its (type, help)."""
    samples: Samples = {}
    families: dict[str, tuple[str, str]] = {}
    for family in text_string_to_metric_families(path.read_text()):
        families[family.name] = (family.type, family.documentation)
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples, families


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[("sftpd_agent_" + name, tuple(sorted(labels.items())))]


def campaign(store: Store, name: str, *, at: dt.datetime, **fields: Any) -> int:
    c = store.add_campaign(campaign_id=name, file=f"{name}.csv", source=f"1-{name}.csv", at=at)
    store.move(c.id, C.VALIDATED, at=at, **fields)
    return c.id


def publish(store: Store, pk: int, rows: list[int], *, at: dt.datetime, suppressed: int = 0
            ) -> None:
    store.move(pk, C.SCHEDULED, at=at)
    plans = [PartPlan(f"x{pk}-{n}.csv", 100 * r, "0" * 64, r) for n, r in enumerate(rows)]
    for part in store.add_parts(pk, plans, at=at, suppressed=suppressed):
        store.move_part(part, P.PUBLISHED, at=at)


def move_part(store: Store, pk: int, number: int, to: PartState, *, at: dt.datetime) -> None:
    part = next(p for p in store.parts(pk) if p.number == number)
    store.move_part(part, to, at=at)


def stop_report(store: Store) -> ReportCursor:
    """A STOP file's cursor, saved: the report its opt-out lines come from."""
    return store.save_report_cursor(
        ReportCursor("STOP-12345-20261123-1000-promo.csv", Kind.STOP, None, seen_at=T0), T0)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "state" / "state.db")


def populate(store: Store) -> None:
    # In flight: two parts published at T0+1h, taken by the provider at T0+2h; two rows
    # suppressed, one duplicate, two invalid.
    promo = campaign(store, "promo", at=T0, rows=10, valid=7, invalid=2, duplicates=1,
                     summary={"invalid_by_code": {"msisdn": 1, "msg_non_gsm": 1}})
    publish(store, promo, [3, 2], at=T0 + HOUR, suppressed=2)
    move_part(store, promo, 1, P.PROCESSING, at=T0 + 2 * HOUR)
    move_part(store, promo, 2, P.PROCESSING, at=T0 + 2 * HOUR)
    store.move(promo, C.PROCESSING, at=T0 + 3 * HOUR)
    # Held: nothing sent, its rows' faults still counted.
    held = campaign(store, "held", at=T0, rows=9, valid=1, invalid=5, duplicates=3,
                    summary={"invalid_by_code": {"msisdn": 4, "oadc": 1}})
    store.move(held, C.HELD, at=T0, reason="too many invalid rows")
    # Done long ago (published at T0): no longer waiting.
    done = campaign(store, "done", at=T0, rows=4, valid=4, summary={"invalid_by_code": {}})
    publish(store, done, [4], at=T0)
    move_part(store, done, 1, P.DONE, at=T0 + HOUR / 2)
    store.move(done, C.DONE, at=T0 + HOUR / 2)
    # Rejected after upload: its rows were uploaded all the same.
    rejected = campaign(store, "rejected", at=T0, rows=6, valid=6)
    publish(store, rejected, [6], at=T0)
    move_part(store, rejected, 1, P.REJECTED, at=T0 + HOUR)
    store.move(rejected, C.REJECTED, at=T0 + HOUR)
    # Just received: no summary yet.
    store.add_campaign(campaign_id="new", file="new.csv", source="1-new.csv", at=T0)

    store.suppress(["+33612345678", "+33612345679"], source="optout", at=T0)
    stop = stop_report(store)
    store.record_lines(stop, [(1, n, 1, f"+3361234567{n}", None, promo, now_iso(T0))
                              for n in range(3)], [None] * 3, bulk=True, at=T0)
    store.set_fact("last_poll", now_iso(T0 + 4 * HOUR))
    store.set_fact("remote_errors_total", 3)
    store.set_fact("remote_error", "connection refused")
    store.set_fact("upload_bytes_total", 12345)
    store.set_fact("upload_seconds_total", 2.5)


def test_figures_read_back_from_the_journal(store: Store, tmp_path: Path) -> None:
    populate(store)
    path = tmp_path / "sftpd_agent.prom"
    write_textfile(path, store, now=T0 + 5 * HOUR, pending_notifications=2)
    samples, families = read(path)

    expected_states = {"processing": 1, "held": 1, "done": 1, "rejected": 1, "received": 1}
    for state in CampaignState:
        assert value(samples, "campaigns", state=state) == expected_states.get(state, 0)
    assert value(samples, "rows_sent_total") == 3 + 2 + 4 + 6
    dropped = dict.fromkeys(CODES, 0) | {
        "msisdn": 5, "msg_non_gsm": 1, "oadc": 1, "duplicate": 4, "suppressed": 2}
    for reason, count in dropped.items():
        assert value(samples, "rows_dropped_total", reason=reason) == count
    assert value(samples, "optouts_total") == 3
    assert value(samples, "suppression_list_size") == 2
    # The parts still waiting were published at T0+1h (and taken by the provider at T0+2h:
    # the age counts from publication): 4 hours at T0+5h.
    assert value(samples, "oldest_waiting_outcome_seconds") == 4 * 3600
    assert value(samples, "last_successful_poll_timestamp_seconds") == (
        T0 + 4 * HOUR).timestamp()
    assert value(samples, "remote_errors_total") == 3
    assert value(samples, "remote_up") == 0
    assert value(samples, "upload_bytes_total") == 12345
    assert value(samples, "upload_seconds_total") == 2.5
    assert value(samples, "notifications_pending") == 2

    types = {name.removeprefix("sftpd_agent_"): kind for name, (kind, _) in families.items()}
    assert types == {
        "campaigns": "gauge", "rows_sent": "counter", "rows_dropped": "counter",
        "optouts": "counter", "suppression_list_size": "gauge",
        "oldest_waiting_outcome_seconds": "gauge",
        "last_successful_poll_timestamp_seconds": "gauge", "remote_errors": "counter",
        "remote_up": "gauge", "upload_bytes": "counter", "upload_seconds": "counter",
        "notifications_pending": "gauge",
    }
    assert all(help_text for _, help_text in families.values())


def test_an_empty_journal_gives_every_series_at_zero(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "sftpd_agent.prom"
    write_textfile(path, store, now=T0)
    samples, _ = read(path)
    assert all(value(samples, "campaigns", state=s) == 0 for s in CampaignState)
    assert all(value(samples, "rows_dropped_total", reason=r) == 0
               for r in (*CODES, "duplicate", "suppressed"))
    assert value(samples, "oldest_waiting_outcome_seconds") == 0
    assert value(samples, "last_successful_poll_timestamp_seconds") == 0
    assert value(samples, "remote_errors_total") == 0
    assert value(samples, "remote_up") == 1  # no error recorded
    assert value(samples, "upload_bytes_total") == 0
    assert value(samples, "notifications_pending") == 0


def test_oldest_waiting_follows_the_outcomes(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "m.prom"
    pk = campaign(store, "promo", at=T0, rows=2, valid=2)
    publish(store, pk, [1, 1], at=T0)
    write_textfile(path, store, now=T0 + 90 * dt.timedelta(seconds=1))
    assert value(read(path)[0], "oldest_waiting_outcome_seconds") == 90
    move_part(store, pk, 1, P.DONE, at=T0 + HOUR)
    move_part(store, pk, 2, P.DONE, at=T0 + HOUR)
    write_textfile(path, store, now=T0 + 2 * HOUR)
    assert value(read(path)[0], "oldest_waiting_outcome_seconds") == 0
    # A clock behind the journal never gives a negative age.
    other = campaign(store, "later", at=T0, rows=1, valid=1)
    publish(store, other, [1], at=T0 + 3 * HOUR)
    write_textfile(path, store, now=T0 + 2 * HOUR)
    assert value(read(path)[0], "oldest_waiting_outcome_seconds") == 0


def test_the_file_is_replaced_atomically_and_readable_by_others(
    store: Store, tmp_path: Path
) -> None:
    folder = tmp_path / "textfile_collector"
    folder.mkdir()
    path = folder / "sftpd_agent.prom"
    old_umask = os.umask(0o077)  # the systemd unit's UMask
    try:
        write_textfile(path, store, now=T0)
        first = path.stat()
        with path.open() as reader:  # node_exporter in the middle of a read
            store.suppress(["+33612345678"], source="cli", at=T0)
            write_textfile(path, store, now=T0)
            old_text = reader.read()
    finally:
        os.umask(old_umask)
    assert path.stat().st_ino != first.st_ino  # a new file renamed over, not rewritten
    assert "sftpd_agent_suppression_list_size 0.0" in old_text  # the reader's copy is whole
    assert old_text.rstrip().endswith("sftpd_agent_notifications_pending 0.0")
    assert value(read(path)[0], "suppression_list_size") == 1
    assert path.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in folder.iterdir()) == ["sftpd_agent.prom"]  # no temp left


def test_a_missing_directory_is_a_configuration_error(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "absent" / "sftpd_agent.prom"
    with pytest.raises(ConfigError, match=r"^\[metrics\] textfile: directory .*absent does "
                                          r"not exist$"):
        write_textfile(path, store, now=T0)
    assert not path.parent.exists()  # not created: a typo must not go unnoticed


def test_a_failed_rename_leaves_no_temporary_file(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "collector"
    (folder / "sftpd_agent.prom").mkdir(parents=True)  # the target is a directory
    with pytest.raises(ConfigError, match="is a directory"):
        write_textfile(folder / "sftpd_agent.prom", store, now=T0)
    assert [p.name for p in folder.iterdir()] == ["sftpd_agent.prom"]


def test_large_tables_are_aggregated_in_sqlite(store: Store, tmp_path: Path) -> None:
    rows = 200_000
    store.suppress((f"+336{n:08d}" for n in range(rows)), source="import", at=T0)
    stop = stop_report(store)
    store.record_lines(stop, [(1, n, 1, f"+336{n:08d}", None, None, now_iso(T0))
                              for n in range(rows)], [None] * rows, bulk=True, at=T0)
    path = tmp_path / "m.prom"
    tracemalloc.start()
    try:
        write_textfile(path, store, now=T0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    samples, _ = read(path)
    assert value(samples, "suppression_list_size") == rows
    assert value(samples, "optouts_total") == rows
    # Loading either table into Python would take tens of megabytes.
    assert peak < 2_000_000
