"""The daemon validates a big campaign on every core and keeps exactly the single pass's
answer: the same ``rows.csv`` bytes, errors file bytes, summary, zone counts and groups,
for plain files and manifests alike (the single pass, the reference, runs beside it)."""

from __future__ import annotations

import datetime as dt
import io
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from sftpd_agent.config import Settings
from sftpd_agent.pipeline import (
    intake,
    manifests,
    render_parallel,  # noqa: F401 - bound to the real cores_for
)
from sftpd_agent.pipeline import multicore as parallel
from sftpd_agent.pipeline.campaigns import Campaigns
from sftpd_agent.pipeline.intake import Intake, take_in
from sftpd_agent.rules.states import CampaignState
from sftpd_agent.rules.upload_file import UploadWriter
from sftpd_agent.rules.validation import Row, RowSink, Summary
from sftpd_agent.store.journal import Store

PARIS = ZoneInfo("Europe/Paris")
NOW = dt.datetime(2026, 12, 15, 18, 0, tzinfo=PARIS)  # a Tuesday: Paris open, Reunion not
NAME = "SEND-12345-20261215-2000-big.csv"

VALID_HEADS = [("+3361", 7), ("+33 7", 8), ("06", 8), ("0692", 6), ("+596696", 6),
               ("+262639", 6), ("+32470", 6), ("+4479", 8)]  # the last two: other countries
INVALID = ["0612", "hello", "", "+33123"]
MESSAGES = ["Offre {i} STOP au 36180", "Fête à Noël {i} STOP au 36180",
            '"Prix; -20 % ""soldes"" {i} STOP au 36180"', "Sans mention {i}",
            "Emoji 🎄 {i} STOP au 36180", "x" * 170 + " {i} STOP au 36180"]
SETTINGS = {
    "transactional": {"marketing": False},
    "foreign_send": {"marketing": True, "foreign": "send"},
    "foreign_drop": {"marketing": True, "foreign": "drop"},
}


def big_campaign(rows: int, seed: int, *, line_breaks: float = 0.003) -> str:
    """A header, numbers of every zone and of other countries, a few numbers repeated many
    times all over the file (duplicates in several slices), invalid rows, blocked senders,
    blank lines, quoted messages with ``;``, quotes and (rarely) line breaks."""
    rng = random.Random(seed)
    repeated = [head + "".join(rng.choice("0123456789") for _ in range(width))
                for head, width in (rng.choice(VALID_HEADS) for _ in range(30))]
    out = ["IDREMOTE;MSISDN;OADC;MSG"]
    for i in range(rows):
        roll = rng.random()
        if roll < 0.1:
            number = rng.choice(repeated)
        elif roll < 0.13:
            number = rng.choice(INVALID)
        else:
            head, width = rng.choice(VALID_HEADS)
            number = head + "".join(rng.choice("0123456789") for _ in range(width))
        message = rng.choice(MESSAGES).format(i=i)
        if rng.random() < line_breaks:
            message = f'"Deux\r\nlignes {i}; STOP au 36180"'
        sender = "INFO" if rng.random() < 0.01 else "Shop"
        out.append(f"R{i};{number};{sender};{message}")
        if rng.random() < 0.005:
            out.append("")
    return "\r\n".join(out) + "\r\n"


def settings_for(tmp: Path, kind: str) -> Settings:
    return Settings(service_id="12345", paths={"root": tmp / "agent"},
                    campaign={**SETTINGS[kind], "max_invalid_percent": 100})


@pytest.fixture
def split(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Summary | None]]:
    """Every file is split (here on 3 cores); yields what the parallel path returned, once
    per call, to tell whether it was taken or fell back."""
    monkeypatch.setattr(parallel, "MIN_BYTES", 1)
    monkeypatch.setattr(parallel, "workers_for", lambda size, min_bytes=None: 3)
    answers: list[Summary | None] = []
    real = parallel.validate_in_parallel

    def recording(*args: Any, **kwargs: Any) -> Summary | None:
        answers.append(summary := real(*args, **kwargs))
        return summary

    monkeypatch.setattr(intake, "validate_in_parallel", recording)
    yield answers


def other_sink(writer: UploadWriter) -> RowSink:
    """A row sink that is not the writer's own ``write``: take_in keeps the single pass."""
    def sink(row: Row) -> None:
        writer.write(row)
    return sink


def both_ways(path: Path, settings: Settings, work: Path) -> tuple[
        tuple[Intake, bytes, bytes], tuple[Intake, bytes, bytes]]:
    """``take_in`` as the daemon calls it (an UploadWriter: every core), and with any other
    row sink (the single pass): each intake, its rows' bytes and its errors file's bytes."""
    found = []
    for way in ("single", "parallel"):
        out = io.BytesIO()
        writer = UploadWriter(out)
        errors = work / f"{way}.errors.csv"
        if way == "single":
            taken = take_in(path, settings, now=NOW, name=NAME, errors_to=errors,
                            on_row=other_sink(writer))
        else:
            taken = take_in(path, settings, now=NOW, name=NAME, errors_to=errors,
                            rows_to=writer, scratch=work)
        writer.close()
        found.append((taken, out.getvalue(), errors.read_bytes()))
    return found[0], found[1]


