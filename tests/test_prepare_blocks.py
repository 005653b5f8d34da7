"""Preparing an upload a block of records at a time (issue 16): the provider files are byte
for byte what the record-by-record reference writes, whatever the quotes, line breaks,
suppressed numbers, rows per file and block size; a file that is ``rows.csv`` whole is a hard
link to it, and where links or the kernel's copy are refused the bytes are the same."""

from __future__ import annotations

import datetime as dt
import errno
import functools
import hashlib
import io
import os
import random
from pathlib import Path

import pytest

from sftpd_agent.config import Settings
from sftpd_agent.pipeline import campaigns as campaigns_module
from sftpd_agent.pipeline.campaigns import Campaigns, _Group, _split_whole
from sftpd_agent.pipeline.intake import in_zones, row_zone
from sftpd_agent.rules import upload_file
from sftpd_agent.rules.states import CampaignState
from sftpd_agent.rules.upload_file import (
    UploadWriter,
    plain_numbers,
    record_blocks,
    upload_records,
)
from sftpd_agent.rules.validation import Row
from sftpd_agent.store.journal import Store

MONDAY_10H = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)  # 10:00 in Paris
EVERY_ROW = _Group(0, None, MONDAY_10H)
OTHER_HEADS = ["+262692", "+590690", "+447700"]  # Reunion, Guadeloupe, abroad


def rows_file(rng: random.Random, count: int, *, quoted: float, others: float = 0.0) -> bytes:
    """``count`` rows in the uploaded form; a share ``quoted`` of messages holding ``;``,
    double quotes or line breaks (quoted by the writer, some over several lines), a share
    ``others`` of numbers outside metropolitan France."""
    out = io.BytesIO()
    writer = UploadWriter(out)
    specials = ['; et', '"vite"', "ligne\r\nsuivante", 'a\n"b";c', '""', "\n"]
    for i in range(count):
        text = f"Bonjour {i} " + "x" * rng.randrange(0, 40)
        if rng.random() < quoted:
            text += rng.choice(specials)
        number = f"+336{rng.randrange(10**8):08d}"
        if rng.random() < others:
            number = f"{rng.choice(OTHER_HEADS)}{rng.randrange(10**6):06d}"
        writer.write(Row(i + 1, f"R{i}", number, "Shop", text, 1))
    writer.close()
    return out.getvalue()


def reference(data: bytes, per_file: int, suppressed: set[str],
              zones: frozenset[str] | None = None,
              ) -> tuple[list[bytes], list[tuple[str, str]]]:
    """What the record-by-record pass writes: files of ``per_file`` rows of the ``zones``
    (None: all), the dropped rows."""
    files: list[list[bytes]] = []
    dropped = []
    for idremote, msisdn, record in upload_records(io.BytesIO(data)):
        if zones is not None and row_zone(msisdn) not in zones:
            continue
        if msisdn in suppressed:
            dropped.append((idremote, msisdn))
            continue
        if not files or len(files[-1]) >= per_file:
            files.append([])
        files[-1].append(record)
    return [b"".join(records) for records in files], dropped


def numbers_of(data: bytes) -> list[str]:
    return [msisdn for _, msisdn, _ in upload_records(io.BytesIO(data))]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("block", [64, 333, 4096, upload_file.BLOCK])
def test_blocks_hold_whole_records_and_join_to_the_file(seed: int, block: int) -> None:
    data = rows_file(random.Random(seed), 400, quoted=0.2 if seed % 2 else 0.02)
    blocks = list(record_blocks(io.BytesIO(data), block))

    assert b"".join(blocks) == data
    assert all(blocks)
    records = [r for b in blocks for r in upload_records(io.BytesIO(b))]  # each parses alone
    assert records == list(upload_records(io.BytesIO(data)))
    if block < 1000:
        assert len(blocks) > 10


def test_a_block_ends_after_a_message_whose_line_break_falls_at_the_read() -> None:
    data = b'R1;+33612345678;Shop;"un\r\ndeux ""trois"""\r\nR2;+33612345679;Shop;fin\r\n'
    for size in range(1, len(data) + 1):
        blocks = list(record_blocks(io.BytesIO(data), size))
        assert b"".join(blocks) == data
        assert [len(list(upload_records(io.BytesIO(b)))) for b in blocks] in ([1, 1], [2])


