"""Contact exports as CRMs write them, rendered to provider rows and checked as such."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sftpd_agent.rules.campaign_file import read_records
from sftpd_agent.rules.contacts import (
    ContactRowError,
    ContactsError,
    ContactsFormat,
    LineMap,
    Rendered,
    find_phone,
    looks_like_contacts,
    phone_rank,
    read_contacts,
    render,
    render_part,
    sniff,
    split,
    write_provider_rows,
)
from sftpd_agent.rules.template import Template
from sftpd_agent.rules.upload_file import upload_bytes
from sftpd_agent.rules.validation import Row, RowError, Rules, Validator


def write(tmp_path: Path, text: str, encoding: str = "utf-8", name: str = "c.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def provider_file(path: Path, fmt: ContactsFormat, template: str, sender: str = "",
                  ) -> tuple[bytes, LineMap, list[RowError]]:
    errors: list[RowError] = []
    out = io.BytesIO()
    lines = write_provider_rows(
        split(render(path, fmt, Template.parse(template, fmt.headers), sender=sender),
              errors.append), out)
    return out.getvalue(), lines, errors


# -- Phone headers ---------------------------------------------------------------------------

PHONE_HEADERS = ["Mobile", "mobile", "MOBILE", "Portable", "Téléphone", "Telephone", "TÉLÉPHONE",
                 "Tel", "Tél", "Tél.", "tel.", "Phone", "MSISDN", "msisdn", "Numéro", "Numero",
                 "GSM", "Cellulaire", "Mobile phone", "Mobile Phone", "Téléphone mobile",
                 "Téléphone portable", "Tel. portable", "Tél portable", "N° mobile",
                 "N° de mobile", "Nº mobile", "Numéro de mobile", "Numéro de téléphone",
                 "mobile_phone", "Phone-Number", "Cell phone", "Portable perso", "Téléphone 1",
                 "  Mobile  "]


@pytest.mark.parametrize("header", PHONE_HEADERS)
def test_each_phone_header_alias_is_found(tmp_path: Path, header: str) -> None:
    path = write(tmp_path, f"Prénom;{header};Ville\r\nZoé;0612345678;Lyon\r\n")
    fmt = sniff(path)
    assert fmt.phone == 1
    assert fmt.phone_header == header.strip()


@pytest.mark.parametrize("header", ["Numéro client", "Fax", "Téléphone conseiller", "Nom",
                                    "Indicatif pays", "Date opt-in SMS", "Code postal"])
def test_headers_that_are_not_a_contact_phone(header: str) -> None:
    assert phone_rank(header) is None


def test_mobile_wins_over_a_landline_and_a_plain_phone() -> None:
    assert find_phone(("Nom", "Téléphone", "Mobile")) == 2
    assert find_phone(("Nom", "Tél. fixe", "Téléphone")) == 2
    assert find_phone(("Téléphone mobile", "Téléphone fixe")) == 0
    assert find_phone(("Tel domicile", "Nom")) == 0  # a landline, when it is all there is


def test_crm_export_with_landline_and_mobile_takes_the_mobile(tmp_path: Path) -> None:
    path = write(tmp_path, "Nom,Téléphone,Téléphone portable,Email\n"
                           "Martin,0123456789,0612345678,m@example.net\n")
    fmt = sniff(path)
    assert (fmt.delimiter, fmt.phone) == (",", 2)


def test_ambiguous_phone_columns_are_an_error_listing_them(tmp_path: Path) -> None:
    path = write(tmp_path, "Nom;Mobile;Portable\r\nA;0612345678;0612345679\r\n")
    with pytest.raises(ContactsError) as caught:
        sniff(path)
    message = str(caught.value)
    assert message.startswith("c.csv: several columns could hold the phone numbers: "
                              "'Mobile', 'Portable'")
    assert "[columns] phone" in message
    assert sniff(path, phone="portable").phone == 2  # named: no question


def test_no_phone_column_is_an_error_with_the_headers(tmp_path: Path) -> None:
    path = write(tmp_path, "Prénom;Nom;Ville\r\nZoé;Martin;Lyon\r\n")
    with pytest.raises(ContactsError) as caught:
        sniff(path)
    assert str(caught.value) == ("c.csv: no column of phone numbers (headers: Prénom, Nom, Ville);"
                                 " name it with [columns] phone = ...")


def test_a_file_without_header_row_is_told_so(tmp_path: Path) -> None:
    path = write(tmp_path, "Zoé;Martin;06 12 34 56 78\r\nLéa;Petit;0612345679\r\n")
    with pytest.raises(ContactsError, match="looks like a contact, not a header row"):
        sniff(path)


def test_named_columns_that_do_not_exist(tmp_path: Path) -> None:
    path = write(tmp_path, "Nom;Mobile;Client ID\r\nA;0612345678;7\r\n")
    with pytest.raises(ContactsError, match=r"\[columns\] phone = 'GSM': no such column"):
        sniff(path, phone="GSM")
    with pytest.raises(ContactsError, match=r"\[columns\] id = 'Ref': no such column"):
        sniff(path, id_column="Ref")
    assert sniff(path, id_column="client id").id == 2


def test_id_column_found_by_its_header_or_absent(tmp_path: Path) -> None:
    with_id = write(tmp_path, "Nom;Mobile;Client ID\r\nA;0612345678;7\r\n", name="a.csv")
    without = write(tmp_path, "Nom;Mobile\r\nA;0612345678\r\n", name="b.csv")
    assert sniff(with_id).id == 2
    assert sniff(with_id).id_header == "Client ID"
    assert sniff(without).id is None


# -- Delimiters and encodings ----------------------------------------------------------------


@pytest.mark.parametrize("delimiter", [";", ",", "\t"])
def test_each_delimiter_is_detected(tmp_path: Path, delimiter: str) -> None:
    rows = [["Prénom", "Nom", "Mobile", "Ville"], ["Zoé", "Martin", "0612345678", "Lyon"],
            ["Léa", "Petit", "0612345679", "Caen"]]
    path = write(tmp_path, "".join(delimiter.join(row) + "\r\n" for row in rows))
    fmt = sniff(path)
    assert fmt.delimiter == delimiter
    assert fmt.headers == ("Prénom", "Nom", "Mobile", "Ville")
    assert [c.values for c in read_contacts(path, fmt)] == rows[1:]


def test_comma_inside_values_does_not_fool_a_semicolon_file(tmp_path: Path) -> None:
    path = write(tmp_path, "Nom;Mobile;Adresse\r\n"
                           "Martin;0612345678;1, rue de la Paix, Paris\r\n"
                           "Petit;0612345679;2, place du Marché\r\n")
    assert sniff(path).delimiter == ";"


def test_stated_delimiter_wins(tmp_path: Path) -> None:
    path = write(tmp_path, "Mobile,Nom;Ville\r\n0612345678,A;Lyon\r\n")
    assert sniff(path, delimiter=",").headers == ("Mobile", "Nom;Ville")
    assert sniff(path, delimiter="tab", phone="Mobile,Nom;Ville").delimiter == "\t"
    with pytest.raises(ContactsError, match=r"delimiter '\|' is not one of"):
        sniff(path, delimiter="|")


def test_cp1252_export_with_accents_in_headers_and_values(tmp_path: Path) -> None:
    text = "Prénom;Nom;Téléphone;Ville\r\nFrançois;Noël;06 12 34 56 78;Besançon\r\n"
    path = write(tmp_path, text, "cp1252")
    fmt = sniff(path)
    assert fmt.encoding == "cp1252"
    assert fmt.headers == ("Prénom", "Nom", "Téléphone", "Ville")
    assert fmt.phone == 2
    data, _, errors = provider_file(path, fmt, "Bonjour {Prénom}, à {Ville} !")
    assert errors == []
    assert data.decode("utf-8") == ("IDREMOTE;MSISDN;OADC;MSG\r\n"
                                    "L2;06 12 34 56 78;;Bonjour François, à Besançon !\r\n")


def test_cp1252_accents_only_after_the_first_block(tmp_path: Path) -> None:
    # The first megabyte is plain ASCII: the encoding is decided further on.
    rows = "".join(f"Nom{i};06123{i % 100000:05d};Paris\r\n" for i in range(40_000))
    path = write(tmp_path, "Nom;Mobile;Ville\r\n" + rows + "Zoé;0612345678;Besançon\r\n",
                 "cp1252")
    assert path.stat().st_size > 1 << 20
    fmt = sniff(path)
    assert fmt.encoding == "cp1252"
    last = list(read_contacts(path, fmt))[-1]
    assert last.values == ["Zoé", "0612345678", "Besançon"]
    assert last.line == 40_002


def test_utf8_with_and_without_bom(tmp_path: Path) -> None:
    text = "Prénom;Mobile\r\nZoé;0612345678\r\n"
    bom = write(tmp_path, "\ufeff" + text, name="bom.csv")
    plain = write(tmp_path, text, name="plain.csv")
    assert sniff(bom).encoding == "utf-8-sig"
    assert sniff(plain).encoding == "utf-8"
    for path in (bom, plain):
        fmt = sniff(path)
        assert fmt.headers == ("Prénom", "Mobile")
        assert [c.values for c in read_contacts(path, fmt)] == [["Zoé", "0612345678"]]


def test_empty_binary_and_undecodable_files(tmp_path: Path) -> None:
    with pytest.raises(ContactsError, match="the file is empty"):
        sniff(write(tmp_path, "\r\n  \r\n", name="e.csv"))
    with pytest.raises(ContactsError, match="NUL byte"):
        sniff(write(tmp_path, "Nom;Mobile\r\nA\0;06\r\n", name="n.csv"))
    bad = tmp_path / "b.csv"
    bad.write_bytes(b"Nom;Mobile\r\n\x81\x8d;0612345678\r\n")  # undefined in CP1252
    with pytest.raises(ContactsError, match="0x81 is neither UTF-8 nor CP1252") as caught:
        sniff(bad)
    assert caught.value.line == 2
    with pytest.raises(ContactsError, match="cannot be read"):
        sniff(tmp_path / "absent.csv")


# -- Reading rows ----------------------------------------------------------------------------


def test_quoted_values_with_delimiter_quotes_and_newlines_keep_their_first_line(
        tmp_path: Path) -> None:
    path = write(tmp_path,
                 'Nom;Mobile;Note\r\n'
                 '"Martin; ""Jo""";0612345678;"ligne 1\r\nligne 2\nligne 3"\r\n'
                 'Petit;0612345679;fin\r\n')
    contacts = list(read_contacts(path, sniff(path)))
    assert [(c.line, c.values) for c in contacts] == [
        (2, ['Martin; "Jo"', "0612345678", "ligne 1\r\nligne 2\nligne 3"]),
        (5, ["Petit", "0612345679", "fin"]),
    ]


