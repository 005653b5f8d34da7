"""Number normalisation: examples, and the fast path against libphonenumber's reference.

Expected values in the examples are written out by hand from the French, German, British,
Israeli and North American numbering plans (and libphonenumber's example numbers for the
overseas departments). The equivalence tests compare ``NumberNormalizer`` with
``normalize_reference`` on seeded random inputs built from every region's example numbers,
and each step the fast path replays with the library's own step, on real and made-up metadata.
"""

from __future__ import annotations

import random
import re
import string
import time
from collections.abc import Callable, Iterator

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberDesc, phonenumberutil

from sftpd_agent.rules import numbers
from sftpd_agent.rules.masking import mask
from sftpd_agent.rules.numbers import NumberNormalizer, normalize_reference

MAIN_REGIONS = ("FR", "DE", "GB", "US", "IT", "BE", "CH", "ES", "RE")
# Regions with carrier codes, transform rules and odd international prefixes.
ODD_REGIONS = ("AR", "BR", "JP", "AU", "RU", "MX", "GP", "GG", "SM", "KZ", "CA", "AG", "GA",
               "CC", "NF", "IN", "CN", "IL", "SG")
CASES_PER_MAIN_REGION = 12_000
CASES_PER_ODD_REGION = 1_500


# --- examples ------------------------------------------------------------------------------

EXAMPLES = [
    # (raw, default region, expected)
    ("+33612345678", "FR", "+33612345678"),
    ("0612345678", "FR", "+33612345678"),
    ("06 12 34 56 78", "FR", "+33612345678"),
    ("06.12.34.56.78", "FR", "+33612345678"),
    ("06-12-34-56-78", "FR", "+33612345678"),
    ("+33 6 12 34 56 78", "FR", "+33612345678"),
    ("0033612345678", "FR", "+33612345678"),
    ("0145678901", "FR", "+33145678901"),
    ("+33787798753", "FR", "+33787798753"),  # the provider's sample
    ("0787798753", "FR", "+33787798753"),
    ("0692123456", "FR", "+262692123456"),
    ("0693123456", "FR", "+262693123456"),
    ("0639012345", "FR", "+262639012345"),
    ("0690001234", "FR", "+590690001234"),
    ("0691221234", "FR", "+590691221234"),
    ("0694201234", "FR", "+594694201234"),
    ("0696201234", "FR", "+596696201234"),
    ("0697201234", "FR", "+596697201234"),
    ("06 92 12 34 56", "FR", "+262692123456"),
    ("+262692123456", "FR", "+262692123456"),
    ("+4915123456789", "FR", "+4915123456789"),
    ("+447400123456", "FR", "+447400123456"),
    ("+12015550123", "FR", "+12015550123"),
    ("015123456789", "DE", "+4915123456789"),
    ("030 123456", "DE", "+4930123456"),
    ("069 2123456", "DE", "+49692123456"),  # Frankfurt: the overseas rule is French only
    ("07400 123456", "GB", "+447400123456"),
    ("07400123456", "GB", "+447400123456"),
    ("(201) 555-0123", "US", "+12015550123"),
    ("201-555-0123", "US", "+12015550123"),
    ("2015550123", "US", "+12015550123"),
    ("+1 201 555 0123", "US", "+12015550123"),
    # Israel: "018" is an international prefix, but not before a 0: a national toll-free number.
    ("1-800-123-456", "IL", "+9721800123456"),
    ("01800123456", "IL", "+9721800123456"),
    ("0692123456", "RE", "+262692123456"),
    ("0639012345", "RE", "+262639012345"),
    # libphonenumber is lenient with repeated plus signs: the reference accepts this one.
    ("++33612345678", "FR", "+33612345678"),
]

INVALID = [
    ("", "FR"),
    ("+", "FR"),
    ("+33123", "FR"),  # too short
    ("06123", "FR"),
    ("061234567", "FR"),  # one digit short
    ("06123456789", "FR"),  # one digit long
    ("+336123456789", "FR"),
    ("+3361234567", "FR"),
    ("abcdefghij", "FR"),
    ("06 12 AB 56 78", "FR"),
    ("0612345678abc", "FR"),
    ("+999612345678", "FR"),  # no such calling code
    ("+33012345678", "FR"),
    ("0012345678", "FR"),
    ("+33692123456", "FR"),  # a Réunion mobile under +33
    ("2015550123", "FR"),
    ("0200000000", "US"),
]


