"""Recipients' numbers (MSISDN) normalised to E.164 with libphonenumber's validity rules.

``normalize_reference`` is the definition: ``phonenumbers.parse`` in the parsing region, then
``is_valid_number``, then E.164. It costs 20-50 us a number, too slow for a million-row
campaign, so ``NumberNormalizer`` decides the plain shapes itself: ``+`` and digits, or
national digits, either with single spaces, dots or dashes between digit groups. For those,
``parse`` only drops the separators (no extension, no letters, no stray characters), and the
steps it takes on the digits are replayed here from the same metadata, with regexes compiled
once per region and calling code:

- ``_maybe_extract_country_code``: the calling code after ``+`` (first 1..3 digits that are
  one) and the retry without the ``+``; for a national number, the international prefix
  (``00``...) or the region's calling code written without ``+``;
- ``_maybe_strip_national_prefix_carrier_code`` and the length test that keeps its result;
- ``is_valid_number``: ``_region_code_for_number_from_list`` and ``_number_type_helper``.

Anything else (letters, brackets, several ``+``, other scripts' digits, fewer than 4 or more
than 17 digits) goes to the reference path. The replayed steps are private to phonenumbers:
``tests/test_numbers.py`` compares each with the library's own and the whole with
``normalize_reference`` on random inputs, so an upgrade that changes them fails there.

For the row loop of a million-row campaign, ``NumberNormalizer.shortcuts`` turns the
commonest shapes (the default region's numbers, written nationally or with "+" and its calling
code) into one regex per number, without a call into this module.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, NoReturn

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberDesc

#: French overseas departments dialled in French national format: their own parsing region.
FR_OVERSEAS_PREFIXES: Final[Mapping[str, str]] = MappingProxyType({
    "0692": "RE", "0693": "RE", "0639": "YT", "0690": "GP", "0691": "GP",
    "0694": "GF", "0696": "MQ", "0697": "MQ",
})
_FR_OVERSEAS_STARTS: Final = frozenset(FR_OVERSEAS_PREFIXES)

# What the reference removes before looking for an overseas prefix.
_SEPARATORS: Final = re.compile(r"[\s.()/-]")
# Digit groups with one space, dot or dash between them: parse() drops these separators and
# nothing else happens to them (no extension, no alpha conversion, no trailing strip).
_GROUPED_DIGITS: Final = re.compile(r"[0-9]+(?:[ .-][0-9]+)*")
_NON_GEO: Final = "001"
# A metadata pattern that consumes only digits: [0-9]-classes, \d, groups, counts, choices.
_DIGIT_PATTERN: Final = re.compile(r"(?:[0-9\[\](){}|?:,-]|\\d)*")
_MIN_FAST_DIGITS: Final = 4  # fewer: parse()'s viability rules, left to it
_MAX_NSN: Final = 17  # phonenumbers' _MAX_LENGTH_FOR_NSN
_MIN_NSN: Final = 2  # phonenumbers' _MIN_LENGTH_FOR_NSN

# The fast path's "cannot tell": never an E.164 number, never None, never a national number.
_UNDECIDED: Final = ""


def _calling_codes_by_prefix() -> Mapping[str, str]:
    """Every 3-digit start -> the calling code _extract_country_code reads in it."""
    codes = {str(code) for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE}
    table = {}
    for start in range(100, 1000):
        digits = str(start)
        found = next((digits[:size] for size in (1, 2, 3) if digits[:size] in codes), None)
        if found is not None:
            table[digits] = found
    return MappingProxyType(table)


# 900 short strings: cheap at import, and one lookup per number instead of three.
_CALLING_CODE_BY_PREFIX: Final = _calling_codes_by_prefix()


def normalize_reference(raw: str, default_region: str = "FR") -> str | None:
    """The E.164 form of ``raw`` if libphonenumber finds it valid, else None (slow, exact)."""
    _check_region(default_region)
    region = _parsing_region(_SEPARATORS.sub("", raw), default_region)
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    result: str = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return result


def _check_region(region: str) -> None:
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown region code {region!r}: expected an ISO code such as 'FR'")


def _parsing_region(compact: str, default_region: str) -> str:
    """The overseas department's region for a French national number, else the default."""
    if default_region == "FR":
        return FR_OVERSEAS_PREFIXES.get(compact[:4], default_region)
    return default_region


