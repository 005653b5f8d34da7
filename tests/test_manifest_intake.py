"""Manifests and contact exports on the local side: the outbox pairs them (a contact export
never goes alone), `check` previews what they would send, `submit` writes both, and the
errors of the rendered rows come back in the contact file's lines and headers."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sftpd_agent.config import Settings
from sftpd_agent.pipeline import manifests
from sftpd_agent.pipeline.campaigns import Campaigns
from sftpd_agent.pipeline.outbox import Outbox
from sftpd_agent.rules.contacts import looks_like_contacts
from sftpd_agent.rules.manifest import read_manifest
from sftpd_agent.store.journal import Store

CONTACTS = ("Prénom;Nom;Mobile;Ville;Client ID\r\n"
            "Amélie;Durand;06 12 34 56 01;Besançon;C1\r\n"
            "Bruno;Martin;0612;Lyon;C2\r\n"
            ";Vide;06 12 34 56 03;Metz;C3\r\n"
            "Chloé;Petit;06 12 34 56 04;" + "Ville-Tres-Longue-" * 9 + ";C4\r\n"
            "Denis;Roux;+33612345601;Paris;C5\r\n")
TEMPLATE = "Bonjour {Prénom}, -20 % à {Ville|votre magasin} ce week-end"
NOW = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)  # a Monday, 10:00 in Paris


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def old(path: Path) -> None:
    """As if moved in a minute ago: complete at once."""
    then = path.stat().st_mtime - 60
    os.utime(path, (then, then))


def test_a_manifest_goes_with_its_contacts_once_both_are_complete(tmp_path: Path) -> None:
    mono = Clock()
    outbox = Outbox(tmp_path, 2.0, monotonic=mono, grace=30.0)
    (tmp_path / "crm.csv").write_bytes(CONTACTS.encode("cp1252"))
    old(tmp_path / "crm.csv")
    assert outbox.scan() == []  # a contact export waits for a manifest
    assert "waits for a manifest" in next(iter(outbox.waiting.values()))
    (tmp_path / "promo.campaign.toml").write_text('contacts = "crm.csv"\nmessage = "x"\n')
    assert outbox.scan() == []  # the manifest is being written
    mono.now += 2.1
    assert outbox.scan() == [tmp_path / "promo.campaign.toml"]
    assert outbox.companions["promo.campaign.toml"] == tmp_path / "crm.csv"
    assert outbox.orphans == {}


def test_a_manifest_waits_for_contacts_that_arrive_later(tmp_path: Path) -> None:
    mono = Clock()
    outbox = Outbox(tmp_path, 2.0, monotonic=mono, grace=30.0)
    (tmp_path / "promo.campaign.toml").write_text('contacts = "crm.csv"\nmessage = "x"\n')
    old(tmp_path / "promo.campaign.toml")
    assert outbox.scan() == []
    assert 0 < outbox.next_wait() <= 5.0
    mono.now += 20
    (tmp_path / "crm.csv").write_bytes(CONTACTS.encode("cp1252"))
    assert outbox.scan() == []  # being written
    mono.now += 2.1
    assert outbox.scan() == [tmp_path / "promo.campaign.toml"]
    assert outbox.companions["promo.campaign.toml"].name == "crm.csv"


def test_each_half_alone_is_handed_over_to_be_held_after_the_grace(tmp_path: Path) -> None:
    mono = Clock()
    outbox = Outbox(tmp_path, 2.0, monotonic=mono, grace=30.0)
    (tmp_path / "lonely.csv").write_bytes(CONTACTS.encode("cp1252"))
    (tmp_path / "promo.campaign.toml").write_text('contacts = "gone.csv"\nmessage = "x"\n')
    (tmp_path / "plain.csv").write_text("A1;0612345678;;Bonjour\r\n")
    for path in tmp_path.iterdir():
        old(path)
    assert outbox.scan() == [tmp_path / "plain.csv"]  # a provider file goes at once
    mono.now += 29
    assert outbox.scan() == [tmp_path / "plain.csv"]
    mono.now += 1.5
    ready = outbox.scan()
    assert set(ready) == {tmp_path / "lonely.csv", tmp_path / "promo.campaign.toml",
                          tmp_path / "plain.csv"}
    assert "no campaign manifest names this file" in outbox.orphans["lonely.csv"]
    assert "gone.csv" in outbox.orphans["promo.campaign.toml"]


def test_errors_come_back_in_the_contact_files_lines_and_headers(tmp_path: Path) -> None:
    (tmp_path / "crm.csv").write_bytes(CONTACTS.encode("cp1252"))
    (tmp_path / "promo.campaign.toml").write_text(
        f'contacts = "crm.csv"\nmessage = "{TEMPLATE}"\n', encoding="utf-8")
    settings = Settings(service_id="12345", paths={"root": tmp_path / "agent"},
                        campaign={"marketing": False, "max_invalid_percent": 60})
    described = manifests.read(tmp_path / "promo.campaign.toml", None, settings)
    work = tmp_path / "work"
    work.mkdir()
    intake, rendering = manifests.take_in_manifest(
        described, work, now=NOW, errors_to=work / "errors.csv", map_to=work / "map.csv")
    s = intake.summary
    assert (s.rows, s.valid, s.invalid, s.duplicates) == (5, 2, 2, 1)
    assert s.encoding == "cp1252" and s.file == "promo.campaign.toml"
    assert intake.plan.campaign_id == "promo"
    errors = list(csv.reader(io.StringIO((work / "errors.csv").read_text(encoding="utf-8")),
                             delimiter=";"))
    assert [e[:4] for e in errors[1:]] == [["3", "msisdn", "Mobile", "0612"],
                                           ["4", "template_value_missing", "Prénom", ""]]
    assert {e.field for examples in s.examples.values() for e in examples} == {
        "Mobile", "Prénom"}
    assert (work / "map.csv").read_text(encoding="utf-8").splitlines() == [
        "line;crm_id;idremote;phone", "2;C1;C1;06 12 34 56 01", "3;C2;C2;0612",
        "4;C3;;06 12 34 56 03", "5;C4;C4;06 12 34 56 04", "6;C5;C5;+33612345601"]
    preview = manifests.preview(described, intake, rendering)
    assert preview["sms_per_row"] == {"1": 1, "2": 1} and preview["sms_total"] == 3
    assert preview["first"][0] == {"line": 2, "number": "+33612****01", "sms": 1,
                                   "text": "Bonjour Amélie, -20 % à Besancon ce week-end"}
    assert preview["longest"]["line"] == 5
    assert preview["longest"]["placeholders"][0] == {"placeholder": "Ville",
                                                     "characters": 162}


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sftpd_agent", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60, check=False)


def test_check_previews_a_contact_export_with_a_template(tmp_path: Path) -> None:
    (tmp_path / "crm.csv").write_bytes(CONTACTS.encode("cp1252"))
    # no configuration: a marketing account, which requires the opt-out mention
    (tmp_path / "t.txt").write_text(TEMPLATE + " STOP au 36180\n", encoding="utf-8")
    done = run("check", "crm.csv", "--message-file", "t.txt", cwd=tmp_path)
    assert done.returncode == 1, done.stderr  # 2 of 5 invalid: held by default (5 %)
    out = done.stdout
    assert "  manifest        no send_at: send now\n" in out  # not a file name's time
    assert "line 3      Mobile    '0612': msisdn" in out
    assert "line 4      Prénom    '': template_value_missing" in out
    assert ("+33612****01    1 SMS  'Bonjour Amélie, -20 % à Besancon ce week-end STOP au "
            "36180'") in out
    assert "SMS per row     1 SMS: 1 row, 2 SMS: 1 row" in out
    assert "longest         line 5: " in out and "({Ville} 162 characters" in out
    done = run("check", "crm.csv", "--message-file", "t.txt", "--json", cwd=tmp_path)
    data = json.loads(done.stdout)
    assert data["invalid_by_code"] == {"msisdn": 1, "template_value_missing": 1}
    assert data["preview"]["sms_total"] == 3
    # Without the template: a contact export is not a provider file; the hint says so.
    done = run("check", "crm.csv", cwd=tmp_path)
    assert done.returncode == 1 and "looks like a contact export" in done.stdout


def test_check_holds_a_manifest_naming_no_column_before_reading_rows(tmp_path: Path) -> None:
    (tmp_path / "crm.csv").write_bytes(CONTACTS.encode("cp1252"))
    (tmp_path / "p.campaign.toml").write_text('contacts = "crm.csv"\nmessage = "Hi {Vile}"\n')
    done = run("check", "p.campaign.toml", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout.startswith("p.campaign.toml: HELD: p.campaign.toml: message: "
                                  "placeholder {Vile}: no such column"), done.stdout
    assert "did you mean 'Ville'" in done.stdout


@pytest.mark.parametrize("template", [TEMPLATE, "Salut {Vile}"])
def test_submit_writes_the_contacts_and_a_manifest_or_refuses(
    tmp_path: Path, template: str,
) -> None:
    root = tmp_path / "agent"
    (root / "outbox").mkdir(parents=True)
    config = tmp_path / "agent.toml"
    config.write_text(f'service_id = "12345"\n[paths]\nroot = "{root}"\n'
                      '[campaign]\nmarketing = false\n', encoding="utf-8")
    (tmp_path / "crm.csv").write_bytes(CONTACTS.encode("cp1252"))
    (tmp_path / "t.txt").write_text(template, encoding="utf-8")
    done = run("submit", "crm.csv", "--message-file", "t.txt", "--sender", "Boutique",
               "--campaign", "noel-2026", "--config", str(config), cwd=tmp_path)
    if "Vile" in template:
        assert done.returncode == 2 and "no such column" in done.stderr
        assert list((root / "outbox").iterdir()) == []
        return
    assert done.returncode == 0, done.stderr
    assert (root / "outbox" / "crm.csv").read_bytes() == CONTACTS.encode("cp1252")
    manifest = read_manifest(root / "outbox" / "noel2026.campaign.toml")
    assert (manifest.contacts, manifest.message, manifest.sender, manifest.campaign) == (
        "crm.csv", TEMPLATE, "Boutique", "noel2026")
    again = run("submit", "crm.csv", "--message-file", "t.txt", "--campaign", "noel-2026",
                "--config", str(config), cwd=tmp_path)
    assert again.returncode == 2 and "already waiting" in again.stderr


@pytest.mark.parametrize(("text", "contacts"), [
    ("Prénom;Nom;Mobile;Ville\r\nAmélie;Durand;06 12 34 56 01;Besançon\r\n", True),
    ("Nom,Téléphone portable\r\nDurand,0612345601\r\n", True),
    ("IDREMOTE;MSISDN;OADC;MSG\r\nA1;0612345601;;Bonjour\r\n", False),
    ("ID;Mobile;Sender;Message\r\nA1;0612345601;Shop;Bonjour\r\n", False),  # provider rows
    ("A1;0612345601;;Bonjour\r\n", False),
])
def test_a_contact_export_is_told_from_a_provider_file(
    tmp_path: Path, text: str, contacts: bool,
) -> None:
    path = tmp_path / "x.csv"
    path.write_text(text, encoding="utf-8")
    assert looks_like_contacts(path) is contacts


def _campaigns(tmp_path: Path) -> Campaigns:
    settings = Settings(service_id="12345", paths={"root": tmp_path / "agent"},
                        campaign={"marketing": False})
    return Campaigns(settings, Store(settings.paths.state_db), lambda: NOW,
                     lambda event, campaign=None, **_: None)


def test_a_manifest_taken_without_its_contacts_by_a_crash_goes_back(tmp_path: Path) -> None:
    campaigns = _campaigns(tmp_path)
    outbox = campaigns.settings.paths.outbox
    (outbox / "promo.campaign.toml").write_text('contacts = "crm.csv"\nmessage = "x"\n')
    (outbox / "crm.csv").write_bytes(CONTACTS.encode("cp1252"))
    source = campaigns.move_in(outbox / "promo.campaign.toml", outbox / "crm.csv")
    assert source.exists() and campaigns.manifest_of(source).exists()
    assert sorted(p.name for p in outbox.iterdir()) == []
    # as if the crash came between the manifest's move and the contacts'
    source.replace(outbox / "crm.csv")
    assert campaigns.recover() == []
    assert sorted(p.name for p in outbox.iterdir()) == ["crm.csv", "promo.campaign.toml"]
    assert list(campaigns.incoming.iterdir()) == []


def test_a_manifest_that_cannot_be_recorded_is_set_aside_with_its_contacts(
    tmp_path: Path,
) -> None:
    campaigns = _campaigns(tmp_path)
    outbox = campaigns.settings.paths.outbox
    (outbox / "promo.campaign.toml").write_text('contacts = "crm.csv"\nmessage = "x"\n')
    (outbox / "crm.csv").write_bytes(CONTACTS.encode("cp1252"))
    source = campaigns.move_in(outbox / "promo.campaign.toml", outbox / "crm.csv")
    target = campaigns.set_aside(source, "could not be recorded: test")
    failed = sorted(p.name for p in campaigns.settings.paths.failed.iterdir())
    assert target.read_text().startswith("contacts = ")
    assert any(name.endswith(".contacts.csv") for name in failed), failed
    assert any(name.endswith(".reason.txt") for name in failed), failed
    assert list(campaigns.incoming.iterdir()) == []
