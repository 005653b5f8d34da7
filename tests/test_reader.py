"""The reader: real exports in, records or one clear InputError out."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sftpd_agent.errors import InputError
from sftpd_agent.rules import campaign_file as reader
from sftpd_agent.rules.campaign_file import (
    ENCODINGS,
    MAX_LINE,
    MAX_RECORD_LINES,
    WrongEncoding,
    is_header,
    quoted_record,
    read_lines,
    read_records,
)


def records(data: bytes, encoding: str = "utf-8-sig") -> list[tuple[int, list[str]]]:
    return list(read_records(io.BytesIO(data), encoding))


def test_lf_crlf_and_cr_line_ends_give_the_same_records() -> None:
    rows = ["a;+33612345678;S;un", "b;+33612345679;S;deux"]
    expected = [(1, rows[0].split(";")), (2, rows[1].split(";"))]
    for end in ("\n", "\r\n", "\r"):
        assert records(end.join(rows).encode() + end.encode()) == expected
    assert records("\n".join(rows).encode()) == expected  # no final line end


def test_bom_is_dropped_and_blank_lines_skipped_with_true_line_numbers() -> None:
    data = "\ufeffa;1;S;x\r\n\r\n   \r\nb;2;S;y\r\n".encode()
    assert records(data) == [(1, ["a", "1", "S", "x"]), (4, ["b", "2", "S", "y"])]


def test_quoted_fields_follow_rfc4180() -> None:
    data = b'a;1;S;"un ; deux ""trois"""\nb;2;S;"ligne\nsuite"\nc;3;S;fin\n'
    assert records(data) == [
        (1, ["a", "1", "S", 'un ; deux "trois"']),
        (2, ["b", "2", "S", "ligne\nsuite"]),
        (4, ["c", "3", "S", "fin"]),
    ]


def test_cp1252_bytes_are_not_utf8() -> None:
    data = "a;1;S;Crème brûlée à 5 €\r\n".encode("cp1252")
    with pytest.raises(WrongEncoding):
        records(data)
    assert records(data, "cp1252") == [(1, ["a", "1", "S", "Crème brûlée à 5 €"])]


def test_nul_byte_is_refused_with_its_line() -> None:
    with pytest.raises(InputError) as caught:
        records(b"a;1;S;x\nb;2;S;y\x00z\n")
    assert caught.value.line == 2
    assert "NUL" in caught.value.reason


def test_unclosed_quote_does_not_swallow_the_rest_of_the_file() -> None:
    body = b'a;1;S;"never closed\n' + b"".join(
        b"r%d;+336123456%02d;S;text\n" % (i, i) for i in range(50)
    )
    with pytest.raises(InputError) as caught:
        records(body)
    assert caught.value.line == 1
    assert "quote" in caught.value.reason


def test_unclosed_quote_at_end_of_file_is_refused() -> None:
    with pytest.raises(InputError) as caught:
        records(b'a;1;S;ok\nb;2;S;"open\nmore\n')
    assert caught.value.line == 2


def test_a_stray_quote_pair_far_apart_is_refused_not_merged() -> None:
    lines = [b"a;1;S;\"opens here\n"] + [b"x;2;S;row\n"] * (MAX_RECORD_LINES + 3)
    lines.append(b'y;3;S;closes"\n')
    with pytest.raises(InputError) as caught:
        records(b"".join(lines))
    assert caught.value.line == 1


def test_line_over_the_maximum_is_refused() -> None:
    with pytest.raises(InputError) as caught:
        records(b"a;1;S;ok\nb;2;S;" + b"x" * (MAX_LINE + 10) + b"\n")
    assert caught.value.line == 2
    assert "longer" in caught.value.reason


def test_header_detection() -> None:
    assert is_header(["IDREMOTE", "MSISDN", "OADC", "MSG"])
    assert is_header(["id", "téléphone", "expéditeur", "message"])
    assert not is_header(["A1", "+33612345678", "S", "x"])
    assert not is_header(["A1", "0612345678", "S", "x"])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_raise_only_our_own_error(data: bytes) -> None:
    for encoding in ENCODINGS:
        try:
            for line, fields in read_records(io.BytesIO(data), encoding):
                assert line >= 1
                assert isinstance(fields, list)
        except InputError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                                         blacklist_characters="\x00\r\n"),
                                  max_size=20), min_size=4, max_size=4), max_size=20))
def test_written_csv_reads_back(rows: list[list[str]]) -> None:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=";", lineterminator="\r\n").writerows(rows)
    got = [fields for _, fields in records(buffer.getvalue().encode())]
    assert got == rows


def test_a_long_line_inside_a_quoted_field_is_read_as_part_of_it() -> None:
    long = "x" * (MAX_LINE + 10)
    data = f'a;1;S;"start\n{long}\nend"\nb;2;S;ok\n'.encode()
    assert records(data) == [
        (1, ["a", "1", "S", f"start\n{long}\nend"]), (4, ["b", "2", "S", "ok"])]


def test_the_line_limit_counts_the_line_end() -> None:
    exactly = "x" * (MAX_LINE - 1)  # with its line end: MAX_LINE characters
    assert records(f"{exactly}\n".encode()) == [(1, [exactly])]
    assert records(f"{exactly}x".encode()) == [(1, [exactly + "x"])]  # the last line has none
    with pytest.raises(InputError) as caught:
        records(f"ok\n{exactly}x\n".encode())
    assert caught.value.line == 2


def test_nul_byte_line_counts_every_kind_of_line_end() -> None:
    with pytest.raises(InputError) as caught:
        records(b"a;1;S;x\rb;2;S;y\r\nc;3;S;\x00\r")
    assert caught.value.line == 3


def test_a_bom_is_dropped_only_at_the_start_of_the_file() -> None:
    data = b"\xef\xbb\xbfa\n\xef\xbb\xbfb\n"
    assert list(read_lines(io.BytesIO(data), "utf-8-sig")) == ["a", "\ufeffb"]
    assert list(read_lines(io.BytesIO(data[3:]), "utf-8-sig", at_start=False)) == [
        "a", "\ufeffb"]
    assert next(read_lines(io.BytesIO(data), "utf-8-sig", at_start=False)) == "\ufeffa"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a;1;S;x", "", "   ", '"q;x"', 'b;2;S;"two', 'lines";z', "é€",
                                 "\x01", '""']), max_size=40),
       st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=1),
       st.sampled_from([1, 2, 3, 7, 64]))
def test_any_block_size_reads_the_same(parts: list[str], ends: list[str], chunk: int) -> None:
    """Blocks are cut at line ends (a CRLF split between two blocks is one line end)."""
    data = "".join(part + ends[i % len(ends)] for i, part in enumerate(parts)).encode()

    def outcome() -> object:
        try:
            return records(data)
        except InputError as exc:
            return (exc.line, exc.reason)

    expected = outcome()
    original = reader.CHUNK
    try:
        reader.CHUNK = chunk
        assert outcome() == expected
    finally:
        reader.CHUNK = original


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet=st.sampled_from(list(';"ab é\t')), max_size=24))
def test_quoted_record_reads_one_line_as_csv_does(line: str) -> None:
    """The one-line shape quoted_record reads itself agrees with csv, errors included."""
    if '"' not in line:
        return
    try:
        expected: object = next(csv.reader([line + "\n"], delimiter=";", strict=True)), 0
    except csv.Error:
        expected = "error"
    try:
        got: object = quoted_record(line, iter([]), 1)
    except InputError:
        got = "error"
    assert got == expected