@dataclass(frozen=True, slots=True)
class _Country:
    """One calling code, and which national numbers is_valid_number accepts under it."""

    code: str
    # Truthy iff is_valid_number holds for the national significant number.
    is_valid: Callable[[str], object]
    plus_code: str
    # When the code has one region whose numbers have one length, made of digits only: that
    # length, and is_valid for strings of ASCII digits only (else false).
    ascii_valid: Callable[[str], object] | None = None
    length: int = 0

    def verdict(self, nsn: str) -> str | None:
        """E.164 if valid, None if not, _UNDECIDED if ``nsn`` is."""
        if nsn == _UNDECIDED:
            return _UNDECIDED
        if _MIN_NSN <= len(nsn) <= _MAX_NSN and self.is_valid(nsn):
            return self.plus_code + nsn
        return None


@dataclass(frozen=True, slots=True)
class _SharedCode:
    """is_valid_number for a calling code shared by several regions (+1, +7, +44, +262...).

    The number's region is the first, in the library's order, whose leading digits match it
    or, for a region without leading digits, that finds it valid; then that region decides.
    """

    regions: tuple[tuple[re.Pattern[str] | None, re.Pattern[str] | None], ...]

    def matches(self, nsn: str) -> bool:
        for leading, validity in self.regions:
            if leading is not None:
                if leading.match(nsn):
                    return validity is not None and validity.fullmatch(nsn) is not None
            elif validity is not None and validity.fullmatch(nsn):
                return True
        return False


def _never(nsn: str) -> None:
    """The validity of a region whose metadata describes no number."""


@dataclass(frozen=True, slots=True)
class _NationalRules:
    """One region's metadata as parse() applies it to a national number."""

    # national_prefix_for_parsing when it is plain digits ("0", "1", "8"): startswith is faster.
    literal: str | None
    pattern: re.Pattern[str] | None
    transform: str | None
    # The general description's pattern: _match_national_number(..., general_desc, False).
    general: re.Pattern[str] | None
    # Lengths for which _test_number_length(number, metadata) keeps a stripped number
    # (IS_POSSIBLE or TOO_LONG), and those that are TOO_LONG.
    kept_lengths: frozenset[int]
    too_long_lengths: frozenset[int]

    def strip(self, number: str) -> str:
        """_maybe_strip_national_prefix_carrier_code's number, or _UNDECIDED."""
        if self.literal is not None:
            if not number.startswith(self.literal):
                return number
            stripped = number[len(self.literal):]
        else:
            pattern = self.pattern
            found = pattern.match(number) if pattern is not None else None
            if pattern is None or found is None:
                return number
            groups = found.groups()
            if self.transform is not None and (not groups or groups[-1] is not None):
                if not groups:
                    return _UNDECIDED  # the library fails there: let it
                stripped = pattern.sub(self.transform, number, count=1)
            else:
                stripped = number[found.end():]
        general = self.general
        if general is not None and general.fullmatch(number) and not general.fullmatch(stripped):
            return number  # the number was viable and would no longer be
        return stripped

    def national_number(self, number: str) -> str:
        """The national number parse() ends with: stripped only if its length allows."""
        stripped = self.strip(number)
        if stripped in (_UNDECIDED, number) or len(stripped) in self.kept_lengths:
            return stripped
        return number

    def is_viable(self, number: str) -> bool:
        return self.general is not None and self.general.fullmatch(number) is not None


@dataclass(frozen=True, slots=True)
class _Region:
    """A parsing region: its international prefix, calling code and national rules."""

    international_prefix: re.Pattern[str] | None
    country: _Country
    rules: _NationalRules
    # Matches the start of digits that may not be a national number: the international
    # prefix or the calling code. Most numbers are spared the finer checks.
    maybe_international: re.Pattern[str]


@dataclass(frozen=True, slots=True)
class _Plus:
    """After "+": the calling code's length, its national prefix, and validity."""

    code_length: int
    literal: str
    is_valid: Callable[[str], object]


Shortcut = tuple[Callable[[str], object], int, int]
"""For :meth:`NumberNormalizer.shortcuts`: check, offset, base."""

_MISSING: Final = _Plus(0, "", bool)  # not looked up yet (None: no shortcut for the prefix)


