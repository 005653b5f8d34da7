"""``sftpd-agent demo``: the real thing (simulator + daemon subprocess), end to end.

The demo's temporary folder is created under the test's ``tmp_path`` (``tempfile.tempdir``
for in-process runs, ``TMPDIR`` for child processes).
"""

from __future__ import annotations

import datetime
import io
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from sftpd_agent.config import load_settings
from sftpd_agent.demo.folder import demo_config
from sftpd_agent.demo.follow import stop_numbers
from sftpd_agent.demo.orchestrator import run_demo
from sftpd_agent.demo.samples import sample_campaign, second_campaign
from sftpd_agent.pipeline.intake import take_in
from sftpd_agent.rules.masking import mask_numbers
from sftpd_agent.testing import clean_environment

WHOLE_NUMBER = re.compile(r"\+?33 ?6 ?12 ?00 ?0\d ?\d\d|06 12 00 0\d \d\d")


@pytest.fixture
def demo_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def _folder(output: str) -> Path:
    match = re.search(r"^  folder +(\S+)$", output, re.MULTILINE)
    assert match, output
    return Path(match.group(1))


def _index(lines: list[str], pattern: str, start: int) -> int:
    """The first line at or after ``start`` matching ``pattern``."""
    for index in range(start, len(lines)):
        if re.search(pattern, lines[index]):
            return index
    raise AssertionError(f"no line matching {pattern!r} after line {start}:\n"
                         + "\n".join(lines))


# --- the pure parts ---------------------------------------------------------------------


def test_sample_campaign_has_invalid_rows_a_duplicate_and_text_to_transliterate(
        tmp_path: Path) -> None:
    text, numbers = sample_campaign()
    sample = tmp_path / "spring-sale.csv"
    sample.write_text(text, encoding="utf-8", newline="")
    config = tmp_path / "agent.toml"
    config.write_text(demo_config(tmp_path, 2222), encoding="utf-8")
    settings = load_settings(config)

    result = take_in(sample, settings, now=_now())

    s = result.summary
    assert (s.rows, s.valid, s.invalid, s.duplicates) == (40, 36, 3, 1)
    assert set(s.invalid_by_code) == {"msisdn", "msg_empty", "msg_non_gsm"}
    assert {"ê", "\u2019", "«", "»", "…"} <= {pair.split("->")[0] for pair in s.replaced}
    assert result.hold_reason is None
    assert len(numbers) == 36 == len(set(numbers))
    assert second_campaign(numbers).count("\r\n") == 36


def test_the_demo_masks_every_number_form_it_shows() -> None:
    shown = mask_numbers("to +33612000105 and 06 12 00 01 07, not 20 %")
    assert "+33612000105" not in shown and "06 12 00 01 07" not in shown
    assert "+33612****05" in shown
    assert "20 %" in shown


def test_stop_numbers_reads_complete_lines_with_the_report_grammar(tmp_path: Path) -> None:
    (tmp_path / "STOP-12345-20261123.csv").write_bytes(
        "+33612000101;20261123;1000;STOP;S001\r\n"
        "+33612000102;20261123;1000;Arrêt; merci;S002\r\n"  # a ';' in the message
        "+33612000103;20261123\r\n"  # too few fields: not a STOP line
        "+33612000104;20261123;1001;STOP;S004".encode())  # still being written
    (tmp_path / "SMSMO-12345-20261123.csv").write_bytes(
        b"+33612000109;20261123;1000;Bonjour;S009\r\n")

    assert stop_numbers(tmp_path) == {"+33612000101", "+33612000102"}


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


# --- end to end -------------------------------------------------------------------------------


