"""The compliance guard: the opt-out mention (found, appended before counting, required) and
the senders of marketing SMS, from the pure functions to errors.csv and the uploaded rows."""

from __future__ import annotations

import csv
import datetime
import io
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sftpd_agent.config import Settings
from sftpd_agent.pipeline.intake import rules_from, take_in
from sftpd_agent.rules.compliance import (
    ACCENTED_STOP_LETTERS,
    OptoutMention,
    has_optout_mention,
    is_mobile_sender,
    mention_effect,
    mention_problem,
    resolve_policy,
    with_mention,
)
from sftpd_agent.rules.gsm import Policy, count
from sftpd_agent.rules.upload_file import UploadWriter
from sftpd_agent.rules.validation import Row, RowError, Rules, Summary, Validator

NOW = datetime.datetime(2026, 11, 23, 9, 0, tzinfo=datetime.UTC)
MENTION = "STOP au 36111"
LINK_MENTION = "Desinscription : https://ex.co/u"


def run(text: str, rules: Rules) -> tuple[Summary, list[Row], list[RowError]]:
    rows: list[Row] = []
    errors: list[RowError] = []
    summary = Validator(rules).validate(io.BytesIO(text.encode()), file="t.csv",
                                        on_row=rows.append, on_error=errors.append)
    return summary, rows, errors


# What counts as a mention --------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "STOP au 36111", "Stop 36111", "STOP: 36111", "stop à 36 111", "STOP SMS au 36111",
    "Répondez STOP au 36111.", "Offre -20% ! STOP au 36111 Profitez-en vite",
    "STÖP au 36111", "ŠTOP 36111", "STOP=36111", "(STOP au 36111)", "STOP\u00a0au\u00a036111",
    "Pour ne plus recevoir nos SMS : stop par sms au 36111",
])
def test_stop_and_a_number_is_a_mention(text: str) -> None:
    assert has_optout_mention(text)
    assert has_optout_mention("Bonjour Zoé, -30 % ce week-end ! " + text)


@pytest.mark.parametrize("text", [
    "", "STOP", "Soldes : stop aux prix fous !", "Ouvert non-stop 36111", "non stop 7j/7",
    "STOPPER 36111", "xSTOP 36111", "STOP au 36xxx", "STOP au 123", "Bus stop 2 rue Haute",
    "Rendez-vous sur https://shop.example/soldes",  # a link, but not the account's
    "24h non-stop 2024",
])
def test_what_is_not_a_mention(text: str) -> None:
    assert not has_optout_mention(text)
    assert not has_optout_mention(text, "")


def test_the_configured_link_counts_and_other_links_do_not() -> None:
    assert has_optout_mention("Soldes ! https://ex.co/u", LINK_MENTION)
    assert has_optout_mention("Soldes ! ex.co/u/Xy12 pour vous desinscrire", LINK_MENTION)
    assert has_optout_mention("Soldes ! HTTP://WWW.EX.CO/u?id=3", LINK_MENTION)
    assert has_optout_mention("Soldes ! Desinscription : https://ex.co/u.", LINK_MENTION)
    assert not has_optout_mention("Soldes ! https://ex.co/unsub", LINK_MENTION)
    assert not has_optout_mention("Soldes ! https://ex.com/u", LINK_MENTION)
    assert not has_optout_mention("Soldes ! https://shop.ex.co/soldes", LINK_MENTION)
    assert not has_optout_mention("Soldes ! https://ex.co/u", "")  # no link configured
    assert has_optout_mention("Soldes ! STOP au 36111", LINK_MENTION)  # STOP always counts


def test_a_configured_text_without_stop_or_link_counts_as_itself() -> None:
    # The configuration refuses such a text; a direct caller still gets "the configured text".
    configured = "Desabonnement : repondez non"
    assert has_optout_mention("Promo. Désabonnement : répondez   NON", configured)
    assert not has_optout_mention("Promo. Désabonnement", configured)


def test_with_mention_appends_a_space_and_the_text_once() -> None:
    assert with_mention("Soldes -30 %", MENTION) == "Soldes -30 % STOP au 36111"
    assert with_mention("Soldes -30 %\n", MENTION) == "Soldes -30 %\nSTOP au 36111"
    assert with_mention("Soldes. Stop 36111 !", MENTION) == "Soldes. Stop 36111 !"
    assert with_mention("Soldes", "") == "Soldes"
    assert with_mention("   ", MENTION) == "   "  # an empty message stays empty
    assert with_mention("Soldes", LINK_MENTION) == "Soldes Desinscription : https://ex.co/u"


