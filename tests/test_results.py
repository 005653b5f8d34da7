"""``results``: a campaign's outcome per contact row, from the journal and its files."""

from __future__ import annotations

import csv
import datetime as dt
import io
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import sftpd_agent.pipeline.results as results_module
from sftpd_agent.config import Settings
from sftpd_agent.pipeline.campaigns import Campaigns
from sftpd_agent.pipeline.results import (
    HEADER,
    ResultsError,
    archive_folder,
    delivery_outcome,
    excel_cell,
    excel_number,
    locate,
    write_results,
)
from sftpd_agent.rules.display import local_name
from sftpd_agent.rules.naming import Kind
from sftpd_agent.rules.report_lines import line_key
from sftpd_agent.rules.states import CampaignState, PartState
from sftpd_agent.store.journal import Store
from sftpd_agent.store.records import Campaign, PartPlan, ReportCursor, now_iso
from sftpd_agent.store.results import STATUS_SEPARATOR, campaign_deliveries, delivery_groups

UTC = dt.UTC
RECEIVED = dt.datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
PUBLISHED = dt.datetime(2026, 11, 23, 9, 50, 20, tzinfo=UTC)
ACKED = dt.datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
ACKED_SHOWN = "2026-11-24T09:00:00+01:00"  # Europe/Paris

# line;crm_id;idremote;phone, as the manifest intake writes contacts.map.csv
CONTACTS = [
    (2, "C1", "R1", "06 12 34 56 01"),
    (3, "C2", "R2", "0612345602"),
    (4, "C3", "R3", "+33612345603"),
    (5, "C4", "R4", "0612"),
    (6, "C5", "R5", "06.12.34.56.01"),
    (7, "C6", "R6", "0612345606"),
    (8, "C7", "R7", "0612345607"),
    (9, '=HYPERLINK("x")', "R8", "0612345608"),
    (10, "", "R9", "0612345609"),
    (11, "C10", "R10", "+4915112345678"),
    (12, "C11", "R11", "0612345611"),
    (13, "C12", "R12", "0612345612"),
]
PART_ROWS = [["R1", "R2", "R3"], ["R7", "R8", "R9", "R11", "R12"]]

EXPECTED = {  # crm_id: (msisdn, outcome, code, status, ack_at, optout_at, line)
    "C1": ("+33612345601", "sent", "2", "sent", ACKED_SHOWN, "", "2"),
    "C2": ("+33612345602", "failed", "3", "failed", ACKED_SHOWN, "", "3"),
    "C3": ("+33612345603", "pending", "", "", "", "", "4"),
    "C4": ("0612", "invalid", "msisdn", "", "", "", "5"),
    "C5": ("+33612345601", "duplicate", "", "", "", "", "6"),
    "C6": ("+33612345606", "suppressed", "", "", "", "", "7"),
    "C7": ("+33612345607", "opted_out", "2", "sent", ACKED_SHOWN,
           "2026-11-23T11:30:00+01:00", "8"),
    '=HYPERLINK("x")': ("+33612345608", "sent", "2", "sent", ACKED_SHOWN, "", "9"),
    "": ("+33612345609", "sent", "2", "sent", ACKED_SHOWN, "", "10"),
    "C10": ("+4915112345678", "not_sent", "", "", "", "", "11"),
    "C11": ("+33612345611", "opted_out", "", "", "", "2026-11-23T10:50:00+01:00", "12"),
    "C12": ("+33612345612", "pending", "ACK1", "buffered", ACKED_SHOWN, "", "13"),
}


def e164(phone: str) -> str:
    digits = "".join(c for c in phone if c.isdigit())
    return "+" + digits if phone.startswith("+") else "+33" + digits[1:]


def write_csv(path: Path, rows: list[list[str]] | list[tuple[object, ...]],
              header: list[str] | None = None) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=";", lineterminator="\r\n")
        if header:
            writer.writerow(header)
        writer.writerows(rows)


@dataclass
class Built:
    settings: Settings
    store: Store
    campaign: Campaign

    def results(self, **options: object) -> list[dict[str, str]]:
        out = io.BytesIO()
        write_results(self.store, self.settings, self.store.campaign(self.campaign.id), out,
                      **options)  # type: ignore[arg-type]
        return list(csv.DictReader(io.StringIO(out.getvalue().decode()), delimiter=";"))


def make_settings(tmp_path: Path) -> Settings:
    return Settings(service_id="12345", paths={"root": tmp_path / "agent"},
                    campaign={"stop_mention_policy": "off"})


