"""The SliCK knowledge categories: names, order and groupings, defined once (PAPER.md §1).

Run as: imported everywhere a category is named; no command of its own. A leaf module (imports
nothing from gradual), so the probe, strategies, metrics, reports and export all read the same
spelling without pulling in torch.
"""

from __future__ import annotations

from typing import Iterable

HIGHLY, MAYBE, WEAKLY, UNKNOWN = "HighlyKnown", "MaybeKnown", "WeaklyKnown", "Unknown"
CATEGORIES: tuple[str, ...] = (HIGHLY, MAYBE, WEAKLY, UNKNOWN)  # best known first: tables and plots use this order
LOW = frozenset({WEAKLY, UNKNOWN})  # greedy decoding never right
HIGH = frozenset({MAYBE, HIGHLY})  # greedy decoding right at least once
SHORT = {HIGHLY: "HK", MAYBE: "MK", WEAKLY: "WK", UNKNOWN: "UK"}


def ordered(names: Iterable[str]) -> list[str]:
    """`names` with the categories first in CATEGORIES order, anything else after, sorted."""
    names = set(names)
    return [c for c in CATEGORIES if c in names] + sorted(names - set(CATEGORIES))


def parse_categories(text: str, flag: str = "--categories") -> tuple[str, ...]:
    """Comma-separated category names (any case, or `all`) -> canonical names in CATEGORIES order.

    Raises ValueError naming `flag`; callers turn it into their user-facing error."""
    by_lower = {c.lower(): c for c in CATEGORIES}
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise ValueError(f"{flag}: empty (choose from {', '.join(CATEGORIES)}, or all)")
    chosen: set[str] = set()
    for name in names:
        if name.lower() == "all":
            chosen.update(CATEGORIES)
        elif name.lower() in by_lower:
            chosen.add(by_lower[name.lower()])
        else:
            raise ValueError(f"{flag}: {name!r} is not a category (choose from {', '.join(CATEGORIES)}, or all)")
    return tuple(c for c in CATEGORIES if c in chosen)