def test_the_effect_count_shows() -> None:
    assert mention_effect("Soldes", MENTION) == ("Soldes STOP au 36111", "appended")
    assert mention_effect("Soldes STOP 36111", MENTION) == ("Soldes STOP 36111", "present")
    assert mention_effect("Soldes", "") == ("Soldes", "missing")
    assert mention_effect(" ", MENTION) == (" ", "empty")
    sent, _ = mention_effect("x" * 150, MENTION)
    assert count(sent).segments == 2  # what count then shows: the text as sent


@pytest.mark.parametrize(("mention", "problem"), [
    ("", False), (MENTION, False), ("Stop 36111", False), (LINK_MENTION, False),
    ("www.ex.co/stop", False), ("STOP au 36xxx", True), ("Desinscrivez-vous", True),
    ("STOP au\n36111", True),
])
def test_a_mention_that_does_not_say_how_to_opt_out_is_refused(mention: str,
                                                                problem: bool) -> None:
    assert (mention_problem(mention) is not None) is problem


def test_the_default_policy() -> None:
    assert resolve_policy(None, MENTION, marketing=True) == "append"
    assert resolve_policy(None, MENTION, marketing=False) == "append"
    assert resolve_policy(None, "", marketing=True) == "require"
    assert resolve_policy(None, "", marketing=False) == "off"
    assert resolve_policy("off", MENTION, marketing=True) == "off"


# Properties ---------------------------------------------------------------------------

_PIECES = ["STOP", "stop", "Stop", "StÖp", "ŠTOP", "non-", "x", " au ", " à ", ": ", " ",
           "36111", "36 111", "123", "SMS", "é", "ê", "€", "https://ex.co/u", "ex.co/u/x",
           "ex.com", "\n", "-", ".", "🎄", "\u017ftop"]  # a long s
texts = st.lists(st.one_of(st.sampled_from(_PIECES), st.text(max_size=6)),
                 max_size=12).map("".join)
mentions = st.sampled_from(["", MENTION, "Stop SMS 36 111", LINK_MENTION, "www.ex.co/u"])


@settings(max_examples=600, deadline=None)
@given(text=texts, mention=mentions)
def test_the_row_loops_fast_answer_is_the_rules(text: str, mention: str) -> None:
    finder = OptoutMention(mention)
    accented = not ACCENTED_STOP_LETTERS.isdisjoint(text)
    assert finder.in_row(text, text.encode(), accented) == finder.in_text(text)


@settings(max_examples=400, deadline=None)
@given(text=texts, mention=mentions.filter(bool))
def test_appending_never_leaves_a_text_without_a_mention(text: str, mention: str) -> None:
    sent = with_mention(text, mention)
    if text.strip():
        assert has_optout_mention(sent, mention)
        assert sent.startswith(text)
    else:
        assert sent == text
    assert with_mention(sent, mention) == sent  # appended once


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.lists(st.sampled_from([*"abcXYZ éê€[ !", "STOP 36111 ", "x" * 60]),
                     min_size=1, max_size=30).map("".join),
       mention=st.sampled_from([MENTION, LINK_MENTION, "Désabo : STOP au 36111"]),
       policy=st.sampled_from(list(Policy)))
def test_an_appended_row_is_counted_and_sent_with_the_mention(
        body: str, mention: str, policy: Policy) -> None:
    rules = Rules(optout="append", stop_mention=mention, policy=policy, max_segments=10)
    summary, rows, errors = run(f"a;+33612345678;S;{body}\n", rules)
    if not body.strip():
        assert [e.code for e in errors] == ["msg_empty"]
        return
    expected = count(with_mention(body, mention), policy)
    if expected.unsendable:
        assert [e.code for e in errors] == ["msg_non_gsm"]
        return
    if expected.segments > 10:  # the mention counted
        assert [e.code for e in errors] == ["msg_too_long"]
        return
    assert errors == []
    (row,) = rows
    assert has_optout_mention(row.text, mention)
    assert row.text == expected.text and row.segments == expected.segments
    assert summary.segments == expected.segments
    assert summary.optout_appended == (0 if has_optout_mention(body, mention) else 1)


