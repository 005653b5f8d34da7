"""The zone of a recipient's number (rules/zones.py): every French territory, and the rest."""

from __future__ import annotations

import pytest

from sftpd_agent.rules.zones import METROPOLE, all_zones, zone_of


@pytest.mark.parametrize(("number", "code", "tz", "subdivision"), [
    ("+33612345678", "FR", "Europe/Paris", None),
    ("+33142685300", "FR", "Europe/Paris", None),
    ("+262692123456", "RE", "Indian/Reunion", "974"),
    ("+262262123456", "RE", "Indian/Reunion", "974"),
    ("+262639123456", "YT", "Indian/Mayotte", "976"),
    ("+262269612345", "YT", "Indian/Mayotte", "976"),
    ("+590690123456", "GP", "America/Guadeloupe", "971"),
    ("+590590271234", "BL", "America/St_Barthelemy", "BL"),
    ("+594694123456", "GF", "America/Cayenne", "973"),
    ("+596696123456", "MQ", "America/Martinique", "972"),
    ("+508551234", "PM", "America/Miquelon", "PM"),
    ("+687751234", "NC", "Pacific/Noumea", "NC"),
    ("+689871234", "PF", "Pacific/Tahiti", "PF"),
    ("+681721234", "WF", "Pacific/Wallis", "WF"),
])
def test_each_territory_has_its_clock_and_calendar(
    number: str, code: str, tz: str, subdivision: str | None
) -> None:
    zone = zone_of(number)
    assert zone is not None
    assert (zone.code, zone.tz.key, zone.subdivision) == (code, tz, subdivision)


@pytest.mark.parametrize("number", ["+14155550100", "+447700900123", "+32470123456",
                                    "+2250700000000", "+5926001234"])
def test_other_countries_are_foreign(number: str) -> None:
    assert zone_of(number) is None


def test_metropolitan_numbers_are_paris_and_codes_are_short_and_unique() -> None:
    assert zone_of("+33700000000") is METROPOLE
    codes = [z.code for z in all_zones()]
    assert len(set(codes)) == len(codes) == 12
    assert all(len(c) == 2 and c.isalpha() for c in codes)


def test_saint_martin_has_its_own_calendar_when_named() -> None:
    # libphonenumber's ranges for +590 overlap: it names GP or BL for Saint-Martin's numbers;
    # the zone exists for when it names MF (same clock as Guadeloupe either way).
    saint_martin = next(z for z in all_zones() if z.code == "MF")
    assert (saint_martin.tz.key, saint_martin.subdivision) == ("America/Marigot", "MF")