def test_blank_rows_skipped_short_rows_padded_extra_values_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, "\r\nNom;Mobile;Ville;\r\nA;0612345678\r\n\r\n;;;\r\n"
                           "B;0612345679;Lyon;;x\r\n")
    fmt = sniff(path)
    assert fmt.headers == ("Nom", "Mobile", "Ville")  # the trailing delimiter dropped
    assert fmt.header_line == 2
    assert [(c.line, c.values) for c in read_contacts(path, fmt)] == [
        (3, ["A", "0612345678", ""]), (6, ["B", "0612345679", "Lyon"])]


def test_a_quote_never_closed_is_an_error_at_its_line(tmp_path: Path) -> None:
    rows = "".join(f"N{i};06123456{i:02d}\r\n" for i in range(20))
    path = write(tmp_path, 'Nom;Mobile\r\nA;0612345678\r\n"B;0612345679\r\n' + rows)
    with pytest.raises(ContactsError) as caught:
        list(read_contacts(path, sniff(path)))
    assert caught.value.line == 3
    assert "quote" in caught.value.reason


def test_cp1252_bytes_in_a_utf8_file_after_the_start(tmp_path: Path) -> None:
    # The first block is UTF-8 with accents: the file is read as UTF-8, and a CP1252 byte
    # a megabyte later is an error at its line, not a silent mix of encodings.
    path = tmp_path / "mixed.csv"
    start = "".join(f"Zoé{i};06123{i % 100000:05d}\r\n" for i in range(60_000))
    path.write_bytes(("Prénom;Mobile\r\n" + start).encode()
                     + "Léa;0612345679\r\n".encode("cp1252"))
    fmt = sniff(path)
    assert fmt.encoding == "utf-8"
    with pytest.raises(ContactsError, match="0xE9 is not UTF-8") as caught:
        list(read_contacts(path, fmt))
    assert caught.value.line == 60_002