# The row rules ------------------------------------------------------------------------

def test_append_counts_the_text_sent_so_a_row_can_become_too_long() -> None:
    rules = Rules(optout="append", stop_mention=MENTION, max_segments=1)
    fits = "x" * (160 - len(MENTION) - 1)
    summary, rows, errors = run(
        f"a;+33612345678;S;{fits}\n"            # 160 with the mention: 1 SMS
        f"b;+33612345679;S;{fits}x\n"           # 161: too long once appended
        f"c;+33612345680;S;{'x' * 149} STOP 36111\n"  # has one: unchanged
        f"d;+33612345681;S;\n", rules)          # empty stays empty
    assert [(e.line, e.code, e.field) for e in errors] == [(2, "msg_too_long", "MSG"),
                                                          (4, "msg_empty", "MSG")]
    assert errors[0].detail == "2 segments, max_segments = 1"
    assert [r.text for r in rows] == [f"{fits} {MENTION}", f"{'x' * 149} STOP 36111"]
    assert [r.segments for r in rows] == [1, 1]
    assert summary.optout_appended == 1 and summary.as_dict()["optout_appended"] == 1


def test_appended_duplicates_and_invalid_rows_are_not_counted_as_appended() -> None:
    rules = Rules(optout="append", stop_mention=MENTION)
    summary, rows, _ = run("a;+33612345678;S;Promo\nb;0612345678;S;Promo\nc;12;S;Promo\n"
                           "d;+33612345679;S;Fête -20 €\n", rules)
    assert summary.optout_appended == 2 and summary.duplicates == 1 and summary.invalid == 1
    assert [r.text for r in rows] == ["Promo STOP au 36111", "Fete -20 € STOP au 36111"]
    assert summary.segments == 2


def test_require_makes_a_row_without_a_mention_invalid() -> None:
    rules = Rules(optout="require")
    summary, rows, errors = run(
        "a;+33612345678;S;Promo STOP au 36111\n"
        "b;+33612345679;S;Promo -30 % ce week-end\n"
        "c;+33612345680;S;\n", rules)
    assert [(e.line, e.code, e.field, e.value) for e in errors] == [
        (2, "msg_no_optout", "MSG", "Promo -30 % ce week-end"),
        (3, "msg_empty", "MSG", ""),  # not also msg_no_optout
    ]
    assert "stop_mention_policy = require" in errors[0].detail
    assert [r.idremote for r in rows] == ["a"] and summary.optout_appended == 0
    assert summary.invalid_by_code["msg_no_optout"] == 1


def test_off_looks_for_nothing() -> None:
    summary, rows, errors = run("a;+33612345678;S;Promo\n", Rules(optout="off"))
    assert errors == [] and rows[0].text == "Promo" and summary.optout_appended == 0


@pytest.mark.parametrize(("sender", "code"), [
    ("0612345678", "oadc_mobile"), ("0712345678", "oadc_mobile"),
    ("33612345678", "oadc_mobile"), ("+33612345678", "oadc_mobile"),
    ("+33 6 12 34 56 78", "oadc_mobile"), ("0033712345678", "oadc_mobile"),
    ("262692123456", "oadc_mobile"), ("INFO", "oadc_blocked"), ("banque", "oadc_blocked"),
    ("Livraison", "oadc_blocked"), ("Boutique é", "oadc"), ("TwelveChars1", "oadc"),
])
def test_marketing_senders(sender: str, code: str) -> None:
    rules = Rules(marketing=True, sender_blocklist=("INFO", "BANQUE", "LIVRAISON"))
    summary, rows, errors = run(f"ok;+33612345600;Shop;fine\na;+33612345678;{sender};x\n", rules)
    assert [(e.line, e.code, e.field, e.value) for e in errors] == [
        (2, code, "OADC", sender.strip())]
    assert summary.invalid_by_code[code] == 1 and len(rows) == 1


@pytest.mark.parametrize("sender", ["Boutique", "INFOS", "InfoShop", "36111", "0123456789",
                                    "33123456789", "061234567"])
def test_marketing_senders_that_pass(sender: str) -> None:
    rules = Rules(marketing=True, sender_blocklist=("INFO",))
    assert run(f"a;+33612345678;{sender};x\n", rules)[2] == []
    assert not is_mobile_sender(sender)


