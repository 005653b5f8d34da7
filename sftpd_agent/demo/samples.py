"""The demo's two sample campaigns (pure): French SMS texts, recipients, odd rows."""

from __future__ import annotations

_NAMES = (
    "Hélène", "Françoise", "Jérôme", "Gaëlle", "Anaïs", "Noël", "Loïc", "Chloé", "Maël",
    "Cécile", "Thérèse", "Raphaël", "Océane", "Benoît", "Joëlle", "Solène", "Timothée",
    "Valérie", "Clément", "Inès", "Frédéric", "Aurélie", "Hervé", "Mégane", "Stéphane",
    "Léa", "Ségolène", "Jérémy", "Nathanaël", "Pénélope", "Zoé", "Régis", "Éloïse",
    "Lætitia", "Côme", "Agnès",
)
SENDER = "Creperie"


def _msisdn(index: int) -> str:
    return f"+33612000{index + 101:03d}"


def _national(e164: str) -> str:
    """"+33612000101" -> "06 12 00 01 01", as people type them."""
    digits = "0" + e164[3:]
    return " ".join(digits[i:i + 2] for i in range(0, 10, 2))


def sample_campaign() -> tuple[str, list[str]]:
    """The first campaign's CSV text, and the E.164 numbers of its valid rows.

    40 rows after a header: 36 valid (numbers in national and international form, accented
    first names, a text with ê, a curly apostrophe, « », … that the agent transliterates to
    GSM), 1 duplicate (a number already seen, written another way), 3 invalid (a short
    number, an empty message, an emoji that has no GSM form).
    """
    text = ("Bonjour {name}, la Crêperie Léon fête le printemps : -20 % sur les galettes "
            "« maison » jusqu\u2019à dimanche… STOP au 36105")
    numbers = [_msisdn(i) for i in range(len(_NAMES))]
    lines = ["IDREMOTE;MSISDN;OADC;MSG"]
    for i, (name, number) in enumerate(zip(_NAMES, numbers, strict=True)):
        written = _national(number) if i % 2 else number
        lines.append(f"S{i + 1:03d};{written};{SENDER};{text.format(name=name)}")
        if i == 5:
            lines.append(f"S{i + 1:03d}B;{_national(numbers[2])};{SENDER};"
                         f"{text.format(name=_NAMES[2])}")  # the duplicate
        if i == 10:
            lines.append(f"X1;06 12;{SENDER};{text.format(name='Yves')}")  # a short number
        if i == 20:
            lines.append(f"X2;{_msisdn(90)};{SENDER};")  # no message
        if i == 30:
            lines.append(f"X3;{_msisdn(91)};{SENDER};Joyeux printemps 🌷")  # no GSM form
    return "\r\n".join(lines) + "\r\n", numbers


def second_campaign(numbers: list[str]) -> str:
    """The second campaign: the same recipients; those who opted out must not get it."""
    text = "Dernier jour : -20 % sur les galettes « maison » à la Crêperie Léon ! STOP au 36105"
    return "".join(f"L{i + 1:03d};{number};{SENDER};{text}\r\n"
                   for i, number in enumerate(numbers))
