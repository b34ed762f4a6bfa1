"""Answer normalization and alias-aware exact match: the single definition of "correct".

A prediction is correct when, after extracting the answer (text up to the first newline), it equals
an accepted answer (canonical or alias) under either of two normalizations:

  squad     the SQuAD/TriviaQA scorer that lm-evaluation-harness and the datasets' own scripts use:
            lower-case, *delete* punctuation, drop the articles a/an/the, fold white space. It makes
            "U.S.A." == "USA", "Washington, D.C." == "Washington DC", "1,000" == "1000",
            "O'Brien" == "OBrien".
  ours      folds accents ("Côte d'Ivoire" == "Cote d'Ivoire": a model that drops a diacritic knows
            the fact), lower-cases, drops articles that are whole words of the original text, then
            turns punctuation into a space ("Guinea-Bissau" == "Guinea Bissau").

Accepting either keeps every match the standard scorer makes, so our figures are never stricter
than published ones. Articles are only dropped as whole words of the text as written: turning
"U.S.A." into "u s a" first and then dropping "a" (our old bug) made it equal "U.S.". When dropping
articles would leave nothing ("The The", "A"), they are kept.

SCORER_VERSION names this definition; it is part of every probe cache key, so categories computed
under an older scorer are never reused.
"""

from __future__ import annotations

import re
import string
import unicodedata
from typing import Callable, Iterable, Sequence

SCORER_VERSION = "em-squad-or-folded-v2"

# Punctuation that counts as "not part of the answer": ASCII plus the typographic marks models emit.
PUNCTUATION = frozenset(string.punctuation) | frozenset("‘’“”–—…«»")

_ARTICLES = frozenset({"a", "an", "the"})
_SQUAD_ARTICLES = re.compile(r"\b(a|an|the)\b")
_SQUAD_PUNCT = frozenset(string.punctuation)


def _fold_accents(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in text if not unicodedata.combining(ch))


def _drop_whole_word_articles(text: str) -> str:
    """Drop tokens (split on white space) that are an article, ignoring punctuation around them."""
    words = text.split()
    kept = [w for w in words if w.strip("".join(PUNCTUATION)) not in _ARTICLES]
    return " ".join(kept) if kept else text


def normalize(text: str) -> str:
    """Our normalization (see the module docstring): accents folded, whole-word articles dropped,
    punctuation as a space, white space folded."""
    text = _drop_whole_word_articles(_fold_accents(text).lower())
    text = "".join(" " if ch in PUNCTUATION else ch for ch in text)
    return " ".join(text.split())


def normalize_squad(text: str) -> str:
    """The SQuAD v1.1 `normalize_answer`: lower, delete punctuation, drop articles, fold white space.

    As in the official script, articles are removed after punctuation is deleted; if that empties the
    answer, the articles are kept (so "The The" is not the empty string)."""
    text = "".join(ch for ch in text.lower() if ch not in _SQUAD_PUNCT)
    dropped = " ".join(_SQUAD_ARTICLES.sub(" ", text).split())
    return dropped or " ".join(text.split())


def extract_answer(generation: str) -> str:
    """The answer in a raw generation: everything before the first newline, stripped."""
    return generation.split("\n", 1)[0].strip()


def is_correct(prediction: str, answers: Iterable[str]) -> bool:
    """Exact match of the extracted answer against any accepted answer, under either normalization."""
    raw = extract_answer(prediction)
    ours, squad = normalize(raw), normalize_squad(raw)
    if not ours and not squad:
        return False
    for a in answers:
        if (ours and ours == normalize(a)) or (squad and squad == normalize_squad(a)):
            return True
    return False


# --- stopping a greedy answer that can no longer be right (the engine's row-stop callback) ----------

# Appended to a greedy answer cut short because it could no longer match any accepted answer.
CUT_MARK = "…"
_ARTICLE_LETTERS = frozenset("anthe")  # every letter of "a", "an", "the"


def answer_skeleton(text: str) -> str:
    """Accent-folded, case-folded letters and digits of `text`, without the letters a, n, t, h, e.

    Conservative by construction for gradual.answers.is_correct: both of its normalizations only fold
    accents and case, drop punctuation and white space (which this drops too) and delete whole
    articles "a"/"an"/"the" (whose letters this drops everywhere). So a correct prediction has the
    same skeleton as one of its accepted answers, and every prefix of its text has a skeleton that
    is a prefix of that one. Case folding, not lower(): it maps every char on its own (lower() turns
    a final sigma into a different letter than a medial one)."""
    out = []
    for ch in unicodedata.normalize("NFKD", text):
        if unicodedata.combining(ch):
            continue
        for c in unicodedata.normalize("NFKD", ch.casefold()):
            if c.isalnum() and not unicodedata.combining(c) and c not in _ARTICLE_LETTERS:
                out.append(c)
    return "".join(out)


def can_still_match(partial: str, skeletons: Sequence[str]) -> bool:
    """False only when no continuation of `partial` can be a correct answer (see answer_skeleton)."""
    key = answer_skeleton(partial)
    return any(s.startswith(key) for s in skeletons)


def answer_stop(answers: Sequence[str]) -> Callable[[str], str | None]:
    """The row-stop callback for an item (gradual.lm.protocol.RowStop): given the greedy text so far,
    None while some continuation could still be one of `answers`, else the text to end the row with,
    marked with CUT_MARK. A caller that only needs right or wrong hands these to the engine."""
    skeletons = [answer_skeleton(x) for x in answers]
    return lambda text: None if can_still_match(text, skeletons) else text + CUT_MARK
