"""Checking on several cores gives exactly the single pass's answer, or falls back to it."""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from sftpd_agent.pipeline import multicore as parallel
from sftpd_agent.pipeline.multicore import validate_in_parallel
from sftpd_agent.rules.upload_file import upload_bytes
from sftpd_agent.rules.validation import Row, RowError, Rules, Summary, Validator

MESSAGES = ["Bonjour", "Fête à Noël", "Prix 20 € [x]", "Emoji 🎄", "", "x" * 900,
            '"quoted; with ""quotes"""']


def campaign(rows: int, seed: int, line_end: str = "\r\n", multiline: bool = False) -> str:
    rng = random.Random(seed)
    out = ["IDREMOTE;MSISDN;OADC;MSG"]
    for i in range(rows):
        number = rng.choice([f"+336{rng.randrange(10**8):08d}", f"06{rng.randrange(100):08d}",
                             "0612", "+33612345678", f"07{rng.randrange(50, 100)}000000"])
        message = rng.choice(MESSAGES)
        if multiline and rng.random() < 0.05:
            message = '"two\nlines"'
        out.append(f"R{i};{number};Shop;{message}")
        if rng.random() < 0.01:
            out.append("")
    return line_end.join(out) + line_end


def single(path: Path, errors: list[RowError]) -> Summary:
    with path.open("rb") as stream:
        return Validator(Rules()).validate(stream, file=path.name, on_error=errors.append)


@pytest.mark.parametrize("workers", [2, 3, 5])
@pytest.mark.parametrize("line_end", ["\r\n", "\n"])
def test_slices_merge_to_the_single_pass_exactly(
    tmp_path: Path, workers: int, line_end: str
) -> None:
    path = tmp_path / "c.csv"
    path.write_text(campaign(3000, seed=workers, line_end=line_end), encoding="utf-8")
    errors_single: list[RowError] = []
    expected = single(path, errors_single)
    errors_parallel: list[RowError] = []
    got = validate_in_parallel(path, Validator(Rules()), file=path.name,
                               on_error=errors_parallel.append, workers=workers)
    assert got is not None
    assert got.as_dict() == expected.as_dict()
    assert errors_parallel == errors_single
    assert expected.duplicates > 10  # duplicates across slices were taken off


@pytest.mark.parametrize("seed", range(6))
def test_with_quoted_line_breaks_the_answer_is_exact_or_left_to_the_single_pass(
    tmp_path: Path, seed: int
) -> None:
    path = tmp_path / "c.csv"
    path.write_text(campaign(2000, seed=seed, multiline=True), encoding="utf-8")
    expected = single(path, [])
    got = validate_in_parallel(path, Validator(Rules()), file=path.name, workers=4)
    assert got is None or got.as_dict() == expected.as_dict()


