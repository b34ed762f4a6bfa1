"""metrics.category_agreement and benchmarks/category_agreement.py: the noise floor under stage-2 selection."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gradual.metrics import category_agreement
from gradual.probe.result import ProbeResult, ProbeRow, save_probe

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "category_agreement.py"


def test_agreement_counts_moves_across_the_selection_line() -> None:
    a = {"1": "Unknown", "2": "WeaklyKnown", "3": "MaybeKnown", "4": "HighlyKnown", "5": "MaybeKnown", "x": "Unknown"}
    b = {"1": "MaybeKnown", "2": "WeaklyKnown", "3": "Unknown", "4": "MaybeKnown", "5": "MaybeKnown"}
    r = category_agreement(a, b)
    assert r["items"] == 5  # "x" was probed once only
    assert (r["up"], r["down"]) == (1, 1)  # 1: Unknown -> MaybeKnown; 3: MaybeKnown -> Unknown
    assert r["same"] == 2 / 5 and r["maybeknown_overlap"] == 1 / 4  # {3, 5} vs {1, 4, 5}: only 5 in both
    assert sum(map(sum, r["table"])) == 5


def test_script_reads_two_probe_files(tmp_path: Path) -> None:
    def write(name: str, cats: list[str]) -> Path:
        rows = [ProbeRow(id=f"q{i}", category=c, p_greedy=0.0, p_sample=0.0, greedy_answers=[], relation=None)
                for i, c in enumerate(cats)]
        save_probe(ProbeResult(rows, {}), tmp_path / name)
        return tmp_path / name

    a = write("a.jsonl", ["Unknown", "MaybeKnown", "HighlyKnown"])
    b = write("b.jsonl", ["MaybeKnown", "MaybeKnown", "HighlyKnown"])
    out = subprocess.run([sys.executable, str(SCRIPT), str(a), str(b), "--out", str(tmp_path / "r.json")],
                         capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == ("category_agreement: items=3 same=0.667 up=1 down=0 "
                                    "maybeknown_overlap=0.500")
    assert (tmp_path / "r.json").is_file()
