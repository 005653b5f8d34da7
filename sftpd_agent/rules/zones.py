"""Whose clock a recipient lives by: the zone of an E.164 number. Pure.

France's numbers cover several time zones: metropolitan France (+33) and the overseas
departments and territories, each with its own calling code and its own public holidays
(the abolition-of-slavery days differ per department). The territory comes from
libphonenumber's own ranges (``region_code_for_number``, offline, shipped with the
package): it tells Saint-Barthelemy and Saint-Martin from Guadeloupe inside +590 and
Mayotte from Reunion inside +262, which its time-zone table does not (it names
America/Guadeloupe for all of +590). Mayotte's mobile ranges +262 639 and fixed +262 269,
which libphonenumber does not place, are placed here by hand.

Numbers of any other country are *foreign* (``zone_of`` returns None).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo

import phonenumbers


@dataclass(frozen=True, slots=True)
class Zone:
    """A French territory's clock and calendar."""

    code: str                  # short, letters only: the suffix of its group (RE, MQ, ...)
    name: str                  # for people
    tz: ZoneInfo
    subdivision: str | None    # its ``holidays`` France subdivision; None: metropolitan


METROPOLE = Zone("FR", "France (metropolitan)", ZoneInfo("Europe/Paris"), None)

_ZONES: dict[str, Zone] = {z.code: z for z in (
    METROPOLE,
    Zone("RE", "La Reunion", ZoneInfo("Indian/Reunion"), "974"),
    Zone("YT", "Mayotte", ZoneInfo("Indian/Mayotte"), "976"),
    Zone("GP", "Guadeloupe", ZoneInfo("America/Guadeloupe"), "971"),
    Zone("MF", "Saint-Martin", ZoneInfo("America/Marigot"), "MF"),
    Zone("BL", "Saint-Barthelemy", ZoneInfo("America/St_Barthelemy"), "BL"),
    Zone("GF", "Guyane", ZoneInfo("America/Cayenne"), "973"),
    Zone("MQ", "Martinique", ZoneInfo("America/Martinique"), "972"),
    Zone("PM", "Saint-Pierre-et-Miquelon", ZoneInfo("America/Miquelon"), "PM"),
    Zone("NC", "Nouvelle-Caledonie", ZoneInfo("Pacific/Noumea"), "NC"),
    Zone("PF", "Polynesie francaise", ZoneInfo("Pacific/Tahiti"), "PF"),
    Zone("WF", "Wallis-et-Futuna", ZoneInfo("Pacific/Wallis"), "WF"),
)}

# calling code -> the territory when libphonenumber names none (its default otherwise)
_CALLING_CODES: dict[str, str] = {
    "262": "RE", "590": "GP", "594": "GF", "596": "MQ", "508": "PM",
    "687": "NC", "689": "PF", "681": "WF",
}
_MAYOTTE = ("+262269", "+262639")


def zone_named(code: str) -> Zone:
    """The zone of a code (``"RE"``); KeyError for an unknown one."""
    return _ZONES[code]


def all_zones() -> tuple[Zone, ...]:
    return tuple(_ZONES.values())


def zone_of(e164: str) -> Zone | None:
    """The zone of a normalised number (``+`` and digits), or None for another country."""
    if e164.startswith("+33"):
        return METROPOLE
    code = _CALLING_CODES.get(e164[1:4])
    if code is None:
        return None
    return _ZONES[_territory(e164) or code]


@lru_cache(maxsize=4096)
def _territory(e164: str) -> str | None:
    if e164.startswith(_MAYOTTE):
        return "YT"
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(e164))
    except phonenumbers.NumberParseException:
        return None
    return region if region in _ZONES else None
