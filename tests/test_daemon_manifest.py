"""A campaign from the CRM end to end: the real daemon against sshd takes a manifest and
its contact export (CP1252, commas, the CRM's own headers), publishes the rendered messages
once, ingests the provider's ACK and a STOP, and `results` gives each contact row's outcome
under its CRM id."""

from __future__ import annotations

import csv
import datetime as dt
import io
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from sftpd_agent.simulator import SimulatorOptions
from tests.daemon_harness import Daemon, wait_until, write_config
from tests.servers import SftpServer

CONTACTS = (
    "Prénom,Nom,Téléphone portable,Ville,Client ID\r\n"
    "Amélie,Durand,06 12 34 56 01,Besançon,C-001\r\n"       # sent
    "Bruno,Martin,06 12 34 56 02,Lyon,C-002\r\n"            # failed (the ACK says so)
    "Chloé,Petit,0612,Nice,C-003\r\n"                       # invalid number
    "Denis,Roux,+33 6 12 34 56 01,Paris,C-004\r\n"          # duplicate of Amélie
    "Élodie,Blanc,06 12 34 56 05,,C-005\r\n"                # Ville empty: the default
    "Farid,Noir,06 12 34 56 06,Metz,C-006\r\n"              # suppressed before the upload
    ",Vide,06 12 34 56 07,Lille,C-007\r\n"                  # Prénom empty: no default
    "Gaëlle,Vert,06 12 34 56 08,{Ville},C-008\r\n"          # sent; STOP afterwards
)
MESSAGE = "Bonjour {Prénom}, -20 % à {Ville|votre magasin} ce week-end"
MANIFEST = f'''contacts = "crm export.csv"
message = "{MESSAGE}"
campaign = "noel"
sender = "Boutique"
'''


@pytest.fixture
def simulator_options() -> SimulatorOptions:
    return SimulatorOptions(seed=3, lock_seconds=0, ack_delay=3600, stop_share=0, mo_share=0)


@pytest.fixture(params=["openssh", "simulator_thread"])
def server(request: pytest.FixtureRequest) -> SftpServer:
    """OpenSSH's sshd and the embedded simulator's server, in turn."""
    found: SftpServer = request.getfixturevalue(request.param)
    return found


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sftpd_agent", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=60, check=False)


