"""GSM 03.38 counting: the tables, segment boundaries, the three policies, and properties.

Expected values come from the standard (Wikipedia's GSM 03.38 table) and from a naive
character-by-character splitter written here, never from the module under test.
"""

from __future__ import annotations

import string
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sftpd_agent.rules.gsm import (
    _TRANSLITERATIONS,
    BASIC,
    BASIC_TABLE,
    EXTENSION,
    Counted,
    Encoding,
    Policy,
    basic_segments,
    count,
    gsm_parts,
    is_gsm,
    septets,
    specials,
    ucs2_parts,
)

EXTENSION_CHARS = "\f^{}\\[~]|€"
PROVIDER_EXAMPLE = (
    " 4P 79m2 3ème étage Imm ancien 2Chbres Volumes vue Parfait état "
    "http://www.URL.com/fr/ref-VSQR0339 "
)


def naive_parts(widths: list[tuple[str, int]], single: int, part: int) -> list[str]:
    """Reference splitter: whole characters, a new part when the next one does not fit."""
    total = sum(w for _, w in widths)
    if total == 0:
        return []
    if total <= single:
        return ["".join(c for c, _ in widths)]
    parts, current, used = [], "", 0
    for char, width in widths:
        if used + width > part:
            parts.append(current)
            current, used = "", 0
        current += char
        used += width
    parts.append(current)
    return parts


def gsm_width(char: str) -> int:
    return 2 if char in EXTENSION_CHARS else 1


def utf16_width(char: str) -> int:
    return len(char.encode("utf-16-le")) // 2


# --- the tables ---------------------------------------------------------------------------


def test_basic_table_is_the_standard_128_positions() -> None:
    assert len(BASIC_TABLE) == 128
    assert len(set(BASIC_TABLE)) == 128
    # Positions from the standard.
    expected = {0x00: "@", 0x01: "£", 0x02: "$", 0x03: "¥", 0x04: "è", 0x05: "é", 0x09: "Ç",
                0x0A: "\n", 0x0B: "Ø", 0x0D: "\r", 0x10: "Δ", 0x11: "_", 0x1B: "\x1b",
                0x1E: "ß", 0x1F: "É", 0x20: " ", 0x24: "¤", 0x40: "¡", 0x41: "A", 0x5B: "Ä",
                0x5F: "§", 0x60: "¿", 0x61: "a", 0x7B: "ä", 0x7E: "ü", 0x7F: "à"}
    for position, char in expected.items():
        assert BASIC_TABLE[position] == char, hex(position)


def test_escape_is_not_a_character() -> None:
    assert "\x1b" not in BASIC
    assert len(BASIC) == 127
    assert not is_gsm("\x1b")


def test_cedilla_only_upper_case() -> None:
    assert "Ç" in BASIC
    assert "ç" not in BASIC
    assert "ç" not in EXTENSION
    assert is_gsm("Ç")
    assert not is_gsm("ç")


def test_ascii_outside_the_basic_table() -> None:
    printable = {chr(c) for c in range(0x20, 0x7F)}
    assert printable - BASIC == set("^{}\\[~]|`")


def test_extension_table() -> None:
    assert set(EXTENSION_CHARS) == EXTENSION
    assert len(EXTENSION) == 10
    assert not EXTENSION & BASIC


@pytest.mark.parametrize("char", list(EXTENSION_CHARS))
def test_each_extension_char_counts_two(char: str) -> None:
    assert is_gsm(char)
    assert septets(char) == 2
    counted = count(char)
    assert (counted.encoding, counted.characters, counted.units) == (Encoding.GSM7, 1, 2)
    assert count("a" * 158 + char).segments == 1  # 160 septets
    assert count("a" * 159 + char).segments == 2  # 161 septets


def test_provider_example_is_one_gsm_segment() -> None:
    assert is_gsm(PROVIDER_EXAMPLE)
    counted = count(PROVIDER_EXAMPLE)
    assert counted.encoding == Encoding.GSM7
    assert counted.units == len(PROVIDER_EXAMPLE) == 99
    assert counted.segments == 1
    assert counted.text == PROVIDER_EXAMPLE
    assert (counted.non_gsm, counted.replaced, counted.unsendable) == ((), (), ())


def test_empty_text() -> None:
    assert count("") == Counted("", Encoding.GSM7, 0, 0, 0, (), (), ())
    assert gsm_parts("") == []
    assert ucs2_parts("") == []


# --- GSM-7 boundaries -----------------------------------------------------------------------


