"""``suppress list|add|remove|import|export`` and ``replies``, as users type them."""

from __future__ import annotations

import csv
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

from sftpd_agent.rules.naming import Kind
from sftpd_agent.store.journal import Store
from sftpd_agent.store.records import ReplyRow, ReportCursor


def agent(tmp_path: Path) -> Path:
    tmp_path.mkdir(exist_ok=True)
    config = tmp_path / "agent.toml"
    config.write_text(f'service_id = "12345"\n[paths]\nroot = "{tmp_path / "root"}"\n')
    return config


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sftpd_agent", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=60, check=False)


def test_import_reads_csv_exports_and_says_what_it_could_not_read(tmp_path: Path) -> None:
    config = agent(tmp_path)
    export = tmp_path / "crm.csv"
    export.write_text("telephone;nom\n06 12 34 56 78;Léa\n+33612345679;Jo\nabc;X\n"
                      "0612345678;again\n\n33612345680;intl\n", encoding="cp1252")
    done = cli(config, "suppress", "import", str(export))
    assert done.returncode == 1  # one line could not be read
    assert f"{export}:4: MSISDN 'abc' is not a phone number" in done.stderr
    assert "imported 3 new, 1 already there or repeated, 1 unreadable" in done.stdout
    listed = json.loads(cli(config, "suppress", "list", "--json").stdout)
    assert sorted(e["msisdn"] for e in listed) == ["+33612345678", "+33612345679",
                                                    "+33612345680"]
    assert {e["source"] for e in listed} == {"import:crm.csv"}


def test_import_one_number_per_line_then_export_round_trips(tmp_path: Path) -> None:
    config = agent(tmp_path)
    plain = tmp_path / "stops.txt"
    plain.write_text("\ufeff0612345678\r\n+447911123456\r\n")
    assert cli(config, "suppress", "import", str(plain)).returncode == 0
    assert cli(config, "suppress", "add", "0756781234").returncode == 0
    assert cli(config, "suppress", "remove", "+447911123456").returncode == 0
    target = tmp_path / "out" / "list.csv"
    target.parent.mkdir()
    done = cli(config, "suppress", "export", str(target))
    assert done.returncode == 0, done.stderr
    assert target.stat().st_mode & 0o777 == 0o600
    with target.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter=";"))
    assert rows[0] == ["msisdn", "added_at", "source", "campaign"]
    assert sorted(r[0] for r in rows[1:]) == ["+33612345678", "+33756781234"]
    to_stdout = cli(config, "suppress", "export")
    assert to_stdout.stdout.splitlines()[1:] == [";".join(r) for r in rows[1:]]
    # And what was exported imports back into another agent unchanged.
    other = agent(tmp_path / "other")
    assert cli(other, "suppress", "import", str(target)).returncode == 0
    assert cli(other, "suppress", "list", "--json").stdout.count("+33") == 2


def test_replies_lists_what_recipients_answered(tmp_path: Path) -> None:
    config = agent(tmp_path)
    store = Store(tmp_path / "root" / "state.db")
    when = dt.datetime(2026, 11, 23, 9, 15, tzinfo=dt.UTC)
    at = when.isoformat()
    cursor = store.save_report_cursor(ReportCursor(
        name="SMSMO-12345-20261123-1000-promo.csv", kind=Kind.SMSMO, campaign=None,
        seen_at=when), when)
    assert cursor.id is not None
    rows: list[ReplyRow] = [
        (cursor.id, n, 1, f"+3361234567{n}", at, text, "R1", None, opt_out, at)
        for n, (text, opt_out) in enumerate((("Merci !", False), ("Arrêt", True)))]
    store.record_lines(cursor, rows, [None, None], bulk=True, at=when)
    store.close()
    done = cli(config, "replies")
    assert done.returncode == 0
    assert "2026-11-23 10:15  +33612345670" in done.stdout and "Merci !" in done.stdout
    assert "Arrêt  [opt-out]" in done.stdout
    listed = json.loads(cli(config, "replies", "--json").stdout)
    assert [r["opt_out"] for r in listed] == [False, True]
    assert json.loads(cli(config, "replies", "--json", "--campaign", "nope").stdout) == []


def test_check_says_how_many_rows_the_list_would_drop(tmp_path: Path) -> None:
    config = agent(tmp_path)
    campaign = tmp_path / "promo.csv"
    campaign.write_text("a;0612345678;Shop;Bonjour STOP au 36111\n"
                        "b;+33612345679;Shop;Bonjour STOP au 36111\n"
                        "c;06 12 34 56 78;Shop;Bonjour STOP au 36111\n")
    before = json.loads(cli(config, "check", "--json", str(campaign)).stdout)
    assert "suppressed" not in before  # no journal yet: nothing to count against
    assert cli(config, "suppress", "add", "+33612345678").returncode == 0
    after = json.loads(cli(config, "check", "--json", str(campaign)).stdout)
    assert after["suppressed"] == 1  # the duplicate of the same number counts once
    assert after["valid"] == 2 and after["duplicates"] == 1
    text = cli(config, "check", str(campaign)).stdout
    assert "suppressed      1" in text