def test_demo_shows_every_step_in_order_and_cleans_up(demo_tmp: Path) -> None:
    out = io.StringIO()
    started = time.monotonic()

    code = run_demo(out=out)

    elapsed = time.monotonic() - started
    output = out.getvalue()
    assert code == 0, output
    assert elapsed < 60, output
    # nothing failed on the way (a results file that could not be written showed here)
    assert "last local error" not in output, output
    lines = output.splitlines()
    at = _index(lines, r"^  marketing hours off for the demo; the real agent waits for "
                       r"Mon-Sat 08:00-21:30$", 0)
    for label in ("campaign 1", "campaign 2"):
        at = _index(lines, rf"^{label}: ", at)
        at = _index(lines, r"^  \$ sftpd-agent submit samples/\S+\.csv  ->  outbox/"
                           r"SEND-12345-\d{8}-\d{4}-\w+\.csv$", at)
        at = _index(lines, rf"s  {label} +received +\S+\.csv", at)
        at = _index(lines, rf"{label} +validated +\d+ rows: \d+ valid, \d+ invalid, "
                           r"\d+ duplicate\(s\), \d+ SMS segments", at)
        at = _index(lines, rf"{label} +scheduled +send at \d\d:\d\d", at)
        at = _index(lines, rf"{label} +uploading +\d+ rows in 1 file\(s\), suppressed: \d+", at)
        at = _index(lines, rf"{label} +published +Send/SEND-12345-\S+\.csv "
                           r"\(\d+ rows, \d+ bytes", at)
        if label == "campaign 2":
            at = _index(lines, r"campaign 2 +suppressed +\d+ opted-out number\(s\) left out: "
                               r"\+33612\*+\d\d", at)
        at = _index(lines, rf"{label} +processing ", at)
        at = _index(lines, rf"{label} +done +the provider accepted the file", at)
        at = _index(lines, rf"{label} +reported +ACK ingested, delivery: .*sent \d+", at)
        if label == "campaign 1":
            at = _index(lines, r"campaign 1 +opt-outs +\d+ number\(s\) now on the "
                               r"suppression list: \+33612\*+\d\d", at)
    first = "\n".join(lines[:_index(lines, r"^campaign 2: ", 0)])
    assert "40 rows: 36 valid, 3 invalid, 1 duplicate(s)" in first
    assert re.search(r"invalid: .*msisdn 1.*; transliterated to GSM: .*ê", first), first
    opted_out = int(re.findall(r"(\d+) number\(s\) now on the suppression list", first)[0])
    assert 2 <= opted_out <= 4
    suppressed = int(re.findall(r"campaign 2 +uploading .*suppressed: (\d+)", output)[0])
    assert suppressed == opted_out  # campaign 2 goes to every valid number of campaign 1
    at = _index(lines, r"^\$ sftpd-agent status$", at)
    at = _index(lines, r"^agent: healthy", at)
    assert len([line for line in lines[at:] if re.search(r" reported .*sent \d+", line)]) == 2
    at = _index(lines, r"SIGTERM +the agent stopped cleanly \(exit 0\)", at)
    _index(lines, r"^demo complete in \d+ s", at)
    assert not WHOLE_NUMBER.search(output), output
    assert not _folder(output).exists()
    assert list(demo_tmp.iterdir()) == []


def test_a_failing_step_is_named_exits_1_and_keeps_the_folder_on_request(
        demo_tmp: Path) -> None:
    out = io.StringIO()

    code = run_demo(out=out, keep=True, config_overrides={"remote": {"no_such_key": 1}})

    output = out.getvalue()
    assert code == 1, output
    assert re.search(r'^demo failed at step "start the agent": the agent exited with code 2: '
                     r".*unknown key remote\.no_such_key", output, re.MULTILINE), output
    folder = _folder(output)
    assert f"kept {folder}" in output
    assert (folder / "agent.toml").is_file()
    assert "unknown key remote.no_such_key" in (folder / "agent.log").read_text()


def test_a_failing_step_without_keep_removes_the_folder(demo_tmp: Path) -> None:
    out = io.StringIO()

    code = run_demo(out=out, config_overrides={"campaign": {"stable_seconds": -1}})

    output = out.getvalue()
    assert code == 1, output
    assert 'demo failed at step "start the agent"' in output
    assert not _folder(output).exists()
    assert list(demo_tmp.iterdir()) == []


def test_ctrl_c_stops_the_agent_and_the_simulator_and_cleans_up(tmp_path: Path) -> None:
    env = {**clean_environment(), "TMPDIR": str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; from sftpd_agent.demo.orchestrator import run_demo; "
                               "sys.exit(run_demo())"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert process.stdout is not None
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 30
        for line in process.stdout:  # bounded: the demo ends within 60 s on its own
            seen.append(line)
            if " received " in line or time.monotonic() > deadline:
                break
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    output = "".join(seen) + rest
    assert process.returncode == 130, output
    assert "demo interrupted" in output
    pid = int(re.findall(r"\(pid (\d+)\)", output)[0])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert list(tmp_path.iterdir()) == []
