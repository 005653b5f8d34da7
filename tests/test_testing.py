"""``sftpd_agent.testing``: the manual clock and the daemon process runner shared by the demo
and ``tests/daemon_harness.py``, driven here with a stand-in child (``python -c``) so that
each behaviour is forced: a line written in two halves, an early exit, a SIGTERM ignored."""

from __future__ import annotations

import datetime
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from sftpd_agent.testing import (
    PRODUCTION_ENTRY,
    TEST_ENTRY,
    DaemonProcess,
    ManualClock,
    clean_environment,
)

# The stand-in agent: lines from a script on stdin-like argv, then it waits for SIGTERM.
CHILD = r"""
import json, os, signal, sys, time
def out(text, end="\n"):
    sys.stdout.write(text + end); sys.stdout.flush()
mode = os.environ.get("CHILD_MODE", "")
out(json.dumps({"event": "agent_started", "config": sys.argv[-1],
                "leak": os.environ.get("SFTPD_AGENT_REMOTE__HOST"),
                "given": os.environ.get("GIVEN")}))
if mode == "exit":
    out("sftpd-agent: configuration error: unknown key remote.x +33612345678")
    sys.exit(2)
if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
out("not json at all")
out('{"event": "agent_ready"}')
out('{"event": "half', end="")
time.sleep(float(os.environ.get("CHILD_PAUSE", "0")))
out('way", "n": 1}')
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)) if mode != "stubborn" else None
for _ in range(600):
    time.sleep(0.1)
"""


def child(tmp_path: Path, **env: str) -> DaemonProcess:
    config = tmp_path / "agent.toml"
    config.write_text("")
    return DaemonProcess(config, entry=["-c", CHILD], env=env)


def test_the_manual_clock_moves_only_when_told() -> None:
    start = datetime.datetime(2026, 11, 23, 8, 0, tzinfo=datetime.UTC)
    clock = ManualClock(start)
    assert clock() == start == clock()
    assert clock.advance(90) == start + datetime.timedelta(seconds=90) == clock()


def test_the_entries_are_the_test_module_and_the_production_command(tmp_path: Path) -> None:
    process = DaemonProcess(tmp_path / "agent.toml", wrapper=["setpriv", "--"])
    assert process.argv == ["setpriv", "--", sys.executable, *TEST_ENTRY, "--config",
                            str(tmp_path / "agent.toml")]
    assert TEST_ENTRY == ("-m", "sftpd_agent.testing", "run")
    assert PRODUCTION_ENTRY == ("-m", "sftpd_agent", "run")


def test_clean_environment_drops_agent_and_systemd_variables(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SFTPD_AGENT_REMOTE__HOST", "sftp.example.net")
    monkeypatch.setenv("SFTPD_AGENT_CONFIG", "/etc/sftpd-agent/agent.toml")
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("WATCHDOG_USEC", "1000")
    env = clean_environment(EXTRA="1")
    assert not [key for key in env if key.startswith("SFTPD_AGENT_")]
    assert "NOTIFY_SOCKET" not in env and "WATCHDOG_USEC" not in env
    assert env["PATH"] == os.environ["PATH"]
    assert env["EXTRA"] == "1" and env["PYTHONUNBUFFERED"] == "1"


def test_ready_lines_in_order_half_lines_held_back_and_a_clean_stop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SFTPD_AGENT_REMOTE__HOST", "sftp.example.net")
    process = child(tmp_path, GIVEN="yes", CHILD_PAUSE="1.5")
    try:
        process.start()
        assert process.wait_ready(timeout=20)
        first = process.new_lines()  # the half-written line is not one yet
        assert [line["event"] for line in first] == ["agent_started", "agent_ready"]
        assert first[0]["config"] == str(tmp_path / "agent.toml")
        assert first[0]["leak"] is None and first[0]["given"] == "yes"
        deadline = time.monotonic() + 20
        rest: list[dict[str, object]] = []
        while not rest and time.monotonic() < deadline:
            rest = process.new_lines()
            time.sleep(0.05)
        assert rest == [{"event": "halfway", "n": 1}]
        assert process.new_lines() == []
        assert process.last_words() == "not json at all"
        assert process.exit_code() is None
    finally:
        code = process.stop(timeout=20)
    assert code == 0
    assert process.log_path == tmp_path / "daemon-1.log"


def test_an_early_exit_is_not_ready_and_its_last_words_are_kept(tmp_path: Path) -> None:
    process = child(tmp_path, CHILD_MODE="exit")
    process.start()
    assert not process.wait_ready(timeout=20)
    assert process.wait_exit(timeout=20) == 2
    assert process.last_words() == ("sftpd-agent: configuration error: unknown key remote.x "
                                     "+33612345678")
    assert [line["event"] for line in process.new_lines()] == ["agent_started"]


def test_each_run_has_its_own_log_and_lines_reads_them_all(tmp_path: Path) -> None:
    process = child(tmp_path)
    for run in (1, 2):
        process.start()
        assert process.wait_ready(timeout=20)
        assert process.stop(timeout=20) == 0
        assert process.log_path == tmp_path / f"daemon-{run}.log"
    assert len(process.logged("agent_ready")) == 2
    assert len(process.lines()) >= 4


def test_a_child_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    process = child(tmp_path, CHILD_MODE="stubborn")
    process.start()
    assert process.wait_ready(timeout=20)
    assert process.stop(timeout=0.5) is None
    assert process.exit_code() == -signal.SIGKILL
    with pytest.raises(ProcessLookupError):
        os.kill(process.pid, 0)


def test_json_lines_survive_odd_bytes(tmp_path: Path) -> None:
    process = child(tmp_path)
    process.log_path = tmp_path / "daemon-1.log"
    process.log_paths.append(process.log_path)
    process.log_path.write_bytes(json.dumps({"event": "a\u2028b"}, ensure_ascii=False).encode()
                                 + b"\n\xff\xfe not utf-8\n[1, 2]\n")
    assert process.lines() == [{"event": "a\u2028b"}]
