"""The reader: real exports in, records or one clear InputError out."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sftpd_agent.errors import InputError
from sftpd_agent.reader import (
    ENCODINGS,
    MAX_LINE,
    MAX_RECORD_LINES,
    WrongEncoding,
    is_header,
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
