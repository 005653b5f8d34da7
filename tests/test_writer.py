"""The uploaded form, byte for byte."""

from __future__ import annotations

import io

from sftpd_agent.rules.campaign_file import read_records
from sftpd_agent.rules.upload_file import upload_bytes
from sftpd_agent.rules.validation import Row


def row(text: str, n: int = 0) -> Row:
    return Row(n + 1, f"ID{n}", f"+3361234567{n}", "Shop", text, 1)


def test_plain_rows_are_unquoted_utf8_crlf_without_bom() -> None:
    data = upload_bytes([row("Fete à 5 €"), row("second", 1)])
    assert data == "ID0;+33612345670;Shop;Fete à 5 €\r\nID1;+33612345671;Shop;second\r\n".encode()
    assert not data.startswith(b"\xef\xbb\xbf")


def test_fields_with_delimiter_quote_or_line_break_are_quoted_rfc4180() -> None:
    data = upload_bytes([row('un ; deux "trois"'), row("ligne\nsuite", 1)])
    assert data == (
        b'ID0;+33612345670;Shop;"un ; deux ""trois"""\r\n'
        b'ID1;+33612345671;Shop;"ligne\nsuite"\r\n'
    )


def test_what_is_written_reads_back_identically() -> None:
    rows = [row(text, i) for i, text in enumerate(
        ["a;b", 'q"q', "x\ny", "  spaces  ", "€[]{}", "plain"])]
    back = [fields for _, fields in read_records(io.BytesIO(upload_bytes(rows)), "utf-8-sig")]
    assert back == [[r.idremote, r.msisdn, r.oadc, r.text] for r in rows]
