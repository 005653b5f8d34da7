"""The command line as users type it: check and count, exit codes and output."""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from sftpd_agent.commands import COMMANDS, Command, build_parser, main
from sftpd_agent.errors import ExitCode

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
    bad.write_text("a;+33612345678;S;ok STOP au 36111\nb;0612;S;x STOP au 36111\n"
                   "c;+33612345679;Toolongsender;x STOP au 36111\n")
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
    bad.write_text("a;+33612345678;S;ok STOP au 36111\nb;0612;S;x STOP au 36111\n")
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


# -- one table of commands: help, --config, exit codes ----------------------------------

PACKAGE = ROOT / "sftpd_agent"


def help_of(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def test_the_main_help_is_written_for_users_and_lists_every_command(
        capsys: pytest.CaptureFixture[str]) -> None:
    text = help_of(capsys)
    assert "`" not in text
    assert text.split("\n\n")[1].startswith("sftpd-agent uploads the SMS campaign files")
    listed = text[text.index("\ncommands:\n"):].splitlines()
    for command in COMMANDS:
        assert any(line.startswith(f"  {command.name} ") for line in listed), command.name
    assert "exit status:" in text and "  2   a usage or configuration error" in text
    # The same through the real entry point, and every parser is one of the table.
    assert run_cli("--help").stdout == text
    parser = build_parser()
    choices = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert list(choices.choices) == [command.name for command in COMMANDS]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.name)
def test_every_command_help_says_what_it_does_and_its_exit_codes(
        command: Command, capsys: pytest.CaptureFixture[str]) -> None:
    text = help_of(capsys, command.name)
    assert "`" not in text
    assert " ".join(text.split()).count(" ".join(command.description.split()[:8])) == 1
    exits = text[text.index("\nexit status:\n"):]
    for code, meaning in command.exits.items():
        assert f"  {int(code):<3} {meaning.split()[0]}" in exits
    assert "--config PATH" in text


def test_the_suppress_actions_say_their_exit_codes_and_take_config(
        capsys: pytest.CaptureFixture[str]) -> None:
    for action in ("list", "add", "remove", "import", "export"):
        text = help_of(capsys, "suppress", action)
        assert "exit status:" in text and "--config PATH" in text and "`" not in text


MINIMAL_ARGS = {
    "check": ["x.csv"], "count": ["x"], "submit": ["x.csv"], "suppress": ["list"],
    "alert": ["--unit", "sftpd-agent.service"], "simulate": ["--root", "/tmp/x"],
    "results": ["promo"],
}


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.name)
def test_every_command_accepts_config(command: Command) -> None:
    args = MINIMAL_ARGS.get(command.name, [])
    parser = build_parser()
    assert parser.parse_args([command.name, "--config", "/x/agent.toml", *args]).config == \
        "/x/agent.toml"
    assert parser.parse_args([command.name, *args, "--config", "/x/agent.toml"]).config == \
        "/x/agent.toml"
    assert parser.parse_args([command.name, *args]).config is None


def test_a_missing_config_file_is_one_line_and_exit_2_for_every_command(
        tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.toml")
    for command in COMMANDS:
        if command.name == "demo":
            continue  # ignores --config (its help says so): runs a whole demo
        args = [a.replace("/tmp/x", str(tmp_path / "provider"))
                for a in MINIMAL_ARGS.get(command.name, [])]
        done = run_cli(command.name, *args, "--config", missing)
        assert done.returncode == ExitCode.USAGE, (command.name, done.stderr)
        assert done.stderr == f"sftpd-agent: configuration file {missing} not found\n", \
            command.name


def test_exit_codes_are_defined_once() -> None:
    """ExitCode in errors.py is the one definition: no module declares its own constants or
    returns a bare number from a command."""
    assert [int(code) for code in ExitCode] == [0, 1, 2, 130]
    defined: list[str] = []
    bare: list[str] = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AnnAssign):
                targets = [node.target]
            names = [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
            defined += [f"{path.name}: {n}" for n in names if n.startswith("EXIT_")]
            if isinstance(node, ast.Return) and isinstance(node.value, ast.Constant) and \
                    isinstance(node.value.value, int) and not isinstance(node.value.value, bool) \
                    and path.parent.name == "commands":
                bare.append(f"{path.name}:{node.lineno}")
    assert defined == []
    assert bare == []
    for command in COMMANDS:
        assert set(command.exits) <= set(ExitCode), command.name


def test_the_table_is_the_one_place_and_every_entry_point_uses_it() -> None:
    modules = {p.stem for p in (PACKAGE / "commands").glob("*.py")} - {"__init__"}
    assert modules == {command.module for command in COMMANDS}
    for command in COMMANDS:
        module = command.load()
        assert callable(module.add_arguments) and callable(module.run)
    script = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module_name, _, function = script["sftpd-agent"].partition(":")
    assert getattr(importlib.import_module(module_name), function) is main
    assert "from .commands import main" in (PACKAGE / "__main__.py").read_text()
    assert not (PACKAGE / "cli.py").exists() and not (PACKAGE / "lists.py").exists()


def test_simulate_takes_the_service_id_from_config(tmp_path: Path) -> None:
    """--config gives the simulator the agent's service id: its files are processed to .done,
    another service id's are rejected; --service-id would win (see the help)."""
    config = tmp_path / "agent.toml"
    config.write_text('service_id = "54321"\n', encoding="utf-8")
    root = tmp_path / "provider"
    process = subprocess.Popen(
        [sys.executable, "-m", "sftpd_agent", "simulate", "--config", str(config), "--root",
         str(root), "--no-server", "--interval", "0.05", "--seed", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == f"processing {root} (no server)\n"
        ours, other = "SEND-54321-20260728-1827-ours", "SEND-12345-20260728-1827-other"
        for stem in (ours, other):
            temporary = root / "Send" / f"{stem}.tmp"
            temporary.write_bytes(b"a1;+33612345678;Shop;Hello\r\n")
            temporary.rename(temporary.with_suffix(".csv"))
        deadline = time.monotonic() + 30
        outcomes: list[str] = []
        while time.monotonic() < deadline:
            outcomes = sorted(p.name for p in (root / "Send").iterdir()
                              if p.suffix in {".done", ".reject"})
            if len(outcomes) == 2:
                break
            time.sleep(0.05)
        assert outcomes == [f"{other}.reject", f"{ours}.done"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == ExitCode.OK
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_simulate_with_a_bad_config_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('service_id = "54321"\nno_such_key = 1\n', encoding="utf-8")
    done = run_cli("simulate", "--config", str(config), "--root", str(tmp_path / "p"),
                   "--no-server")
    assert done.returncode == ExitCode.USAGE
    assert done.stderr.count("\n") == 1 and "no_such_key" in done.stderr


def test_count_stop_mention_shows_what_is_sent(tmp_path: Path) -> None:
    """``count --stop-mention TEXT``: the mention appended when missing, before counting."""
    done = subprocess.run(
        [sys.executable, "-m", "sftpd_agent", "count", "--json", "--stop-mention",
         "STOP au 36111"], input="Soldes -20% ce week-end\nSoldes STOP 36111\n\n",
        capture_output=True, text=True, timeout=60, check=True)
    appended, present, empty = (json.loads(line) for line in done.stdout.splitlines())
    assert appended["text"] == "Soldes -20% ce week-end STOP au 36111"
    assert appended["optout"] == "appended" and appended["characters"] == 37
    assert present["optout"] == "present" and present["text"] == "Soldes STOP 36111"
    assert empty["optout"] == "empty"
