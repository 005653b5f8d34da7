"""``sftpd-agent count [TEXT]``: characters, encoding and SMS segments of messages."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TextIO

from ..config import load_settings
from ..errors import ExitCode
from ..rules.gsm import Counted, Policy, count


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text", nargs="?", metavar="TEXT",
                        help="the message; without it, one message per line from stdin")
    parser.add_argument("--json", action="store_true", help="one JSON object per message")
    parser.add_argument("--policy", choices=[p.value for p in Policy],
                        help="non_gsm policy (default: the configuration's, else transliterate)")


def run(args: argparse.Namespace) -> int:
    return count_messages(args, sys.stdin, sys.stdout)


def count_messages(args: argparse.Namespace, stdin: TextIO, out: TextIO) -> ExitCode:
    if args.policy:
        policy = Policy(args.policy)
    else:
        policy = load_settings(args.config, required=False).campaign.non_gsm
    if args.text is not None:
        texts: Sequence[str] = [args.text]
    else:
        texts = [line.rstrip("\r\n").replace("\\n", "\n") for line in stdin]
    for text in texts:
        counted = count(text, policy)
        if args.json:
            print(json.dumps(as_dict(counted), ensure_ascii=False), file=out)
        else:
            print(as_line(counted), file=out)
    return ExitCode.OK


def as_dict(counted: Counted) -> dict[str, object]:
    """The contract's ``count --json`` object."""
    return {
        "encoding": str(counted.encoding),
        "characters": counted.characters,
        "units": counted.units,
        "segments": counted.segments,
        "non_gsm": list(counted.non_gsm),
        "text": counted.text,
    }


def as_line(counted: Counted) -> str:
    unit = "septets" if counted.encoding == "gsm7" else "UTF-16 units"
    parts = [
        f"{counted.encoding}: {counted.characters} characters, {counted.units} {unit}, "
        f"{counted.segments} segment{'s' if counted.segments != 1 else ''}"
    ]
    if counted.replaced:
        parts.append("replaced " + ", ".join(f"{a}->{b!r}" for a, b in counted.replaced))
    if counted.unsendable:
        parts.append("cannot be sent: " + " ".join(counted.unsendable))
    elif counted.non_gsm and not counted.replaced:
        parts.append("outside GSM 03.38: " + " ".join(counted.non_gsm))
    return "; ".join(parts)