def sent_campaign(store: Store, *, campaign_id: str, file: str, source: str,
                  summary: dict[str, object] | None = None,
                  part_rows: list[int] | None = None) -> Campaign:
    campaign = store.add_campaign(campaign_id=campaign_id, file=file, source=source,
                                  at=RECEIVED)
    store.move(campaign.id, CampaignState.VALIDATED, at=RECEIVED, summary=summary or {})
    store.move(campaign.id, CampaignState.SCHEDULED, at=RECEIVED)
    rows = part_rows or [len(r) for r in PART_ROWS]
    plans = [PartPlan(f"SEND-12345-20261123-1100-{campaign_id}P{n}.csv", 10, "0" * 64, count)
             for n, count in enumerate(rows, start=1)]
    for part in store.add_parts(campaign.id, plans, at=PUBLISHED, suppressed=1):
        store.move_part(part, PartState.DONE, at=PUBLISHED)
    store.move(campaign.id, CampaignState.DONE, at=PUBLISHED)
    return store.campaign(campaign.id)


def record_acks(store: Store, campaign: Campaign,
                lines: list[tuple[str, str, str, str]]) -> None:
    """ACK lines (idremote, msisdn, idstatus, status) of the campaign's first part."""
    name = "ACK-" + store.parts(campaign.id)[0].remote_name.split("-", 1)[1]
    cursor = store.save_report_cursor(
        ReportCursor(name, Kind.ACK, campaign.id, seen_at=ACKED), ACKED)
    assert cursor.id is not None
    store.record_acks(cursor, [(cursor.id, msisdn, idremote, campaign.id, "ACME", idstatus,
                                status, "op", now_iso(ACKED))
                               for idremote, msisdn, idstatus, status in lines], ACKED)


def record_stops(store: Store, campaign: Campaign | None,
                 stops: list[tuple[str, dt.datetime]], name: str) -> None:
    cursor = store.save_report_cursor(
        ReportCursor(name, Kind.STOP, campaign.id if campaign else None, seen_at=ACKED), ACKED)
    assert cursor.id is not None
    rows = [(cursor.id, line_key(f"{msisdn};{at}"), 1, msisdn, now_iso(at),
             campaign.id if campaign else None, now_iso(ACKED)) for msisdn, at in stops]
    store.record_lines(cursor, rows, [(msisdn, now_iso(at), name, None)
                                      for msisdn, at in stops], bulk=True, at=ACKED)


@pytest.fixture
def manifest(tmp_path: Path) -> Built:
    """A manifest campaign in the spool with a row of every outcome."""
    settings = make_settings(tmp_path)
    store = Store(settings.paths.state_db)
    campaign = sent_campaign(store, campaign_id="promo", file="promo.campaign.toml",
                             source="1.toml", summary={"foreign_dropped": 1})
    folder = settings.paths.spool / str(campaign.id)
    folder.mkdir(parents=True)
    write_csv(folder / "contacts.map.csv", CONTACTS, ["line", "crm_id", "idremote", "phone"])
    write_csv(folder / "errors.csv",
              [[5, "msisdn", "Mobile", "0612", "not a valid phone number"],
               [5, "template_value_missing", "Prénom", "", "empty, no default"]],
              ["line", "code", "field", "value", "detail"])
    write_csv(folder / "dropped.csv", [["R6", "+33612345606", "suppressed"]],
              ["idremote", "msisdn", "reason"])
    phones = {idremote: phone for _, _, idremote, phone in CONTACTS}
    for part, idremotes in zip(store.parts(campaign.id), PART_ROWS, strict=True):
        write_csv(folder / part.remote_name,
                  [[r, e164(phones[r]), "ACME", "Bonjour; -20 %\nà Lyon"] for r in idremotes])
    record_acks(store, campaign, [
        ("R1", "+33612345601", "2", "sent"), ("R2", "+33612345602", "3", "failed"),
        ("R7", "+33612345607", "2", "sent"), ("R8", "+33612345608", "2", "sent"),
        ("R9", "+33612345609", "2", "sent"), ("R12", "+33612345612", "ACK1", "buffered"),
        ("X", "+33699999999", "2", "sent"),  # a line about no row of ours
    ])
    record_stops(store, campaign, [
        ("+33612345607", dt.datetime(2026, 11, 23, 10, 30, tzinfo=UTC)),
        # in the minute of the upload (the provider's times are to the minute): after it
        ("+33612345611", dt.datetime(2026, 11, 23, 9, 50, tzinfo=UTC)),
    ], "STOP-12345-20261123-1100-promoP1.csv")
    record_stops(store, None, [  # before the campaign: not an opt-out from it
        ("+33612345609", dt.datetime(2026, 11, 20, 10, 0, tzinfo=UTC)),
    ], "STOP-12345-20261120-1100-older.csv")
    return Built(settings, store, campaign)


