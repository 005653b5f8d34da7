"""Message templates: placeholders resolved against headers once, values never interpreted."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sftpd_agent.rules.template import Missing, Slot, Template, TemplateError, header_key

HEADERS = ("Prénom", "Nom", "Mobile", "Ville", "Client ID")


def values(prenom: str = "Zoé", nom: str = "Martin", mobile: str = "0612345678",
           ville: str = "Besançon", client: str = "C1") -> list[str]:
    return [prenom, nom, mobile, ville, client]


def test_exact_placeholders_are_filled_in_order() -> None:
    template = Template.parse("Bonjour {Prénom} {Nom}, -20 % à {Ville} !", HEADERS)
    assert template.render(values()) == "Bonjour Zoé Martin, -20 % à Besançon !"
    assert template.placeholders == ("Prénom", "Nom", "Ville")
    assert [slot.index for slot in template.slots] == [0, 1, 3]


def test_placeholders_listed_once_each_in_order_of_first_use() -> None:
    template = Template.parse("{Ville} {Prénom} {ville}", HEADERS)
    assert template.placeholders == ("Ville", "Prénom")


def test_case_accents_and_white_space_are_ignored_when_one_header_matches() -> None:
    template = Template.parse("Bonjour { PRENOM  }, {client   id}", HEADERS)
    assert template.render(values()) == "Bonjour Zoé, C1"
    assert header_key(" Prénom  Client ") == "prenom client"


def test_exact_header_wins_over_a_loose_match() -> None:
    headers = ("nom", "Nom", "Mobile")
    template = Template.parse("{Nom}/{nom}", headers)
    assert template.render(["a", "b", "0612345678"]) == "b/a"


def test_placeholder_matching_two_headers_is_an_error_naming_both() -> None:
    with pytest.raises(TemplateError) as caught:
        Template.parse("{prenom}", ("Prénom", "PRENOM", "Mobile"))
    message = str(caught.value)
    assert "'Prénom' (column 1)" in message and "'PRENOM' (column 2)" in message
    assert "\n" not in message


def test_missing_placeholder_names_it_and_lists_the_headers() -> None:
    with pytest.raises(TemplateError) as caught:
        Template.parse("Bonjour {Prénom} de {Vile}", HEADERS)
    message = str(caught.value)
    assert message.startswith("placeholder {Vile}: no such column (columns: Prénom, Nom, Mobile")
    assert "did you mean 'Ville'?" in message
    assert "\n" not in message


def test_a_value_is_stripped_and_an_empty_required_one_is_missing() -> None:
    template = Template.parse("Bonjour {Prénom}, à {Ville}", HEADERS)
    assert template.render(values(prenom="  Zoé \t", ville=" Lyon ")) == "Bonjour Zoé, à Lyon"
    assert template.render(values(ville="   ")) == Missing("Ville")
    assert template.render(values(prenom="", ville="")) == Missing("Prénom")  # the first one


def test_default_used_only_when_the_value_is_empty() -> None:
    template = Template.parse("Bonjour {Prénom|cher client}, à {Ville | votre magasin }", HEADERS)
    assert template.render(values(prenom=" ", ville="")) == "Bonjour cher client, à votre magasin"
    assert template.render(values()) == "Bonjour Zoé, à Besançon"
    slot = template.slots[1]
    assert slot == Slot(3, "Ville", "votre magasin", "{Ville | votre magasin }")


def test_an_empty_default_means_the_value_may_be_empty() -> None:
    template = Template.parse("Bonjour {Prénom|}!", HEADERS)
    assert template.render(values(prenom="")) == "Bonjour !"
    assert template.render(values(prenom="Léa")) == "Bonjour Léa!"


def test_a_default_may_hold_a_bar() -> None:
    template = Template.parse("{Ville|Paris | Lyon}", HEADERS)
    assert template.render(values(ville="")) == "Paris | Lyon"


def test_a_value_that_looks_like_a_placeholder_is_sent_literally() -> None:
    template = Template.parse("Bonjour {Prénom}, à {Ville}", HEADERS)
    rendered = template.render(values(prenom="{Ville}", ville="{{0}} %s {Nom.__class__}"))
    assert rendered == "Bonjour {Ville}, à {{0}} %s {Nom.__class__}"


def test_doubled_braces_are_literal_braces() -> None:
    template = Template.parse("{{code}} {Nom} }}{{", HEADERS)
    assert template.render(values()) == "{code} Martin }{"
    assert template.pieces == ("{code} ", Slot(1, "Nom", None, "{Nom}"), " }{")


@pytest.mark.parametrize(("text", "expected"), [
    ("Bonjour {Prénom", "'{' at character 9 is never closed"),
    ("-20 % } promo", "'}' alone at character 7"),
    ("{Prénom {Nom}}", "'{' inside the placeholder opened at character 1"),
    ("a {} b", "empty placeholder {} at character 3"),
    ("a { |x} b", "empty placeholder { |x} at character 3"),
])
def test_malformed_braces_name_the_position(text: str, expected: str) -> None:
    with pytest.raises(TemplateError) as caught:
        Template.parse(text, HEADERS)
    assert str(caught.value).startswith(expected)


def test_no_format_spec_or_attribute_access() -> None:
    with pytest.raises(TemplateError, match="no such column"):
        Template.parse("{Nom:>10}", HEADERS)
    with pytest.raises(TemplateError, match="no such column"):
        Template.parse("{Nom.upper}", HEADERS)


def test_template_without_placeholders_and_short_rows() -> None:
    assert Template.parse("Soldes !", HEADERS).render([]) == "Soldes !"
    template = Template.parse("{Client ID|none}", HEADERS)
    assert template.render(["a", "b"]) == "none"  # values missing at the end count as empty


def test_render_gives_a_new_string_each_time() -> None:
    template = Template.parse("{Prénom}-{Nom}", HEADERS)
    first = template.render(values(prenom="a"))
    second = template.render(values(prenom="b"))
    assert (first, second) == ("a-Martin", "b-Martin")


plain_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@settings(max_examples=200, deadline=None)
@given(prenom=plain_text, ville=plain_text, literal=plain_text)
def test_values_are_never_interpreted(prenom: str, ville: str, literal: str) -> None:
    escaped = literal.replace("{", "{{").replace("}", "}}")
    template = Template.parse(escaped + "{Prénom}|{Ville|-}", HEADERS)
    rendered = template.render(values(prenom=prenom, ville=ville))
    if not prenom.strip():
        assert rendered == Missing("Prénom")
    else:
        assert rendered == f"{literal}{prenom.strip()}|{ville.strip() or '-'}"
