"""The one answer normalizer (toolgym_env.same_answer and friends): every equivalent format of a right answer
passes, and no hedge or wrong value does."""

from __future__ import annotations

import pytest
from toolgym.envs.inside.toolgym_env import (
    answer_number,
    answer_text,
    normalize_text,
    same_answer,
    same_items,
    same_number,
)

RIGHT_47_89 = [
    "47.89",
    "$47.89",
    "47.89 EUR",
    "EUR 47.89",
    "€47,89",
    "47,89",
    "USD 47.89.",
    "The total is $47.89.",
    "The total is $47.89 for 2 items",
    "For 2 items the total comes to 47.89 dollars.",
    "ANSWER: 47.89",
    "answer = 47.89 (2 items at 23.945)",
    "<answer>47.89</answer> I checked 3 rows",
    "Let me see: 3 rows... <answer>$47.89</answer>",
]
WRONG_47_89 = [
    "47.8",
    "48",
    "4789",
    "",
    "I could not find it.",
    "ANSWER: 2 items cost 47.89",
    "<answer>47</answer> 47.89",
]


@pytest.mark.parametrize("text", RIGHT_47_89)
def test_equivalent_formats_of_a_number_pass(text):
    assert same_answer(text, 47.89), answer_number(text)
    assert same_answer(text, "47.89")
    assert same_answer(text, "$47.89")


@pytest.mark.parametrize("text", WRONG_47_89)
def test_wrong_numbers_fail(text):
    assert not same_answer(text, 47.89)


@pytest.mark.parametrize(
    "text, value",
    [
        ("1,234.50", 1234.5),
        ("1.234,50", 1234.5),
        ("1 234,50", 1234.5),
        ("1\u202f234.5", 1234.5),
        ("12,000", 12000),
        ("1.234.567", 1234567),
        ("-3", -3),
        ("\u22123.5", -3.5),
        ("15%", 15),
        ("6 items", 6),
        ("six items", 6),
        ("ANSWER: 386 (2021 and 2022 combined)", 386),
        ("It is 12 km long, 3 more than last year", 12),
    ],
)
def test_number_formats(text, value):
    assert answer_number(text) == pytest.approx(value)


def test_the_number_is_read_at_one_place_only():
    # After the marker: the first number, whatever follows. Without one: after the last cue word.
    assert answer_number("ANSWER: 386 (2021 and 2022 combined)") == 386
    assert answer_number("I looked at 2021 and 2022; the sum is 386") == 386
    assert answer_number("Between 10 and 20") == 10  # a hedge is read as its first number, never as both


def test_answer_text_prefers_the_tag_then_the_marker():
    assert answer_text("x <answer>a</answer> y <answer> b </answer>") == "b"
    assert answer_text("thinking...\nANSWER: Blue Harbor\nmore") == "Blue Harbor"
    assert answer_text("  Blue Harbor ") == "Blue Harbor"


def test_rounding_to_the_cent():
    assert same_number(47.894, 47.89)
    assert not same_number(47.9, 47.89)
    assert same_number(3.0, 3)
    assert not same_number(None, 0)


CHOICES = ["Swift Orchard 45", "Swift Orchard 4", "Blue Harbor 2", "Crème Brûlée"]


@pytest.mark.parametrize(
    "text",
    [
        "Swift Orchard 45",
        "swift orchard 45",
        '"Swift Orchard 45".',
        "The cheapest one is Swift Orchard 45, at $12.",
        "ANSWER: Swift Orchard 45",
        "<answer>swift  orchard 45</answer>",
    ],
)
def test_a_name_in_prose_passes_when_it_is_the_one_choice_named(text):
    assert same_answer(text, "Swift Orchard 45", choices=CHOICES)


@pytest.mark.parametrize(
    "text",
    ["Swift Orchard 4", "Swift Orchard 45 or Blue Harbor 2", "Blue Harbor 2", "all of them", ""],
)
def test_a_hedge_or_another_name_fails(text):
    assert not same_answer(text, "Swift Orchard 45", choices=CHOICES)


def test_names_without_choices_need_equality_after_normalizing():
    assert same_answer("creme brulee", "Crème Brûlée")
    assert same_answer("The Crème Brûlée", "Crème Brûlée")
    assert not same_answer("It is the Crème Brûlée", "Crème Brûlée")  # prose needs the choices to be read
    assert normalize_text("Blue_Harbor!") == "blue harbor"


def test_lists_in_any_order_and_separator():
    assert same_items("Lisbon, Porto and Faro", ["Faro", "Lisbon", "Porto"])
    assert same_items("ANSWER: Faro; Porto & Lisbon", ["Faro", "Lisbon", "Porto"])
    assert same_items(
        "Here they are.\nANSWER:\n- Faro\n- Porto\n- Lisbon\n\nEnjoy!", ["Faro", "Lisbon", "Porto"]
    )
    assert not same_items("Lisbon, Porto", ["Faro", "Lisbon", "Porto"])
    assert not same_items("Lisbon, Porto, Faro, Braga", ["Faro", "Lisbon", "Porto"])