def as_expected(rows: list[dict[str, str]]) -> dict[str, tuple[str, ...]]:
    return {r["crm_id"]: (r["msisdn"], r["outcome"], r["code"], r["status"], r["ack_at"],
                          r["optout_at"], r["line"]) for r in rows}


def test_every_outcome_of_a_manifest_campaign_by_crm_id(manifest: Built) -> None:
    rows = manifest.results()
    assert [r["line"] for r in rows] == [str(c[0]) for c in CONTACTS]  # the contacts' order
    assert as_expected(rows) == EXPECTED
    details = {r["crm_id"]: r["detail"] for r in rows}
    assert details["C4"] == "Mobile '0612': not a valid phone number"  # the first error
    assert details["C10"] == "a number of another country, dropped (foreign = drop)"
    assert details["C3"].startswith("no delivery report yet (SEND-12345-20261123-1100-promoP1")
    assert list(rows[0]) == list(HEADER)


def test_figures_count_each_outcome(manifest: Built) -> None:
    figures = write_results(manifest.store, manifest.settings, manifest.campaign, io.BytesIO())
    assert figures.as_dict() == {"rows": 12, "sent": 3, "failed": 1, "pending": 2,
                                 "opted_out": 2, "invalid": 1, "duplicate": 1,
                                 "suppressed": 1, "not_sent": 1}
    assert figures.line() == ("12 rows: sent 3, failed 1, pending 2, opted_out 2, invalid 1, "
                              "duplicate 1, suppressed 1, not_sent 1")


def test_a_rejected_file_and_a_held_campaign_are_not_sent(manifest: Built) -> None:
    store = manifest.store
    second = store.parts(manifest.campaign.id)[1]
    with store.transaction() as db:  # the provider refused P2 (no API moves done back)
        db.execute("UPDATE parts SET state = 'rejected' WHERE id = ?", (second.id,))
    rows = {r["crm_id"]: r for r in manifest.results()}
    assert rows["C7"]["outcome"] == "not_sent"
    assert rows["C7"]["detail"] == f"the provider rejected {second.remote_name}"
    assert rows["C1"]["outcome"] == "sent"


def test_the_archive_folder_is_read_once_the_spool_is_gone(manifest: Built,
                                                            tmp_path: Path) -> None:
    settings, campaign = manifest.settings, manifest.campaign
    real = Campaigns(settings, manifest.store, lambda: RECEIVED, lambda *a, **k: None)
    assert archive_folder(settings, campaign) == real.archive_folder(campaign)
    spool = settings.paths.spool / str(campaign.id)
    archive = archive_folder(settings, campaign)
    archive.parent.mkdir(parents=True, exist_ok=True)
    spool.rename(archive)
    kept = local_name(campaign.file, room=len(".errors.csv"))
    (archive / "errors.csv").rename(archive / f"{kept}.errors.csv")
    assert locate(settings, campaign).folder == archive
    assert as_expected(manifest.results()) == EXPECTED
    # Purged after retention_days: said in one line, nothing guessed.
    shutil.rmtree(archive)
    with pytest.raises(ResultsError, match=r"contact map \(contacts.map.csv\) is gone; "
                                           r"kept paths.retention_days = 90 days"):
        manifest.results()


