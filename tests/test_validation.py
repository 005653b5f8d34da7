"""The row rules, one code at a time, and the file-level verdicts."""

from __future__ import annotations

import io

import pytest

from sftpd_agent.rules.gsm import Policy, count
from sftpd_agent.rules.validation import Row, RowError, Rules, Summary, Validator

SAMPLE = (
    "VSQR0339;+33787798753;Logement; 4P 79m2 3ème étage Imm ancien 2Chbres Volumes vue "
    "Parfait état http://www.URL.com/fr/ref-VSQR0339 "
)


def run(text: str | bytes, rules: Rules | None = None) -> tuple[Summary, list[Row], list[RowError]]:
    rows: list[Row] = []
    errors: list[RowError] = []
    data = text.encode() if isinstance(text, str) else text
    summary = Validator(rules or Rules()).validate(
        io.BytesIO(data), file="t.csv", on_row=rows.append, on_error=errors.append
    )
    return summary, rows, errors


def codes(text: str, rules: Rules | None = None) -> list[str]:
    return [e.code for e in run(text, rules)[2]]


def test_the_providers_sample_row_is_valid() -> None:
    summary, rows, errors = run(SAMPLE + "\r\n")
    assert errors == []
    assert summary.valid == 1 and summary.segments == 1
    assert rows[0].msisdn == "+33787798753" and rows[0].oadc == "Logement"


@pytest.mark.parametrize(("row", "code", "field"), [
    ("a;+33612345678;S", "field_count", "row"),
    ("a;+33612345678;S;x;extra", "field_count", "row"),
    (";+33612345678;S;x", "idremote", "IDREMOTE"),
    ("id-1;+33612345678;S;x", "idremote", "IDREMOTE"),
    ("é1;+33612345678;S;x", "idremote", "IDREMOTE"),
    ("a" * 41 + ";+33612345678;S;x", "idremote", "IDREMOTE"),
    ("a;+3361234;S;x", "msisdn", "MSISDN"),
    ("a;;S;x", "msisdn", "MSISDN"),
    ("a;hello;S;x", "msisdn", "MSISDN"),
    ("a;+33612345678;TwelveChars1;x", "oadc", "OADC"),
    ("a;+33612345678;Bout ique;x", "oadc", "OADC"),
    ("a;+33612345678;1234567890123456;x", "oadc", "OADC"),
    ("a;+33612345678;S;", "msg_empty", "MSG"),
    ("a;+33612345678;S;   ", "msg_empty", "MSG"),
    ("a;+33612345678;S;Joyeux Noël 🎄", "msg_non_gsm", "MSG"),
    ("a;+33612345678;S;Привет", "msg_non_gsm", "MSG"),
    ("a;+33612345678;S;" + "x" * (5 * 153 + 1), "msg_too_long", "MSG"),
])
def test_each_rule_has_its_code(row: str, code: str, field: str) -> None:
    summary, rows, errors = run(f"ok1;+33612345600;S;fine\n{row}\n")
    assert [(e.code, e.field, e.line) for e in errors] == [(code, field, 2)]
    assert summary.invalid == 1 and summary.valid == 1 and rows[0].line == 1
    assert summary.invalid_by_code[code] == 1


def test_limits_that_are_allowed() -> None:
    ok = [
        "a" * 40 + ";+33612345678;S;x",
        "a;+33612345679;ABCDEFGHIJK;x",       # 11 letters
        "a;+33612345680;123456789012345;x",   # 15 digits
        "a;+33612345681;;x",                  # empty: the default sender
        "a;+33612345682;S;" + "x" * (5 * 153),
    ]
    summary, rows, errors = run("\n".join(ok))
    assert errors == [] and summary.valid == 5
    assert rows[-1].segments == 5


def test_a_row_with_several_faults_reports_each() -> None:
    assert codes("-;123;TooLongSender1;\n") == ["idremote", "msisdn", "oadc", "msg_empty"]


def test_default_sender_fills_an_empty_oadc() -> None:
    _, rows, _ = run("a;+33612345678; ;x\n", Rules(default_sender="Shop"))
    assert rows[0].oadc == "Shop"


def test_max_segments_one() -> None:
    assert codes("a;+33612345678;S;" + "x" * 161 + "\n", Rules(max_segments=1)) == [
        "msg_too_long"]
    assert codes("a;+33612345678;S;" + "x" * 160 + "\n", Rules(max_segments=1)) == []