@pytest.mark.parametrize(("raw", "region", "expected"), EXAMPLES)
def test_examples(raw: str, region: str, expected: str) -> None:
    assert NumberNormalizer(region).normalize(raw) == expected
    assert normalize_reference(raw, region) == expected


@pytest.mark.parametrize(("raw", "region"), INVALID)
def test_invalid_examples(raw: str, region: str) -> None:
    assert NumberNormalizer(region).normalize(raw) is None
    assert normalize_reference(raw, region) is None


def test_default_region_is_france() -> None:
    assert NumberNormalizer().normalize("0612345678") == "+33612345678"
    assert normalize_reference("0612345678") == "+33612345678"
    assert NumberNormalizer().default_region == "FR"


@pytest.mark.parametrize("region", ["XX", "ZZ", "001", "fr", "", "FRA"])
def test_unknown_region_is_refused(region: str) -> None:
    with pytest.raises(ValueError, match="region"):
        NumberNormalizer(region)
    with pytest.raises(ValueError, match="region"):
        normalize_reference("+33612345678", region)


def test_normalizer_is_immutable() -> None:
    normalizer = NumberNormalizer("DE")
    with pytest.raises(AttributeError):
        normalizer.default_region = "FR"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        normalizer._default_region = "FR"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del normalizer._regions  # type: ignore[misc]
    with pytest.raises(AttributeError):
        normalizer.anything = 1  # type: ignore[attr-defined]
    assert normalizer.default_region == "DE"
    assert normalizer.normalize("015123456789") == "+4915123456789"


@pytest.mark.parametrize(("msisdn", "masked"), [
    ("+33612345678", "+33612****78"),
    ("+262692123456", "+26269*****56"),
    ("+4915123456789", "+49151******89"),
    ("+336123456", "+33612**56"),  # shortest with the two stars
    ("+33612345", "*********"),
    ("+33", "***"),
    ("", ""),
])
def test_mask(msisdn: str, masked: str) -> None:
    assert mask(msisdn) == masked


# --- the fast path -------------------------------------------------------------------------

@pytest.fixture
def reference_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The inputs NumberNormalizer hands to the reference path (the rest it decided itself)."""
    calls: list[str] = []
    original = numbers.normalize_reference

    def counting(raw: str, default_region: str = "FR") -> str | None:
        calls.append(raw)
        return original(raw, default_region)

    monkeypatch.setattr(numbers, "normalize_reference", counting)
    return calls


@pytest.mark.parametrize(("region", "raw"), [
    ("FR", "+33612345678"), ("FR", "0612345678"), ("FR", "06 12 34 56 78"),
    ("FR", "06.12.34.56.78"), ("FR", "0692123456"), ("FR", "0639012345"),
    ("FR", "0690001234"), ("FR", "+262692123456"), ("FR", "+4915123456789"),
    ("FR", "+447400123456"), ("FR", "+12015550123"), ("FR", "+14165550123"),
    ("FR", "+390612345678"), ("FR", "+80012345678"), ("FR", "+330612345678"),
    ("FR", "0033612345678"), ("FR", "0033 6 12 34 56 78"), ("FR", "33612345678"),
    ("FR", "+0033612345678"), ("FR", "0612345"), ("FR", "06123456789"),
    ("FR", "+33612"), ("DE", "015123456789"), ("GB", "07400123456"), ("US", "2015550123"),
    ("IT", "3123456789"), ("IT", "0612345678"), ("ES", "612345678"), ("RE", "0639012345"),
])
def test_common_shapes_take_the_fast_path(region: str, raw: str,
                                          reference_calls: list[str]) -> None:
    verdict = NumberNormalizer(region).normalize(raw)
    assert reference_calls == []
    assert verdict == normalize_reference(raw, region)


def test_odd_shapes_go_to_the_reference(reference_calls: list[str]) -> None:
    normalizer = NumberNormalizer("FR")
    odd = ["++33612345678", "+33 (0)6 12 34 56 78", "tel:+33612345678", "06  12 34 56 78",
           "+33 6 12 34 56 78 ", "+33.6.12.34.56.78.", "\uff10\uff16 12 34 56 78",
           "+33612345678;ext=1", "+ 33 6 12 34 56 78"]
    for raw in odd:
        assert normalizer.normalize(raw) == "+33612345678"
    assert reference_calls == odd


# --- equivalence on random inputs -----------------------------------------------------------

Seed = tuple[str, phonenumbers.PhoneNumber]  # (region, number)


def example_numbers() -> list[Seed]:
    """libphonenumber's example number of every type in every region and non-geographic code."""
    seeds: list[Seed] = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in phonenumbers.PhoneNumberType.values():
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None:
                seeds.append((region, number))
    for code in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        number = phonenumbers.example_number_for_non_geo_entity(code)
        if number is not None:
            seeds.append(("001", number))
    return seeds


