"""Numbers as people read them, for every output (terminal tables, comparison.md, report.html): one
definition of how a share, an interval or a duration is written.

Run as: imported by gradual.console, gradual.report and gradual.compare; no command of its own.
"""

from __future__ import annotations

from typing import Any, Mapping


def fmt_num(x: Any, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def fmt_pct(x: Any, digits: int = 1) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def fmt_ci(ci: Mapping[str, Any] | None, digits: int = 3, pct: bool = False) -> str:
    """`mean [lo, hi]` of a mean_ci dict; just the mean when there is one value."""
    if not ci or ci.get("mean") is None:
        return "–"
    f = (lambda v: fmt_pct(v, max(digits - 2, 0))) if pct else (lambda v: fmt_num(float(v), digits))
    if ci.get("n", 0) <= 1 or ci.get("lo") is None:
        return f(ci["mean"])
    return f"{f(ci['mean'])} [{f(ci['lo'])}, {f(ci['hi'])}]"


def fmt_seconds(s: Any) -> str:
    if s is None:
        return "–"
    s = float(s)
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{s / 60:.1f}m"
    return f"{s / 3600:.2f}h"
