"""Taking a file in: the suppression figure reaches the summary on both validation paths."""

from __future__ import annotations

import datetime
import io
import json
from pathlib import Path
from typing import Any

import pytest

from sftpd_agent.config import Settings
from sftpd_agent.pipeline import intake
from sftpd_agent.pipeline import multicore as parallel
from sftpd_agent.pipeline.intake import rules_from, take_in
from sftpd_agent.rules import campaign_file as reader
from sftpd_agent.rules.validation import Summary, Validator

NOW = datetime.datetime(2026, 11, 23, 9, 0, tzinfo=datetime.UTC)
SETTINGS = Settings(service_id="12345")


def write_campaign(path: Path, rows: int) -> list[str]:
    """Rows with every number twice (the second time a duplicate); returns the numbers."""
    numbers = [f"+3361{i:07d}" for i in range(rows // 2)]
    lines = ["IDREMOTE;MSISDN;OADC;MSG"]
    for i, number in enumerate(numbers + numbers):
        written = number if i % 2 else "0" + number[3:]
        lines.append(f"R{i};{written};Shop;Bonjour, offre {i} : -20 € [code] STOP au 36111")
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    return numbers


@pytest.mark.parametrize("parallel_path", [False, True])
def test_take_in_counts_suppressed_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        parallel_path: bool) -> None:
    merged: list[object] = []
    if parallel_path:
        monkeypatch.setattr(parallel, "MIN_BYTES", 1)  # every file is split
        monkeypatch.setattr(parallel, "workers_for", lambda size: 3)

        def recording(*args: Any, **kwargs: Any) -> Summary | None:
            merged.append(summary := parallel.validate_in_parallel(*args, **kwargs))
            return summary

        monkeypatch.setattr(intake, "validate_in_parallel", recording)
    path = tmp_path / "promo.csv"
    numbers = write_campaign(path, 2_000)
    listed = [*numbers[::4], "+33700000000", "0612345678"]

    result = take_in(path, SETTINGS, now=NOW, suppressed=listed)

    s = result.summary
    assert (s.rows, s.valid, s.duplicates) == (2_000, 1_000, 1_000)
    assert s.suppressed == 250
    assert json.loads(json.dumps(result.as_dict()))["suppressed"] == 250
    assert merged == ([s] if parallel_path else [])  # the path the test is about was taken


def test_without_a_list_the_output_is_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "promo.csv"
    write_campaign(path, 10)
    result = take_in(path, SETTINGS, now=NOW)
    assert result.summary.suppressed is None
    assert "suppressed" not in result.as_dict()


def test_the_list_goes_to_take_in_or_to_the_validator(tmp_path: Path) -> None:
    path = tmp_path / "promo.csv"
    numbers = write_campaign(path, 10)
    validator = Validator(rules_from(SETTINGS), suppressed=numbers[:2])
    assert take_in(path, SETTINGS, now=NOW, validator=validator).summary.suppressed == 2
    with pytest.raises(ValueError, match="not both"):
        take_in(path, SETTINGS, now=NOW, validator=validator, suppressed=numbers)


@pytest.mark.parametrize("parallel_path", [False, True])
def test_the_progress_bar_only_goes_forward_to_100(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parallel_path: bool
) -> None:
    monkeypatch.setattr(intake, "BAR_BYTES", 1)
    monkeypatch.setattr(parallel, "MIN_BYTES", 1 if parallel_path else 1 << 40)
    monkeypatch.setattr(parallel, "workers_for", lambda size: 2 if parallel_path else 1)
    monkeypatch.setattr(reader, "CHUNK", 4096)  # many reads, many steps
    path = tmp_path / "promo.csv"
    write_campaign(path, 4_000)
    out = io.StringIO()
    result = take_in(path, SETTINGS, now=NOW, progress=out)
    assert result.summary.rows == 4_000
    drawn = out.getvalue()
    percents = [int(step.split("]")[1].strip(" %\n")) for step in drawn.split("\r")[1:]]
    assert len(percents) > 3 and percents == sorted(percents) and percents[-1] == 100
    assert drawn.endswith("] 100%\n") and drawn.count("\n") == 1
