"""Exact match: every pair the SQuAD/TriviaQA scorer accepts is accepted, plus our accent and punctuation
folding; nothing looser than that. An answer cut while it could still be right never is (can_still_match)."""

from __future__ import annotations

import pytest

from gradual.answers import extract_answer, is_correct, normalize, normalize_squad

ACCEPT = [
    # (prediction, accepted answer): the standard scorer's cases
    ("U.S.A.", "USA"),
    ("USA", "U.S.A."),
    ("Washington, D.C.", "Washington DC"),
    ("1,000", "1000"),
    ("O'Brien", "OBrien"),
    ("the United Kingdom", "United Kingdom"),
    ("The Hague", "Hague"),
    ("  Paris.  ", "Paris"),
    # our folding: accents and punctuation as a space
    ("Cote d'Ivoire", "Côte d'Ivoire"),
    ("Cote d Ivoire", "Côte d'Ivoire"),
    ("Guinea Bissau", "Guinea-Bissau"),
    ("São Tomé", "Sao Tome"),
    # an answer made only of articles keeps them
    ("The The", "the the"),
]

REJECT = [
    ("U.S.", "U.S.A."),  # the old bug: "u s a" lost its "a" as an article and equalled "u s"
    ("U S", "USA"),
    ("Paris", "Parish"),
    ("York", "New York"),
    ("Georgia", "Georgia (country)"),
    ("1,000", "100"),
    ("", "Paris"),
    ("the", "Paris"),
    ("Lyon", "Paris"),
]


@pytest.mark.parametrize("pred,answer", ACCEPT)
def test_accepts(pred: str, answer: str) -> None:
    assert is_correct(pred, [answer])
    assert is_correct(pred + "\nQ: the next question", ["Something else", answer])  # aliases, first line only


@pytest.mark.parametrize("pred,answer", REJECT)
def test_rejects(pred: str, answer: str) -> None:
    assert not is_correct(pred, [answer])


def test_empty_first_line_is_no_answer() -> None:
    assert not is_correct("\nParis", ["Paris"])


def test_normalizations_are_the_documented_ones() -> None:
    assert normalize_squad("Washington, D.C.") == "washington dc"  # punctuation deleted
    assert normalize("Washington, D.C.") == "washington d c"  # punctuation as a space
    assert normalize("U.S.A.") == "u s a"  # "a" is not a word of the original text: kept
    assert normalize("  The  Côte d'Ivoire! ") == "cote d ivoire"
    assert normalize_squad("A") == "a" and normalize("A") == "a"  # nothing left: articles kept


def test_normalize_and_match() -> None:
    assert normalize("  The  Côte d'Ivoire! ") == "cote d ivoire"
    assert is_correct("Paris\nQ: next", ["paris"])
    assert is_correct(" the United Kingdom", ["UK", "United Kingdom"])
    assert not is_correct("Lyon", ["Paris"])
    assert not is_correct("\nParis", ["Paris"])  # empty first line is no answer
    assert extract_answer(" Lima\nQ:") == "Lima"


def test_cut_greedy_answers_are_wrong_whatever_follows() -> None:
    """can_still_match never gives up on a text one of whose continuations is_correct accepts: every
    prefix of a correct prediction can still match (so cutting a greedy answer keeps its correctness)."""
    from gradual.answers import is_correct
    from gradual.answers import answer_skeleton, can_still_match

    cases = [
        ("Côte d'Ivoire", ["Cote d'Ivoire"]), ("the Gambia", ["Gambia"]), ("Gambia, The", ["The Gambia"]),
        ("Republic of Congo", ["Republic of the Congo"]), ("U.S.A.", ["USA"]), ("O'Brien", ["OBrien"]),
        ("Guinea-Bissau", ["Guinea Bissau"]), ("ΟΔΟΣ", ["οδος"]), ("Washington, D.C.", ["Washington DC"]),
        ("An Najaf", ["Najaf"]), ("São Tomé.", ["Sao Tome"]),
    ]
    for pred, answers in cases:
        assert is_correct(pred, answers), pred
        keys = [answer_skeleton(a) for a in answers]
        for i in range(len(pred) + 1):
            assert can_still_match(pred[:i], keys), (pred, pred[:i])
    assert not can_still_match("Lyon", [answer_skeleton("Paris")])
    assert not can_still_match("Berlin", [answer_skeleton("Bern")])