SEEDS = example_numbers()
FORMATTED = [phonenumbers.format_number(number, style) for _, number in SEEDS
             for style in (phonenumbers.PhoneNumberFormat.NATIONAL,
                           phonenumbers.PhoneNumberFormat.INTERNATIONAL)]
GARBAGE_BEFORE = ["tel:", "Tel ", " ", "x", "(", "a", "\u00a0", "+ ", "00", "#"]
GARBAGE_AFTER = [" ", "#", "x", "x12", " ext. 5", ";ext=12", ")", "a", "abc", ".", "\t", "/2"]
SEPARATORS = [" ", ".", "-"]
ODD_SEPARATORS = ["  ", "/", "\u00a0", "_", ". ", "--", "(", ")", "\u2011"]


def nsn(number: phonenumbers.PhoneNumber) -> str:
    return phonenumbers.national_significant_number(number)


def mutate(rng: random.Random, digits: str) -> str:
    """A few random edits: a digit changed, added, removed, or the end cut."""
    for _ in range(rng.choice((0, 1, 1, 1, 2, 3))):
        where = rng.randrange(len(digits) + 1)
        edit = rng.randrange(4)
        if edit == 0 and where < len(digits):
            digits = digits[:where] + rng.choice(string.digits) + digits[where + 1:]
        elif edit == 1:
            digits = digits[:where] + rng.choice(string.digits) + digits[where:]
        elif edit == 2 and where < len(digits):
            digits = digits[:where] + digits[where + 1:]
        elif edit == 3 and len(digits) > 2:
            digits = digits[:rng.randrange(2, len(digits) + 1)]
    return digits


def grouped(rng: random.Random, digits: str, separators: list[str]) -> str:
    """``digits`` cut in groups of 1..4 with separators between them."""
    parts: list[str] = []
    while digits:
        size = rng.randint(1, 4)
        parts.append(digits[:size])
        digits = digits[size:]
    out = parts[0] if parts else ""
    for part in parts[1:]:
        out += rng.choice(separators) + part
    return out


def random_digits(rng: random.Random, low: int = 0, high: int = 20) -> str:
    return "".join(rng.choices(string.digits, k=rng.randint(low, high)))


def national_prefix(region: str) -> str:
    return phonenumbers.ndd_prefix_for_region(region, True) or ""


FULLWIDTH = str.maketrans(string.digits, "".join(chr(0xFF10 + d) for d in range(10)))
ARABIC_INDIC = str.maketrans(string.digits, "".join(chr(0x0660 + d) for d in range(10)))


def e164_digits(number: phonenumbers.PhoneNumber) -> str:
    return str(number.country_code) + nsn(number)


