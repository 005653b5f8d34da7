"""Phone numbers in what people read (logs, e-mails, hook output, the demo): masked.

One rule, one home: if the log's masking and the e-mail's drifted apart, personal data
would leak through the laxer one. A number is masked as ``+33612****78``; any run of digits
that may be a phone number, written with spaces or not (``06 12 34 56 78``,
``0612345678``, ``+33612345678``), is masked wherever it appears in a text.
"""

from __future__ import annotations

import re

_MASK_HEAD = 6  # "+33612": country code and the first digits, enough to tell a range
_MASK_TAIL = 2
_MASK_MIN_STARS = 2
# An international number or a long run of digits, spaces allowed between them.
_NUMBER = re.compile(r"\+?\d[\d ]{7,16}\d")


def mask(msisdn: str) -> str:
    """``msisdn`` fit for a log line: "+33612345678" -> "+33612****78"."""
    stars = len(msisdn) - _MASK_HEAD - _MASK_TAIL
    if stars < _MASK_MIN_STARS:
        return "*" * len(msisdn)
    return msisdn[:_MASK_HEAD] + "*" * stars + msisdn[-_MASK_TAIL:]


def mask_numbers(text: str) -> str:
    """``text`` with every phone number in it masked."""
    return _NUMBER.sub(lambda match: mask(match.group(0).replace(" ", "")), text)