def test_not_utf8_falls_back(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes(campaign(2000, seed=1).encode("utf-8") + "z;+33612345670;S;é\r\n".encode(
        "cp1252"))
    assert validate_in_parallel(path, Validator(Rules()), file="c.csv", workers=2) is None


def test_lone_cr_line_ends_are_exact_or_fall_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.csv"
    path.write_text(campaign(2000, seed=2, line_end="\r"), encoding="utf-8")
    expected = single(path, [])
    # No LF to cut after: the first slice runs to the end of the file...
    got = validate_in_parallel(path, Validator(Rules()), file="c.csv", workers=2)
    assert got is not None and got.as_dict() == expected.as_dict()
    # ... unless the file is longer than the window searched for one: the single pass.
    monkeypatch.setattr(parallel, "CHUNK", 1024)
    assert validate_in_parallel(path, Validator(Rules()), file="c.csv", workers=2) is None


def test_a_cut_inside_a_quoted_field_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parallel, "TAIL_SHARE", 0.0)  # two slices, cut in the middle
    path = tmp_path / "c.csv"
    head = "a;+33612345678;S;ok\n" * 50
    # One quoted message over 11 lines straddles the middle of the file.
    quoted = 'q;+33612345679;S;"' + "line\n" * 10 + 'end"\n'
    path.write_text(head + quoted + head.replace("a;", "b;"), encoding="utf-8")
    size = path.stat().st_size
    middle = path.read_bytes()[: size // 2]
    assert middle.count(b'"') == 1  # the cut falls inside the quotes
    assert validate_in_parallel(path, Validator(Rules()), file="c.csv", workers=2) is None


def test_small_files_are_not_split(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text(campaign(10, seed=3), encoding="utf-8")
    assert validate_in_parallel(path, Validator(Rules()), file="c.csv") is None


def test_line_ends_of_every_kind_are_exact_across_slices(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    text = campaign(3000, seed=7)
    # Some lone CRs among the CRLFs: each slice numbers its own lines, so none drift.
    lines = text.split("\r\n")
    text = "".join(line + ("\r" if i % 97 == 0 else "\r\n") for i, line in enumerate(lines))
    path.write_text(text, encoding="utf-8")
    errors_single: list[RowError] = []
    expected = single(path, errors_single)
    errors_parallel: list[RowError] = []
    got = validate_in_parallel(path, Validator(Rules()), file=path.name,
                               on_error=errors_parallel.append, workers=3)
    assert got is not None
    assert got.as_dict() == expected.as_dict()
    assert errors_parallel == errors_single
    assert max(e.line for e in errors_single) > 2000


@pytest.mark.parametrize("workers", [2, 4])
def test_the_suppressed_count_is_the_single_passs(tmp_path: Path, workers: int) -> None:
    path = tmp_path / "c.csv"
    path.write_text(campaign(3000, seed=workers), encoding="utf-8")
    rng = random.Random(workers)
    listed = {"+33612345678"} | {f"+336{rng.randrange(10**8):08d}" for _ in range(200)}
    # Every number of the file's first rows, and a few of its duplicates across slices.
    with path.open("rb") as stream:
        rows: list[str] = []
        Validator(Rules()).validate(stream, file="c.csv", on_row=lambda row: rows.append(
            row.msisdn))
    listed |= set(rows[:400:3]) | set(rows[-300::5])
    with path.open("rb") as stream:
        expected = Validator(Rules(), suppressed=listed).validate(stream, file="c.csv")
    got = validate_in_parallel(path, Validator(Rules(), suppressed=listed), file="c.csv",
                               workers=workers)
    assert got is not None
    assert got.as_dict() == expected.as_dict()
    assert expected.suppressed is not None and expected.suppressed > 100
    # "+33612345678" is on many rows, valid once: the others are duplicates.
    assert expected.duplicates > 10


def test_a_slice_ending_with_a_quoted_record_over_two_lines_counts_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parallel, "TAIL_SHARE", 0.0)  # two slices, cut after the middle
    path = tmp_path / "c.csv"
    head = "".join(f"a{i};+3361234{i:04d};S;ok\n" for i in range(40))
    quoted = 'q;+33612349999;S;"first\nsecond"\n'
    for padding in range(3000):  # put the middle of the file in the record's second line
        tail = "x" * padding + "\n" + "".join(f"b{i};bad;S;ok\n" for i in range(40))
        text = head + quoted + tail
        middle = len(text.encode()) // 2
        second = len((head + quoted).encode()) - len('second"\n')
        if second <= middle < second + len('second"'):
            break
    else:
        pytest.fail("no padding puts the cut there")
    path.write_text(text, encoding="utf-8")
    errors_single: list[RowError] = []
    expected = single(path, errors_single)
    errors_parallel: list[RowError] = []
    got = validate_in_parallel(path, Validator(Rules()), file="c.csv",
                               on_error=errors_parallel.append, workers=2)
    assert got is not None and got.as_dict() == expected.as_dict()
    assert errors_parallel == errors_single and errors_single[-1].line == 83


# -- the daemon's rows: each slice writes its own, joined without the rows taken off ------

def single_rows(path: Path, keep: Callable[[Row], bool] | None = None,
                errors: list[RowError] | None = None) -> tuple[Summary, bytes]:
    """The reference: the single pass, its rows written by an UploadWriter as they come."""
    rows: list[Row] = []
    with path.open("rb") as stream:
        summary = Validator(Rules()).validate(
            stream, file=path.name, on_row=rows.append,
            on_error=errors.append if errors is not None else None)
    return summary, upload_bytes(row for row in rows if keep is None or keep(row))


def parallel_rows(path: Path, workers: int, keep: Callable[[Row], bool] | None = None,
                  errors: list[RowError] | None = None) -> tuple[Summary | None, bytes]:
    out = io.BytesIO()
    got = validate_in_parallel(path, Validator(Rules()), file=path.name, workers=workers,
                               on_error=errors.append if errors is not None else None,
                               rows_to=out, keep_row=keep)
    return got, out.getvalue()


def odd_numbers(row: Row) -> bool:
    return int(row.msisdn[-1]) % 2 == 1


@pytest.mark.parametrize("workers", [2, 3, 5])
@pytest.mark.parametrize("keep", [None, odd_numbers])
def test_the_slices_rows_join_to_the_single_passs_rows_byte_for_byte(
    tmp_path: Path, workers: int, keep: Callable[[Row], bool] | None
) -> None:
    path = tmp_path / "c.csv"
    path.write_text(campaign(3000, seed=10 + workers), encoding="utf-8")
    errors_single: list[RowError] = []
    expected, rows_single = single_rows(path, keep, errors_single)
    errors_parallel: list[RowError] = []
    got, rows_parallel = parallel_rows(path, workers, keep, errors_parallel)
    assert got is not None and got.as_dict() == expected.as_dict()
    assert rows_parallel == rows_single
    assert errors_parallel == errors_single
    assert expected.duplicates > 10 and rows_single.count(b"\r\n") > 150
    assert not list(tmp_path.glob(".rows-*"))  # the slices' files are gone


@pytest.mark.parametrize("seed", range(6))
def test_rows_with_quoted_line_breaks_are_joined_whole(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "c.csv"
    path.write_text(campaign(2000, seed=seed, multiline=True), encoding="utf-8")
    expected, rows_single = single_rows(path)
    assert b'"two\nlines"' in rows_single
    taken = 0
    for workers in (2, 3, 4):
        got, rows_parallel = parallel_rows(path, workers)
        if got is None:  # a cut inside quotes: the single pass, nothing written
            assert rows_parallel == b""
            continue
        taken += 1
        assert got.as_dict() == expected.as_dict()
        assert rows_parallel == rows_single
    assert taken  # at least one way of cutting avoided the quotes


def test_a_message_that_repeats_across_slices_is_skipped_in_each(tmp_path: Path) -> None:
    # One number in every slice, several times, with messages over two lines between.
    path = tmp_path / "c.csv"
    lines = ["IDREMOTE;MSISDN;OADC;MSG"]
    for i in range(4000):
        number = "+33612345678" if i % 97 == 0 else f"+336{20000000 + i:08d}"
        message = f'"line {i}\r\nnext; ""q"""' if i % 89 == 0 else f"plain {i}"
        lines.append(f"R{i};{number};Shop;{message}")
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    expected, rows_single = single_rows(path)
    assert expected.duplicates == len(range(0, 4000, 97)) - 1
    taken = 0
    for workers in (2, 3, 4, 5):
        got, rows_parallel = parallel_rows(path, workers)
        if got is not None:  # else a cut inside quotes: the single pass decides
            taken += 1
            assert got.as_dict() == expected.as_dict()
            assert rows_parallel == rows_single
    assert taken >= 2


def test_nothing_is_written_when_the_single_pass_must_decide(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes(campaign(2000, seed=1).encode("utf-8") + "z;+33612345670;S;é\r\n".encode(
        "cp1252"))
    out = io.BytesIO()
    assert validate_in_parallel(path, Validator(Rules()), file="c.csv", workers=2,
                                rows_to=out) is None
    assert out.getvalue() == b""
    assert not list(tmp_path.glob(".rows-*"))


def test_no_scratch_folder_means_the_single_pass(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text(campaign(2000, seed=4), encoding="utf-8")
    out = io.BytesIO()
    assert validate_in_parallel(path, Validator(Rules()), file="c.csv", workers=2,
                                rows_to=out, scratch=tmp_path / "missing") is None
    assert out.getvalue() == b""


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_the_join_skips_whole_records_over_several_lines(
    monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(parallel, "CHUNK", chunk)  # blocks cut lines anywhere
    texts = ["one", "two\nlines; \"x\"", "three", "4\nx\ny", "five", "six;", "7\n"]
    rows = [Row(i, f"R{i}", f"+3361234567{i}", "S", text, 1) for i, text in enumerate(texts)]
    records = [upload_bytes([row]) for row in rows]
    out = io.BytesIO()
    writer = parallel._RowsWriter(out)
    for row in rows:
        writer.write(row)
    writer.flush()
    assert writer.long == [(1, 1), (3, 2), (6, 1)]
    for skip in ([0], [1], [3], [1, 3], [0, 2, 4], [4], [6], [1, 3, 5, 6]):
        source, joined = io.BytesIO(out.getvalue()), io.BytesIO()
        parallel._copy_without(source, joined, parallel._lines(skip, writer.long))
        joined.write(source.read())
        assert joined.getvalue() == b"".join(r for i, r in enumerate(records) if i not in skip)


def test_places_account_for_rows_left_out() -> None:
    # Valid rows 0..9; 2 and 5 left out of the file; 3, 5 and 7 taken off as duplicates.
    assert parallel._places([3, 5, 7], [2, 5]) == [2, 5]
    assert parallel._places([3, 7], []) == [3, 7]


@pytest.mark.parametrize("flush_rows", [1, 7, 8192])
def test_the_slices_writer_writes_what_the_upload_writer_writes(
    monkeypatch: pytest.MonkeyPatch, flush_rows: int
) -> None:
    monkeypatch.setattr(parallel, "FLUSH_ROWS", flush_rows)
    texts = ["plain", "a;b", 'say "hi"', "two\nlines", "cr\ronly", "crlf\r\nx", "", " lead ",
             "Fête à Noël €", "🎄", '";"', "x" * 1000, "end;", '"', '""']
    senders = ("Shop", "", "a;b", 'S"x', "S\n")  # the last three never pass the rules
    rows = [Row(i, f"R{i}", f"+336123456{i:02d}", oadc, text, 1)
            for i, (text, oadc) in enumerate((t, o) for t in texts for o in senders)]
    out = io.BytesIO()
    writer = parallel._RowsWriter(out)
    for row in rows:
        writer.write(row)
    writer.flush()
    assert out.getvalue() == upload_bytes(rows)
