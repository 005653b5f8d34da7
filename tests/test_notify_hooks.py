"""notify/hooks.py: real hook processes through the queue: retried, killed with their
children at the timeout or once done, a bounded tail of their output, an allow-listed
environment, the payload only on stdin."""

from __future__ import annotations

import asyncio
import io
import json
import os
import resource
import sys
import time
from pathlib import Path

import pytest

from sftpd_agent.notify.hooks import HOOK_ENV_KEYS, HOOK_TAIL_BYTES, _Tail, hook_environment
from sftpd_agent.notify.payload import event_payload
from sftpd_agent.notify.queue import (
    Notifications,
    queue_status,
)
from sftpd_agent.store.journal import Store
from tests import notify_support as support
from tests.notify_support import (
    PASSWORD,
    T0,
    Config,
    alive,
    held_campaign,
    held_payload,
    hook_argv,
    log_lines,
    make_settings,
    read_records,
    rows,
    send,
)
from tests.servers import ManualClock

# The shared fixtures, by name (tests/notify_support.py).
clock = support.clock
store = support.store
logs = support.logs


async def test_a_failing_hook_is_retried_until_it_works(
    tmp_path: Path, store: Store, clock: ManualClock, logs: io.StringIO,
) -> None:
    record = tmp_path / "hook.jsonl"
    hook = {"events": ["campaign.held"], "command": hook_argv(tmp_path, record, "fail-until-flag")}
    notifications = Notifications(store, Config(make_settings(tmp_path, hooks=[hook])), clock)
    notifications.enqueue("campaign.held", held_payload(held_campaign(store)))

    assert await send(notifications) == 0
    (row,) = rows(store)
    assert row["attempts"] == 1 and row["sent_at"] is None
    assert row["last_error"] == "exit status 3: it broke for +33612****78"
    (failed,) = [line for line in log_lines(logs) if line["event"] == "notification_failed"]
    assert failed["channel"] == f"hook:{sys.executable}" and failed["attempt"] == 1
    assert failed["campaign_id"] == "promo"

    clock.advance(31)
    assert await send(notifications) == 0  # still failing: retried, not dropped
    assert rows(store)[0]["attempts"] == 2
    assert queue_status(store) == {
        "pending": 1, "failing": 1, "oldest": "2026-11-23T08:00:00+00:00",
        "last_error": "exit status 3: it broke for +33612****78"}
    (tmp_path / "flag").touch()
    clock.advance(3600)
    assert await send(notifications) == 1
    assert len(read_records(record)) == 3
    assert rows(store)[0]["attempts"] == 3 and notifications.pending() == 0
    assert queue_status(store)["pending"] == queue_status(store)["failing"] == 0


async def test_one_failing_event_does_not_hold_back_the_next_ones(
    tmp_path: Path, store: Store, clock: ManualClock,
) -> None:
    record = tmp_path / "hook.jsonl"
    hook = {"events": ["campaign.held", "campaign.done"],
            "command": hook_argv(tmp_path, record, "fail-on-held")}
    notifications = Notifications(store, Config(make_settings(tmp_path, hooks=[hook])), clock)
    campaign = held_campaign(store)
    notifications.enqueue("campaign.held", held_payload(campaign))
    notifications.enqueue("campaign.done", event_payload(
        "campaign.done", at=T0, campaign=campaign, data={}))
    assert await send(notifications) == 1
    held, done = rows(store)
    assert held["sent_at"] is None and held["attempts"] == 1
    assert done["sent_at"] is not None
    assert len(read_records(record)) == 2