@dataclass(frozen=True, slots=True)
class _CallingCode:
    """What parse() does after a calling code: the main region's national rules, validity."""

    country: _Country
    rules: _NationalRules


class NumberNormalizer:
    """Normalises numbers like ``normalize_reference``, in about a microsecond when it can.

    Regexes are compiled per region and calling code on first use and kept by the instance:
    keep one instance for a whole campaign.
    """

    __slots__ = ("_calling_codes", "_countries", "_default_region", "_plus", "_regions",
                 "_shortcuts")

    _default_region: str
    _regions: dict[str, _Region]
    _countries: dict[str, _Country]
    _calling_codes: dict[str, _CallingCode]
    _plus: dict[str, _Plus | None]
    _shortcuts: Mapping[str, Shortcut] | None

    def __init__(self, default_region: str = "FR") -> None:
        _check_region(default_region)
        object.__setattr__(self, "_default_region", default_region)
        object.__setattr__(self, "_regions", {})
        object.__setattr__(self, "_countries", {})
        object.__setattr__(self, "_calling_codes", {})
        object.__setattr__(self, "_plus", {})
        object.__setattr__(self, "_shortcuts", None)

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._default_region!r})"

    @property
    def default_region(self) -> str:
        return self._default_region

    def normalize(self, raw: str) -> str | None:
        """The E.164 form of ``raw`` ("+33612345678"), or None if it is not a valid number."""
        # Shortcuts for the two shapes of nearly every campaign row, valid numbers written
        # "+<code><national number>" or "0<national number>": the steps of ``_fast`` that
        # cannot change such a number are skipped. Any other outcome takes the full path.
        if raw.isdigit() and raw.isascii():
            if _MIN_FAST_DIGITS <= len(raw) <= _MAX_NSN:
                found = self._national_shortcut(raw)
                if found:
                    return found
        elif raw[:1] == "+":
            digits = raw[1:]
            if digits.isdigit() and digits.isascii() and len(digits) <= _MAX_NSN:
                plus = self._plus.get(digits[:3], _MISSING) if len(digits) >= _MIN_FAST_DIGITS \
                    else None
                if plus is _MISSING:
                    plus = self._plus_shortcut(digits[:3])
                if plus is not None:
                    nsn = digits[plus.code_length:]
                    if (len(nsn) >= _MIN_NSN and not nsn.startswith(plus.literal)
                            and plus.is_valid(nsn)):
                        return raw
        verdict = self._fast(raw)
        if verdict == _UNDECIDED:
            return normalize_reference(raw, self._default_region)
        return verdict

    def shortcuts(self) -> Mapping[str, Shortcut]:
        """The number shapes a caller may decide itself, by their first 4 characters.

        For ``check, offset, base = shortcuts()[raw[:4]]``: if ``check(raw[offset:])``,
        ``raw`` is valid and its E.164 digits, as an int, are ``base + int(raw[offset:])``;
        :meth:`normalize` decides anything else (and gives the same answer on these, only
        slower). This is :meth:`normalize`'s own shortcut for
        "+<code><national number>" and "<national prefix><national number>", where the first
        4 characters already tell the code, the region and that the prefix steps are
        skipped, and one regex (the length, ASCII digits, valid) tells the rest: the shape of
        nearly every row, decided without a call in a million-row loop.
        """
        if self._shortcuts is None:
            table = dict(self._national_shortcuts())
            table.update(self._plus_shortcuts())
            object.__setattr__(self, "_shortcuts", table)  # a dict: the fastest lookups
        assert self._shortcuts is not None  # noqa: S101 - for mypy
        return self._shortcuts

    def _plus_shortcuts(self) -> Iterator[tuple[str, Shortcut]]:
        """The heads "+ddd" that hold the default region's calling code and the national
        number's first digits (other codes: :meth:`normalize`)."""
        own = self._regions.get(self._default_region) or self._region(self._default_region)
        for start, code in _CALLING_CODE_BY_PREFIX.items():
            if code != own.country.code:
                continue
            plus = self._plus.get(start, _MISSING)
            if plus is _MISSING:
                plus = self._plus_shortcut(start)
            country = self._country(code)
            if plus is None or country.ascii_valid is None:
                continue
            head_nsn = start[len(code):]  # the national number's first digits, if any
            if not head_nsn or plus.literal.startswith(head_nsn) or head_nsn.startswith(
                    plus.literal):
                continue  # the head does not tell whether the national prefix follows
            digits = len(code) + country.length
            if _MIN_FAST_DIGITS <= digits <= _MAX_NSN and country.length >= _MIN_NSN:
                yield "+" + start, (country.ascii_valid, 1 + len(code),
                                    int(code) * 10 ** country.length)

    def _national_shortcuts(self) -> Iterator[tuple[str, Shortcut]]:
        """The heads of national numbers written with the parsing region's plain prefix."""
        for number in range(10_000):
            head = f"{number:04d}"
            region_code = _parsing_region(head, self._default_region)
            region = self._regions.get(region_code) or self._region(region_code)
            literal, country = region.rules.literal, region.country
            if not literal or not head.startswith(literal) or len(literal) > len(head):
                continue
            if country.ascii_valid is None or country.length not in region.rules.kept_lengths:
                continue
            idd = region.international_prefix
            if idd is not None and not idd.pattern.isdigit():
                continue  # the head may not tell whether it matches
            if any(head.startswith(start) or start.startswith(head)
                   for start in (idd.pattern if idd else None, country.code) if start):
                continue  # maybe international: the full path decides
            length = len(literal) + country.length
            if _MIN_FAST_DIGITS <= length <= _MAX_NSN and country.length >= _MIN_NSN:
                yield head, (country.ascii_valid, len(literal),
                             int(country.code) * 10 ** country.length)

    def _national_shortcut(self, digits: str) -> str | None:
        """A valid national number written with the region's plain national prefix, else None
        (the full path then decides)."""
        region_code = self._default_region
        if region_code == "FR" and digits[:4] in _FR_OVERSEAS_STARTS:
            region_code = FR_OVERSEAS_PREFIXES[digits[:4]]
        region = self._regions.get(region_code) or self._region(region_code)
        rules = region.rules
        literal = rules.literal
        if not literal or not digits.startswith(literal) or region.maybe_international.match(
                digits):
            return None
        stripped = digits[len(literal):]
        general = rules.general
        if general is not None and not general.fullmatch(stripped) and general.fullmatch(digits):
            return None
        if len(stripped) not in rules.kept_lengths or len(stripped) < _MIN_NSN:
            return None
        country = region.country
        return country.plus_code + stripped if country.is_valid(stripped) else None

    def _plus_shortcut(self, start: str) -> _Plus | None:
        """The shortcut for numbers written "+" then digits starting with ``start``."""
        code = _CALLING_CODE_BY_PREFIX.get(start)
        plus = None
        if code is not None:
            rules = (self._calling_codes.get(code) or self._calling_code(code)).rules
            if rules.literal:
                plus = _Plus(len(code), rules.literal, self._country(code).is_valid)
        self._plus[start] = plus
        return plus

    def _fast(self, raw: str) -> str | None:
        """The reference's verdict for the plain shapes, else _UNDECIDED."""
        international = raw[:1] == "+"
        digits = raw[1:] if international else raw
        if not (digits.isdigit() and digits.isascii()):
            if _GROUPED_DIGITS.fullmatch(digits) is None:
                return _UNDECIDED
            digits = digits.replace(" ", "").replace(".", "").replace("-", "")
        if not _MIN_FAST_DIGITS <= len(digits) <= _MAX_NSN:
            return _UNDECIDED
        if international:
            code = _CALLING_CODE_BY_PREFIX.get(digits[:3])
            if code is None:  # parse() reads the digits again as if the "+" were not there
                region = self._regions.get(self._default_region) or self._region(
                    self._default_region)
                return self._without_plus(digits, region, national=False)
            return self._national_after_code(code, digits[len(code):])
        region_code = self._default_region
        if region_code == "FR" and digits[:4] in _FR_OVERSEAS_STARTS:
            region_code = FR_OVERSEAS_PREFIXES[digits[:4]]
        region = self._regions.get(region_code) or self._region(region_code)
        if region.maybe_international.match(digits):
            return self._without_plus(digits, region, national=True)
        return region.country.verdict(region.rules.national_number(digits))

    def _after_idd(self, digits: str) -> str | None:
        """After an international prefix: the calling code, then the national number."""
        if len(digits) <= _MIN_NSN:
            return None  # TOO_SHORT_AFTER_IDD
        code = _CALLING_CODE_BY_PREFIX.get(digits[:3])
        if code is None:
            return None  # INVALID_COUNTRY_CODE
        return self._national_after_code(code, digits[len(code):])

    def _without_plus(self, digits: str, region: _Region, *, national: bool) -> str | None:
        """Digits without "+" in a region: an international prefix, the region's calling code
        without "+", or else a national number (or invalid, when ``national`` is false)."""
        idd = region.international_prefix
        found = idd.match(digits) if idd is not None else None
        if found is not None and digits[found.end():found.end() + 1] != "0":
            return self._after_idd(digits[found.end():])
        country = region.country
        if digits.startswith(country.code):
            rules = region.rules
            potential = rules.strip(digits[len(country.code):])
            if potential == _UNDECIDED:
                return _UNDECIDED
            if (not rules.is_viable(digits) and rules.is_viable(potential)) or (
                    len(digits) in rules.too_long_lengths):
                return self._national_after_code(country.code, potential)
        if not national:
            return None  # INVALID_COUNTRY_CODE
        return country.verdict(region.rules.national_number(digits))

    def _national_after_code(self, code: str, number: str) -> str | None:
        if len(number) < _MIN_NSN:
            return None  # TOO_SHORT_NSN
        after = self._calling_codes.get(code) or self._calling_code(code)
        rules = after.rules
        if rules.literal is None or number.startswith(rules.literal):
            number = rules.national_number(number)
        return after.country.verdict(number)

    def _region(self, region_code: str) -> _Region:
        metadata = PhoneMetadata.metadata_for_region(region_code)
        assert metadata is not None, region_code  # noqa: S101 - SUPPORTED_REGIONS or the table
        code = str(metadata.country_code)
        idd = metadata.international_prefix
        region = _Region(
            international_prefix=_compiled(idd),
            country=self._country(code),
            rules=_national_rules(metadata),
            maybe_international=re.compile(f"(?:{idd})|{code}" if idd else code),
        )
        self._regions[region_code] = region
        return region

    def _calling_code(self, code: str) -> _CallingCode:
        main_region = phonenumbers.COUNTRY_CODE_TO_REGION_CODE[int(code)][0]
        main = _metadata(int(code), main_region)
        assert main is not None, code  # noqa: S101 - every calling code has metadata
        after = _CallingCode(self._country(code), _national_rules(main))
        self._calling_codes[code] = after
        return after

    def _country(self, code: str) -> _Country:
        known = self._countries.get(code)
        if known is not None:
            return known
        regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE[int(code)]
        is_valid: Callable[[str], object]
        ascii_valid = None
        length = 0
        if len(regions) == 1:
            metadata = _metadata(int(code), regions[0])
            validity = _validity(metadata) if metadata is not None else None
            is_valid = _never if validity is None else validity.fullmatch
            general = None if metadata is None else metadata.general_desc
            if validity is not None and general is not None and metadata is not None and (
                    _digits_only(metadata)):
                lengths = _positive(general.possible_length)
                if len(lengths) == 1:
                    # The same regex: on ASCII text \d is [0-9] either way, and else it
                    # matches nothing (it only consumes digits); re.ASCII makes it faster.
                    ascii_valid = re.compile(validity.pattern, re.ASCII).fullmatch
                    length = min(lengths)
        else:
            steps = []
            for region_code in regions:
                metadata = _metadata(int(code), region_code)
                if metadata is not None:
                    steps.append((_compiled(metadata.leading_digits), _validity(metadata)))
            is_valid = _SharedCode(tuple(steps)).matches
        country = _Country(code, is_valid, "+" + code, ascii_valid, length)
        self._countries[code] = country
        return country


