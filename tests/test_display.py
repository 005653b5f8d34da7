"""Names from outside made safe to show and to reuse, and status saying what needs a person."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from sftpd_agent.commands.status import render, status
from sftpd_agent.config import Settings
from sftpd_agent.rules.display import NAME_MAX, local_name, plain, shown
from sftpd_agent.store.journal import Store

raw_names = st.binary(min_size=1, max_size=255).filter(lambda b: b"/" not in b and b"\0" not in b)


def test_undecodable_bytes_and_control_characters_are_escaped() -> None:
    assert shown(os.fsdecode(b"caf\xe9.csv")) == "caf\\xe9.csv"
    assert shown("a\nb\rc\td.csv") == "a\\nb\\rc\\td.csv"
    assert shown("x\x1b[31m.csv") == "x\\x1b[31m.csv"
    assert shown("l\u2028s.csv") == "l\\u2028s.csv"
    assert shown("Prénom été.csv") == "Prénom été.csv"  # valid UTF-8 stays as it is


def test_plain_keeps_what_a_campaign_id_and_time_are_read_from() -> None:
    assert plain(os.fsdecode(b"SEND-12345-20270105-0900-caf\xe9.csv")) == (
        "SEND-12345-20270105-0900-caf.csv")
    assert plain("pro\nmo.csv") == "promo.csv"


@given(raw_names)
def test_shown_is_always_one_storable_line(raw: bytes) -> None:
    text = shown(os.fsdecode(raw))
    text.encode("utf-8")  # never a lone surrogate: SQLite and JSON take it
    assert "\n" not in text and "\x1b" not in text and "\r" not in text


@given(raw_names, st.integers(min_value=0, max_value=20), st.sampled_from(["", "7", "12345"]))
def test_local_names_always_fit_with_their_suffix(raw: bytes, room: int, tag: str) -> None:
    name = local_name(os.fsdecode(raw), room=room, tag=tag)
    assert len(name.encode()) + room <= NAME_MAX
    assert "/" not in name and not name.startswith(".") and name not in ("", ".", "..")
    assert (tag in name) if tag else True


def test_a_long_name_is_cut_before_its_extension() -> None:
    name = local_name("L" * 250 + ".csv", room=len(".errors.csv"), tag="4")
    assert name.endswith("-4.csv") and len(name.encode()) == NAME_MAX - len(".errors.csv")


def test_status_lists_what_needs_a_person(tmp_path: Path) -> None:
    settings = Settings.model_validate({"service_id": "12345",
                                        "paths": {"root": str(tmp_path)}})
    store = Store(settings.paths.state_db)
    now = dt.datetime(2026, 12, 4, 9, 0, tzinfo=dt.UTC)
    store.set_fact("outbox_odd", {"pipe.csv": "a FIFO (named pipe), not a file"})
    store.set_fact("report_skipped", {"ACK-..csv": "not a report name"})
    store.set_fact("last_local_error", {"unit": "outbox entry x.csv",
                                        "error": "No space left on device",
                                        "at": now.isoformat()})
    report = status(store, settings, now)
    assert report["agent"]["attention"] == [
        "outbox entry pipe.csv: a FIFO (named pipe), not a file",
        "report file ACK-..csv: not a report name",
    ]
    assert report["agent"]["last_local_error"]["error"] == "No space left on device"
    text = render(report)
    assert "? outbox entry pipe.csv" in text and "No space left on device" in text
    store.close()
