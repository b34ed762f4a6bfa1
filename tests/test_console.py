"""What a user sees in the terminal (gradual.console): run and comparison tables that fit 80 columns."""

from __future__ import annotations

import io

import pytest

from tests.fake_runs import make_summary


def _render(width: int, monkeypatch: pytest.MonkeyPatch, draw: object) -> list[str]:
    from rich.console import Console

    monkeypatch.setenv("COLUMNS", str(width))  # what rich reads for a console that is not a terminal
    console = Console(file=io.StringIO(), record=True)
    assert console.width == width
    draw(console)  # type: ignore[operator]
    return console.export_text().splitlines()


LONG_NOTE = ("87 of 1000 items: newly MaybeKnown or WeaklyKnown after stage 1 (re-probe); replay pool 62 base "
             "HighlyKnown items at ratio 0.2")


@pytest.mark.parametrize("width", [80, 120])
def test_run_summary_fits_the_console(width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from gradual.console import print_summary

    s = make_summary("gradual", 0)
    s["stages"][0]["composition"] = {"HighlyKnown": 3, "MaybeKnown": 312, "WeaklyKnown": 12, "Unknown": 40}
    s["stages"][1]["note"] = LONG_NOTE
    lines = _render(width, monkeypatch, lambda c: print_summary(s, c))
    assert all(len(ln) <= width for ln in lines)
    text = "\n".join(lines)
    assert "…" not in text  # nothing cut off
    assert " ".join(text.split()).count(LONG_NOTE) == 1  # the whole note, once, below the table
    table = lines[: next(i for i, ln in enumerate(lines) if ln.startswith("└"))]
    assert len(table) <= 4 + 2 * len(s["stages"])  # title, header, rules; at most 2 lines a stage


@pytest.mark.parametrize("width", [80, 120])
def test_comparison_fits_the_console(width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from gradual.console import print_comparison

    ci = {"mean": 0.451, "lo": 0.401, "hi": 0.501, "n": 3}
    row = {"n_runs": 3, "test_accuracy": ci, "acquired": {"mean": 12.3, "lo": 10.3, "hi": 14.3, "n": 3},
           "forgotten": {"mean": 2.3, "lo": 1.0, "hi": 3.6, "n": 3}, "retention": ci,
           "highly_known_after": {"mean": 150.3, "lo": 140.3, "hi": 160.3, "n": 3},
           "stages": [{"n_train": {"mean": 312}}, {"n_train": {"mean": 87}}], "wall_s": {"mean": 400}}
    comp = {"seeds": [0, 1, 2], "strategies": {n: row for n in ("gradual", "maybeknown", "no-unknown")}}
    lines = _render(width, monkeypatch, lambda c: print_comparison(comp, c))
    text = "\n".join(lines)
    assert all(len(ln) <= width for ln in lines)
    assert "…" not in text and "no-unknown" in text and "maybeknown" in text and "6.7m" in text
    assert "45.1%" in text and ("±5.0%" in text or "[40.1%, 50.1%]" in text)