def _digits_only(metadata: PhoneMetadata) -> bool:
    """Whether every pattern :func:`_validity` takes from ``metadata`` consumes digits only
    (digits, ``\\d``, classes, groups, alternatives, counts): its other parts are lookaheads.
    (A validity regex exists only if the general description has a pattern.)"""
    descs = [metadata.general_desc, metadata.mobile, metadata.fixed_line, metadata.premium_rate,
             metadata.toll_free, metadata.shared_cost, metadata.voip, metadata.personal_number,
             metadata.pager, metadata.uan, metadata.voicemail]
    return all(_DIGIT_PATTERN.fullmatch(desc.national_number_pattern)
               for desc in descs if desc is not None and desc.national_number_pattern)


def _metadata(code: int, region_code: str) -> PhoneMetadata | None:
    if region_code == _NON_GEO:
        return PhoneMetadata.metadata_for_nongeo_region(code)
    return PhoneMetadata.metadata_for_region(region_code.upper())


def _compiled(pattern: str | None) -> re.Pattern[str] | None:
    return re.compile(pattern) if pattern else None


def _national_rules(metadata: PhoneMetadata) -> _NationalRules:
    pattern = metadata.national_prefix_for_parsing
    transform = metadata.national_prefix_transform_rule or None
    plain = pattern is not None and pattern.isdigit() and pattern.isascii() and not transform
    general = metadata.general_desc
    kept: frozenset[int] = frozenset()
    too_long: frozenset[int] = frozenset()
    if general is not None and general.possible_length:
        results = {length: _length_result(length, general) for length in range(_MAX_NSN + 2)}
        kept = frozenset(n for n, result in results.items() if result in ("possible", "long"))
        too_long = frozenset(n for n, result in results.items() if result == "long")
    return _NationalRules(
        literal=pattern if plain else None,
        pattern=_compiled(pattern),
        transform=transform,
        general=_compiled(general.national_number_pattern if general is not None else None),
        kept_lengths=kept,
        too_long_lengths=too_long,
    )