def test_transactional_campaigns_keep_todays_sender_rules() -> None:
    rules = Rules(marketing=False, sender_blocklist=("INFO",))
    _, rows, errors = run("a;+33612345678;0612345678;x\nb;+33612345679;INFO;x\n", rules)
    assert errors == [] and [r.oadc for r in rows] == ["0612345678", "INFO"]


def test_the_default_sender_is_checked_as_a_row_sender() -> None:
    rules = Rules(marketing=True, default_sender="0612345678")
    errors = run("a;+33612345678;;x\nb;+33612345679;Shop;x\n", rules)[2]
    assert [(e.line, e.code, e.value) for e in errors] == [(1, "oadc_mobile", "0612345678")]


# Through take_in: errors.csv and the rows written for upload -------------------------

def settings_with(**campaign: Any) -> Settings:
    return Settings(service_id="12345", campaign={"marketing": True, **campaign})


def errors_csv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle, delimiter=";"))


def test_each_new_code_reaches_errors_csv_with_line_field_and_value(tmp_path: Path) -> None:
    campaign = tmp_path / "promo.csv"
    campaign.write_text(
        "IDREMOTE;MSISDN;OADC;MSG\r\n"
        "a1;+33612345601;Shop;Soldes STOP au 36111\r\n"
        "a2;+33612345602;0612345678;Soldes STOP au 36111\r\n"
        "a3;+33612345603;Colis;Soldes STOP au 36111\r\n"
        "a4;+33612345604;Shop;Soldes sans mention\r\n", encoding="utf-8")
    errors = tmp_path / "promo.errors.csv"
    result = take_in(campaign, settings_with(), now=NOW, errors_to=errors)
    table = errors_csv(errors)
    assert table[0] == ["line", "code", "field", "value", "detail"]
    assert [row[:4] for row in table[1:]] == [
        ["3", "oadc_mobile", "OADC", "0612345678"],
        ["4", "oadc_blocked", "OADC", "Colis"],
        ["5", "msg_no_optout", "MSG", "Soldes sans mention"],
    ]
    assert "2019" in table[1][4] and "sender_blocklist" in table[2][4]
    assert result.summary.valid == 1 and result.hold_reason is not None
    assert result.as_dict()["invalid_by_code"] == {
        "oadc_mobile": 1, "oadc_blocked": 1, "msg_no_optout": 1}


def test_the_rows_written_for_upload_carry_the_appended_mention(tmp_path: Path) -> None:
    campaign = tmp_path / "promo.csv"
    campaign.write_text(
        "a1;0612345601;Shop;Soldes -30 % ce week-end\r\n"
        "a2;0612345602;Shop;Déjà client ? STOP au 36000\r\n"
        'a3;0612345603;Shop;"Votre code ; FÊTE"\r\n', encoding="utf-8")
    settings_ = settings_with(stop_mention=MENTION)
    assert rules_from(settings_).optout == "append"
    uploaded = io.BytesIO()
    writer = UploadWriter(uploaded)
    result = take_in(campaign, settings_, now=NOW, on_row=writer.write)
    writer.close()
    assert uploaded.getvalue().decode().split("\r\n") == [
        "a1;+33612345601;Shop;Soldes -30 % ce week-end STOP au 36111",
        "a2;+33612345602;Shop;Déjà client ? STOP au 36000",  # had one: left as it is
        'a3;+33612345603;Shop;"Votre code ; FETE STOP au 36111"',
        "",
    ]
    data = result.as_dict()
    assert data["optout_appended"] == 2 and data["valid"] == 3 and not data["held"]


def test_the_settings_choose_the_policy(tmp_path: Path) -> None:
    assert rules_from(settings_with()).optout == "require"
    assert rules_from(settings_with(marketing=False)).optout == "off"
    assert rules_from(settings_with(stop_mention=MENTION, stop_mention_policy="require")
                      ).optout == "require"
    rules = rules_from(settings_with())
    assert rules.marketing and "LIVRAISON" in rules.sender_blocklist
    transactional = rules_from(settings_with(marketing=False))
    campaign = tmp_path / "otp.csv"
    campaign.write_text("a;0612345601;0612345678;Votre code : 1234\r\n", encoding="utf-8")
    assert take_in(campaign, settings_with(marketing=False), now=NOW).summary.valid == 1
    assert not transactional.marketing