def test_duplicates_on_the_normalised_number_drop_the_later_row() -> None:
    summary, rows, errors = run(
        "a;+33612345678;S;one\nb;0612345678;S;two\nc;06 12 34 56 78;S;three\nd;+33612345679;S;x\n"
    )
    assert errors == []
    assert [r.idremote for r in rows] == ["a", "d"]
    assert summary.duplicates == 2 and summary.valid == 2 and summary.rows == 4


def test_an_invalid_row_does_not_count_as_seen_for_duplicates() -> None:
    _, rows, _ = run("a;+33612345678;S;🎄\nb;+33612345678;S;ok\n")
    assert [r.idremote for r in rows] == ["b"]


def test_overseas_numbers_get_their_own_country_code() -> None:
    _, rows, _ = run("a;0692123456;S;x\nb;0696123456;S;x\nc;0694201234;S;x\n")
    assert [r.msisdn[:4] for r in rows] == ["+262", "+596", "+594"]


@pytest.mark.parametrize(("policy", "expected_codes", "text"), [
    (Policy.TRANSLITERATE, [], "Fête à Noël : crème brûlée"),
    (Policy.REJECT, ["msg_non_gsm"], "Fête à Noël : crème brûlée"),
    (Policy.UNICODE, [], "Fête à Noël 🎄"),
    (Policy.TRANSLITERATE, ["msg_non_gsm"], "Fête à Noël 🎄"),
])
def test_non_gsm_policies(policy: Policy, expected_codes: list[str], text: str) -> None:
    assert codes(f"a;+33612345678;S;{text}\n", Rules(policy=policy)) == expected_codes


def test_transliteration_is_what_gets_sent_and_is_counted() -> None:
    summary, rows, _ = run("a;+33612345678;S;Fête\nb;+33612345679;S;Fête\n")
    assert rows[0].text == "Fete"
    assert summary.replaced["ê->e"] == 2


def test_header_row_is_skipped_not_counted() -> None:
    summary, _, errors = run("IDREMOTE;MSISDN;OADC;MSG\na;+33612345678;S;x\n")
    assert summary.header and summary.rows == 1 and errors == []


def test_cp1252_export_is_read_as_cp1252() -> None:
    data = "a;+33612345678;S;Crème à 5 €\r\n".encode("cp1252")
    summary, rows, _ = run(data)
    assert summary.encoding == "cp1252"
    assert rows[0].text == "Crème à 5 €"


def test_bytes_neither_utf8_nor_cp1252_make_the_file_unreadable() -> None:
    summary, _, _ = run(b"a;+33612345678;S;ok\nb;+33612345679;S;\x81\x8d\n")
    assert summary.unreadable is not None
    assert "line 2" in summary.unreadable and "0x81" in summary.unreadable
    assert summary.hold_reason(Rules()) is not None


def test_control_characters_mean_binary_data() -> None:
    summary, _, _ = run(b"a;+33612345678;S;ok\nb;+3361\x02345679;S;x\n")
    assert summary.unreadable is not None
    assert summary.unreadable.startswith("line 2: binary data")


def test_hold_reasons() -> None:
    rules = Rules(max_invalid_percent=5.0)
    good = "".join(f"r{i};+336123456{i:02d};S;x\n" for i in range(20))
    assert run(good + "bad;123;S;x\n")[0].hold_reason(rules) is None  # 1/21 = 4.8%
    assert run(good[:-0] + "b1;1;S;x\nb2;2;S;x\n")[0].hold_reason(rules) is not None  # 9.1%
    assert run("")[0].hold_reason(rules) == "no rows"
    assert run("a;1;S;x\n")[0].hold_reason(rules) == "no row survives validation"


def test_message_cache_gives_the_same_verdict_for_repeated_templates() -> None:
    body = "".join(f"r{i};+336123456{i:02d};S;Fête {i % 3}\n" for i in range(30))
    summary, rows, _ = run(body)
    assert {r.text for r in rows} == {"Fete 0", "Fete 1", "Fete 2"}
    assert summary.replaced["ê->e"] == 30


def test_too_long_is_reported_beside_other_faults() -> None:
    long_basic = "x" * 800
    long_accented = "ê" * 800
    assert codes(f"a;123;S;{long_basic}\n") == ["msisdn", "msg_too_long"]
    assert codes(f"a;123;S;{long_accented}\n") == ["msisdn", "msg_too_long"]


