"""The provider simulator: its rules, its reports, its two servers and its command."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncssh
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sftpd_agent.errors import ConfigError
from sftpd_agent.simulator import (
    Processor,
    Row,
    SimulatorOptions,
    SimulatorThread,
    check_send_file,
    plan_reports,
    read_journal,
)
from tests.servers import ClientKey, ManualClock, SftpServer

# The lead's conftest will load these for every module; until then, this module does.

NAME = "SEND-12345-20160728-1827-testpushsftp.csv"
MIDDLE = "12345-20160728-1827-testpushsftp"
SAMPLE = ("VSQR0339;+33787798753;Logement; 4P 79m2 3ème étage Imm ancien 2Chbres Volumes vue "
          "Parfait état http://www.URL.com/fr/ref-VSQR0339 ")


def csv_bytes(rows: list[tuple[str, str, str, str]]) -> bytes:
    """Rows as the agent uploads them: RFC 4180, ';', CRLF, UTF-8 without BOM."""
    out = io.StringIO()
    csv.writer(out, delimiter=";", lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode()


def campaign(n: int, *, start: int = 0) -> list[tuple[str, str, str, str]]:
    return [(f"ID{i}", f"+3361234{i:04d}", "Acme", f"Rendez-vous n{i}; à demain")
            for i in range(start, start + n)]


def ack_rows(text: str) -> list[tuple[str, str, str, str, str, str, str]]:
    """Parse an ACK as the contract says: 3 fields from the left, 3 from the right."""
    rows = []
    for line in text.split("\r\n")[:-1]:
        fields = line.split(";")
        msg = ";".join(fields[3:-3])
        rows.append((*fields[:3], msg, *fields[-3:]))
    return rows


def report_lines(path: Path) -> list[str]:
    return path.read_bytes().decode().split("\r\n")[:-1]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the provider's rules -------------------------------------------------------------------


def test_the_documented_example_is_accepted() -> None:
    judgement = check_send_file(NAME, (SAMPLE + "\r\n").encode())
    assert judgement.reason is None
    assert judgement.verdict == "done"
    assert judgement.rows == (Row("VSQR0339", "+33787798753", "Logement", SAMPLE.split(";")[3]),)
    assert judgement.rows[0].msg.startswith(" 4P") and judgement.rows[0].msg.endswith(" ")


@pytest.mark.parametrize(("name", "content", "expected"), [
    pytest.param(NAME, "VSQR0339;+33787798753;Logement\r\n", "3 fields", id="missing-delimiter"),
    pytest.param(NAME, "A;+33611111111;Acme;x\r\nB;+33611111111;Acme;y\r\n", "already on line 1",
                 id="duplicate-msisdn"),
    pytest.param(NAME, "A;+33611111111;Abcdefghijkl;x\r\n", "OADC", id="oadc-12-characters"),
    pytest.param(NAME, "A;+33611111111;1234567890123456;x\r\n", "OADC", id="oadc-16-digits"),
    pytest.param(NAME, "A;+33611111111;Acme;garçon\r\n", "GSM 03.38", id="non-gsm"),
    pytest.param(NAME, "A;+33611111111;Acme;ok 👍\r\n", "GSM 03.38", id="emoji"),
    pytest.param(NAME, "A;+33611111111;Acme;\r\n", "empty", id="empty-msg"),
    pytest.param(NAME, "A;+33611111111;Acme;" + "a" * 766 + "\r\n", "6 SMS", id="six-segments"),
    pytest.param(NAME, "A;+33611111111;Acme;" + "€" * 381 + "\r\n", "6 SMS",
                 id="extension-counts-two"),
    pytest.param(NAME, "A;0611111111;Acme;x\r\n", "MSISDN", id="national-number"),
    pytest.param(NAME, "A;+0611111111;Acme;x\r\n", "MSISDN", id="msisdn-leading-zero"),
    pytest.param(NAME, "A;+3361111111111111;Acme;x\r\n", "MSISDN", id="msisdn-16-digits"),
    pytest.param(NAME, "A" * 41 + ";+33611111111;Acme;x\r\n", "IDREMOTE", id="idremote-41"),
    pytest.param(NAME, "A-1;+33611111111;Acme;x\r\n", "IDREMOTE", id="idremote-dash"),
    pytest.param(NAME, "IDREMOTE;MSISDN;OADC;MSG\r\nA;+33611111111;Acme;x\r\n", "MSISDN",
                 id="header"),
    pytest.param(NAME, "A;+33611111111;Acme;x\r\n\r\nB;+33622222222;Acme;y\r\n", "line 2",
                 id="blank-line"),
    pytest.param(NAME, 'A;+33611111111;Acme;say "hi"\r\n', "quote inside", id="bare-quote"),
    pytest.param(NAME, 'A;+33611111111;Acme;"hi" there\r\n', "after a closing quote",
                 id="text-after-quote"),
    pytest.param(NAME, 'A;+33611111111;Acme;"never closed\r\n', "never closed",
                 id="unterminated-quote"),
    pytest.param(NAME, "A;+33611111111;Acme;x\ry\r\n", "bare CR", id="bare-cr"),
    pytest.param(NAME, "", "no rows", id="empty-file"),
    pytest.param(NAME, "\ufeffA;+33611111111;Acme;x\r\n", "byte order mark", id="bom"),
    pytest.param("SEND-54321-20160728-1827-testpushsftp.csv", SAMPLE, "service id",
                 id="wrong-service-id"),
    pytest.param("testpushsftp.csv", SAMPLE, "file name", id="bad-name"),
    pytest.param("SEND-12345-20161332-1827-testpushsftp.csv", SAMPLE, "file name",
                 id="bad-date"),
    pytest.param("SEND-12345-20160728-1827-" + "a" * 21 + ".csv", SAMPLE, "file name",
                 id="campaign-id-21"),
])
def test_non_compliant_files_are_rejected(name: str, content: str, expected: str) -> None:
    judgement = check_send_file(name, content.encode())
    assert judgement.verdict == "reject"
    assert judgement.reason is not None
    assert expected in judgement.reason


def test_latin1_is_not_utf8() -> None:
    judgement = check_send_file(NAME, SAMPLE.encode("latin-1"))
    assert judgement.verdict == "reject"
    assert "UTF-8" in (judgement.reason or "")


def test_more_rows_than_allowed_are_rejected() -> None:
    data = csv_bytes(campaign(4))
    assert check_send_file(NAME, data, max_rows=4).verdict == "done"
    judgement = check_send_file(NAME, data, max_rows=3)
    assert judgement.reason == "more than 3 rows"


@pytest.mark.parametrize("content", [
    "A;+33611111111;Acme;x",  # no final line end
    "A;+33611111111;Acme;x\n",  # LF
    "A;+33611111111;12345678901;x\r\n",  # 11 digits
    "A;+33611111111;123456789012345;x\r\n",  # 15 digits
    "A;+33611111111;Abcdefghijk;x\r\n",  # 11 letters
    "A;+33611111111;;x\r\n",  # empty: the account's default sender
    "A;+1234567;Acme;x\r\n",  # 7 digits
    "A" * 40 + ";+33611111111;Acme;x\r\n",
    "A;+33611111111;Acme;" + "a" * 765 + "\r\n",  # 5 x 153
    "A;+33611111111;Acme;" + "€" * 380 + "\r\n",  # 5 parts of 76 escape pairs
    'A;+33611111111;"Acme";"a;b ""c""\r\nd"\r\n',  # quoted, with ; "" and a line break
])
def test_compliant_edge_cases_are_accepted(content: str) -> None:
    judgement = check_send_file(NAME, content.encode())
    assert judgement.reason is None


def test_quoted_fields_are_unquoted() -> None:
    judgement = check_send_file(
        NAME, b'A;+33611111111;"Acme";"a;b ""c""\r\nd"\r\nB;+33622222222;X;"";\r\n')
    assert judgement.rows[0] == Row("A", "+33611111111", "Acme", 'a;b "c"\r\nd')
    assert "5 fields" in (judgement.reason or "")  # the second row: "" then an empty 5th field


_GSM_TEXT = st.text(alphabet="abcXYZ 019;\"'\n,.!?@£$èéÉ€[]", min_size=1, max_size=200)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.from_regex(r"[A-Za-z0-9]{1,40}", fullmatch=True),
                          st.from_regex(r"[A-Za-z0-9]{1,11}|[0-9]{12,15}", fullmatch=True),
                          _GSM_TEXT), min_size=1, max_size=20))
def test_what_python_csv_writes_is_read_back(rows: list[tuple[str, str, str]]) -> None:
    written = [(idremote, f"+3360000{i:04d}", oadc, msg)
               for i, (idremote, oadc, msg) in enumerate(rows)]
    judgement = check_send_file(NAME, csv_bytes(written))
    assert judgement.reason is None
    assert [(r.idremote, r.msisdn, r.oadc, r.msg) for r in judgement.rows] == written


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="stop_share"):
        SimulatorOptions(stop_share=1.5)
    with pytest.raises(ConfigError, match="ack_delay"):
        SimulatorOptions(ack_delay=-1)
    with pytest.raises(ConfigError, match="rewrite_step"):
        SimulatorOptions(report_steps=2, rewrite_step=3)
    with pytest.raises(ConfigError, match="service_id"):
        SimulatorOptions(service_id="1234")


# --- the processing, over a local folder ----------------------------------------------------


def make_processor(root: Path, **options: object) -> tuple[Processor, ManualClock]:
    base: dict[str, object] = {
        "seed": 7, "lock_seconds": 5.0, "ack_delay": 60.0, "ack_failure_share": 0.25,
        "stop_share": 0.5, "mo_share": 0.5, "report_steps": 3, "report_interval": 30.0,
        "rewrite_step": 2,
    }
    clock = ManualClock(datetime(2026, 11, 23, 8, 0, tzinfo=UTC))
    processor = Processor(root, SimulatorOptions(**base | options), clock=clock)  # type: ignore[arg-type]
    processor.make_layout()
    return processor, clock


def test_a_file_goes_lock_then_done_and_tmp_is_never_touched(tmp_path: Path) -> None:
    processor, clock = make_processor(tmp_path)
    data = csv_bytes(campaign(8))
    (processor.send_dir / NAME).write_bytes(data)
    tmp = processor.send_dir / "SEND-12345-20160728-1828-other.tmp"
    tmp.write_bytes(b"half an upload")
    (processor.send_dir / "notes.txt").write_text("not ours")
    tmp_stat = tmp.stat()

    report = processor.step()
    assert report.taken == ("SEND-12345-20160728-1827-testpushsftp.lock",)
    assert report.judged == ()
    assert sorted(os.listdir(processor.send_dir)) == [
        "SEND-12345-20160728-1827-testpushsftp.lock",
        "SEND-12345-20160728-1828-other.tmp", "notes.txt"]
    assert processor.journal() == []

    clock.advance(4.9)
    assert processor.step().judged == ()
    clock.advance(0.1)
    (entry,) = processor.step().judged
    assert (entry.name, entry.verdict, entry.reason, entry.rows) == (NAME, "done", None, 8)
    assert entry.sha256 == sha256(data) and entry.size == len(data)
    assert (processor.send_dir / "SEND-12345-20160728-1827-testpushsftp.done").read_bytes() == data
    assert tmp.read_bytes() == b"half an upload"
    assert tmp.stat().st_mtime_ns == tmp_stat.st_mtime_ns and tmp.stat().st_ino == tmp_stat.st_ino
    assert read_journal(processor.journal_path) == [entry]
    assert processor.journal_path.is_relative_to(tmp_path / ".simulator")


def test_a_rejected_file_gets_no_report(tmp_path: Path) -> None:
    processor, clock = make_processor(tmp_path, lock_seconds=0.0)
    data = b"A;+33611111111;Acme;x\r\nB;+33611111111;Acme;y\r\n"
    (processor.send_dir / NAME).write_bytes(data)
    (entry,) = processor.step().judged
    assert entry.verdict == "reject" and "already on line 1" in (entry.reason or "")
    assert (processor.send_dir / "SEND-12345-20160728-1827-testpushsftp.reject").exists()
    assert processor.next_due() is None
    clock.advance(3600)
    assert processor.step().written == ()
    assert os.listdir(processor.report_dir) == []


def test_a_lock_left_by_an_earlier_run_is_judged(tmp_path: Path) -> None:
    processor, clock = make_processor(tmp_path)
    lock = processor.send_dir / "SEND-12345-20160728-1827-testpushsftp.lock"
    lock.write_bytes(csv_bytes(campaign(2)))
    processor.step()
    clock.advance(5)
    (entry,) = processor.step().judged
    assert entry.verdict == "done"


def test_the_ack_comes_after_its_delay_unquoted(tmp_path: Path) -> None:
    processor, clock = make_processor(tmp_path, lock_seconds=0.0, report_interval=1000.0)
    rows = campaign(8)
    (processor.send_dir / NAME).write_bytes(csv_bytes(rows))
    processor.step()
    ack = processor.report_dir / f"ACK-{MIDDLE}.csv"
    clock.advance(59)
    processor.step()
    assert not ack.exists()
    clock.advance(1)
    assert f"ACK-{MIDDLE}.csv" in processor.step().written
    assert sorted(os.listdir(processor.report_dir)) == [f"ACK-{MIDDLE}.csv"]  # no temp left
    text = ack.read_bytes().decode()
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    parsed = ack_rows(text)
    assert [row[:4] for row in parsed] == rows  # MSG keeps its ";" raw
    assert all(";" in row[3] for row in parsed)
    statuses = [(row[4], row[5]) for row in parsed]
    assert set(statuses) == {("2 ", "sent"), ("3 ", "failed")}
    assert statuses.count(("3 ", "failed")) == 2  # 25 % of 8
    assert all(uuid.UUID(row[6]) for row in parsed)
    assert len({row[6] for row in parsed}) == 8


def grow_reports(tmp_path: Path, **options: object
                 ) -> tuple[Processor, list[dict[str, tuple[int, int]]]]:
    """Accept a 40-row campaign, then record (size, inode) of STOP and SMSMO at each step."""
    processor, clock = make_processor(tmp_path, lock_seconds=0.0, ack_delay=1000.0, **options)
    (processor.send_dir / NAME).write_bytes(csv_bytes(campaign(40)))
    processor.step()
    states = []
    for _step in range(3):
        clock.advance(30)
        processor.step()
        state = {}
        for kind in ("STOP", "SMSMO"):
            stat = (processor.report_dir / f"{kind}-{MIDDLE}.csv").stat()
            state[kind] = (stat.st_size, stat.st_ino)
        states.append(state)
    return processor, states


def test_stop_and_mo_reports_grow_in_place_and_stop_is_rewritten_once(tmp_path: Path) -> None:
    processor, states = grow_reports(tmp_path)
    for kind in ("STOP", "SMSMO"):
        sizes = [state[kind][0] for state in states]
        assert sizes == sorted(set(sizes)), f"{kind} sizes must strictly increase: {sizes}"
    smsmo_inodes = {state["SMSMO"][1] for state in states}
    assert len(smsmo_inodes) == 1
    stop_inodes = [state["STOP"][1] for state in states]
    assert stop_inodes[0] != stop_inodes[1] == stop_inodes[2]  # rewritten at step 2 only

    rows = {msisdn: idremote for idremote, msisdn, _, _ in campaign(40)}
    (ack,) = [write for write in plan_reports(MIDDLE, [Row(*row) for row in campaign(40)],
                                              processor.options, processor.now())
              if write.name.startswith("ACK")]
    failed = {row[1] for row in ack_rows(ack.text) if row[5] == "failed"}
    assert len(failed) == 10
    paris = ZoneInfo("Europe/Paris")
    for kind, expected in (("STOP", 15), ("SMSMO", 15)):  # half of the 30 reached, rounded
        lines = report_lines(processor.report_dir / f"{kind}-{MIDDLE}.csv")
        assert len(lines) == expected
        msisdns = [line.split(";")[0] for line in lines]
        assert len(set(msisdns)) == len(msisdns)
        assert not set(msisdns) & failed
        for line in lines:
            msisdn, date, hour, message, idremote = line.split(";")
            assert rows[msisdn] == idremote
            when = datetime.strptime(date + hour, "%Y%m%d%H%M").replace(tzinfo=paris)
            assert datetime(2026, 11, 23, 9, 0, tzinfo=paris) <= when < \
                datetime(2026, 11, 23, 9, 2, tzinfo=paris)
            if kind == "STOP":
                assert message == "STOP"
            else:
                assert message in processor.options.mo_texts


def test_the_rewrite_changes_the_prefix(tmp_path: Path) -> None:
    processor, clock = make_processor(tmp_path, lock_seconds=0.0, rewrite_kind="SMSMO")
    (processor.send_dir / NAME).write_bytes(csv_bytes(campaign(40)))
    processor.step()
    path = processor.report_dir / f"SMSMO-{MIDDLE}.csv"
    clock.advance(30)
    processor.step()
    before = path.read_bytes()
    clock.advance(30)
    processor.step()
    after = path.read_bytes()
    assert not after.startswith(before)
    assert set(before.split(b"\r\n")) < set(after.split(b"\r\n"))


def test_torn_writes_end_mid_line_until_the_last(tmp_path: Path) -> None:
    processor, clock = make_processor(tmp_path, lock_seconds=0.0, torn_writes=True,
                                      rewrite_step=0)
    (processor.send_dir / NAME).write_bytes(csv_bytes(campaign(40)))
    processor.step()
    path = processor.report_dir / f"STOP-{MIDDLE}.csv"
    contents = []
    for _step in range(3):
        clock.advance(30)
        processor.step()
        contents.append(path.read_bytes())
    assert not contents[0].endswith(b"\r\n") and not contents[1].endswith(b"\r\n")
    assert contents[2].endswith(b"\r\n")
    assert contents[0] == contents[1][:len(contents[0])] == contents[2][:len(contents[0])]
    lines = report_lines(path)
    assert len(lines) == 15 and all(len(line.split(";")) == 5 for line in lines)


def test_a_seed_makes_a_run_repeatable(tmp_path: Path) -> None:
    def run(folder: Path, seed: int) -> dict[str, bytes]:
        processor, clock = make_processor(folder, lock_seconds=0.0, seed=seed, ack_delay=30.0)
        (processor.send_dir / NAME).write_bytes(csv_bytes(campaign(40)))
        processor.step()
        for _step in range(3):
            clock.advance(30)
            processor.step()
        return {path.name: path.read_bytes() for path in processor.report_dir.iterdir()}

    first, again, other = run(tmp_path / "a", 1), run(tmp_path / "b", 1), run(tmp_path / "c", 2)
    assert len(first) == 3
    assert first == again
    assert first != other


def test_mo_texts_may_hold_a_semicolon(tmp_path: Path) -> None:
    """The one documented case of a raw ";" in a report message: a test's own reply list."""
    processor, clock = make_processor(tmp_path, lock_seconds=0.0, mo_texts=("Oui; demain",),
                                      mo_share=1.0, ack_failure_share=0.0)
    (processor.send_dir / NAME).write_bytes(csv_bytes(campaign(3)))
    processor.step()
    clock.advance(90)
    processor.step()
    lines = report_lines(processor.report_dir / f"SMSMO-{MIDDLE}.csv")
    assert len(lines) == 3
    assert all(line.split(";")[3:5] == ["Oui", " demain"] for line in lines)