@pytest.mark.parametrize(("length", "segments"), [
    (1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (460, 4), (765, 5), (766, 6),
])
def test_gsm7_boundaries(length: int, segments: int) -> None:
    text = "x" * length
    counted = count(text)
    assert (counted.units, counted.segments) == (length, segments)
    parts = gsm_parts(text)
    assert len(parts) == segments
    assert "".join(parts) == text


def test_escape_pair_straddling_153_moves_to_next_part() -> None:
    text = "a" * 152 + "€" + "a" * 10  # € would take septets 153 and 154
    assert gsm_parts(text) == ["a" * 152, "€" + "a" * 10]


def test_escape_pair_can_cost_a_segment() -> None:
    straddling = "a" * 152 + "€" + "a" * 152  # 306 septets, but the first part holds 152
    fitting = "a" * 151 + "€" + "a" * 153     # 306 septets, € ends the first part
    assert septets(straddling) == septets(fitting) == 306
    assert count(straddling).segments == 3
    assert count(fitting).segments == 2
    assert gsm_parts(fitting) == ["a" * 151 + "€", "a" * 153]


def test_extension_chars_at_one_part_under_160() -> None:
    text = "{" * 80  # 160 septets in one SMS: no split rule applies
    assert count(text).segments == 1
    assert gsm_parts(text) == [text]
    assert count(text + "{").segments == 2
    assert gsm_parts(text + "{") == ["{" * 76, "{" * 5]  # 152 septets + 10


# --- UCS-2 boundaries -----------------------------------------------------------------------


@pytest.mark.parametrize(("length", "segments"), [
    (70, 1), (71, 2), (134, 2), (135, 3), (335, 5), (336, 6),
])
def test_ucs2_boundaries(length: int, segments: int) -> None:
    text = "ж" * length
    counted = count(text, Policy.UNICODE)
    assert counted.encoding == Encoding.UCS2
    assert (counted.characters, counted.units, counted.segments) == (length, length, segments)
    assert len(ucs2_parts(text)) == segments


def test_emoji_counts_two_units() -> None:
    counted = count("😀", Policy.UNICODE)
    assert (counted.encoding, counted.characters, counted.units) == (Encoding.UCS2, 1, 2)
    assert count("ж" * 68 + "😀", Policy.UNICODE).segments == 1  # 70 units
    assert count("ж" * 69 + "😀", Policy.UNICODE).segments == 2  # 71 units


def test_surrogate_pair_never_split() -> None:
    text = "ж" * 66 + "😀" + "ж" * 10  # the emoji would take units 67 and 68
    assert ucs2_parts(text) == ["ж" * 66, "😀" + "ж" * 10]
    straddling = "ж" * 66 + "😀" + "ж" * 66  # 134 units, but the first part holds 66
    assert count(straddling, Policy.UNICODE).units == 134
    assert count(straddling, Policy.UNICODE).segments == 3


# --- policies --------------------------------------------------------------------------------

TRANSLITERATIONS = [
    ("ê", "e"), ("ë", "e"), ("â", "a"), ("î", "i"), ("ï", "i"), ("ô", "o"), ("û", "u"),
    ("ç", "c"), ("œ", "oe"), ("Œ", "OE"),
    ("\u2019", "'"), ("\u2018", "'"), ("\u201a", "'"), ("\u2032", "'"),
    ("\u201c", '"'), ("\u201d", '"'), ("\u201e", '"'), ("«", '"'), ("»", '"'),
    ("…", "..."), ("\u2013", "-"), ("\u2014", "-"),
    ("\u00a0", " "), ("\u202f", " "), ("\u2007", " "), ("\u2009", " "), ("\u200a", " "),
    ("\u200b", ""), ("\u200c", ""), ("\u200d", ""), ("\u2060", ""), ("\ufeff", ""),
    # the NFD fallback, and letters without a decomposition
    ("á", "a"), ("ő", "o"), ("Ê", "E"), ("È", "E"), ("ł", "l"), ("Ł", "L"), ("đ", "d"),
]


@pytest.mark.parametrize(("original", "replacement"), TRANSLITERATIONS)
def test_transliteration(original: str, replacement: str) -> None:
    counted = count("x" + original + "y")
    assert counted.text == "x" + replacement + "y"
    assert counted.encoding == Encoding.GSM7
    assert counted.units == len(replacement) + 2
    assert counted.non_gsm == (original,)
    assert counted.replaced == ((original, replacement),)
    assert counted.unsendable == ()


def test_gsm_characters_are_never_transliterated() -> None:
    text = "".join(sorted(BASIC)) + EXTENSION_CHARS
    counted = count(text)
    assert counted.text == text
    assert (counted.replaced, counted.non_gsm) == ((), ())
    assert counted.units == 127 + 20


def test_accents_in_the_table_stay() -> None:
    text = "Hélène à l'hôtel, ça coûte 10€"
    counted = count(text)
    assert counted.text == "Hélène à l'hotel, ca coute 10€"
    assert counted.non_gsm == ("ô", "ç", "û")
    assert counted.replaced == (("ô", "o"), ("ç", "c"), ("û", "u"))
    assert counted.units == len(counted.text) + 1


def test_decomposed_accent_is_composed() -> None:
    counted = count("e\u0301te\u0302")  # é (GSM) and ê (not) written decomposed
    assert counted.text == "éte"
    assert counted.unsendable == ()
    assert counted.non_gsm == ("\u0301", "\u0302")
    assert counted.replaced == (("ê", "e"), ("\u0301", ""), ("\u0302", ""))


def test_stray_accent_is_dropped_once() -> None:
    counted = count("x\u0301 x\u0301")
    assert counted.text == "x x"
    assert counted.replaced == (("\u0301", ""),)
    assert counted.unsendable == ()


def test_closest_accented_gsm_letter_is_kept() -> None:
    assert count("\u01d8").text == "ü"  # ǘ: u + diaeresis + acute
    assert count("\u212b").text == "Å"  # ANGSTROM SIGN


def test_no_gsm_form_is_unsendable() -> None:
    counted = count("ça 😀 中")
    assert counted.text == "ca 😀 中"
    assert counted.non_gsm == ("ç", "😀", "中")
    assert counted.replaced == (("ç", "c"),)
    assert counted.unsendable == ("😀", "中")
    assert counted.encoding == Encoding.GSM7
    assert counted.units == 6  # each unsendable counted as one septet


def test_repeated_characters_are_listed_once() -> None:
    counted = count("ê ç ê ç")
    assert counted.non_gsm == ("ê", "ç")
    assert counted.replaced == (("ê", "e"), ("ç", "c"))
    assert counted.text == "e c e c"


def test_reject_policy() -> None:
    counted = count("ça coûte 5€ 😀", Policy.REJECT)
    assert counted.text == "ça coûte 5€ 😀"
    assert counted.encoding == Encoding.GSM7
    assert counted.non_gsm == counted.unsendable == ("ç", "û", "😀")
    assert counted.replaced == ()
    assert counted.units == len(counted.text) + 1  # € counts 2, the rest 1


def test_reject_policy_accepts_gsm() -> None:
    counted = count("Hélène 5€", Policy.REJECT)
    assert counted.unsendable == counted.non_gsm == ()
    assert counted.units == 10


def test_unicode_policy() -> None:
    counted = count("ça 😀", Policy.UNICODE)
    assert counted.text == "ça 😀"
    assert counted.encoding == Encoding.UCS2
    assert (counted.characters, counted.units, counted.segments) == (4, 5, 1)
    assert counted.non_gsm == ("ç", "😀")
    assert (counted.replaced, counted.unsendable) == ((), ())


def test_unicode_policy_all_gsm_is_gsm7() -> None:
    counted = count("a" * 100 + "€", Policy.UNICODE)
    assert counted.encoding == Encoding.GSM7
    assert (counted.units, counted.segments) == (102, 1)


def test_policy_accepts_plain_strings() -> None:
    assert count("ç", "reject").unsendable == ("ç",)  # type: ignore[arg-type]


# --- properties ------------------------------------------------------------------------------

GSM_CHARS = sorted(BASIC | EXTENSION)
GSM_ALPHABET = st.one_of(st.sampled_from(GSM_CHARS), st.sampled_from(EXTENSION_CHARS))
UCS2_ALPHABET = st.one_of(
    st.sampled_from("aé€жΩ中"),
    st.sampled_from("😀🎉𝄞"),
    st.characters(codec="utf-8"),  # any character a UTF-8 file can hold
)


@st.composite
def long_texts(draw: st.DrawFn, alphabet: st.SearchStrategy[str], size: int) -> str:
    """Up to about ``size`` characters: a random chunk repeated, then a random tail, so that
    wide characters land on and around every part boundary."""
    chunk = draw(st.text(alphabet=alphabet, min_size=1, max_size=30))
    times = draw(st.integers(0, size // len(chunk)))
    return chunk * times + draw(st.text(alphabet=alphabet, max_size=40))


gsm_text = long_texts(GSM_ALPHABET, 900)
ucs2_text = long_texts(UCS2_ALPHABET, 400)


@settings(max_examples=300, deadline=None)
@given(gsm_text)
def test_gsm_parts_properties(text: str) -> None:
    parts = gsm_parts(text)
    assert "".join(parts) == text
    assert parts == naive_parts([(c, gsm_width(c)) for c in text], 160, 153)
    limit = 160 if len(parts) == 1 else 153
    assert all(is_gsm(p) and 0 < septets(p) <= limit for p in parts)
    assert sum(septets(p) for p in parts) == septets(text)
    counted = count(text)
    assert counted.units == septets(text) == sum(gsm_width(c) for c in text)
    assert counted.segments == len(parts)
    assert counted.text == text
    assert (counted.non_gsm, counted.replaced, counted.unsendable) == ((), (), ())


@settings(max_examples=300, deadline=None)
@given(gsm_text, st.sampled_from(GSM_CHARS))
def test_gsm_segments_monotonic(text: str, extra: str) -> None:
    assert count(text + extra).segments >= count(text).segments


@settings(max_examples=300, deadline=None)
@given(ucs2_text)
def test_ucs2_parts_properties(text: str) -> None:
    parts = ucs2_parts(text)
    assert "".join(parts) == text
    assert parts == naive_parts([(c, utf16_width(c)) for c in text], 70, 67)
    limit = 70 if len(parts) == 1 else 67
    assert all(0 < utf16_width(p) <= limit for p in parts)
    counted = count(text, Policy.UNICODE)
    if is_gsm(text):
        assert counted.encoding == Encoding.GSM7
    else:
        assert counted.encoding == Encoding.UCS2
        assert counted.units == utf16_width(text)
        assert counted.segments == len(parts)


@settings(max_examples=300, deadline=None)
@given(ucs2_text, st.sampled_from("a😀ж"))
def test_ucs2_segments_monotonic(text: str, extra: str) -> None:
    before = count(text + "ж", Policy.UNICODE)  # keep it UCS-2 on both sides
    after = count(text + "ж" + extra, Policy.UNICODE)
    assert after.segments >= before.segments


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_transliterate_result_is_gsm_or_reports_why(text: str) -> None:
    counted = count(text)
    leftover = {c for c in counted.text if not is_gsm(c)}
    assert leftover == set(counted.unsendable)
    assert set(counted.non_gsm) == {c for c in text if not is_gsm(c)}
    assert all(is_gsm(replacement) for _, replacement in counted.replaced)
    assert counted.characters == len(counted.text)
    if not any(unicodedata.combining(c) for c in text):
        # Character by character: GSM kept, replaced as reported, the rest left in place.
        replacements = dict(counted.replaced)
        assert counted.text == "".join(
            c if is_gsm(c) else replacements.get(c, c) for c in text)


def test_replacements_are_gsm_and_keys_are_not() -> None:
    assert all(not is_gsm(k) for k in _TRANSLITERATIONS)
    assert all(is_gsm(v) for v in _TRANSLITERATIONS.values())
    assert set(string.ascii_letters + string.digits) <= BASIC


@given(st.text(alphabet=st.sampled_from(sorted(BASIC | EXTENSION | {"ç", "🎄", "ê"})),
               max_size=900))
def test_basic_segments_agrees_with_count_or_declines(text: str) -> None:
    fast = basic_segments(text)
    if fast:
        assert count(text).segments == fast and count(text).text == text
    else:
        assert not text or any(c not in BASIC for c in text)


SPECIALS_ALPHABET = st.one_of(
    st.sampled_from(GSM_CHARS),
    st.sampled_from(EXTENSION_CHARS + "çêœ…«»\u2019\u00a0\u200b\t\u212bǘ\u0301🎄жΩ"),
    st.characters(codec="utf-8"),
)


@settings(max_examples=600, deadline=None)
@given(long_texts(SPECIALS_ALPHABET, 700), st.sampled_from(list(Policy)))
def test_specials_agree_with_count(text: str, policy: Policy) -> None:
    """What validation keeps per sequence of special characters is count()'s answer for any
    text holding them, whatever surrounds them."""
    how = specials("".join(c for c in text if c not in BASIC), policy)
    counted = count(text, policy)
    if how is None:  # a combining mark: only the whole text tells
        assert policy == Policy.TRANSLITERATE
        assert any(unicodedata.combining(c) for c in text)
        return
    assert how.encoding == counted.encoding
    assert len(text) + how.extra == counted.units
    assert how.sent(text) == counted.text
    assert how.segments(text) == counted.segments
    assert (how.non_gsm, how.replaced, how.unsendable) == (
        counted.non_gsm, counted.replaced, counted.unsendable)
    assert how.single == (160 if how.encoding == Encoding.GSM7 else 70)