@pytest.mark.parametrize("mode", ["hang", "hang-deep"])
async def test_a_hanging_hook_is_killed_with_its_children_and_retried(
    tmp_path: Path, store: Store, clock: ManualClock, mode: str,
) -> None:
    # "hang-deep": the hook's child started a grandchild and exited; the grandchild, orphaned
    # and re-parented, is still in the hook's process group and must die with it.
    record = tmp_path / "hook.jsonl"
    hook = {"events": ["campaign.held"], "command": hook_argv(tmp_path, record, mode),
            "timeout_seconds": 1.5}
    notifications = Notifications(store, Config(make_settings(tmp_path, hooks=[hook])), clock)
    notifications.enqueue("campaign.held", held_payload(held_campaign(store)))
    started = time.monotonic()
    assert await send(notifications) == 0
    assert time.monotonic() - started < 10
    (entry,) = read_records(record)
    deadline = time.monotonic() + 5
    while (alive(entry["pid"]) or alive(entry["child"])) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not alive(entry["pid"]) and not alive(entry["child"])
    (row,) = rows(store)
    assert row["last_error"] == "timed out after 1.5 s, killed" and row["attempts"] == 1
    clock.advance(31)
    assert await send(notifications) == 0  # retried (and killed again)
    assert len(read_records(record)) == 2
    for entry in read_records(record):
        assert not alive(entry["pid"])
    last = read_records(record)[-1]
    deadline = time.monotonic() + 5
    while alive(last["child"]) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not alive(last["child"])


async def test_a_hook_that_exits_is_done_what_it_left_running_is_killed(
    tmp_path: Path, store: Store, clock: ManualClock,
) -> None:
    # The child holds the hook's stdout and stderr open: the send must not wait for it (nor
    # time out), and it must not stay behind, eating the unit's TasksMax= and MemoryMax=.
    record = tmp_path / "hook.jsonl"
    hook = {"events": ["campaign.held"], "command": hook_argv(tmp_path, record, "leave-child"),
            "timeout_seconds": 20}
    notifications = Notifications(store, Config(make_settings(tmp_path, hooks=[hook])), clock)
    notifications.enqueue("campaign.held", held_payload(held_campaign(store)))
    started = time.monotonic()
    assert await send(notifications) == 1
    assert time.monotonic() - started < 10
    (entry,) = read_records(record)
    deadline = time.monotonic() + 5
    while alive(entry["child"]) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not alive(entry["child"])