def _length_result(length: int, general: PhoneNumberDesc) -> str:
    """_test_number_length for the general description, as the library orders its tests."""
    possible = general.possible_length
    if length in general.possible_length_local_only:
        return "local"
    if length == possible[0]:
        return "possible"
    if length < possible[0]:
        return "short"
    if length > possible[-1]:
        return "long"
    return "possible" if length in possible[1:] else "invalid"


def _validity(metadata: PhoneMetadata) -> re.Pattern[str] | None:
    """One regex that fullmatches a national number iff _number_type_helper finds a type.

    That is: the general description matches (length and pattern), and so does one of the
    types it tries, in any order (mobile only when its pattern differs from fixed line's, as
    the library skips it otherwise). Mobile and fixed line come first: most numbers are such.
    """
    general = metadata.general_desc
    if general is None or not general.national_number_pattern:
        return None
    general_lengths = _positive(general.possible_length)
    if general.possible_length and not general_lengths:
        return None
    descs = [metadata.fixed_line, metadata.premium_rate, metadata.toll_free,
             metadata.shared_cost, metadata.voip, metadata.personal_number, metadata.pager,
             metadata.uan, metadata.voicemail]
    if not metadata.same_mobile_and_fixed_line_pattern:
        descs.insert(0, metadata.mobile)
    types = [found for desc in descs if (found := _desc(desc, general_lengths)) is not None]
    if not types:
        return None
    check = _lengths(general_lengths) if general_lengths else ""
    return re.compile(
        f"{check}(?=(?:{general.national_number_pattern})\\Z)(?:{'|'.join(types)})"
    )


def _desc(desc: PhoneNumberDesc | None, general_lengths: frozenset[int]) -> str | None:
    """A regex for _is_number_matching_desc once the general description has matched."""
    if desc is None or not desc.national_number_pattern:
        return None
    pattern = f"(?:{desc.national_number_pattern})"
    if not desc.possible_length:
        return pattern
    lengths = _positive(desc.possible_length)
    if not lengths:
        return None  # (-1,): the library's "no number of this type"
    if general_lengths and lengths >= general_lengths:
        return pattern  # the general length check already did it
    return _lengths(lengths) + pattern


def _positive(lengths: Sequence[int]) -> frozenset[int]:
    return frozenset(length for length in lengths if length > 0)


def _lengths(lengths: Iterable[int]) -> str:
    """A lookahead that holds iff the whole (digit) string has one of ``lengths``."""
    runs: list[tuple[int, int]] = []
    for length in sorted(set(lengths)):
        if runs and runs[-1][1] == length - 1:
            runs[-1] = (runs[-1][0], length)
        else:
            runs.append((length, length))
    parts = [f".{{{low}}}" if low == high else f".{{{low},{high}}}" for low, high in runs]
    return f"(?=(?:{'|'.join(parts)})\\Z)"
