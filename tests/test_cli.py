"""The command line as users type it: check and count, exit codes and output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sftpd_agent.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = ROOT / "config" / "agent.example.toml"


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sftpd_agent", *args], input=stdin, capture_output=True,
        text=True, timeout=60, check=False, env={"PATH": "/usr/bin:/bin"},
    )


def test_check_the_shipped_example_is_ok() -> None:
    done = run_cli("check", "--config", str(EXAMPLE_CONFIG), str(ROOT / "examples" / "promo.csv"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert ": OK" in done.stdout
    assert "SEND-12345-" in done.stdout


def test_check_json_and_held_file_exit_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("a;+33612345678;S;ok\nb;0612;S;x\nc;+33612345679;Toolongsender;x\n")
    done = run_cli("check", "--config", str(EXAMPLE_CONFIG), "--json", str(bad))
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["held"] is True
    assert report["invalid_by_code"] == {"msisdn": 1, "oadc": 1}
    assert report["examples"]["msisdn"][0] == {
        "line": 2, "field": "MSISDN", "value": "0612", "detail": "not a valid phone number"}
    assert not (tmp_path / "bad.csv.errors.csv").exists()  # only when asked


def test_check_writes_errors_only_when_asked(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("a;+33612345678;S;ok\nb;0612;S;x\n")
    errors = tmp_path / "errors.csv"
    assert main(["check", "--config", str(EXAMPLE_CONFIG), "--errors", str(errors),
                 str(bad)]) == 1
    lines = errors.read_text().splitlines()
    assert lines == [
        "line;code;field;value;detail", "2;msisdn;MSISDN;0612;not a valid phone number"]
    assert errors.stat().st_mode & 0o077 == 0


def test_check_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    done = run_cli("check", "--config", str(EXAMPLE_CONFIG), str(tmp_path / "nope.csv"))
    assert done.returncode == 2 and "no such file" in done.stderr


def test_check_unreadable_file_says_why(tmp_path: Path) -> None:
    binary = tmp_path / "export.csv"
    binary.write_bytes(b"PK\x03\x04\x00\x00binary")
    done = run_cli("check", "--config", str(EXAMPLE_CONFIG), str(binary))
    assert done.returncode == 1
    assert "cannot be read: line 1: NUL byte" in done.stdout


def test_count_text_json_keys() -> None:
    done = run_cli("count", "--json", "Prix : 20 € [promo]")
    data = json.loads(done.stdout)
    assert set(data) == {"encoding", "characters", "units", "segments", "non_gsm", "text"}
    assert data["encoding"] == "gsm7"
    assert data["characters"] == 19 and data["units"] == 22 and data["segments"] == 1


@pytest.mark.parametrize(("policy", "encoding", "text"), [
    ("transliterate", "gsm7", "Fete"),
    ("unicode", "ucs2", "Fête"),
    ("reject", "gsm7", "Fête"),
])
def test_count_policies(policy: str, encoding: str, text: str) -> None:
    data = json.loads(run_cli("count", "--json", "--policy", policy, "Fête").stdout)
    assert data["encoding"] == encoding and data["text"] == text
    assert data["non_gsm"] == ["ê"]


def test_count_catalogue_from_stdin_one_object_per_line() -> None:
    catalogue = "Bonjour\n" + "x" * 161 + "\nLigne 1\\nLigne 2\nEmoji 🎄\n"
    done = run_cli("count", "--json", "--policy", "unicode", stdin=catalogue)
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["segments"] for r in results] == [1, 2, 1, 1]
    assert results[2]["text"] == "Ligne 1\nLigne 2"
    assert results[3]["encoding"] == "ucs2" and results[3]["units"] == 8


def test_count_human_output() -> None:
    done = run_cli("count", "Fête")
    assert done.returncode == 0
    assert "gsm7" in done.stdout and "1 segment" in done.stdout


def test_usage_errors_exit_2_in_one_line() -> None:
    done = run_cli("count", "--policy", "ascii", "x")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert run_cli("frobnicate").returncode == 2