def test_plain_numbers_only_for_blocks_of_plain_records() -> None:
    plain = b"R1;+33612345678;Shop;Bonjour\r\nR2;+33612345679;Shop;Salut\r\n"
    assert plain_numbers(plain) == ["+33612345678", "+33612345679"]
    assert plain_numbers(b'R1;+33612345678;Shop;"a;b"\r\n') is None  # quoted
    assert plain_numbers(b"R1;33612345678;Shop;Bonjour\r\n") is None  # not +digits
    assert plain_numbers(b"R1;+3361;Shop\r\nR2;+3362;Shop;a;b\r\n") is None  # misread
    assert plain_numbers(b"R1;+33612345678;Shop;Bonjour") is None  # no line end


def test_zones_of_a_block_of_numbers() -> None:
    france = ["+33612345678", "+33712345679"]
    assert in_zones(france, {"FR"}) and not in_zones(france, {"RE"})
    assert in_zones([*france, "+262692123456"], {"FR", "RE"})
    assert not in_zones([*france, "+262692123456"], {"FR"})
    assert not in_zones(["+3361234567"], {"FR"}) or row_zone("+3361234567") == "FR"


@pytest.mark.parametrize("seed", range(12))
def test_the_files_are_the_record_by_record_passs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    rng = random.Random(seed)
    data = rows_file(rng, 600, quoted=rng.choice([0.0, 0.01, 0.3]),
                     others=rng.choice([0.0, 0.0, 0.002, 0.1]))
    (tmp_path / "rows.csv").write_bytes(data)
    (tmp_path / "rows.csv").chmod(0o600)  # as validation writes it
    numbers = numbers_of(data)
    suppressed = set(rng.sample(numbers, rng.choice([0, 1, 5, 60])))
    per_file = rng.choice([1, 7, 100, 600, 10_000])
    block = rng.choice([50, 500, 5000, upload_file.BLOCK])
    monkeypatch.setattr(campaigns_module, "record_blocks",
                        functools.partial(record_blocks, size=block))

    zones = rng.choice([None, frozenset({"FR"}), frozenset({"FR", "RE", "GP", "foreign"}),
                        frozenset({"RE", "foreign"})])

    split = _split_whole(tmp_path, _Group(3, zones, MONDAY_10H), per_file, suppressed)

    files, dropped = reference(data, per_file, suppressed, zones)
    got = split.files[0]
    assert [c.path.read_bytes() for c in got] == files
    assert [c.rows for c in got] == [len(list(upload_records(io.BytesIO(f)))) for f in files]
    assert [c.size for c in got] == [len(f) for f in files]
    assert [c.sha256 for c in got] == [hashlib.sha256(f).hexdigest() for f in files]
    assert split.dropped == dropped and split.dropped_at == [len(dropped)]
    assert all(c.path.stat().st_mode & 0o777 == 0o600 for c in got)
    assert all(c.path.name.startswith(".prepare-3-") for c in got)


def test_a_file_that_is_the_rows_file_whole_is_a_link_to_it(tmp_path: Path) -> None:
    data = rows_file(random.Random(1), 300, quoted=0.05)
    rows = tmp_path / "rows.csv"
    rows.write_bytes(data)

    whole = _split_whole(tmp_path, EVERY_ROW, 1000, set())
    assert len(whole.files[0]) == 1
    assert whole.files[0][0].path.stat().st_ino == rows.stat().st_ino
    assert whole.files[0][0].sha256 == hashlib.sha256(data).hexdigest()

    one_out = _split_whole(tmp_path, EVERY_ROW, 1000, {numbers_of(data)[-1]})
    part = one_out.files[0][0]
    assert part.path.stat().st_ino != rows.stat().st_ino
    assert part.path.read_bytes() == reference(data, 1000, {numbers_of(data)[-1]})[0][0]
    assert rows.read_bytes() == data  # the link's source untouched


@pytest.mark.parametrize("refused", ["link", "copy_file_range"])
def test_without_links_or_the_kernels_copy_the_bytes_are_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refused: str
) -> None:
    data = rows_file(random.Random(2), 500, quoted=0.01)
    rows = tmp_path / "rows.csv"
    rows.write_bytes(data)

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.EXDEV if refused == "copy_file_range" else errno.EPERM, refused)

    monkeypatch.setattr(os, refused, refuse)
    suppressed = {numbers_of(data)[250]} if refused == "copy_file_range" else set()
    split = _split_whole(tmp_path, EVERY_ROW, 200, suppressed)

    assert [c.path.read_bytes() for c in split.files[0]] == reference(data, 200, suppressed)[0]
    whole = _split_whole(tmp_path, EVERY_ROW, 1000, set())
    assert whole.files[0][0].path.read_bytes() == data
    assert (whole.files[0][0].path.stat().st_ino == rows.stat().st_ino) == (
        refused != "link")


