"""Metrics over probe results and runs, each defined once: category movement (transitions, acquired,
forgotten, retention) and the mean with a 95% t-interval over seeds.

Run as: used by `gradual run` (summary.json) and `gradual compare` (comparison.json); no command.

Category maps are `{item id: category}` (what `ProbeResult.categories()` returns). Movement metrics
count only ids present in both maps, so a probe of a subset never reads as forgetting.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from scipy import stats

from gradual.categories import CATEGORIES, HIGH, HIGHLY, LOW, MAYBE


def _shared(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    return [i for i in before if i in after]


def transitions(before: Mapping[str, str], after: Mapping[str, str]) -> list[list[int]]:
    """4x4 counts: rows = category before, columns = category after, in CATEGORIES order."""
    index = {c: k for k, c in enumerate(CATEGORIES)}
    counts = [[0] * len(CATEGORIES) for _ in CATEGORIES]
    for i in _shared(before, after):
        b, a = before[i], after[i]
        if b not in index or a not in index:
            raise ValueError(f"item {i!r}: unknown category {b if b not in index else a!r}")
        counts[index[b]][index[a]] += 1
    return counts


def acquired(before: Mapping[str, str], after: Mapping[str, str]) -> int:
    """Items not HighlyKnown before that are HighlyKnown after."""
    return sum(1 for i in _shared(before, after) if before[i] != HIGHLY and after[i] == HIGHLY)


def forgotten(before: Mapping[str, str], after: Mapping[str, str]) -> int:
    """Items HighlyKnown before that are not HighlyKnown after."""
    return sum(1 for i in _shared(before, after) if before[i] == HIGHLY and after[i] != HIGHLY)


def retention(before: Mapping[str, str], after: Mapping[str, str]) -> float | None:
    """1 - forgotten / HighlyKnown before; None when nothing was HighlyKnown before."""
    known = sum(1 for i in _shared(before, after) if before[i] == HIGHLY)
    if known == 0:
        return None
    return 1.0 - forgotten(before, after) / known


def category_agreement(a: Mapping[str, str], b: Mapping[str, str]) -> dict[str, object]:
    """How two categorizations of the same items differ: the transition table a -> b, the share with the
    same category, the items crossing the line two-stage selection uses (`up`: WeaklyKnown/Unknown ->
    MaybeKnown/HighlyKnown; `down`: back), and the overlap of the MaybeKnown sets (|both| / |either|).
    Two base probes with other exemplars give the noise floor of that selection."""
    shared = _shared(a, b)
    table = transitions(a, b)
    mk_a = {i for i in shared if a[i] == MAYBE}
    mk_b = {i for i in shared if b[i] == MAYBE}
    return {"items": len(shared), "table": table,
            "same": sum(table[k][k] for k in range(len(CATEGORIES))) / len(shared) if shared else None,
            "up": sum(1 for i in shared if a[i] in LOW and b[i] in HIGH),
            "down": sum(1 for i in shared if a[i] in HIGH and b[i] in LOW),
            "maybeknown_overlap": len(mk_a & mk_b) / len(mk_a | mk_b) if mk_a | mk_b else None}


def category_counts(cats: Mapping[str, str]) -> dict[str, int]:
    """Items per category; all four categories always present (zeros included)."""
    out = {c: 0 for c in CATEGORIES}
    for c in cats.values():
        if c not in out:
            raise ValueError(f"unknown category {c!r}")
        out[c] += 1
    return out


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with `df` degrees of freedom."""
    if not 0.0 < p < 1.0:
        raise ValueError("p must be in (0, 1)")
    return float(stats.t.ppf(p, df))


def detectable_difference(sd: float | None, n: int, power: float = 0.8, level: float = 0.95) -> float | None:
    """The smallest true mean difference a two-sided paired t-test at `level` detects with probability
    `power`, given the standard deviation `sd` of the n paired differences (noncentral t, exact).

    This is what "no significant difference" can be read as: no effect larger than this was likely
    to be missed. None with fewer than two pairs (no sd); 0 when every difference is the same.
    """
    if sd is None or n < 2 or math.isnan(sd):
        return None
    if sd == 0:
        return 0.0
    from scipy import optimize

    df = n - 1
    crit = stats.t.ppf(0.5 + level / 2.0, df)

    def shortfall(d: float) -> float:
        nc = d * math.sqrt(n) / sd
        wrong_side = float(stats.nct.cdf(-crit, df, nc))  # vanishing for d > 0; scipy may give NaN there
        return float(stats.nct.sf(crit, df, nc)) + (0.0 if math.isnan(wrong_side) else wrong_side) - power

    hi = sd
    while shortfall(hi) < 0:
        hi *= 2.0
    return float(optimize.brentq(shortfall, 0.0, hi, xtol=1e-9 * sd))


def mean_ci(values: Sequence[float | None], level: float = 0.95,
            bounds: tuple[float, float] | None = None) -> dict[str, float | int | None]:
    """Mean and two-sided t-interval over `values` (None and NaN entries are dropped).

    Returns {"mean", "lo", "hi", "n", "sd"}; with one value the interval collapses to the mean
    (sd None), with none every number is None. `bounds` clips the interval to the values' range
    (e.g. (0, 1) for a proportion, which cannot exceed 100% however few the seeds).
    """
    xs = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    n = len(xs)
    if n == 0:
        return {"mean": None, "lo": None, "hi": None, "n": 0, "sd": None}
    mean = sum(xs) / n
    if n == 1:
        return {"mean": mean, "lo": mean, "hi": mean, "n": 1, "sd": None}
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t_quantile(0.5 + level / 2.0, n - 1) * sd / math.sqrt(n)
    lo, hi = mean - half, mean + half
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return {"mean": mean, "lo": lo, "hi": hi, "n": n, "sd": sd}