def _peak_reset() -> bool:
    """Reset this process's peak RSS (VmHWM); False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


async def test_a_hook_writing_100_mb_costs_no_memory_and_its_tail_is_the_detail(
    tmp_path: Path, store: Store, clock: ManualClock, logs: io.StringIO,
) -> None:
    record = tmp_path / "hook.jsonl"
    megabytes = 50  # on stdout, and as much on stderr
    hook = {"events": ["campaign.held"],
            "command": hook_argv(tmp_path, record, "flood", str(megabytes)),
            "timeout_seconds": 60}
    notifications = Notifications(store, Config(make_settings(tmp_path, hooks=[hook])), clock)
    notifications.enqueue("campaign.held", held_payload(held_campaign(store)))
    reset = _peak_reset()
    before = _status_kib("VmRSS")
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    assert await asyncio.wait_for(notifications.send_due(), timeout=60) == 0
    elapsed = time.monotonic() - started
    grown_kib = (_status_kib("VmHWM") - before if reset
                 else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before)
    # Reading 2 x 50 MB into memory would grow the peak by 100 MB; the tails are 2 x 4 KiB.
    assert grown_kib < 20 * 1024, f"peak RSS grew by {grown_kib} KiB"
    (row,) = rows(store)
    assert row["last_error"] == "exit status 4: the last words, about +33612****78"
    (failed,) = [line for line in log_lines(logs) if line["event"] == "notification_failed"]
    assert failed["stderr"].endswith("x\nthe last words, about +33612****78")
    assert failed["stdout"].endswith("x\nthe last stdout line")
    for tail in (failed["stderr"], failed["stdout"]):
        assert tail.startswith("...x")  # the cut first line is marked, then whole lines
        assert len(tail.encode()) <= HOOK_TAIL_BYTES
    assert elapsed < 30


def test_a_tail_keeps_the_last_bytes_only() -> None:
    tail = _Tail(10)
    for chunk in (b"0123456789abc", b"", b"de", b"\nfg"):
        tail.add(chunk)
    assert bytes(tail.data) == b"89abcde\nfg" and tail.total == 18
    assert tail.text() == "...fg"  # the first, cut line goes
    whole = _Tail(10)
    whole.add(b"+33612345678")
    assert len(whole.data) == 10 and whole.text() == "...".rstrip(".") + "..."
    short = _Tail(100)
    short.add(b"call +33612345678 now\n")
    assert short.text() == "call +33612****78 now"


async def test_a_hook_sees_only_the_allow_listed_environment(
    tmp_path: Path, store: Store, clock: ManualClock, monkeypatch: pytest.MonkeyPatch,
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "smtp_password").write_text(PASSWORD)
    planted = {
        "CREDENTIALS_DIRECTORY": str(credentials), "SFTPD_AGENT_REMOTE__HOST": "sftp.example",
        "SFTPD_AGENT_CONFIG": "/etc/sftpd-agent/agent.toml", "NOTIFY_SOCKET": "/run/x",
        "WATCHDOG_USEC": "60000000", "INVOCATION_ID": "abc", "JOURNAL_STREAM": "8:1234",
        "MY_API_KEY": "k-123", "AWS_SECRET_ACCESS_KEY": "s-456", "LD_PRELOAD": "",
        "PYTHONPATH": str(tmp_path), "TZ": "Europe/Paris", "LC_ALL": "C.UTF-8",
        "LANG": "C.UTF-8", "HOME": str(tmp_path),
    }
    for key, value in planted.items():
        monkeypatch.setenv(key, value)
    record = tmp_path / "hook.jsonl"
    hook = {"events": ["campaign.held"], "command": hook_argv(tmp_path, record, "ok")}
    notifications = Notifications(store, Config(make_settings(tmp_path, hooks=[hook])), clock)
    notifications.enqueue("campaign.held", held_payload(held_campaign(store)))
    assert await send(notifications) == 1
    (entry,) = read_records(record)
    env = entry["env"]
    allowed = HOOK_ENV_KEYS | {"SFTPD_EVENT", "SFTPD_CAMPAIGN", "SFTPD_NOTIFICATION_ID"}
    extra = {key for key in env if key not in allowed and not key.startswith("LC_")}
    assert extra == set(), extra
    assert not any(key.startswith("SFTPD_AGENT") for key in env)
    assert "CREDENTIALS_DIRECTORY" not in env and str(credentials) not in json.dumps(env)
    assert env["TZ"] == "Europe/Paris" and env["LC_ALL"] == "C.UTF-8"
    assert env["HOME"] == str(tmp_path) and env["PATH"] == os.environ["PATH"]
    assert env["SFTPD_EVENT"] == "campaign.held" and env["SFTPD_CAMPAIGN"] == "promo"
    assert hook_environment("x", "", 1, {})["PATH"] == os.defpath  # never without a PATH


async def test_shell_syntax_reaches_the_hook_only_as_json(
    tmp_path: Path, store: Store, clock: ManualClock,
) -> None:
    pwned = tmp_path / "pwned"
    nasty = f"$(touch {pwned}); rm -rf {tmp_path}/nothing `touch {pwned}` \"' && |"
    record = tmp_path / "hook.jsonl"
    argv = hook_argv(tmp_path, record, "ok", "--label", "$HOME", "; echo hi")
    hook = {"events": ["campaign.held"], "command": argv}
    notifications = Notifications(store, Config(make_settings(tmp_path, hooks=[hook])), clock)
    campaign = held_campaign(store, campaign_id=nasty)
    payload = event_payload("campaign.held", at=T0, campaign=campaign,
                            data={"reason": nasty, "file": nasty})
    notifications.enqueue("campaign.held", payload)
    assert await send(notifications) == 1
    (entry,) = read_records(record)
    assert entry["argv"] == argv[1:]  # Python's sys.argv starts at the script
    assert entry["env"]["SFTPD_EVENT"] == "campaign.held"
    assert entry["env"]["SFTPD_CAMPAIGN"] == nasty
    assert entry["env"]["SFTPD_NOTIFICATION_ID"] == "1"
    received = json.loads(entry["stdin"])
    assert received == payload and received["campaign"]["campaign_id"] == nasty
    assert not pwned.exists()
