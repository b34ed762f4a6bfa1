"""Answer normalization and alias-aware exact match: the single definition of "correct".

Normalization follows the SQuAD/EntityQuestions convention (lower-case, strip punctuation and the
articles a/an/the, fold white space) and also folds accents, so "Côte d'Ivoire" matches
"Cote d'Ivoire": a model that drops a diacritic knows the fact.
"""

from __future__ import annotations

import re
import string
import unicodedata
from typing import Iterable

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation) | {"‘", "’", "“", "”", "–", "—", "…", "«", "»"}


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.lower()
    text = "".join(" " if ch in _PUNCT else ch for ch in text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def extract_answer(generation: str) -> str:
    """The answer in a raw generation: everything before the first newline, stripped."""
    return generation.split("\n", 1)[0].strip()


def is_correct(prediction: str, answers: Iterable[str]) -> bool:
    """Exact match after normalization against any accepted answer (canonical or alias)."""
    pred = normalize(extract_answer(prediction))
    if not pred:
        return False
    return any(pred == normalize(a) for a in answers)