# -- Rendering -------------------------------------------------------------------------------


def test_template_value_missing_names_the_line_and_header(tmp_path: Path) -> None:
    path = write(tmp_path, "Prénom;Mobile;Ville\r\nZoé;0612345678;\r\n\r\n"
                           "Léa;0612345679;Lyon\r\n")
    fmt = sniff(path)
    items = list(render(path, fmt, Template.parse("{Prénom} à {Ville}", fmt.headers),
                        sender="SHOP"))
    assert items == [
        ContactRowError(2, "template_value_missing", "Ville", "",
                        "empty value for {Ville} and no default", "", "0612345678"),
        Rendered(4, "L4", "0612345679", "SHOP", "Léa à Lyon", ""),
    ]


def test_template_value_missing_keeps_the_crm_id_and_phone(tmp_path: Path) -> None:
    path = write(tmp_path, "Nom;Mobile;Client ID\r\n;06 12 34 56 78; C9 \r\n")
    fmt = sniff(path)
    (item,) = render(path, fmt, Template.parse("Bonjour {Nom}", fmt.headers))
    assert isinstance(item, ContactRowError)
    assert (item.line, item.field, item.crm_id, item.phone) == (2, "Nom", "C9", "06 12 34 56 78")
    assert item.as_csv_row() == ["2", "template_value_missing", "Nom", "",
                                 "empty value for {Nom} and no default"]