def cases(rng: random.Random, region: str, count: int) -> Iterator[str]:
    """``count`` inputs for a normaliser of ``region``: its numbers, others, and noise."""
    code = str(phonenumbers.country_code_for_region(region))
    own = [number for _, number in SEEDS if str(number.country_code) == code]
    prefix = national_prefix(region)

    def anyone() -> phonenumbers.PhoneNumber:
        return rng.choice(SEEDS)[1]

    def ours() -> str:
        return nsn(rng.choice(own))

    makers: list[Callable[[], str]] = [
        # E.164 of any region, exact or edited, sometimes grouped; codes and numbers mixed.
        lambda: "+" + mutate(rng, e164_digits(anyone())),
        lambda: "+" + mutate(rng, str(anyone().country_code) + nsn(anyone())),
        lambda: "+" + grouped(rng, mutate(rng, e164_digits(anyone())), SEPARATORS),
        # The region's own numbers in national format, exact or edited, sometimes grouped.
        lambda: mutate(rng, prefix + ours()),
        lambda: prefix + mutate(rng, ours()),
        lambda: grouped(rng, prefix + mutate(rng, ours()), SEPARATORS),
        lambda: mutate(rng, ours()),
        lambda: ours()[-rng.randint(4, 8):],  # a local number, for the transform rules
        # Another region's national format, the calling code without "+", IDD, "+cc 0".
        lambda: mutate(rng, national_prefix(rng.choice(SEEDS)[0]) + nsn(anyone())),
        lambda: code + mutate(rng, ours()),
        lambda: rng.choice(["00", "011", "010", "810", "0011", "+00", "+"]) + mutate(
            rng, e164_digits(anyone())),
        lambda: "+" + code + rng.choice(["0", "00", "1", "8", "90", "15"]) + ours(),
        # The library's own formatting, edited digits included.
        lambda: rng.choice(FORMATTED),
        lambda: "".join(ch if not ch.isdigit() or rng.random() > 0.1 else rng.choice(
            string.digits) for ch in rng.choice(FORMATTED)),
        # Random digits with or without a prefix, grouped or not.
        lambda: rng.choice(["", "+", "0", "00", "+0", "++", "1", code]) + random_digits(rng),
        lambda: rng.choice(["", "+", "0"]) + grouped(rng, random_digits(rng, 1, 17),
                                                       SEPARATORS),
        # The French overseas prefixes, whatever the region.
        lambda: grouped(rng, rng.choice(list(numbers.FR_OVERSEAS_PREFIXES)) + random_digits(
            rng, 4, 8), SEPARATORS),
        # Garbage around or inside, other scripts' digits.
        lambda: rng.choice(GARBAGE_BEFORE) + mutate(rng, prefix + ours()) + rng.choice(
            GARBAGE_AFTER),
        lambda: rng.choice(["", "+"]) + grouped(rng, mutate(rng, ours()),
                                                 SEPARATORS + ODD_SEPARATORS),
        lambda: (prefix + ours()).translate(rng.choice([FULLWIDTH, ARABIC_INDIC])),
        lambda: "".join(rng.choices(string.digits + "+ .-()/xX#*abcdeABC;,\u00a0",
                                    k=rng.randint(0, 20))),
    ]
    for _ in range(count):
        yield rng.choice(makers)()


def compare(region: str, count: int, seed: int) -> tuple[list[str], int]:
    """Inputs on which the normaliser and the reference disagree, and how many there were."""
    rng = random.Random(seed)
    normalizer = NumberNormalizer(region)
    wrong = []
    inputs = list(cases(rng, region, count))
    for raw in inputs:
        expected = normalize_reference(raw, region)
        if normalizer.normalize(raw) != expected:
            wrong.append(f"{region} {raw!r}: expected {expected!r}")
    return wrong, len(inputs)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_fast_path_agrees_with_the_reference(reference_calls: list[str]) -> None:
    started = time.monotonic()
    wrong: list[str] = []
    total = 0
    for index, region in enumerate(MAIN_REGIONS):
        region_wrong, count = compare(region, CASES_PER_MAIN_REGION, seed=20_240 + index)
        wrong += region_wrong
        total += count
    fast = 1 - len(reference_calls) / total
    for index, region in enumerate(ODD_REGIONS):
        region_wrong, count = compare(region, CASES_PER_ODD_REGION, seed=40_480 + index)
        wrong += region_wrong
        total += count
    elapsed = time.monotonic() - started
    print(f"\n{total} inputs in {elapsed:.1f} s; fast path for {fast:.1%} of the main regions'")
    assert total >= 100_000
    assert not wrong, f"{len(wrong)} disagreements, first ones:\n" + "\n".join(wrong[:30])
    assert fast > 0.5  # the generator is built so that most inputs have a provable shape