def test_a_manifest_goes_out_once_and_comes_back_as_results(
    tmp_path: Path, server: SftpServer,
) -> None:
    config = write_config(tmp_path, server, campaign={
        "marketing": False, "stable_seconds": 0.4, "contacts_grace_seconds": 30,
        "max_invalid_percent": 50})
    daemon = Daemon(config, tmp_path / "agent", server)
    try:
        daemon.start()
        assert cli(config, "suppress", "add", "0612345606").returncode == 0
        # The contacts first (a big export takes a while), the manifest a moment later.
        daemon.drop("crm export.csv", CONTACTS.encode("cp1252"))
        time.sleep(1.0)
        assert daemon.journal() == []  # a contact export is never taken alone
        daemon.drop("noel.campaign.toml", MANIFEST)
        wait_until(lambda: len(daemon.journal()) == 1, what="the campaign published")
        (entry,) = daemon.journal()
        sent = (server.send_dir / entry.name)
        wait_until(lambda: any(server.send_dir.glob(entry.name.replace(".csv", ".*"))),
                   what="the provider's file")
        campaign = wait_until(lambda: c if (c := daemon.campaign("noel")) and c["state"] in (
            "done", "reported") else None, what="done")
        assert campaign["file"] == "noel.campaign.toml"
        assert (campaign["rows"], campaign["valid"], campaign["invalid"],
                campaign["duplicates"], campaign["suppressed"]) == (8, 5, 2, 1, 1)
        summary = wait_until(  # the archive's last write
            lambda: next((tmp_path / "agent" / "archive").glob("*-noel-*/noel.summary.json"),
                         None), what="the campaign archived")
        archive = summary.parent
        uploaded = (archive / entry.name).read_text(encoding="utf-8").splitlines()
        rows = [line.split(";") for line in uploaded]
        assert [(r[1], r[2], r[3]) for r in rows] == [
            # transliterated where GSM 03.38 has no such letter (ç, ë), kept where it has
            ("+33612345601", "Boutique", "Bonjour Amélie, -20 % à Besancon ce week-end"),
            ("+33612345602", "Boutique", "Bonjour Bruno, -20 % à Lyon ce week-end"),
            ("+33612345605", "Boutique", "Bonjour Élodie, -20 % à votre magasin ce week-end"),
            ("+33612345608", "Boutique", "Bonjour Gaelle, -20 % à {Ville} ce week-end"),
        ]
        assert (archive / "noel.campaign.toml").read_text(encoding="utf-8") == MANIFEST
        assert (archive / "crm export.csv").read_bytes() == CONTACTS.encode("cp1252")
        errors = list(csv.reader(io.StringIO(
            (archive / "noel.campaign.toml.errors.csv").read_text(encoding="utf-8")),
            delimiter=";"))
        assert [(e[0], e[1], e[2]) for e in errors[1:]] == [
            ("4", "msisdn", "Téléphone portable"), ("8", "template_value_missing", "Prénom")]
        del sent
        # The provider's ACK (Bruno's failed) and a STOP from Gaëlle after the campaign.
        ids = {r[1]: r[0] for r in rows}
        stem = entry.name.removeprefix("SEND-").removesuffix(".csv")
        ack = "".join(f"{ids[n]};{n};Boutique;x;{s};{w};op\r\n" for n, s, w in (
            ("+33612345601", "2 ", "sent"), ("+33612345602", "3 ", "failed"),
            ("+33612345605", "2 ", "sent"), ("+33612345608", "2 ", "sent")))
        (server.report_dir / f"ACK-{stem}.csv").write_text(ack, encoding="utf-8")
        now = dt.datetime.now(ZoneInfo("Europe/Paris")) + dt.timedelta(minutes=1)
        (server.report_dir / f"STOP-{stem}.csv").write_text(
            f"+33612345608;{now:%Y%m%d};{now:%H%M};STOP;{ids['+33612345608']}\r\n",
            encoding="utf-8")
        wait_until(lambda: daemon.state("noel") == "reported", what="reported")
        wait_until(lambda: "+33612345608" in cli(config, "suppress", "list").stdout,
                   what="the STOP ingested")
        done = cli(config, "results", "noel")
        assert done.returncode == 0, done.stderr
        got = list(csv.DictReader(io.StringIO(done.stdout), delimiter=";"))
        outcomes = {row["crm_id"]: row["outcome"] for row in got}
        assert outcomes == {
            "C-001": "sent", "C-002": "failed", "C-003": "invalid", "C-004": "duplicate",
            "C-005": "sent", "C-006": "suppressed", "C-007": "invalid", "C-008": "opted_out"}
        results_file = wait_until(lambda: next(archive.glob("*results*.csv"), None),
                                  what="the results file in the archive")
        assert "C-008" in results_file.read_text(encoding="utf-8-sig")
    finally:
        daemon.kill()
        print(daemon.output())


def test_a_contact_export_no_manifest_names_is_held_with_the_reason(
    tmp_path: Path, openssh: SftpServer,
) -> None:
    config = write_config(tmp_path, openssh, campaign={
        "marketing": False, "stable_seconds": 0.2, "contacts_grace_seconds": 1.5})
    daemon = Daemon(config, tmp_path / "agent", openssh)
    try:
        daemon.start()
        daemon.drop("lonely.csv", CONTACTS.encode("cp1252"))
        reason = tmp_path / "agent" / "failed" / "lonely.csv.reason.txt"
        wait_until(lambda: reason.exists() and (tmp_path / "agent" / "failed" / "lonely.csv")
                   .exists(), what="the contacts file held")
        assert "no campaign manifest names this file" in reason.read_text(encoding="utf-8")
        assert (tmp_path / "agent" / "failed" / "lonely.csv").read_bytes() == \
            CONTACTS.encode("cp1252")
        assert daemon.journal() == []
        assert daemon.state("lonely") == "held"
    finally:
        daemon.kill()


def test_a_manifest_naming_a_missing_column_is_held_before_any_row_is_read(
    tmp_path: Path, openssh: SftpServer,
) -> None:
    config = write_config(tmp_path, openssh, campaign={
        "marketing": False, "stable_seconds": 0.2, "contacts_grace_seconds": 30})
    daemon = Daemon(config, tmp_path / "agent", openssh)
    try:
        daemon.start()
        daemon.drop("crm.csv", CONTACTS.encode("cp1252"))
        daemon.drop("promo.campaign.toml", 'contacts = "crm.csv"\nmessage = "Salut {Vile}"\n')
        reason = tmp_path / "agent" / "failed" / "promo.campaign.toml.reason.txt"
        # the reason is written first, then the two files are moved
        wait_until(lambda: reason.exists() and (tmp_path / "agent" / "failed" / "crm.csv")
                   .exists(), what="the manifest held")
        text = reason.read_text(encoding="utf-8")
        assert "{Vile}" in text and "Ville" in text, text
        assert (tmp_path / "agent" / "failed" / "crm.csv").exists()
        assert daemon.journal() == []
    finally:
        daemon.kill()