def plain_campaign(tmp_path: Path, *, held: bool = False) -> Built:
    """A provider-shaped campaign in CP1252 with a header row: crm_id is IDREMOTE."""
    settings = make_settings(tmp_path)
    store = Store(settings.paths.state_db)
    text = ("IDREMOTE;MSISDN;OADC;MSG\r\n"
            "A1;0612345601;ACME;Été -20 %\r\n"
            "\r\n"
            'A2;0612345602;ACME;"deux\r\nlignes"\r\n'
            "A3;06123;ACME;numéro faux\r\n"
            "A4;+33612345601;ACME;doublon\r\n")
    if held:
        campaign = store.add_campaign(campaign_id="soldes", file="soldes.csv", source="7.csv",
                                      at=RECEIVED)
        store.move(campaign.id, CampaignState.HELD, at=RECEIVED,
                   reason="3 invalid rows of 4 (75 %) > max_invalid_percent 5")
        failed = settings.paths.failed
        failed.mkdir(parents=True)
        (failed / "soldes.csv").write_bytes(text.encode("cp1252"))
        write_csv(failed / "soldes.csv.errors.csv",
                  [[6, "msisdn", "MSISDN", "06123", "not a valid phone number"]],
                  ["line", "code", "field", "value", "detail"])
        return Built(settings, store, store.campaign(campaign.id))
    campaign = sent_campaign(store, campaign_id="soldes", file="soldes.csv", source="7.csv",
                             summary={"encoding": "cp1252"}, part_rows=[2])
    incoming = settings.paths.spool / "incoming"
    incoming.mkdir(parents=True)
    (incoming / "7.csv").write_bytes(text.encode("cp1252"))
    folder = settings.paths.spool / str(campaign.id)
    folder.mkdir()
    write_csv(folder / campaign_part(store, campaign),
              [["A1", "+33612345601", "ACME", "Ete"], ["A2", "+33612345602", "ACME", "deux"]])
    write_csv(folder / "errors.csv",
              [[6, "msisdn", "MSISDN", "06123", "not a valid phone number"]],
              ["line", "code", "field", "value", "detail"])
    record_acks(store, campaign, [("A1", "+33612345601", "2", "sent"),
                                  ("A2", "+33612345602", "3", "failed")])
    return Built(settings, store, campaign)


def campaign_part(store: Store, campaign: Campaign) -> str:
    return store.parts(campaign.id)[0].remote_name


def test_a_plain_campaign_file_gives_idremote_as_crm_id(tmp_path: Path) -> None:
    built = plain_campaign(tmp_path)
    rows = built.results()
    assert [(r["crm_id"], r["msisdn"], r["outcome"], r["code"], r["line"]) for r in rows] == [
        ("A1", "+33612345601", "sent", "2", "2"),
        ("A2", "+33612345602", "failed", "3", "4"),  # a quoted message over two lines
        ("A3", "06123", "invalid", "msisdn", "6"),
        ("A4", "+33612345601", "duplicate", "", "7"),
    ]
    # Archived: the original beside the uploaded files, under its kept name.
    settings, campaign = built.settings, built.campaign
    archive = archive_folder(settings, campaign)
    archive.parent.mkdir(parents=True, exist_ok=True)
    (settings.paths.spool / str(campaign.id)).rename(archive)
    (settings.paths.spool / "incoming" / "7.csv").rename(archive / "soldes.csv")
    (archive / "errors.csv").rename(archive / "soldes.csv.errors.csv")
    assert built.results() == rows


def test_a_held_campaign_gives_its_errors_and_the_hold_reason(tmp_path: Path) -> None:
    built = plain_campaign(tmp_path, held=True)
    rows = built.results()
    reason = "held: 3 invalid rows of 4 (75 %) > max_invalid_percent 5"
    assert [(r["crm_id"], r["outcome"], r["code"], r["detail"]) for r in rows] == [
        ("A1", "not_sent", "", reason),
        ("A2", "not_sent", "", reason),
        ("A3", "invalid", "msisdn", "MSISDN '06123': not a valid phone number"),
        ("A4", "duplicate", "", "the number of an earlier row"),
    ]


def test_cp1252_with_commas_decodes_back(manifest: Built) -> None:
    out = io.BytesIO()
    write_results(manifest.store, manifest.settings, manifest.campaign, out,
                  encoding="cp1252", delimiter=",")
    data = out.getvalue()
    assert not data.startswith(b"\xef\xbb\xbf")
    assert data.startswith(b"crm_id,msisdn,outcome,code,status,ack_at,optout_at,line,detail\r\n")
    text = data.decode("cp1252")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert as_expected(rows) == EXPECTED
    assert b"Pr\xe9nom" not in data  # only the first error is said: Mobile
    assert "'0612'" in text and "+33612345601" in text