TRICKY = [
    "+330612345678", "+0033612345678", "0033612345678", "+33 0 6 12 34 56 78", "33612345678",
    "+1 201 555 0123", "1 201 555 0123", "+1 416 555 0123", "+1 8765550123", "+7 912 345 6789",
    "+7 701 234 5678", "8 912 345 6789", "+44 1481 256789", "+44 7781 123456", "+441624 756789",
    "+262 269 60 12 34", "+262 639 01 23 45", "+590 690 00 12 34", "+590 590 27 12 34",
    "+599 9 518 1234", "+599 7 15 1234", "+800 1234 5678", "+979 123456789", "+882 3421 2345",
    "+39 06 1234 5678", "+39 0 6 12345678", "+39 3 12 345 6789", "+379 06 698 12345",
    "+54 9 11 2345 6789", "+54 11 2345 6789", "011 15 2345 6789", "+55 11 96123 4567",
    "0 21 11 96123 4567", "+52 1 55 1234 5678", "+61 4 1234 5678", "+61 8 9162 1234",
    "+81 90 1234 5678", "+49 1512 3456789", "+49 30 123456", "+358 18 12345",
    "+47 79 12 34 56", "+212 5288 12345", "+290 8 1234", "+290 22158", "0",
    "011 15 2345-6789", "0 11 15 2345 6789", "15 2345 6789", "0 15 11 96123 4567",
    "0 21 11 96123 4567", "90 21 11 96123 4567", "044 55 1234 5678", "045 55 1234 5678",
    "464 1234", "4641234", "1 268 464 1234", "0 11 12 34 56", "07 12 34 56", "0549 886377",
    "886377", "01800123456", "018001234567", "09001234567", "0 9 1234 5678", "0 3 1234 5678",
    "8 9123 1234", "91 23 45",
    "00", "000000000", "+0", "+00", "1", "12", "123", "1234", "+1", "+12", "+123",
    "+1234", "0 1", "06", "+33", "+33 6", "+336", "0 6 1", "+33 6 1", "+3361",
]


@pytest.mark.parametrize("region", MAIN_REGIONS + ODD_REGIONS)
def test_tricky_inputs_agree(region: str) -> None:
    normalizer = NumberNormalizer(region)
    for raw in TRICKY:
        assert normalizer.normalize(raw) == normalize_reference(raw, region), raw


@settings(max_examples=400, deadline=None)
@given(
    region=st.sampled_from(MAIN_REGIONS + ODD_REGIONS),
    raw=st.text(alphabet="0123456789 .-+", max_size=22)
    | st.from_regex(r"\+?[0-9]{1,4}(?:[ .-][0-9]{1,4}){0,5}", fullmatch=True),
)
def test_any_digits_and_separators_agree(region: str, raw: str) -> None:
    assert NumberNormalizer(region).normalize(raw) == normalize_reference(raw, region)


# --- the building blocks against the library's own steps ------------------------------------
# The fast path replays private steps of phonenumbers; these compare each replayed step with
# the library's function on every region's metadata and on made-up metadata that reaches the
# branches today's metadata does not (lengths narrower than the pattern, a mobile pattern equal
# to the fixed-line one with other lengths, a transform rule, local-only and too-long lengths).

UNKNOWN = phonenumbers.PhoneNumberType.UNKNOWN
UNDECIDED = ""  # what a step answers when it leaves the decision to the reference path
KEEPS_ORIGINAL = (phonenumbers.ValidationResult.TOO_SHORT,
                  phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY,
                  phonenumbers.ValidationResult.INVALID_LENGTH)


def library_is_valid(nsn: str, metadata: phonenumbers.PhoneMetadata) -> bool:
    return phonenumberutil._number_type_helper(nsn, metadata) != UNKNOWN