def test_generated_idremote_is_stable_across_runs(tmp_path: Path) -> None:
    path = write(tmp_path, "Nom;Mobile\r\nA;0612345678\r\n\r\nB;0612345679\r\n")
    fmt = sniff(path)
    template = Template.parse("Bonjour {Nom}", fmt.headers)
    first = [item.idremote for item in render(path, fmt, template)
             if isinstance(item, Rendered)]
    second = [item.idremote for item in render(path, sniff(path), template)
              if isinstance(item, Rendered)]
    assert first == second == ["L2", "L4"]


def test_crm_ids_used_when_valid_and_unique_else_generated_without_collision(
        tmp_path: Path) -> None:
    path = write(tmp_path,
                 "Nom;Mobile;Client ID\r\n"
                 "A;0612345601;C1\r\n"       # 2: its own id
                 "B;0612345602;C1\r\n"       # 3: taken -> L3
                 "C;0612345603;L3\r\n"       # 4: looks generated, taken -> L4
                 "D;0612345604;L5\r\n"       # 5: L5 is free: kept
                 "E;0612345605;C-7\r\n"      # 6: not letters/digits -> L6
                 "F;0612345606;\r\n"         # 7: empty -> L7
                 "G;0612345607;L4\r\n"       # 8: taken by the generated one -> L8
                 "H;0612345608;L9X1\r\n"     # 9: kept
                 "I;0612345609;x\r\n")       # 10: kept
    fmt = sniff(path)
    assert fmt.id == 2
    template = Template.parse("{Nom}", fmt.headers)
    rendered = [item for item in render(path, fmt, template) if isinstance(item, Rendered)]
    ids = [item.idremote for item in rendered]
    assert ids == ["C1", "L3", "L4", "L5", "L6", "L7", "L8", "L9X1", "x"]
    assert [item.crm_id for item in rendered] == ["C1", "C1", "L3", "L5", "C-7", "", "L4",
                                                  "L9X1", "x"]
    assert len(set(ids)) == len(ids)


def test_generated_id_takes_a_suffix_when_a_crm_id_holds_it(tmp_path: Path) -> None:
    path = write(tmp_path, "Nom;Mobile;ID\r\nA;0612345601;L4\r\nB;0612345602;L4X1\r\n"
                           "C;0612345603;L4\r\nD;0612345604;L3\r\n")
    fmt = sniff(path)
    ids = [item.idremote for item in render(path, fmt, Template.parse("x", fmt.headers))
           if isinstance(item, Rendered)]
    assert ids == ["L4", "L4X1", "L4X2", "L3"]


def test_a_value_that_looks_like_a_placeholder_is_written_literally(tmp_path: Path) -> None:
    path = write(tmp_path, "Prénom;Mobile;Ville\r\n{Ville};0612345678;Lyon\r\n")
    data, _, _ = provider_file(path, sniff(path), "Bonjour {Prénom} de {Ville}")
    assert data.decode().splitlines()[1] == "L2;0612345678;;Bonjour {Ville} de Lyon"


