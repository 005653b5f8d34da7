"""``sftpd-agent count [TEXT]``: characters, encoding and SMS segments of messages."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TextIO

from ..config import load_settings
from ..errors import ExitCode
from ..rules.compliance import mention_effect
from ..rules.gsm import Counted, Policy, count


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text", nargs="?", metavar="TEXT",
                        help="the message; without it, one message per line from stdin")
    parser.add_argument("--json", action="store_true", help="one JSON object per message")
    parser.add_argument("--policy", choices=[p.value for p in Policy],
                        help="non_gsm policy (default: the configuration's, else transliterate)")
    parser.add_argument("--stop-mention", nargs="?", const="", default=None, metavar="TEXT",
                        help="count each message as it would be sent with the opt-out mention "
                             "TEXT appended when it has none (without TEXT: the "
                             "configuration's campaign.stop_mention); says whether a mention "
                             "was present, appended or is missing")


def run(args: argparse.Namespace) -> int:
    return count_messages(args, sys.stdin, sys.stdout)


def count_messages(args: argparse.Namespace, stdin: TextIO, out: TextIO) -> ExitCode:
    settings = None
    if args.policy:
        policy = Policy(args.policy)
    else:
        settings = load_settings(args.config, required=False)
        policy = settings.campaign.non_gsm
    mention = args.stop_mention
    if mention == "":
        settings = settings or load_settings(args.config, required=False)
        mention = settings.campaign.stop_mention
    if args.text is not None:
        texts: Sequence[str] = [args.text]
    else:
        texts = [line.rstrip("\r\n").replace("\\n", "\n") for line in stdin]
    for given in texts:
        text, effect = (given, None) if mention is None else mention_effect(given, mention)
        counted = count(text, policy)
        if args.json:
            data = as_dict(counted)
            if effect is not None:
                data["optout"] = effect
            print(json.dumps(data, ensure_ascii=False), file=out)
        else:
            line = as_line(counted)
            print(line if effect is None else f"{line}; opt-out mention {effect}", file=out)
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