def test_a_republished_name_is_journaled_twice(tmp_path: Path) -> None:
    """Exactly-once checks rely on this: the journal sees every upload, even a repeat."""
    processor, _clock = make_processor(tmp_path, lock_seconds=0.0)
    for rows in (campaign(2), campaign(3)):
        (processor.send_dir / NAME).write_bytes(csv_bytes(rows))
        processor.step()
    assert [(e.name, e.rows) for e in processor.journal()] == [(NAME, 2), (NAME, 3)]


# --- the servers ----------------------------------------------------------------------------


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait, at most ``timeout`` seconds, for the simulator's loop to make ``predicate`` true."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def openssh_sftp(server: SftpServer, batch: str, tmp_path: Path) -> tuple[int, str]:
    batch_file = tmp_path / "batch"
    batch_file.write_text(batch)
    process = await asyncio.create_subprocess_exec(
        "/usr/bin/sftp", "-b", str(batch_file), *server.openssh_options(),
        "-P", str(server.port), f"{server.username}@{server.host}",
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    async with asyncio.timeout(30):
        output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


async def test_an_openssh_sftp_upload_goes_lock_done_and_gets_its_ack(
        sftp_server: SftpServer, tmp_path: Path) -> None:
    rows = [*campaign(3), ("VSQR0339", "+33787798753", "Logement", SAMPLE.split(";")[3])]
    local = tmp_path / "upload.csv"
    local.write_bytes(csv_bytes(rows))
    stem = "SEND-12345-20160728-1827-testpushsftp"
    code, output = await openssh_sftp(sftp_server, f"""\
put {local} /Send/{stem}.tmp
rename /Send/{stem}.tmp /Send/{stem}.csv
""", tmp_path)
    assert code == 0, output

    send = sftp_server.send_dir
    await eventually((send / f"{stem}.lock").exists)
    assert not (send / f"{stem}.csv").exists()
    assert sftp_server.processor.journal() == []  # no verdict while the clock stands still

    sftp_server.clock.advance(5)
    await eventually((send / f"{stem}.done").exists)
    (entry,) = sftp_server.processor.journal()
    assert (entry.name, entry.verdict, entry.rows) == (f"{stem}.csv", "done", 4)
    assert entry.sha256 == sha256(local.read_bytes())

    ack = sftp_server.report_dir / f"ACK-{MIDDLE}.csv"
    sftp_server.clock.advance(60)
    await eventually(ack.exists)
    parsed = ack_rows(ack.read_bytes().decode())
    assert [row[:4] for row in parsed] == rows
    assert parsed[0][3] == "Rendez-vous n0; à demain"
    assert sorted(row[5] for row in parsed) == ["failed", "sent", "sent", "sent"]


async def test_a_rename_onto_an_existing_name_fails(sftp_server: SftpServer) -> None:
    # Names the processing leaves alone (a .csv target would be taken as .lock meanwhile).
    async with await sftp_server.connect() as conn, conn.start_sftp_client() as sftp:
        for name, data in (("a.tmp", b"new"), ("a.done", b"old"), ("b.tmp", b"other")):
            async with sftp.open(f"/Send/{name}", "wb") as file:
                await file.write(data)
        with pytest.raises(asyncssh.SFTPFailure):
            await sftp.rename("/Send/a.tmp", "/Send/a.done")
        assert (sftp_server.send_dir / "a.done").read_bytes() == b"old"
        assert (sftp_server.send_dir / "a.tmp").read_bytes() == b"new"
        await sftp.rename("/Send/b.tmp", "/Send/b.part")  # onto a free name it works
        assert (sftp_server.send_dir / "b.part").read_bytes() == b"other"
        await sftp.posix_rename("/Send/a.tmp", "/Send/b.part")  # posix-rename replaces
        assert (sftp_server.send_dir / "b.part").read_bytes() == b"new"
        assert sorted(await sftp.listdir("/Send")) == [".", "..", "a.done", "b.part"]


async def test_reports_grow_as_seen_over_sftp(sftp_server: SftpServer) -> None:
    processor = sftp_server.processor
    (sftp_server.send_dir / NAME).write_bytes(csv_bytes(campaign(40)))
    processor.step()  # step() beside the server's own loop: whoever comes first does the work
    sftp_server.clock.advance(5)
    processor.step()
    assert (sftp_server.send_dir / NAME.replace(".csv", ".done")).exists()
    stop = f"Report/STOP-{MIDDLE}.csv"
    seen: list[tuple[int, int]] = []
    async with await sftp_server.connect() as conn, conn.start_sftp_client() as sftp:
        for _step in range(3):
            sftp_server.clock.advance(30)
            processor.step()
            attrs = await sftp.stat(f"/{stop}")
            assert attrs.size is not None
            seen.append((attrs.size, (sftp_server.root / stop).stat().st_ino))
        async with sftp.open(f"/{stop}", "rb") as file:
            lines = (await file.read()).decode().split("\r\n")[:-1]
    sizes = [size for size, _ in seen]
    assert sizes == sorted(set(sizes))
    assert seen[0][1] != seen[1][1] == seen[2][1]
    assert len(lines) == 15


async def test_the_simulator_wants_a_known_key(simulator: SftpServer, tmp_path: Path) -> None:
    stranger = asyncssh.generate_private_key("ssh-ed25519")
    with pytest.raises(asyncssh.PermissionDenied):
        await asyncssh.connect(simulator.host, simulator.port, username=simulator.username,
                               client_keys=[stranger], known_hosts=str(simulator.known_hosts),
                               agent_path=None, config=None, password="secret",
                               connect_timeout=10)


async def test_the_simulator_is_chrooted(simulator: SftpServer) -> None:
    async with await simulator.connect() as conn, conn.start_sftp_client() as sftp:
        assert await sftp.realpath("..") == "/"
        assert {"Send", "Report"} <= set(await sftp.listdir("/../.."))
        with pytest.raises(asyncssh.SFTPNoSuchFile):
            await sftp.stat("/../../../etc/passwd")


async def test_dropping_connections_cuts_clients_off(simulator: SftpServer) -> None:
    assert simulator.simulator is not None
    async with await simulator.connect() as conn, conn.start_sftp_client() as sftp:
        assert await sftp.listdir("/Send") is not None
        assert simulator.simulator.connections == 1
        async with asyncio.timeout(10):
            await simulator.simulator.drop_connections()
            await conn.wait_closed()
        assert simulator.simulator.connections == 0
        with pytest.raises((asyncssh.SFTPError, asyncssh.Error, OSError)):
            await sftp.listdir("/Send")
    async with await simulator.connect() as conn:  # and it still serves
        assert simulator.simulator.connections == 1


async def test_the_fingerprint_is_what_ssh_keygen_prints(simulator: SftpServer) -> None:
    keygen = subprocess.run(["ssh-keygen", "-l", "-f", str(simulator.known_hosts)],
                            capture_output=True, text=True, timeout=10, check=True)
    assert keygen.stdout.split()[1] == simulator.host_key_fingerprint
    assert re.fullmatch(r"SHA256:[A-Za-z0-9+/]{43}", simulator.host_key_fingerprint)


def test_the_thread_serves_sync_callers(simulator_thread: SftpServer, tmp_path: Path) -> None:
    send = simulator_thread.send_dir
    (send / NAME).write_bytes(csv_bytes(campaign(2)))
    simulator_thread.processor.step()  # safe beside the thread's own loop
    simulator_thread.clock.advance(5)
    simulator_thread.processor.step()
    assert (send / NAME.replace(".csv", ".done")).exists()
    batch = tmp_path / "batch"
    batch.write_text("ls /Send\n")
    result = subprocess.run(["/usr/bin/sftp", "-b", str(batch),
                             *simulator_thread.openssh_options(), "-P",
                             str(simulator_thread.port),
                             f"{simulator_thread.username}@127.0.0.1"],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert NAME.replace(".csv", ".done") in result.stdout


def test_a_thread_that_cannot_start_says_why(tmp_path: Path) -> None:
    thread = SimulatorThread(tmp_path, authorized_keys=None)
    with pytest.raises(ConfigError, match="authorized_keys"):
        thread.start()


# --- the command ----------------------------------------------------------------------------

COMMAND = ("import argparse, sys\n"
           "from sftpd_agent.simulator.command import add_arguments, run\n"
           "parser = argparse.ArgumentParser(prog='sftpd-agent simulate')\n"
           "add_arguments(parser)\n"
           "sys.exit(run(parser.parse_args(sys.argv[1:])))\n")


def test_the_command_serves_until_sigterm(tmp_path: Path, client_key: ClientKey) -> None:
    root = tmp_path / "provider"
    host_key = tmp_path / "host_key"
    process = subprocess.Popen(
        [sys.executable, "-c", COMMAND, "--root", str(root), "--listen", "127.0.0.1:0",
         "--authorized-keys", str(client_key.authorized_keys), "--host-key", str(host_key),
         "--seed", "3", "--ack-delay", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        listening = process.stdout.readline()
        fingerprint = process.stdout.readline()
        assert re.fullmatch(r"listening on 127\.0\.0\.1:\d+\n", listening), listening
        assert re.fullmatch(r"host key SHA256:\S{43}\n", fingerprint), fingerprint
        assert (root / "Send").is_dir() and (root / "Report").is_dir()
        assert host_key.stat().st_mode & 0o777 == 0o600
        keygen = subprocess.run(["ssh-keygen", "-l", "-f", str(host_key)], capture_output=True,
                                text=True, timeout=10, check=True)
        assert keygen.stdout.split()[1] == fingerprint.split()[2]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_the_command_without_keys_exits_2_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", COMMAND, "--root", str(tmp_path)],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "sftpd-agent simulate: --authorized-keys is required unless --no-server"]


def test_the_command_refuses_a_bad_share(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", COMMAND, "--root", str(tmp_path),
                             "--no-server", "--stop-share", "2"],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2
    assert "expected a share between 0 and 1, got '2'" in result.stderr.splitlines()[-1]