# -- Provider rows, validation and the line map ----------------------------------------------


def test_written_rows_are_exactly_what_upload_writer_writes(tmp_path: Path) -> None:
    path = write(tmp_path, 'Nom;Mobile;Note\r\nA;0612345678;"dit ""oui""; puis\nnon"\r\n'
                           "B;0612345679;simple\r\n")
    data, _, _ = provider_file(path, sniff(path), "{Nom}: {Note}", sender="SHOP")
    expected = upload_bytes([Row(0, "IDREMOTE", "MSISDN", "OADC", "MSG", 0),
                             Row(2, "L2", "0612345678", "SHOP", 'A: dit "oui"; puis\nnon', 1),
                             Row(4, "L4", "0612345679", "SHOP", "B: simple", 1)])
    assert data == expected


def test_line_map_and_translated_errors_point_at_the_contacts_file(tmp_path: Path) -> None:
    path = write(tmp_path,
                 "Prénom;Téléphone portable;Note;Client ID\r\n"
                 'Zoé;0612345678;"deux\r\nlignes";C1\r\n'     # 2-3
                 "Léa;12;x;C2\r\n"                              # 4: invalid number
                 'Noé;0612345679;"a\nb\rc";C3\r\n'             # 5-7
                 "Inès;0612345680;;C4\r\n")                     # 8: empty message part
    fmt = sniff(path)
    data, lines, _ = provider_file(path, fmt, "{Prénom} {Note|}", sender="TOOLONGSENDER1")
    assert len(lines) == 4
    physical = data.count(b"\r\n") + data.count(b"\n") + data.count(b"\r") - 2 * data.count(
        b"\r\n")
    assert physical == 1 + 2 + 1 + 3 + 1
    assert [lines.contact_line(n) for n in range(1, 9)] == [1, 2, 2, 4, 5, 5, 5, 8]
    errors: list[RowError] = []
    summary = Validator(Rules()).validate(io.BytesIO(data), file="spool", on_error=errors.append)
    assert summary.header is True  # our own header row, never a contact
    assert summary.rows == 4
    shown = [lines.translate(error, fmt) for error in errors]
    by_code = {(e.code, e.line, e.field) for e in shown}
    assert ("msisdn", 4, "Téléphone portable") in by_code
    assert ("oadc", 2, "sender") in by_code
    assert ("oadc", 5, "sender") in by_code
    assert ("oadc", 8, "sender") in by_code
    assert all(e.value == o.value and e.detail == o.detail for e, o in zip(shown, errors,
                                                                          strict=True))


def test_render_part_writes_what_render_and_write_provider_rows_write(tmp_path: Path) -> None:
    rows = [f"N{i};06123456{i % 100:02d};Ville{i};C{i % 7}\r\n" for i in range(3 * 8192)]
    rows[5] = 'A "x";0612345600;"deux\r\nlignes";C1\r\n'
    rows[9] = "B;0612345601;;C2\r\n"               # template_value_missing
    rows[8200] = 'C;0612345602;"a;b\nc\rd";\r\n'   # quoted, over a flush
    path = write(tmp_path, "Nom;Mobile;Ville;Client ID\r\n" + "".join(rows))
    fmt = sniff(path)
    template = Template.parse('{Nom} "à" {Ville}', fmt.headers)
    errors: list[RowError] = []
    chained = io.BytesIO()
    expected = write_provider_rows(split(render(path, fmt, template, sender="SHOP"),
                                         errors.append), chained)
    fused = io.BytesIO()
    part = render_part(path, fmt, template, fused, sender="SHOP", preview=len(rows))
    lines, items, fused_errors = part.lines, part.first, part.rejected
    assert fused.getvalue() == chained.getvalue()
    assert fused_errors == errors and [e.line for e in errors] == [12]  # row 5 takes 2 lines
    assert items == [item for item in render(path, fmt, template, sender="SHOP")
                     if isinstance(item, Rendered)]
    assert len(lines) == len(expected) == len(items)
    total = len(fused.getvalue().splitlines())  # bytes: CR, LF and CRLF, as the reader counts
    assert [lines.contact_line(n) for n in range(1, total + 2)] == [
        expected.contact_line(n) for n in range(1, total + 2)]
    starts = [start for start, _ in read_records(io.BytesIO(fused.getvalue()), "utf-8")][1:]
    assert [lines.contact_line(start) for start in starts] == [item.line for item in items]