def test_a_header_is_only_the_first_record() -> None:
    summary, _, errors = run("IDREMOTE;MSISDN;OADC;MSG\nx;y;z\nID;NUMBER;FROM;TEXT\n")
    assert summary.header and summary.rows == 2 and summary.invalid == 2
    assert [(e.line, e.code) for e in errors] == [(2, "field_count"), (3, "msisdn")]


def test_repeated_special_characters_in_other_texts_get_the_same_verdicts() -> None:
    texts = ["Fête 1", "Fête à Noël 22", "x" * 200 + "€[]", "€" + "x" * 152 + "€" + "y" * 200,
             "Fête", "ça 🎄", "ça va"]
    body = "".join(f"r{i};+336123456{i:02d};S;{t}\n" for i, t in enumerate(texts * 2))
    for policy in Policy:
        rules = Rules(policy=policy)
        _, rows, errors = run(body, rules)
        expected = [count(t, policy) for t in texts * 2]
        assert [r.text for r in rows] == [c.text for c in expected if not c.unsendable]
        assert [r.segments for r in rows] == [c.segments for c in expected if not c.unsendable]
        assert len(errors) == sum(1 for c in expected if c.unsendable)


def suppressed_run(text: str, suppressed: list[str]) -> Summary:
    return Validator(Rules(), suppressed=suppressed).validate(
        io.BytesIO(text.encode()), file="t.csv")


def test_suppressed_counts_valid_rows_whose_number_is_on_the_list() -> None:
    body = (
        "a;+33612345678;S;one\n"       # suppressed
        "b;0612345679;S;two\n"         # suppressed, written nationally
        "c;+33612345680;S;three\n"     # not on the list
        "d;+33612345678;S;again\n"     # a duplicate: dropped as such, not counted twice
        "e;06 12 34 56 78;S;again\n"   # a duplicate in another shape
        "f;+33612345681;S;🎄\n"         # on the list but invalid
        "g;0692123456;S;overseas\n"    # suppressed, +262
    )
    listed = ["+33612345678", "+33612345679", "+33612345681", "+262692123456", "0612345680",
              "+0612345680", "not a number", ""]
    summary = suppressed_run(body, listed)
    assert (summary.valid, summary.duplicates, summary.invalid) == (4, 2, 1)
    assert summary.suppressed == 3
    assert summary.as_dict()["suppressed"] == 3
    keys = list(summary.as_dict())
    assert keys.index("suppressed") == keys.index("duplicates") + 1


def test_without_a_list_there_is_no_suppressed_figure() -> None:
    summary, _, _ = run("a;+33612345678;S;one\n")
    assert summary.suppressed is None and "suppressed" not in summary.as_dict()
    assert suppressed_run("a;+33612345678;S;one\n", []).as_dict()["suppressed"] == 0


def test_only_numbers_written_as_validation_writes_them_match() -> None:
    body = "a;+33612345678;S;one\nb;+33612345679;S;two\nc;+262692123456;S;three\n"
    listed = ["33612345678", "0612345679", "+33 6 12 34 56 79", "+0262692123456", "+262692123456"]
    assert suppressed_run(body, listed).suppressed == 1
    as_set = {"+33612345678"}
    validator = Validator(Rules(), suppressed=as_set)
    assert validator.suppressed is as_set  # a set is not copied


@pytest.mark.parametrize(("row", "rules", "code", "field", "value"), [
    ("a;+33612345678;0612345678;x STOP au 36111", Rules(marketing=True), "oadc_mobile", "OADC",
     "0612345678"),
    ("a;+33612345678;RDV;x STOP au 36111", Rules(marketing=True, sender_blocklist=("rdv",)),
     "oadc_blocked", "OADC", "RDV"),
    ("a;+33612345678;S;Promo", Rules(optout="require"), "msg_no_optout", "MSG", "Promo"),
])
def test_the_compliance_codes(row: str, rules: Rules, code: str, field: str, value: str) -> None:
    summary, rows, errors = run(f"ok1;+33612345600;S;fine STOP 36111\n{row}\n", rules)
    assert [(e.code, e.field, e.line, e.value) for e in errors] == [(code, field, 2, value)]
    assert summary.invalid == 1 and summary.valid == 1 and rows[0].line == 1


def test_the_default_rules_are_todays() -> None:
    # Rules() is neither marketing nor looks for a mention: the settings turn them on.
    summary, rows, errors = run("a;+33612345678;0612345678;Promo\nb;+33612345679;INFO;x\n")
    assert errors == [] and summary.valid == 2 and summary.optout_appended == 0
    assert rows[0].text == "Promo"