def test_a_value_cp1252_cannot_hold_is_one_clear_error_and_no_file(manifest: Built,
                                                                   tmp_path: Path) -> None:
    folder = manifest.settings.paths.spool / str(manifest.campaign.id)
    rows = [list(c) for c in CONTACTS]
    rows[1][1] = "Łukasz-2"
    write_csv(folder / "contacts.map.csv", rows, ["line", "crm_id", "idremote", "phone"])
    target = tmp_path / "out.csv"
    with pytest.raises(ResultsError) as raised:
        write_results(manifest.store, manifest.settings, manifest.campaign, target,
                      encoding="cp1252")
    assert str(raised.value) == ("contact line 3: the crm_id value 'Łukasz-2' holds 'Ł', which "
                                 "cp1252 cannot write: use --encoding utf-8 (or --excel)")
    assert not target.exists() and list(tmp_path.glob(".out.csv.*")) == []
    # The same in UTF-8 is written whole.
    figures = write_results(manifest.store, manifest.settings, manifest.campaign, target)
    assert figures.path == target and figures.rows == 12
    assert "Łukasz-2" in target.read_text(encoding="utf-8")


def test_excel_has_a_bom_semicolons_crlf_guarded_cells_and_text_numbers(
        manifest: Built) -> None:
    out = io.BytesIO()
    write_results(manifest.store, manifest.settings, manifest.campaign, out, excel=True,
                  encoding="cp1252", delimiter=",")  # ignored with excel
    data = out.getvalue()
    assert data.startswith(b"\xef\xbb\xbfcrm_id;msisdn;outcome;")
    assert data.count(b"\r\n") == 13 and data.count(b"\n") == 13
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline=""),
                               delimiter=";"))
    by_line = {r["line"]: r for r in rows}
    assert by_line["9"]["crm_id"] == "'=HYPERLINK(\"x\")"
    assert by_line["2"]["msisdn"] == '="+33612345601"'
    assert by_line["5"]["msisdn"] == "0612"  # raw, not a number: as it is
    assert by_line["2"]["ack_at"] == "2026-11-24 09:00:00"
    assert all(not r["crm_id"].startswith(("=", "+", "-", "@")) for r in rows)


def test_cell_guards_and_delivery_words() -> None:
    assert [excel_cell(v) for v in ("=1+1", "+33", "-2", "@SUM(A1)", "\tx", "ok", "")] == [
        "'=1+1", "'+33", "'-2", "'@SUM(A1)", "'\tx", "ok", ""]
    assert excel_number("+33612345678") == '="+33612345678"'
    assert excel_number("+33=1") == "'+33=1"
    assert [delivery_outcome(i, s) for i, s in (
        ("2", "sent"), ("3", "failed"), ("9", " Delivered "), ("2", ""), ("3", "?"),
        ("7", "buffered"), ("1", "EXPIRED"))] == [
        "sent", "failed", "sent", "sent", "failed", "pending", "failed"]


# -- the command ---------------------------------------------------------------------------

def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sftpd_agent", *args], capture_output=True,
                          text=True, timeout=60, check=False, env={"PATH": "/usr/bin:/bin"})


@pytest.fixture
def config(manifest: Built, tmp_path: Path) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(f'service_id = "12345"\n[paths]\nroot = "{manifest.settings.paths.root}"\n'
                    '[campaign]\nstop_mention_policy = "off"\n', encoding="utf-8")
    return path


def test_the_command_writes_the_file_and_says_the_figures(config: Path, manifest: Built,
                                                          tmp_path: Path) -> None:
    target = tmp_path / "promo-results.csv"
    done = run_cli("results", "promo", "--config", str(config), "--output", str(target))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout == (f"{target}: campaign promo (number 1, done): 12 rows: sent 3, "
                           "failed 1, pending 2, opted_out 2, invalid 1, duplicate 1, "
                           "suppressed 1, not_sent 1\n")
    rows = list(csv.DictReader(io.StringIO(target.read_text(encoding="utf-8"), newline=""),
                               delimiter=";"))
    assert as_expected(rows) == EXPECTED
    assert target.stat().st_mode & 0o777 == 0o600  # personal data
    # To standard output: the file there, the figures on stderr.
    done = run_cli("results", "promo", "--config", str(config), "--excel")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("\ufeffcrm_id;msisdn;")
    assert done.stderr.startswith("campaign promo (number 1, done): 12 rows")


def test_the_command_refuses_in_one_line(config: Path, manifest: Built) -> None:
    done = run_cli("results", "nope", "--config", str(config))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == ("sftpd-agent: no campaign 'nope' in the journal "
                           "(sftpd-agent status lists them)\n")
    done = run_cli("results", "promo", "--config", str(config), "--pk", "9")
    assert (done.returncode, done.stderr) == (2, "sftpd-agent: no campaign number 9\n")
    done = run_cli("results", "promo", "--config", str(config), "--excel", "--delimiter", ",")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "--excel writes UTF-8 with a BOM and ';'" in done.stderr
    done = run_cli("results", "promo", "--config", str(config), "--encoding", "latin9")
    assert done.returncode == 2 and done.stderr.count("\n") == 1