def test_translate_field_names() -> None:
    fmt = ContactsFormat("utf-8", ";", ("Nom", "Mobile", "Ref"), 1, 2)
    lines = LineMap()
    lines.add(7)
    error = RowError(2, "msg_too_long", "MSG", "xx", "6 segments")
    assert lines.translate(error, fmt) == RowError(7, "msg_too_long", "message", "xx",
                                                    "6 segments")
    assert lines.translate(RowError(2, "idremote", "IDREMOTE", "", ""), fmt).field == "Ref"
    no_id = ContactsFormat("utf-8", ";", ("Nom", "Mobile"), 1, None)
    assert lines.translate(RowError(2, "idremote", "IDREMOTE", "", ""), no_id).field == (
        "IDREMOTE (generated)")
    assert lines.translate(RowError(2, "field_count", "row", "", ""), fmt).field == "row"


def test_a_first_contact_without_digits_is_invalid_not_taken_for_a_header(
        tmp_path: Path) -> None:
    path = write(tmp_path, "Nom;Mobile\r\nA;n/a\r\nB;0612345678\r\n")
    fmt = sniff(path)
    data, lines, _ = provider_file(path, fmt, "Bonjour {Nom}")
    errors: list[RowError] = []
    summary = Validator(Rules()).validate(io.BytesIO(data), file="spool", on_error=errors.append)
    assert (summary.rows, summary.valid, summary.invalid) == (2, 1, 1)
    assert [lines.translate(e, fmt).line for e in errors] == [2]


contact_values = st.text(st.characters(blacklist_categories=("Cs", "Cc"),
                                       blacklist_characters="\x00"), max_size=12)
breaks = st.sampled_from(["", "\n", "\r\n", "\r", "\n\r", "\r\r\n"])


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(contact_values, breaks, contact_values), min_size=1, max_size=12))
def test_line_map_matches_a_brute_force_count(tmp_path: Path,
                                              rows: list[tuple[str, str, str]]) -> None:
    items = [Rendered(10 * (i + 1), f"L{i}", "0612345678", "", a + brk + b or "x", "")
             for i, (a, brk, b) in enumerate(rows)]
    out = io.BytesIO()
    lines = write_provider_rows(items, out)
    # Brute force: the provider file reader's own record lines.
    records = list(read_records(io.BytesIO(out.getvalue()), "utf-8"))
    assert len(records) == len(items) + 1
    # (the reader gives a line break inside a quoted value as "\n")
    assert [fields[3] for _, fields in records[1:]] == [
        re.sub(r"\r\n|\r", "\n", item.message) for item in items]
    for (start, _), item in zip(records[1:], items, strict=True):
        assert lines.contact_line(start) == item.line
    total = len(out.getvalue().decode().splitlines())
    for written in range(1, total + 1):
        owner = max((s for s, _ in records if s <= written), default=1)
        expected = 1 if owner == 1 else items[[s for s, _ in records[1:]].index(owner)].line
        assert lines.contact_line(written) == expected


# -- Outbox guess ----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("Prénom;Nom;Mobile;Ville\r\nZoé;Martin;0612345678;Lyon\r\n", True),
    ("Nom,Téléphone portable\nA,0612345678\n", True),
    ("IDREMOTE;MSISDN;OADC;MSG\r\nA1;0612345678;SHOP;Bonjour\r\n", False),
    ("idremote;msisdn;oadc;msg\r\n", False),
    ("A1;0612345678;SHOP;Bonjour\r\n", False),
    ("Nom;Ville\r\nA;Lyon\r\n", False),
    ("", False),
])
def test_looks_like_contacts(tmp_path: Path, text: str, expected: bool) -> None:
    assert looks_like_contacts(write(tmp_path, text)) is expected


def test_looks_like_contacts_never_raises(tmp_path: Path) -> None:
    assert looks_like_contacts(tmp_path / "absent.csv") is False
    assert looks_like_contacts(tmp_path) is False  # a folder
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"Mobile\0;x\r\n")
    assert looks_like_contacts(binary) is False
    cp1252 = write(tmp_path, "Prénom;Téléphone\r\nZoé;0612345678\r\n", "cp1252", "w.csv")
    assert looks_like_contacts(cp1252) is True