@pytest.mark.parametrize("kind", sorted(SETTINGS))
@pytest.mark.parametrize("seed", range(3))
def test_take_in_on_every_core_is_the_single_pass(
    tmp_path: Path, split: list[Summary | None], kind: str, seed: int
) -> None:
    path = tmp_path / "big.csv"
    path.write_text(big_campaign(4000, seed, line_breaks=0.0005), encoding="utf-8")
    settings = settings_for(tmp_path, kind)
    (single, single_rows, single_errors), (got, got_rows, got_errors) = both_ways(
        path, settings, tmp_path)
    assert split and split[-1] is not None  # the parallel path was taken, not its fallback
    assert got.as_dict() == single.as_dict()  # summary, groups, foreign figures, hold
    assert got.groups == single.groups
    assert (got.foreign, got.foreign_dropped) == (single.foreign, single.foreign_dropped)
    assert got_rows == single_rows
    assert got_errors == single_errors
    s = single.summary
    assert s.header and s.duplicates > 100 and s.invalid > 100 and s.valid > 2000
    assert single_rows.count(b"\r\n") == s.valid - single.foreign_dropped  # CRLF ends rows
    if kind == "foreign_drop":
        assert single.foreign_dropped > 50 and b";+32470" not in single_rows
    if kind != "transactional":
        assert len(single.groups) >= 2
    assert not list(tmp_path.glob(".rows-*"))


@pytest.mark.parametrize("seed", range(3))
def test_quoted_line_breaks_across_the_cuts_are_exact_or_left_to_the_single_pass(
    tmp_path: Path, split: list[Summary | None], monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    path = tmp_path / "big.csv"
    path.write_text(big_campaign(3000, seed + 10, line_breaks=0.01), encoding="utf-8")
    settings = settings_for(tmp_path, "foreign_drop")
    taken = 0
    for workers in (2, 3, 4, 5):
        monkeypatch.setattr(parallel, "workers_for", lambda size, min_bytes=None, n=workers: n)
        (single, single_rows, single_errors), (got, got_rows, got_errors) = both_ways(
            path, settings, tmp_path)
        taken += split[-1] is not None
        assert got.as_dict() == single.as_dict()
        assert (got_rows, got_errors) == (single_rows, single_errors)
        assert single_rows.count(b'"Deux\nlignes') > 5  # sent with LF inside quotes
    assert taken >= 2


def test_a_manifests_rows_and_errors_are_the_single_passs(
    tmp_path: Path, split: list[Summary | None]
) -> None:
    rng = random.Random(5)
    lines = ["Prénom;Mobile;Ville;Client ID"]
    for i in range(3000):
        number = rng.choice(["06 12 34 56 01", "0612", f"06 {rng.randrange(10**8):08d}",
                             f"+32 470 {rng.randrange(10**6):06d}", f"0692 {i:06d}"])
        first = rng.choice(["Amélie", "Zoë", "", "Noël"])
        town = rng.choice(["Besançon", "", "Lyon; Rhône", 'Dit "la ville"'])
        lines.append(f'{first};{number};"{town.replace(chr(34), chr(34) * 2)}";C{i}')
    (tmp_path / "crm.csv").write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    (tmp_path / "promo.campaign.toml").write_text(
        'contacts = "crm.csv"\n'
        'message = "Bonjour {Prénom}, -20 % à {Ville|votre magasin} STOP au 36180"\n',
        encoding="utf-8")
    settings = Settings(service_id="12345", paths={"root": tmp_path / "agent"},
                        campaign={"marketing": True, "foreign": "drop",
                                  "max_invalid_percent": 100})
    described = manifests.read(tmp_path / "promo.campaign.toml", None, settings)
    found = []
    for way in ("single", "parallel"):
        work = tmp_path / way
        work.mkdir()
        out = io.BytesIO()
        writer = UploadWriter(out)
        # as the daemon calls it: on_row=writer.write, which take_in runs on every core
        sink = writer.write if way == "parallel" else other_sink(writer)
        taken, _ = manifests.take_in_manifest(described, work, now=NOW, on_row=sink,
                                              errors_to=work / "errors.csv")
        writer.close()
        found.append((taken, out.getvalue(), (work / "errors.csv").read_bytes()))
    (single, single_rows, single_errors), (got, got_rows, got_errors) = found
    assert split[-1] is not None
    assert got.as_dict() == single.as_dict()
    assert (got_rows, got_errors) == (single_rows, single_errors)
    assert single.summary.duplicates > 100 and single.foreign_dropped > 100
    assert b"template_value_missing;Pr\xc3\xa9nom" in single_errors  # the user's header
    assert b"msisdn;Mobile" in single_errors


def test_the_daemons_validation_writes_the_single_passs_rows_file(
    tmp_path: Path, split: list[Summary | None]
) -> None:
    settings = Settings(service_id="12345", paths={"root": tmp_path / "agent"}, campaign={
        "stable_seconds": 0, "marketing": True, "foreign": "drop", "max_invalid_percent": 100})
    text = big_campaign(4000, seed=7, line_breaks=0.0005)
    reference = tmp_path / "reference.csv"
    reference.write_text(text, encoding="utf-8")
    out = io.BytesIO()
    writer = UploadWriter(out)
    expected = take_in(reference, settings, now=NOW, name=NAME,
                       on_row=other_sink(writer))
    writer.close()
    split.clear()

    campaigns = Campaigns(settings, Store(settings.paths.state_db), lambda: NOW,
                          lambda *a, **k: None)
    dropped = settings.paths.outbox / NAME
    dropped.write_text(text, encoding="utf-8")
    campaign = campaigns.validate(campaigns.take(dropped))

    assert split and split[0] is not None  # validated on every core
    assert campaign.state == CampaignState.SCHEDULED
    folder = campaigns.folder(campaign)
    assert (folder / "rows.csv").read_bytes() == out.getvalue()
    assert (campaign.rows, campaign.valid, campaign.invalid, campaign.duplicates) == (
        expected.summary.rows, expected.summary.valid, expected.summary.invalid,
        expected.summary.duplicates)
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".rows-")) == []