def library_national_number(number: str, metadata: phonenumbers.PhoneMetadata) -> str:
    """parse()'s national prefix step: strip, then keep the result if its length allows."""
    _, potential, _ = phonenumberutil._maybe_strip_national_prefix_carrier_code(number, metadata)
    if phonenumberutil._test_number_length(potential, metadata) in KEEPS_ORIGINAL:
        return number
    return str(potential)


def desc(pattern: str, *lengths: int, local: tuple[int, ...] = ()) -> PhoneNumberDesc:
    return PhoneNumberDesc(national_number_pattern=pattern, possible_length=lengths,
                           possible_length_local_only=local)


MADE_UP = [
    phonenumbers.PhoneMetadata(
        "XA", register=False, country_code=990, international_prefix="00",
        national_prefix_for_parsing="0",
        general_desc=desc(r"[1-9]\d{4,9}", 6, 7, 8, 9, 10, local=(5,)),
        fixed_line=desc(r"1\d{5,9}", 6, 8),  # narrower lengths than the pattern
        mobile=desc(r"1\d{5,9}", 7, 9),  # same pattern as fixed line: never consulted
        toll_free=desc(r"800\d{3,7}"),  # no lengths: the general ones
        premium_rate=desc(r"9\d+", -1),  # no such numbers
        voip=desc(r"7\d{5,9}", 10),
        uan=desc(r"0\d{6}", 7)),  # outside the general pattern: never valid
    phonenumbers.PhoneMetadata(
        "XB", register=False, country_code=991, international_prefix="0(?:0|11)",
        national_prefix_for_parsing=r"0?(?:(1[5-9])(\d{6}))?|9",
        national_prefix_transform_rule=r"2\2",
        general_desc=desc(r"[2-8]\d{6,8}|9\d{5}", 6, 7, 9),
        fixed_line=desc(r"[2-6]\d{6,8}", 7, 9),
        mobile=desc(r"[78]\d{6}|9\d{5}", 6, 7)),
]


@pytest.mark.parametrize("metadata", MADE_UP, ids=lambda metadata: metadata.id)
def test_made_up_metadata_steps_agree_with_the_library(
        metadata: phonenumbers.PhoneMetadata) -> None:
    validity = numbers._validity(metadata)
    rules = numbers._national_rules(metadata)
    assert validity is not None
    rng = random.Random(metadata.id)
    deferred = 0
    for _ in range(5_000):
        digits = "".join(rng.choices("0125789", k=rng.randint(1, 12)))
        assert bool(validity.fullmatch(digits)) == library_is_valid(digits, metadata), digits
        national = rules.national_number(digits)
        if national == UNDECIDED:
            deferred += 1
        else:
            assert national == library_national_number(digits, metadata), digits
    assert deferred < 250


def test_made_up_metadata_reaches_the_subtle_branches() -> None:
    """The cases the made-up metadata exists for, so that it keeps testing them."""
    xa, xb = MADE_UP
    assert library_is_valid("1234567", xa) is False  # fixed-line pattern, mobile length
    assert library_is_valid("12345678", xa) is True
    assert library_is_valid("8001234", xa) is True  # toll free on the general lengths
    assert library_is_valid("7123456", xa) is False  # VoIP pattern, wrong length
    assert library_is_valid("0123456", xa) is False  # UAN, but not the general pattern
    assert library_national_number("012345", xa) == "012345"  # 12345: local only, kept whole
    assert library_national_number("01234567890", xa) == "1234567890"
    assert library_national_number("015123456", xb) == "2123456"  # transform
    assert library_national_number("0151234567", xb) == "0151234567"  # 21234567: bad length
    assert library_national_number("9123456", xb) == "9123456"  # viable, 123456 is not


def region_metadata() -> list[phonenumbers.PhoneMetadata]:
    found = [phonenumbers.PhoneMetadata.metadata_for_region(region)
             for region in sorted(phonenumbers.SUPPORTED_REGIONS)]
    found += [phonenumbers.PhoneMetadata.metadata_for_nongeo_region(code)
              for code in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS)]
    return [metadata for metadata in found if metadata is not None]