def test_several_campaigns_of_one_id_newest_unless_pk(config: Path, manifest: Built) -> None:
    newer = manifest.store.add_campaign(campaign_id="promo", file="promo.campaign.toml",
                                        source="2.toml", at=ACKED)
    done = run_cli("results", "promo", "--config", str(config))
    assert done.returncode == 1  # the newer one's files are not there yet
    assert done.stderr.splitlines() == [
        f"sftpd-agent results: 2 campaigns are named 'promo': the newest, number {newer.id} "
        "(received 2026-11-24 08:00 UTC); --pk 1 for another",
        f"sftpd-agent results: campaign promo (number {newer.id}) is received, not validated "
        "yet: its results come once it is"]
    done = run_cli("results", "promo", "--config", str(config), "--pk", "1")
    assert done.returncode == 0, done.stderr
    assert as_expected(list(csv.DictReader(io.StringIO(done.stdout, newline=""),
                                           delimiter=";"))) == EXPECTED
    done = run_cli("results", "other", "--config", str(config), "--pk", "1")
    assert (done.returncode, done.stderr) == (
        2, "sftpd-agent: campaign number 1 is 'promo', not 'other'\n")


def test_a_final_status_is_kept_and_files_that_disagree_write_nothing(
        manifest: Built, tmp_path: Path) -> None:
    later = manifest.store.save_report_cursor(ReportCursor(
        "ACK-12345-20261123-1100-promoP2.csv", Kind.ACK, manifest.campaign.id,
        seen_at=ACKED), ACKED)
    assert later.id is not None
    manifest.store.record_acks(later, [  # a day later: an intermediate, then a final status
        (later.id, "+33612345601", "R1", manifest.campaign.id, "ACME", "ACK1", "buffered",
         "op", now_iso(ACKED + dt.timedelta(days=1))),
        (later.id, "+33612345612", "R12", manifest.campaign.id, "ACME", "3", "failed",
         "op", now_iso(ACKED + dt.timedelta(days=1)))], ACKED)
    rows = {r["crm_id"]: r for r in manifest.results()}
    assert (rows["C1"]["outcome"], rows["C1"]["status"]) == ("sent", "sent")
    assert (rows["C12"]["outcome"], rows["C12"]["ack_at"]) == ("failed",
                                                               "2026-11-25T09:00:00+01:00")
    folder = manifest.settings.paths.spool / str(manifest.campaign.id)
    first = manifest.store.parts(manifest.campaign.id)[0].remote_name
    with (folder / first).open("a", encoding="utf-8", newline="") as out:
        out.write("R99;+33612345699;ACME;not a contact\r\n")
    target = tmp_path / "out.csv"
    with pytest.raises(ResultsError, match=f"{first}: its row IDREMOTE R99 matches no "
                                           "contact row in order"):
        write_results(manifest.store, manifest.settings, manifest.campaign, target)
    assert not target.exists()


# -- the fast paths say what the general ones say --------------------------------------------

TRICKY_IDS = {  # line -> CRM id: quoting, formula starts, non-ASCII, every outcome
    2: "a;b", 3: 'x"y', 4: "Zoë", 5: 'in;valid"', 6: "-5", 7: "+1", 8: "@x",
    9: '=HYPERLINK("x")', 10: "", 11: "line\nbreak", 12: "\tTab €", 13: "plain42",
}
FORMS: list[dict[str, object]] = [{}, {"excel": True},
                                  {"encoding": "cp1252", "delimiter": ","}]


def tricky(manifest: Built, *, quoted_parts: bool) -> None:
    """The manifest with a CRM id of every kind, statuses csv must quote or Excel guard, and
    its uploaded files with or without a quoted field (read line by line, or a block at a
    time), with LF and CR line ends and blank lines."""
    folder = manifest.settings.paths.spool / str(manifest.campaign.id)
    write_csv(folder / "contacts.map.csv",
              [(line, TRICKY_IDS[line], idremote, phone)
               for line, _, idremote, phone in CONTACTS],
              ["line", "crm_id", "idremote", "phone"])
    with manifest.store.transaction() as db:
        db.execute("""UPDATE deliveries SET status = 'buf;"fered"' WHERE idremote = 'R12'""")
        db.execute("UPDATE deliveries SET status = '=1+1' WHERE idremote = 'R9'")
    if not quoted_parts:
        phones = {idremote: phone for _, _, idremote, phone in CONTACTS}
        ends = ["\n", "\r", "\r\n"]
        for part, idremotes in zip(manifest.store.parts(manifest.campaign.id), PART_ROWS,
                                   strict=True):
            text = "".join(f"{r};{e164(phones[r])};ACME;Bonjour -20 %{ends[n % 3]}\n"
                           for n, r in enumerate(idremotes))
            (folder / part.remote_name).write_bytes(text.encode())