def test_a_prepared_campaign_uploads_a_link_and_a_new_validation_leaves_it(
    tmp_path: Path,
) -> None:
    settings = Settings(service_id="12345", paths={"root": tmp_path / "agent"},
                        campaign={"stable_seconds": 0, "stop_mention_policy": "off"})
    store = Store(settings.paths.state_db)
    campaigns = Campaigns(settings, store, lambda: MONDAY_10H, lambda *a, **k: None)
    dropped = settings.paths.outbox / "promo.csv"
    dropped.write_text("".join(f"R{i};+3361234{i:04d};Shop;Bonjour {i}\n" for i in range(50)),
                       encoding="utf-8")
    campaign = campaigns.validate(campaigns.take(dropped))
    assert campaign.state == CampaignState.SCHEDULED
    rows = campaigns.folder(campaign) / "rows.csv"
    (campaigns.folder(campaign) / ".prepare-0-1.tmp").write_bytes(b"a crash's leftover")

    parts = campaigns.prepare(campaign)

    assert parts is not None and len(parts) == 1
    part = campaigns.part_file(parts[0])
    assert part.stat().st_ino == rows.stat().st_ino
    assert parts[0].sha256 == hashlib.sha256(rows.read_bytes()).hexdigest()
    assert not (campaigns.folder(campaign) / ".prepare-0-1.tmp").exists()
    sent = part.read_bytes()
    store.update_campaign(campaign.id, state=CampaignState.RECEIVED)  # as a redo would
    campaigns.validate(store.campaign(campaign.id))
    assert part.read_bytes() == sent  # rows.csv written anew, not through the link
    assert part.stat().st_ino != rows.stat().st_ino


def test_a_leftover_link_is_replaced_never_written_through(tmp_path: Path) -> None:
    """A crash after a file was linked, before the intent: the redone preparation (a number
    suppressed meanwhile) writes a new file; ``rows.csv`` keeps every row."""
    data = rows_file(random.Random(3), 200, quoted=0.0)
    rows = tmp_path / "rows.csv"
    rows.write_bytes(data)
    first = _split_whole(tmp_path, EVERY_ROW, 1000, set())
    assert first.files[0][0].path.stat().st_ino == rows.stat().st_ino

    stopped = {numbers_of(data)[0]}
    again = _split_whole(tmp_path, EVERY_ROW, 1000, stopped)

    assert rows.read_bytes() == data
    assert again.files[0][0].path.read_bytes() == reference(data, 1000, stopped)[0][0]
    assert again.files[0][0].path.stat().st_ino != rows.stat().st_ino


@pytest.mark.parametrize("quoted", [0.0, 0.5])
def test_many_suppressed_in_big_blocks_are_the_record_by_record_passs(
    tmp_path: Path, quoted: float
) -> None:
    """Thousands of holes in each block (copied and joined here, not left to the kernel
    range by range), records gathered past the write buffer."""
    rng = random.Random(9)
    data = rows_file(rng, 40_000, quoted=quoted, others=0.01)
    (tmp_path / "rows.csv").write_bytes(data)
    suppressed = set(rng.sample(numbers_of(data), 4000))
    zones = frozenset({"FR", "GP"})

    split = _split_whole(tmp_path, _Group(0, zones, MONDAY_10H), 30_000, suppressed)

    files, dropped = reference(data, 30_000, suppressed, zones)
    assert [c.path.read_bytes() for c in split.files[0]] == files
    assert split.dropped == dropped and len(dropped) > 3000


def test_a_rows_file_ending_inside_quotes_is_named(tmp_path: Path) -> None:
    (tmp_path / "rows.csv").write_bytes(b'R1;+33612345678;Shop;"never closed\r\n')
    with pytest.raises(ValueError, match=r"rows\.csv: the last record ends inside quotes"):
        _split_whole(tmp_path, EVERY_ROW, 10, set())