@pytest.mark.slow
def test_every_region_steps_agree_with_the_library() -> None:
    rng = random.Random(31_337)
    by_code: dict[int, list[str]] = {}
    for _, number in SEEDS:
        by_code.setdefault(number.country_code, []).append(nsn(number))
    checked = deferred = 0
    for metadata in region_metadata():
        validity = numbers._validity(metadata)
        rules = numbers._national_rules(metadata)
        examples = by_code.get(metadata.country_code) or ["123456789"]
        prefix = metadata.national_prefix or "0"
        for _ in range(120):
            digits = mutate(rng, rng.choice(examples))
            valid = validity is not None and bool(validity.fullmatch(digits))
            assert valid == library_is_valid(digits, metadata), (metadata.id, digits)
            national = rng.choice(["", prefix, "0", "1", "8", "9"]) + digits
            ours = rules.national_number(national)
            if ours == UNDECIDED:
                deferred += 1
            else:
                assert ours == library_national_number(national, metadata), (
                    metadata.id, national)
            checked += 1
    assert checked > 25_000
    assert deferred < checked / 100


def test_shared_code_takes_the_first_region_that_claims_the_number() -> None:
    shared = numbers._SharedCode((
        (re.compile("268"), re.compile(r"268\d{7}")),  # by leading digits
        (None, re.compile(r"[2-9]\d{9}")),  # by validity
        (None, re.compile(r"\d{6}")),
    ))
    assert shared.matches("2681234567")
    assert not shared.matches("268123")  # claimed by the first region, invalid there
    assert shared.matches("3681234567")
    assert shared.matches("368123")
    assert not shared.matches("36812")


# --- the shortcut table (numbers decided inline by the row loop) ---------------------------

def inline(normalizer: NumberNormalizer, raw: str) -> str | None:
    """What the row loop decides with the table: the E.164 form, or None for "ask normalize"."""
    shortcut = normalizer.shortcuts().get(raw[:4])
    if shortcut is None:
        return None
    check, offset, base = shortcut
    return f"+{base + int(raw[offset:])}" if check(raw[offset:]) else None


def test_shortcuts_hold_the_french_shapes() -> None:
    table = NumberNormalizer("FR").shortcuts()
    assert {"+336", "+337", "+331", "0612", "0712", "0145"} <= set(table)
    # The overseas departments parse in their own regions; 00 and +330 start other shapes.
    assert not {"0692", "0639", "0690", "0033", "+330"} & set(table)
    assert inline(NumberNormalizer("FR"), "0612345678") == "+33612345678"
    assert inline(NumberNormalizer("FR"), "+33612345678") == "+33612345678"


@pytest.mark.parametrize("region", ["FR", *MAIN_REGIONS[1:], "YT", "MQ"])
def test_shortcuts_agree_with_the_reference(region: str) -> None:
    normalizer = NumberNormalizer(region)
    table = normalizer.shortcuts()
    rng = random.Random(f"shortcuts-{region}")
    decided = 0
    for _ in range(6_000 if table else 0):
        head = rng.choice(sorted(table))
        length = rng.choice([9, 9, 9, 8, 10, 11]) + (3 if head[0] == "+" else 1)
        raw = head + "".join(rng.choice(string.digits) for _ in range(length - 4))
        if rng.random() < 0.05:  # not ASCII digits: never decided inline
            position = rng.randrange(4, len(raw))
            raw = raw[:position] + rng.choice(["\u0663", " ", "a", "-"]) + raw[position + 1:]
        got = inline(normalizer, raw)
        if got is not None:
            decided += 1
            assert got == normalize_reference(raw, region) == normalizer.normalize(raw), raw
    assert decided > 100 or not table


def test_only_french_default_region_has_shortcuts_today() -> None:
    # Regions whose numbers have several lengths, or shared calling codes, have none: their
    # numbers go through normalize(), as before. (Not a rule: a metadata update may add some.)
    assert NumberNormalizer("FR").shortcuts()
    assert not NumberNormalizer("DE").shortcuts()
    assert not NumberNormalizer("RE").shortcuts()
