"""Provider file names: building, reading, campaign ids and parts."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sftpd_agent.rules.naming import (
    DroppedName,
    Kind,
    ProviderName,
    campaign_id_from_stem,
    distinct_part_ids,
    parse_name,
    part_ids,
    parts_needed,
    read_dropped_name,
    safe_campaign_id,
)

EXAMPLE_WHEN = dt.datetime(2016, 7, 28, 18, 27)


def example(kind: Kind = Kind.SEND, extension: str = ".csv") -> ProviderName:
    return ProviderName(kind, "12345", EXAMPLE_WHEN, "testpushsftp", extension)


# -- building --------------------------------------------------------------------------


def test_the_providers_example() -> None:
    name = example()
    assert name.middle == "12345-20160728-1827-testpushsftp"
    assert name.stem == "SEND-12345-20160728-1827-testpushsftp"
    assert name.filename() == "SEND-12345-20160728-1827-testpushsftp.csv"
    assert name.filename(".tmp") == "SEND-12345-20160728-1827-testpushsftp.tmp"
    assert name.filename(".done") == "SEND-12345-20160728-1827-testpushsftp.done"
    assert example(extension=".reject").filename() == "SEND-12345-20160728-1827-testpushsftp.reject"


def test_reports_share_the_middle() -> None:
    name = example()
    assert name.with_kind(Kind.ACK).filename() == "ACK-12345-20160728-1827-testpushsftp.csv"
    assert name.with_kind(Kind.STOP).filename() == "STOP-12345-20160728-1827-testpushsftp.csv"
    assert name.with_kind(Kind.SMSMO).filename() == "SMSMO-12345-20160728-1827-testpushsftp.csv"
    assert name.with_kind(Kind.ACK).middle == name.middle
    assert name.kind is Kind.SEND  # unchanged: frozen


def test_small_fields_are_zero_padded() -> None:
    name = ProviderName(Kind.SEND, "A0b9Z", dt.datetime(987, 1, 2, 3, 4), "x")
    assert name.filename() == "SEND-A0b9Z-09870102-0304-x.csv"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"service_id": "1234"}, "service id"),
        ({"service_id": "123456"}, "service id"),
        ({"service_id": "12-45"}, "service id"),
        ({"service_id": "1234é"}, "service id"),
        ({"campaign_id": ""}, "campaign id"),
        ({"campaign_id": "a" * 21}, "campaign id"),
        ({"campaign_id": "promo-1"}, "campaign id"),
        ({"campaign_id": "Noël"}, "campaign id"),
        ({"when": dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC)}, "naive"),
        ({"when": dt.datetime(2026, 1, 2, 3, 4, 5)}, "whole minutes"),
        ({"extension": "csv"}, "extension"),
        ({"extension": ".CSV"}, "extension"),
        ({"extension": ".txt"}, "extension"),
    ],
)
def test_invalid_names_are_refused(fields: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"kind": Kind.SEND, "service_id": "12345",
                                 "when": EXAMPLE_WHEN, "campaign_id": "promo"}
    values.update(fields)
    with pytest.raises(ValueError, match=message):
        ProviderName(**values)  # type: ignore[arg-type]


def test_unknown_extension_in_filename_is_refused() -> None:
    with pytest.raises(ValueError, match="extension"):
        example().filename(".part")


# -- reading ---------------------------------------------------------------------------


def test_parse_the_providers_example() -> None:
    name = parse_name("SEND-12345-20160728-1827-testpushsftp.csv")
    assert name == ProviderName(Kind.SEND, "12345", EXAMPLE_WHEN, "testpushsftp", ".csv")


@pytest.mark.parametrize(
    ("filename", "kind", "extension"),
    [
        ("SEND-12345-20160728-1827-testpushsftp.tmp", Kind.SEND, ".tmp"),
        ("SEND-12345-20160728-1827-testpushsftp.lock", Kind.SEND, ".lock"),
        ("SEND-12345-20160728-1827-testpushsftp.done", Kind.SEND, ".done"),
        ("SEND-12345-20160728-1827-testpushsftp.reject", Kind.SEND, ".reject"),
        ("ACK-12345-20160728-1827-testpushsftp.csv", Kind.ACK, ".csv"),
        ("STOP-12345-20160728-1827-testpushsftp.csv", Kind.STOP, ".csv"),
        ("SMSMO-12345-20160728-1827-testpushsftp.csv", Kind.SMSMO, ".csv"),
    ],
)
def test_parse_every_kind_and_extension(filename: str, kind: Kind, extension: str) -> None:
    name = parse_name(filename)
    assert name is not None
    assert name.kind is kind
    assert name.extension == extension
    assert name.service_id == "12345"
    assert name.when == EXAMPLE_WHEN
    assert name.campaign_id == "testpushsftp"
    assert name.filename() == filename


def test_parse_fields() -> None:
    name = parse_name("ACK-Ab3De-20261231-2359-PromoP12.done")
    assert name == ProviderName(Kind.ACK, "Ab3De", dt.datetime(2026, 12, 31, 23, 59),
                                "PromoP12", ".done")
    leap = parse_name("SEND-12345-20280229-0000-a.csv")
    assert leap is not None
    assert leap.when == dt.datetime(2028, 2, 29, 0, 0)


@pytest.mark.parametrize(
    "filename",
    [
        "SEND12345-20160728-1827-testpushsftp.csv",  # the provider's own typo
        "SEND-1234-20160728-1827-testpushsftp.csv",  # service id too short
        "SEND-123456-20160728-1827-testpushsftp.csv",  # too long
        "SEND-12 45-20160728-1827-testpushsftp.csv",
        "SEND-12345-20261332-1827-promo.csv",  # month 13
        "SEND-12345-20260230-1827-promo.csv",  # 30 February
        "SEND-12345-20270229-1827-promo.csv",  # not a leap year
        "SEND-12345-00000101-1827-promo.csv",  # year 0
        "SEND-12345-20260101-2400-promo.csv",  # hour 24
        "SEND-12345-20260101-1260-promo.csv",  # minute 60
        "SEND-12345-2026011-1827-promo.csv",  # short date
        "SEND-12345-20260101-827-promo.csv",  # short hour
        "SEND-12345-2026\u0660101-1827-promo.csv",  # ARABIC-INDIC DIGIT ZERO
        "SEND-12345-20260101-1827-.csv",  # empty campaign id
        "SEND-12345-20260101-1827-abcdefghijklmnopqrstu.csv",  # 21 characters
        "SEND-12345-20260101-1827-promo_1.csv",
        "SEND-12345-20260101-1827-Noël.csv",
        "SEND-12345-20260101-1827-promo.txt",
        "SEND-12345-20260101-1827-promo.part",
        "SEND-12345-20260101-1827-promo.CSV",
        "SEND-12345-20260101-1827-promo",
        "SEND-12345-20260101-1827-promo.csv\n",
        "send-12345-20260101-1827-promo.csv",
        "REPORT-12345-20260101-1827-promo.csv",
        "xSEND-12345-20260101-1827-promo.csv",
        "SEND-12345-20260101-1827-promo.csv.tmp",
        "promo.csv",
        "",
    ],
)
def test_parse_refuses(filename: str) -> None:
    assert parse_name(filename) is None


def test_parse_accepts_twenty_character_ids() -> None:
    name = parse_name("SEND-12345-20260101-1827-abcdefghijklmnopqrst.csv")
    assert name is not None
    assert name.campaign_id == "abcdefghijklmnopqrst"


_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(Kind),
    service_id=st.text(_ALNUM, min_size=5, max_size=5),
    when=st.datetimes(min_value=dt.datetime(1, 1, 1),
                      max_value=dt.datetime(9999, 12, 31, 23, 59)).map(
                          lambda moment: moment.replace(second=0, microsecond=0)),
    campaign_id=st.text(_ALNUM, min_size=1, max_size=20),
    extension=st.sampled_from([".tmp", ".csv", ".lock", ".done", ".reject"]),
)
def test_format_then_parse_round_trips(kind: Kind, service_id: str, when: dt.datetime,
                                       campaign_id: str, extension: str) -> None:
    name = ProviderName(kind, service_id, when, campaign_id, extension)
    filename = name.filename()
    fixed = len("-12345-YYYYMMDD-HHMM-")
    assert len(filename) == len(kind) + fixed + len(campaign_id) + len(extension)
    assert parse_name(filename) == name


# -- campaign ids ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stem", "expected"),
    [
        ("Promo Noël 2026!", "PromoNol2026"),
        ("promo", "promo"),
        ("black-friday_2026.v2", "blackfriday2026v2"),
        ("abcdefghijklmnopqrstuvwxyz", "abcdefghijklmnopqrst"),
        ("soldes d'été \uff12\uff10\uff12\uff16", "soldesdt"),  # full-width digits: not ASCII
        ("ÀÉ1", "1"),
    ],
)
def test_campaign_id_from_stem(stem: str, expected: str) -> None:
    assert campaign_id_from_stem(stem) == expected


@pytest.mark.parametrize("stem", ["", "éàü", "---", "🎉"])
def test_campaign_id_needs_a_letter_or_digit(stem: str) -> None:
    with pytest.raises(ValueError, match="no ASCII letter or digit"):
        campaign_id_from_stem(stem)


# -- parts -----------------------------------------------------------------------------


def test_one_part_keeps_the_id() -> None:
    assert part_ids("abcdefghijklmnopqrst", 1) == ["abcdefghijklmnopqrst"]


def test_parts_of_a_short_id() -> None:
    assert part_ids("promo", 3) == ["promoP1", "promoP2", "promoP3"]


def test_parts_of_a_long_id_share_one_cut() -> None:
    assert part_ids("abcdefghijklmnopqrst", 2) == ["abcdefghijklmnopqrP1", "abcdefghijklmnopqrP2"]
    twelve = part_ids("abcdefghijklmnopqrst", 12)
    assert twelve[0] == "abcdefghijklmnopqP1"
    assert twelve[8] == "abcdefghijklmnopqP9"
    assert twelve[9] == "abcdefghijklmnopqP10"
    assert twelve[11] == "abcdefghijklmnopqP12"
    assert len(twelve) == 12


def test_part_ids_refuse_bad_input() -> None:
    with pytest.raises(ValueError, match="at least one part"):
        part_ids("promo", 0)
    with pytest.raises(ValueError, match="campaign id"):
        part_ids("promo-1", 2)
    with pytest.raises(ValueError, match="cannot be numbered"):
        part_ids("promo", 10**19)


@settings(max_examples=300, deadline=None)
@given(campaign_id=st.text(_ALNUM, min_size=1, max_size=20),
       parts=st.integers(min_value=1, max_value=2000))
def test_part_ids_are_short_distinct_and_parse(campaign_id: str, parts: int) -> None:
    ids = part_ids(campaign_id, parts)
    assert len(ids) == parts
    assert len(set(ids)) == parts
    assert all(1 <= len(part) <= 20 for part in ids)
    if parts > 1:
        prefix = ids[0][: -len("P1")]
        assert all(part == f"{prefix}P{n}" for n, part in enumerate(ids, start=1))
        assert campaign_id.startswith(prefix)
    for part in ids:
        name = ProviderName(Kind.SEND, "12345", EXAMPLE_WHEN, part)
        assert parse_name(name.filename()) == name


@pytest.mark.parametrize(
    ("rows", "limit", "expected"),
    [
        (0, 1_000_000, 1),
        (1, 1_000_000, 1),
        (1_000_000, 1_000_000, 1),
        (1_000_001, 1_000_000, 2),
        (2_000_000, 1_000_000, 2),
        (2_500_000, 1_000_000, 3),
        (10, 3, 4),
        (7, 1, 7),
    ],
)
def test_parts_needed(rows: int, limit: int, expected: int) -> None:
    assert parts_needed(rows, limit) == expected


def test_parts_needed_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="max_rows_per_file"):
        parts_needed(10, 0)
    with pytest.raises(ValueError, match="negative"):
        parts_needed(-1, 10)


# -- dropped names (issue 17) ----------------------------------------------------------

JAN_5_9H = dt.datetime(2027, 1, 5, 9, 0)


def test_a_dropped_provider_name_is_read_as_one() -> None:
    assert read_dropped_name("SEND-12345-20270105-0900-promo.csv") == DroppedName(
        "promo", JAN_5_9H, provider_like=True, service_id="12345")
    lower = read_dropped_name("/some/folder/send-ABCDE-20270105-0900-Promo.CSV")
    assert (lower.campaign_id, lower.when, lower.service_id) == ("Promo", JAN_5_9H, "ABCDE")
    assert lower.problem is None and lower.notes == ()


def test_a_dropped_id_is_made_safe_without_touching_the_time() -> None:
    read = read_dropped_name("SEND-12345-20270105-0900-promo (1).csv")
    assert (read.campaign_id, read.when, read.problem) == ("promo1", JAN_5_9H, None)
    assert read.notes == ("campaign id 'promo (1)' made safe as 'promo1': only letters and "
                          "digits are kept",)
    long = read_dropped_name("SEND-12345-20270105-0900-black-friday_2027-very-long-name.csv")
    assert long.campaign_id == "blackfriday2027veryl" and long.when == JAN_5_9H
    assert len(long.notes) == 2 and "cut to 'blackfriday2027veryl'" in long.notes[1]


@pytest.mark.parametrize(
    ("filename", "problems"),
    [
        ("SEND-12345-20270105-0900.csv", ["no campaign id after the time"]),
        ("SEND-12345-20270105-0900-%%%.csv", ["no campaign id after the time"]),
        ("SEND-12345-20261232-0900-x.csv", ["the date 20261232 is not a date"]),
        ("SEND-12345-20270105-2500-x.csv", ["the hour 2500 is not a time"]),
        ("SEND-12345-20270105-0960-x.csv", ["the hour 0960 is not a time"]),
        ("SEND-12345-2027015-0900-x.csv", ["the date 2027015 is not a date"]),
        ("SEND-12345-20261232-2500-x.csv", ["the date 20261232", "the hour 2500"]),
        ("SEND-1234-20270105-0900-x.csv", ["the service id '1234' is not 5"]),
        ("SEND-12345.csv", ["no date after the service id"]),
        ("SEND-12345-20270105.csv", ["no time after the date"]),
        ("SEND-.csv", ["no service id after SEND-"]),
        ("SEND_12345_20270105_0900_x.csv", ["parts are not separated by '-'"]),
    ],
)
def test_a_dropped_name_that_cannot_be_read_names_the_part(
    filename: str, problems: list[str]
) -> None:
    read = read_dropped_name(filename)
    assert read.provider_like and read.problem is not None
    for problem in problems:
        assert problem in read.problem
    assert "expected SEND-<service_id>-YYYYMMDD-HHMM-<CAMPAIGNID>.csv" in read.problem


@pytest.mark.parametrize(
    ("filename", "campaign_id"),
    [("Promo Noël 2026!.csv", "PromoNol2026"), ("sending.csv", "sending"),
     ("SEND12345-20270105-0900-x.csv", "SEND1234520270105090"), ("send now.csv", "sendnow")],
)
def test_other_names_carry_no_time(filename: str, campaign_id: str) -> None:
    assert read_dropped_name(filename) == DroppedName(campaign_id)


def test_a_name_without_letters_or_digits_has_a_problem() -> None:
    read = read_dropped_name("___.csv")
    assert read.campaign_id == "" and read.problem is not None and not read.provider_like


@pytest.mark.parametrize(
    ("text", "expected"),
    [("promo", ("promo", 0)), ("promo (1)", ("promo1", 1)), ("a" * 21, ("a" * 20, 1)),
     ("é" + "b" * 25, ("b" * 20, 2)), ("---", ("", 0)), ("", ("", 0))],
)
def test_safe_campaign_id(text: str, expected: tuple[str, int]) -> None:
    campaign_id, notes = safe_campaign_id(text)
    assert (campaign_id, len(notes)) == expected


def test_distinct_part_ids() -> None:
    used = {"promo", "promo2"}
    assert distinct_part_ids("promo", 1, lambda ids: bool(used & set(ids))) == ["promo3"]
    assert distinct_part_ids("promo", 2, lambda ids: False) == ["promoP1", "promoP2"]
    assert distinct_part_ids("a" * 20, 1, lambda ids: ids == ["a" * 20]) == ["a" * 19 + "2"]