def written(manifest: Built, **options: object) -> bytes:
    out = io.BytesIO()
    write_results(manifest.store, manifest.settings, manifest.campaign, out,
                  **options)  # type: ignore[arg-type]
    return out.getvalue()


@pytest.mark.parametrize("quoted_parts", [True, False])
def test_rows_written_as_strings_are_what_csv_writes(manifest: Built, quoted_parts: bool,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    tricky(manifest, quoted_parts=quoted_parts)
    through_csv: list[str] = []
    row = results_module._Out.row

    def counted(self: results_module._Out, values: results_module.ResultRow) -> None:
        through_csv.append(values[0])
        row(self, values)

    monkeypatch.setattr(results_module._Out, "row", counted)
    fast = [written(manifest, **form) for form in FORMS]
    assert "plain42" not in through_csv and "Zoë" not in through_csv  # written as strings
    assert "a;b" in through_csv  # csv quotes it
    monkeypatch.setattr(results_module, "_E164", lambda _: None)  # every row through csv
    assert [written(manifest, **form) for form in FORMS] == fast
    assert len(set(through_csv)) == len(TRICKY_IDS)
    plain, excel, cp1252 = (data.decode(codec) for data, codec in
                            zip(fast, ["utf-8", "utf-8-sig", "cp1252"], strict=True))
    assert '\r\n"a;b";+33612345601;sent;2;sent;2026-11-24T09:00:00+01:00;;2;\r\n' in plain
    assert '\r\nplain42;+33612345612;pending;ACK1;"buf;""fered""";' in plain
    assert "\r\nZoë;+33612345603;pending;;;;;4;no delivery report yet (SEND-" in plain
    assert '\r\n\tTab €,+33612345611,opted_out,,,,2026-11-23T10:50:00+01:00,12,' in cp1252
    assert "\r\n'\tTab €;" in excel
    assert ('\r\n"\'=HYPERLINK(""x"")";"=""+33612345608""";sent;2;sent;2026-11-24 09:00:00;'
            ';9;\r\n') in excel
    assert '\r\n;"=""+33612345609""";sent;2;\'=1+1;' in excel
    statuses = {"10": "=1+1", "13": 'buf;"fered"'}  # by line: the statuses changed
    assert as_expected(list(csv.DictReader(io.StringIO(plain, newline=""), delimiter=";"))) \
        == {TRICKY_IDS[int(v[-1])]: (*v[:3], statuses.get(v[-1], v[3]), *v[4:])
            for v in EXPECTED.values()}


def test_a_value_cp1252_cannot_hold_in_a_row_written_as_a_string(manifest: Built) -> None:
    folder = manifest.settings.paths.spool / str(manifest.campaign.id)
    rows = [list(c) for c in CONTACTS]
    rows[0][1] = "Łukasz"  # sent: isalnum, written as a string
    write_csv(folder / "contacts.map.csv", rows, ["line", "crm_id", "idremote", "phone"])
    out = io.BytesIO()
    with pytest.raises(ResultsError) as raised:
        write_results(manifest.store, manifest.settings, manifest.campaign, out,
                      encoding="cp1252")
    assert str(raised.value) == ("contact line 2: the crm_id value 'Łukasz' holds 'Ł', which "
                                 "cp1252 cannot write: use --encoding utf-8 (or --excel)")
    assert out.getvalue() == ";".join(HEADER).encode() + b"\r\n"  # the lines before it


def test_delivery_lines_by_status_and_slice_are_the_lines(manifest: Built) -> None:
    store, pk = manifest.store, manifest.campaign.id
    cursor = store.save_report_cursor(ReportCursor(
        "ACK-12345-20261123-1100-promoP2.csv", Kind.ACK, pk, seen_at=ACKED), ACKED)
    assert cursor.id is not None
    store.record_acks(cursor, [(cursor.id, msisdn, "R", pk, "ACME", "2", "sent", "op",
                                now_iso(ACKED)) for msisdn in ("+33611", "+33622", "x")],
                      ACKED)
    lines = sorted(map(tuple, campaign_deliveries(store, pk)))
    assert len(lines) == 10
    for rows in (1, 2, 3, 1000):
        found = sorted((msisdn, status)
                       for _, status, count, joined in delivery_groups(store, pk, rows=rows)
                       for msisdn in joined.split(STATUS_SEPARATOR))
        assert found == lines
    groups = list(delivery_groups(store, pk, rows=2))
    assert max(count for _, _, count, _ in groups) <= 2
    assert sum(count for _, _, count, _ in groups) == 10
    files = [report for report, _, _, _ in groups]
    assert files == sorted(files) and set(files) == {1, cursor.id}  # file by file, in order


def test_delivery_lines_read_by_status_or_one_by_one_say_the_same(
        manifest: Built, monkeypatch: pytest.MonkeyPatch) -> None:
    files = locate(manifest.settings, manifest.campaign)

    def joined(*, load: bool = True) -> results_module._Join:
        join = results_module._Join(manifest.store, manifest.settings, manifest.campaign,
                                    files, excel=False, verify=False)
        if load:
            join.load()
        return join

    assert joined(load=False)._load_ack_groups()  # one line a number: the fast way says all
    by_status = joined()
    monkeypatch.setattr(results_module._Join, "_load_ack_groups", lambda self: False)
    one_by_one = joined()
    shown = [{key: (join.acks[(mark >> 2 & (1 << 24) - 1) - 1], mark & 3, mark >> 26)
              for key, mark in join.fate.items() if mark >> 2 & (1 << 24) - 1}
             for join in (by_status, one_by_one)]
    assert shown[0] == shown[1] and len(shown[0]) == 7
    fast = written(manifest)
    monkeypatch.undo()
    assert written(manifest) == fast
    # A number in two ACK files: the final status, then the latest, else the later file's
    # line wins, as the ordered read decides (final statuses at the same time: the second
    # file's; an intermediate one later: the first file's final one).
    later = manifest.store.save_report_cursor(ReportCursor(
        "ACK-12345-20261123-1100-promoP2.csv", Kind.ACK, manifest.campaign.id,
        seen_at=ACKED), ACKED)
    assert later.id is not None

    def record(*lines: tuple[str, str, str, str, dt.datetime]) -> None:
        assert later.id is not None
        manifest.store.record_acks(later, [
            (later.id, msisdn, idremote, manifest.campaign.id, "ACME", idstatus, status,
             "op", now_iso(at)) for msisdn, idremote, idstatus, status, at in lines], ACKED)

    record(("+33612345602", "R2", "2", "delivered", ACKED),
           ("+33612345601", "R1", "2", "delivrd", ACKED),
           ("+33612345607", "R7", "ACK1", "buffered", ACKED + dt.timedelta(hours=1)),
           ("+33612345612", "R12", "3", "failed", ACKED - dt.timedelta(hours=1)))
    assert joined(load=False)._load_ack_groups()
    rows = {r["crm_id"]: r for r in manifest.results()}
    assert [(rows[c]["outcome"], rows[c]["status"]) for c in ("C1", "C2", "C7", "C12")] == [
        ("sent", "delivrd"), ("sent", "delivered"), ("opted_out", "sent"),
        ("failed", "failed")]
    fast = written(manifest)
    monkeypatch.setattr(results_module._Join, "_load_ack_groups", lambda self: False)
    assert written(manifest) == fast
    monkeypatch.undo()
    # A number twice in one file (the file's order lost by status), or the separator in a
    # msisdn: read in order, over what is there.
    for twice in [("33612345602", "R2b", "2", "sent", ACKED),
                  ("+3361\x1f2", "Z", "2", "sent", ACKED)]:
        record(twice)
        assert not joined(load=False)._load_ack_groups()
        fast = written(manifest)
        monkeypatch.setattr(results_module._Join, "_load_ack_groups", lambda self: False)
        assert written(manifest) == fast
        monkeypatch.undo()


@pytest.mark.parametrize("size", [1, 2, 3, 5, 100])
def test_split_in_pieces_is_split(size: int) -> None:
    for text in ("", "a", "\x1f", "a\x1fbb\x1f\x1fccc\x1f", "12\x1f345\x1f6"):
        pieces = list(results_module._split(text, "\x1f", size))
        assert [p for piece in pieces for p in piece] == text.split("\x1f")
        assert all(pieces)
