"""compare: flags, aggregation against hand-computed numbers, and reuse of finished runs."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
import yaml

from gradual import compare as cmp
from gradual.commands import compare as flags
from gradual.errors import UserError
from tests.fake_runs import FakePipeline, make_summary

CONFIG = "model: MODEL\ndata: data/world\nlimit_train: 10\n"


def _write_config(path: Path, text: str = CONFIG) -> None:
    """The compare config, naming a model folder that exists (the fake pipeline never loads it, but the
    model spec is checked before any run starts)."""
    model = path.parent / "tiny-model"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text("{}")
    path.write_text(text.replace("MODEL", str(model)))


@pytest.fixture
def fake_pipeline(monkeypatch: pytest.MonkeyPatch) -> FakePipeline:
    """The real gradual.pipeline module, with only run_pipeline (hours of training) replaced by a
    writer of crafted run folders; raising=True, so a renamed run_pipeline fails here, not silently."""
    import gradual.pipeline as pipeline

    fake = FakePipeline()
    monkeypatch.setattr(pipeline, "run_pipeline", fake)
    return fake


def test_parse_seeds() -> None:
    assert flags.parse_seeds("0,1,2") == [0, 1, 2]
    assert flags.parse_seeds(" 3, 0-2 ") == [3, 0, 1, 2]
    for bad in ("", "a", "1,1", "-1", "3-1", "1,,x"):
        with pytest.raises(UserError, match="--seeds"):
            flags.parse_seeds(bad)


def test_parse_strategies() -> None:
    # Every strategy the README documents is accepted, and names are kept in the order given.
    documented = ["random", "all", "no-unknown", "known", "maybeknown", "frontier", "gradual"]
    assert flags.parse_strategies(" , ".join(documented)) == documented
    assert flags.parse_strategies("gradual, maybeknown") == ["gradual", "maybeknown"]
    with pytest.raises(UserError, match=r"--strategies: unknown 'nope', 'Gradual' \(known: .*gradual"):
        flags.parse_strategies("gradual,nope,Gradual")
    with pytest.raises(UserError, match="--strategies"):
        flags.parse_strategies(",")
    with pytest.raises(UserError, match="more than once"):
        flags.parse_strategies("gradual,gradual")


def test_headline_is_paired_by_seed() -> None:
    runs = []
    for seed, (g, m) in enumerate([(60, 50), (66, 55), (40, 40)]):
        for strat, hk in (("gradual", g), ("maybeknown", m)):
            s = make_summary(strat, seed)
            s["highly_known"]["after"] = hk
            runs.append(s)
    h = cmp.headline(runs)
    assert [p["relative"] for p in h["per_seed"]] == pytest.approx([0.2, 0.2, 0.0])
    assert h["relative_increase"]["mean"] == pytest.approx(0.4 / 3)
    assert h["relative_increase"]["n"] == 3 and h["relative_increase"]["lo"] < h["relative_increase"]["mean"]
    assert h["difference"]["mean"] == pytest.approx((10 + 11 + 0) / 3)
    assert cmp.headline([r for r in runs if r["strategy"] == "gradual"]) is None


def test_detectable_difference() -> None:
    from gradual.metrics import detectable_difference

    # G*Power, paired t-test, two-sided 5%, 80% power: n = 10 pairs detect d = 0.996 sd, n = 30 0.529 sd.
    assert detectable_difference(1.0, 10) == pytest.approx(0.996, abs=1e-3)
    assert detectable_difference(2.0, 30) == pytest.approx(2 * 0.529, abs=2e-3)
    assert detectable_difference(1.0, 5) > detectable_difference(1.0, 10)  # fewer pairs, coarser
    assert detectable_difference(None, 3) is None and detectable_difference(1.0, 1) is None
    assert detectable_difference(0.0, 4) == 0.0


def test_paired_comparisons_pair_by_exemplar_and_training_seed() -> None:
    from gradual.metrics import detectable_difference

    runs = []
    hk = {("gradual-mk", 0, 0): 70, ("random-stage2", 0, 0): 60, ("gradual-mk", 0, 1): 64, ("random-stage2", 0, 1): 62,
          ("gradual-mk", 1, 0): 50, ("random-stage2", 1, 0): 51, ("gradual-mk", 1, 1): 58}  # last one unpaired
    for (strat, e, k), n in hk.items():
        s = make_summary(strat, k, exemplar_seed=e)
        s["highly_known"]["after"], s["exemplar_seed"] = n, e
        runs.append(s)
    (p,) = cmp.paired(runs)
    assert (p["a"], p["b"], p["n"]) == ("gradual-mk", "random-stage2", 3)
    assert p["pairs"] == [{"exemplar_seed": 0, "seed": 0}, {"exemplar_seed": 0, "seed": 1}, {"exemplar_seed": 1, "seed": 0}]
    diffs = [10, 2, -1]
    d = p["highly_known_after"]
    assert d["mean"] == pytest.approx(statistics.mean(diffs)) and d["sd"] == pytest.approx(statistics.stdev(diffs))
    assert d["detectable"] == pytest.approx(detectable_difference(statistics.stdev(diffs), 3))
    assert p["relative_highly_known"]["mean"] == pytest.approx(statistics.mean([10 / 60, 2 / 62, -1 / 51]))
    accs = [(x["test_accuracy"]["overall"] - y["test_accuracy"]["overall"]) * 100
            for x, y in ((runs[0], runs[1]), (runs[2], runs[3]), (runs[4], runs[5]))]
    assert p["test_accuracy_points"]["mean"] == pytest.approx(statistics.mean(accs))


def test_aggregate_strategy_means() -> None:
    a, b = make_summary("all", 0), make_summary("all", 1, n_stages=1)
    agg = cmp.aggregate_strategy([a, b])
    assert agg["n_runs"] == 2
    assert agg["acquired"]["mean"] == pytest.approx((a["acquired"] + b["acquired"]) / 2)
    assert agg["test_accuracy"]["mean"] == pytest.approx((a["test_accuracy"]["overall"] + b["test_accuracy"]["overall"]) / 2)
    hk = agg["highly_known_after_share"]["mean"]
    assert hk == pytest.approx((a["highly_known"]["after"] + b["highly_known"]["after"]) / 200)
    # Stage 2 exists in one run only: the other trained 0 items there, so the mean halves.
    assert len(agg["stages"]) == 2 and agg["stages"][1]["runs"] == 1
    assert agg["stages"][1]["n_train"]["mean"] == pytest.approx(a["stages"][1]["n_train"] / 2)
    assert set(agg["test_accuracy_by_category"]) >= {"HighlyKnown", "Unknown"}
    assert agg["transitions_mean"][0][0] == pytest.approx((a["transitions"]["counts"][0][0] + b["transitions"]["counts"][0][0]) / 2)
    noise = cmp.noise_control([a, b, make_summary("gradual", 0)])  # seed 0 counted once
    assert noise["flip_rate"]["n"] == 2 and noise["flip_rate"]["mean"] == pytest.approx(0.055)


def test_probe_free_runs_count_once_per_training() -> None:
    """`all` reads no probe: under two exemplar seeds one training seed trains one model, so its six
    runs are three trainings and its intervals (and its paired comparisons') must rest on three values,
    not on six that would pretend to be independent."""
    from gradual.report.markdown import comparison_markdown

    acc = {0: 0.40, 1: 0.43, 2: 0.37}  # one model per training seed: the same test accuracy under both
    runs = []
    for e in (0, 1):
        for k in (0, 1, 2):
            a = make_summary("all", k, exemplar_seed=e)
            a["exemplar_seed"], a["test_accuracy"]["overall"] = e, acc[k]
            a["highly_known"]["after"] = 50 + 10 * k + 3 * e  # the re-probe differs with the exemplars
            m = make_summary("maybeknown", k, exemplar_seed=e)
            m["exemplar_seed"], m["highly_known"]["after"] = e, 40 + 7 * k - 5 * e + (k == 2) * e
            runs += [a, m]
    c = cmp.aggregate(runs, [{"name": f"r{i}", "dir": f"runs/r{i}"} for i in range(len(runs))], ["all", "maybeknown"], [0, 1, 2])
    al, mk = c["strategies"]["all"], c["strategies"]["maybeknown"]
    assert (al["n_runs"], al["n_trainings"], mk["n_runs"], mk["n_trainings"]) == (6, 3, 6, 6)
    assert al["test_accuracy"]["n"] == 3 and al["test_accuracy"]["sd"] == pytest.approx(statistics.stdev(acc.values()))
    hk = [statistics.mean([50 + 10 * k, 53 + 10 * k]) for k in (0, 1, 2)]
    assert al["highly_known_after"]["mean"] == pytest.approx(statistics.mean(hk))
    assert al["highly_known_after"]["sd"] == pytest.approx(statistics.stdev(hk))
    assert mk["test_accuracy"]["n"] == 6  # a strategy that reads the probe trains anew under each exemplar seed
    from gradual.metrics import mean_ci

    mk_runs = [r for r in runs if r["strategy"] == "maybeknown"]
    assert mk["test_accuracy"] == mean_ci([r["test_accuracy"]["overall"] for r in mk_runs], bounds=(0.0, 1.0))
    # Before training, every strategy has one base probe per exemplar seed; wall time is each run's own.
    assert al["highly_known_before"]["n"] == mk["highly_known_before"]["n"] == 2
    assert al["wall_s"]["n"] == 6
    (p,) = [p for p in c["paired"] if (p["a"], p["b"]) == ("all", "maybeknown")]
    diffs = {(e, k): (50 + 10 * k + 3 * e) - (40 + 7 * k - 5 * e + (k == 2) * e) for e in (0, 1) for k in (0, 1, 2)}
    per_training = [statistics.mean([diffs[0, k], diffs[1, k]]) for k in (0, 1, 2)]
    assert (p["n"], p["n_independent"], p["highly_known_after"]["n"]) == (6, 3, 3)
    assert p["highly_known_after"]["sd"] == pytest.approx(statistics.stdev(per_training))
    md = comparison_markdown(c)
    assert "| all | 6 (3 trainings) |" in md and "| maybeknown | 6 |" in md
    assert "| all - maybeknown | 6 (3 independent) |" in md and '"all" reads no probe' in md
    # One exemplar seed: nothing is shared, so nothing is folded and no note is written.
    one = cmp.aggregate([r for r in runs if r["exemplar_seed"] == 0], [{"name": "r", "dir": "runs/r"}] * 6, ["all", "maybeknown"], [0, 1, 2])
    assert one["strategies"]["all"]["n_trainings"] == 3 and one["strategies"]["all"]["test_accuracy"]["n"] == 3
    assert "reads no probe" not in comparison_markdown(one) and "| all | 3 |" in comparison_markdown(one)


def test_report_and_terminal_name_the_trainings(tmp_path: Path, fake_pipeline: FakePipeline) -> None:
    from rich.console import Console

    from gradual.console import print_comparison

    cfg = tmp_path / "c.yaml"
    _write_config(cfg)
    out = tmp_path / "cmp"
    c = cmp.run_compare(cfg, ["all", "maybeknown"], [0, 1], out, progress=False, report=True, exemplar_seeds=[0, 1])
    html = (out / "report.html").read_text()
    import html as html_lib

    assert "4 (2 trainings)" in html and '"all" reads no probe' in html_lib.unescape(html)
    for width, cell in ((250, "4 (2 trainings)"), (80, "4*")):  # the wide table, and the narrow one with a mark
        console = Console(width=width, record=True)
        print_comparison(c, console)
        text = console.export_text()
        assert cell in text and '"all" reads no probe' in text and "maybeknown" in text


def test_base_probes_of_exemplar_seeds_give_a_yardstick_for_stage2(tmp_path: Path, fake_pipeline: FakePipeline,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """With --exemplar-seeds the compare reads one base probe per exemplar seed and says how many items move
    up by chance (both directions of every pair); a damaged file is skipped for another run's, and the
    figure, never the comparison, goes when no two can be read."""
    from gradual.probe.result import ProbeResult, ProbeRow, save_probe

    cfg = tmp_path / "c.yaml"
    _write_config(cfg)
    out = tmp_path / "cmp"
    strategies, seeds = ["gradual", "maybeknown"], [0]
    cmp.run_compare(cfg, strategies, seeds, out, progress=False, report=False, exemplar_seeds=[0, 1, 2])
    H, M, W, U = "HighlyKnown", "MaybeKnown", "WeaklyKnown", "Unknown"
    base = {0: [U, W, M, H, M], 1: [M, M, U, H, M], 2: [M, M, M, H, H]}
    for e, cats in base.items():
        for st in strategies:
            save_probe(ProbeResult([ProbeRow(id=f"t{i}", category=c, p_greedy=0.0, p_sample=0.0, greedy_answers=[],
                                             relation=None) for i, c in enumerate(cats)], {}),
                       out / "runs" / f"{st}-ex{e}-seed0" / "probe" / "base_train.jsonl")
    (out / "runs" / "gradual-ex2-seed0" / "probe" / "base_train.jsonl").write_text("not json\n")

    def compare() -> dict:
        return cmp.run_compare(cfg, strategies, seeds, out, progress=False, report=True, exemplar_seeds=[0, 1, 2],
                               finished_only=True)

    with caplog.at_level("WARNING", logger="gradual.compare"):
        a = compare()["noise"]["between_exemplar_seeds"]
    assert "gradual-ex2-seed0" in caplog.text  # skipped, with a word
    assert a["files"][2] == "runs/maybeknown-ex2-seed0/probe/base_train.jsonl"  # the next run of that seed
    # 0->1: t0, t1 up, t2 down; 0->2: t0, t1 up; 1->2: t2 up. Up counts of both directions: 2, 1, 2, 0, 1, 0.
    assert [(p["a"], p["b"], p["up"], p["down"]) for p in a["pairs"]] == [(0, 1, 2, 1), (0, 2, 2, 0), (1, 2, 1, 0)]
    assert a["chance_up"] == pytest.approx(1.0) and a["chance_up_range"] == [0, 2]
    assert a["same"] == pytest.approx((2 / 5 + 2 / 5 + 3 / 5) / 3)
    assert a["pairs"][0]["maybeknown_overlap"] == pytest.approx(1 / 4)  # {t2, t4} vs {t0, t1, t4}: t4 of 4
    md = (out / "comparison.md").read_text()
    assert ("same category to 46.7% of train items on average; items moving up from WeaklyKnown/Unknown to "
            "MaybeKnown/HighlyKnown by chance alone: 1 (0 to 2 by pair and direction).") in md
    assert "(0 and 1, 0 and 2, 1 and 2;" in (out / "report.html").read_text()
    # A file with an unknown category, under both runs of exemplar seed 1: pairs without it.
    for st in strategies:
        (out / "runs" / f"{st}-ex1-seed0" / "probe" / "base_train.jsonl").write_text(
            '{"id": "t0", "category": "Sorta"}\n')
    a = compare()["noise"]["between_exemplar_seeds"]
    assert [(p["a"], p["b"]) for p in a["pairs"]] == [(0, 2)] and "0 to 2 by pair" in (out / "comparison.md").read_text()
    for st in strategies:  # nothing readable for seed 2 either: the figure goes, the comparison stays
        (out / "runs" / f"{st}-ex2-seed0" / "probe" / "base_train.jsonl").unlink()
    c = compare()
    assert c["noise"]["between_exemplar_seeds"] is None and "by chance alone" not in (out / "comparison.md").read_text()
    one = cmp.run_compare(cfg, strategies, seeds, tmp_path / "one", progress=False, report=False)
    assert one["noise"]["between_exemplar_seeds"] is None  # one base categorization: nothing to compare


def test_compare_reuses_finished_runs(tmp_path: Path, fake_pipeline: FakePipeline) -> None:
    cfg = tmp_path / "c.yaml"
    _write_config(cfg)
    out = tmp_path / "cmp"
    first = cmp.run_compare(cfg, ["gradual", "maybeknown"], [0, 1], out, progress=False, report=False)
    assert sorted(fake_pipeline.calls) == ["gradual-seed0", "gradual-seed1", "maybeknown-seed0", "maybeknown-seed1"]
    assert set(fake_pipeline.stage_caches) == {out / "stage-cache"}  # the runs share the stages they train alike
    assert all(not r["reused"] for r in first["runs"])
    for f in ("comparison.json", "comparison.md"):
        assert (out / f).is_file()
    # Second time: every run is finished with the same config, so the pipeline is not called at all.
    second = cmp.run_compare(cfg, ["gradual", "maybeknown"], [0, 1], out, progress=True, report=False)
    assert len(fake_pipeline.calls) == 4
    assert all(r["reused"] for r in second["runs"])
    assert second["strategies"] == first["strategies"] and second["headline"] == first["headline"]
    # A new seed runs only the new runs.
    cmp.run_compare(cfg, ["gradual", "maybeknown"], [0, 1, 2], out, progress=False, report=False)
    assert fake_pipeline.calls[4:] == ["gradual-seed2", "maybeknown-seed2"]
    # A changed config is not silently reused: the pipeline is asked (it resumes or refuses).
    _write_config(cfg, CONFIG.replace("limit_train: 10", "limit_train: 11"))
    cmp.run_compare(cfg, ["gradual"], [0], out, progress=False, report=False)
    assert fake_pipeline.calls[-1] == "gradual-seed0"


def test_compare_repeats_the_design_per_exemplar_seed(tmp_path: Path, fake_pipeline: FakePipeline) -> None:
    cfg = tmp_path / "c.yaml"
    _write_config(cfg)
    out = tmp_path / "cmp"
    c = cmp.run_compare(cfg, ["gradual", "maybeknown"], [0, 1], out, progress=False, report=False,
                        exemplar_seeds=[0, 1])
    # Training-seed-major, then exemplar seed, then strategy: an interrupted compare has whole pairs.
    assert fake_pipeline.calls == ["gradual-ex0-seed0", "maybeknown-ex0-seed0", "gradual-ex1-seed0",
                                   "maybeknown-ex1-seed0", "gradual-ex0-seed1", "maybeknown-ex0-seed1",
                                   "gradual-ex1-seed1", "maybeknown-ex1-seed1"]
    recorded = yaml.safe_load((out / "runs" / "gradual-ex1-seed0" / "config.yaml").read_text())["config"]
    assert recorded["probe"]["seed"] == 1 and recorded["seed"] == 0
    assert c["exemplar_seeds"] == [0, 1] and {r["exemplar_seed"] for r in c["runs"]} == {0, 1}
    h = c["headline"]
    assert h["relative_increase"]["n"] == 4
    assert [(p["exemplar_seed"], p["seed"]) for p in h["per_seed"]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert h["relative_increase"]["detectable"] > 0
    assert [(p["a"], p["b"], p["n"]) for p in c["paired"]] == [("gradual", "maybeknown", 4)]
    md = (out / "comparison.md").read_text()
    assert "exemplar seeds (probe.seed, the base categorization): 0, 1" in md
    assert "## Paired comparisons" in md and "| gradual - maybeknown | 4 |" in md and "80% power" in md
    assert "is itself uncertain" in md  # 4 pairs: the power figure says how little it rests on
    # Each base categorization on its own: its runs' means, and the headline over its two training seeds.
    blocks = c["by_exemplar_seed"]
    assert [b["exemplar_seed"] for b in blocks] == [0, 1]
    for b in blocks:
        mine = [r for r in c["runs"] if r["exemplar_seed"] == b["exemplar_seed"]]
        for st in ("gradual", "maybeknown"):
            accs = [r["test_accuracy"] for r in mine if r["strategy"] == st]
            hks = [r["highly_known_after"] for r in mine if r["strategy"] == st]
            assert b["strategies"][st]["n_runs"] == 2
            assert b["strategies"][st]["test_accuracy"]["mean"] == pytest.approx(statistics.mean(accs))
            assert b["strategies"][st]["highly_known_after"]["mean"] == pytest.approx(statistics.mean(hks))
        rel = [p["relative"] for p in h["per_seed"] if p["exemplar_seed"] == b["exemplar_seed"]]
        assert b["headline"]["n"] == 2 and b["headline"]["mean"] == pytest.approx(statistics.mean(rel))
    table = md.split("## By exemplar seed")[1].split("\n\n")[2].splitlines()
    assert table[0] == ("| strategy | runs (exemplar seed 0) | test accuracy (exemplar seed 0) | HighlyKnown after "
                        "(exemplar seed 0) | runs (exemplar seed 1) | test accuracy (exemplar seed 1) | "
                        "HighlyKnown after (exemplar seed 1) |")
    assert len({line.count("|") for line in table}) == 1 and len(table) == 2 + 2 + 1  # head, rule, 2 strategies, headline
    assert table[-1].startswith("| headline: relative HighlyKnown after (pairs) | 2 |  | ")
    again = cmp.run_compare(cfg, ["gradual", "maybeknown"], [0, 1], out, progress=False, report=True,
                            exemplar_seeds=[0, 1])
    assert len(fake_pipeline.calls) == 8 and all(r["reused"] for r in again["runs"])
    html = (out / "report.html").read_text()
    assert "By exemplar seed" in html and "HighlyKnown after (exemplar seed 0)" in html
    # A strategy with no finished run under one exemplar seed: that block leaves it (and its headline) out.
    for name in ("maybeknown-ex1-seed0", "maybeknown-ex1-seed1"):
        (out / "runs" / name / "summary.json").unlink()
    part = cmp.run_compare(cfg, ["gradual", "maybeknown"], [0, 1], out, progress=False, report=False,
                           exemplar_seeds=[0, 1], finished_only=True)
    ex0, ex1 = part["by_exemplar_seed"]
    assert set(ex0["strategies"]) == {"gradual", "maybeknown"} and ex0["headline"]["n"] == 2
    assert set(ex1["strategies"]) == {"gradual"} and ex1["headline"] is None
    md = (out / "comparison.md").read_text()
    assert "| maybeknown | 2 | " in md and md.count(" | 0 | – | – |") == 1  # maybeknown under exemplar seed 1


def test_finished_only_compares_what_has_finished(tmp_path: Path, fake_pipeline: FakePipeline) -> None:
    """A long compare read while it runs: nothing is run, the finished runs are compared, the rest named."""
    from typer.testing import CliRunner

    from gradual.cli import app

    cfg = tmp_path / "c.yaml"
    _write_config(cfg)
    out = tmp_path / "cmp"
    with pytest.raises(UserError, match="none of the 4 planned runs has finished"):
        cmp.run_compare(cfg, ["gradual", "maybeknown"], [0, 1], out, progress=False, report=False, finished_only=True)
    cmp.run_compare(cfg, ["gradual", "maybeknown"], [0], out, progress=False, report=False)  # seed 0 only
    calls = list(fake_pipeline.calls)
    from gradual.runlock import folder_lock

    with folder_lock(out):  # the compare that is still running holds the folder; reading needs no lock
        c = cmp.run_compare(cfg, ["gradual", "maybeknown"], [0, 1], out, progress=False, report=True,
                            finished_only=True)
    assert fake_pipeline.calls == calls  # ran nothing
    assert c["planned_runs"] == 4 and c["missing_runs"] == ["gradual-seed1", "maybeknown-seed1"]
    assert [r["name"] for r in c["runs"]] == ["gradual-seed0", "maybeknown-seed0"]
    assert c["headline"]["relative_increase"]["n"] == 1 and c["paired"][0]["n"] == 1
    md = (out / "comparison.md").read_text()
    assert "**Partial:** 2 of 4 planned runs (missing: gradual-seed1, maybeknown-seed1)" in md
    html = (out / "report.html").read_text()
    assert "runs finished" in html
    # Nothing ran, so no compare time is given as if it were one; the finished runs' is (2 x 100 s).
    assert c["finished_only"] and "--finished-only ran nothing; sum of the finished runs' times: 3.3m" in md
    assert c["by_exemplar_seed"] == [] and "## By exemplar seed" not in md  # one base categorization: no table
    assert "--finished-only ran nothing" in html
    res = CliRunner().invoke(app, ["compare", "--config", str(cfg), "--strategies", "gradual,maybeknown",
                                   "--seeds", "0,1", "--out", str(out), "--finished-only", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "partial" in res.output and "2 of 4 planned runs" in res.output
    assert fake_pipeline.calls == calls
    # A full compare has nothing missing, and says nothing about being partial.
    full = cmp.run_compare(cfg, ["gradual", "maybeknown"], [0, 1], out, progress=False, report=False)
    assert full["missing_runs"] == [] and full["planned_runs"] == 4
    md = (out / "comparison.md").read_text()
    assert "Partial" not in md and not full["finished_only"] and "sum of run times: 6.7m" in md


def test_comparison_files_content(tmp_path: Path, fake_pipeline: FakePipeline) -> None:
    cfg = tmp_path / "c.yaml"
    _write_config(cfg)
    out = tmp_path / "cmp"
    c = cmp.run_compare(cfg, ["gradual", "maybeknown", "all"], [0, 1, 2], out, progress=False, report=False,
                        command="gradual compare ...")
    on_disk = json.loads((out / "comparison.json").read_text())
    assert on_disk["strategies_order"] == ["gradual", "maybeknown", "all"] and on_disk["seeds"] == [0, 1, 2]
    assert list(on_disk["strategies"]) == ["gradual", "maybeknown", "all"]
    g = on_disk["strategies"]["gradual"]
    for key in ("test_accuracy", "test_accuracy_by_category", "acquired", "forgotten", "retention",
                "highly_known_after", "highly_known_after_share", "stages", "wall_s"):
        assert key in g
    # The interval, computed here from the three crafted runs with a t-table value (t(0.975, 2) = 4.303),
    # clipped to [0, 1] because it is a proportion.
    accs = [make_summary("gradual", k)["test_accuracy"]["overall"] for k in (0, 1, 2)]
    mean, half = statistics.mean(accs), 4.302653 * statistics.stdev(accs) / math.sqrt(3)
    assert half > 0
    assert g["test_accuracy"]["n"] == 3 and g["test_accuracy"]["mean"] == pytest.approx(mean)
    assert g["test_accuracy"]["lo"] == pytest.approx(max(0.0, mean - half), rel=1e-5)
    assert g["test_accuracy"]["hi"] == pytest.approx(min(1.0, mean + half), rel=1e-5)
    assert on_disk["headline"]["relative_increase"]["n"] == 3
    assert on_disk["noise"]["flip_rate"]["mean"] == pytest.approx(0.06)
    md = (out / "comparison.md").read_text()
    assert "| gradual | 3 |" in md and "Headline" in md and "Noise control" in md and "gradual compare ..." in md
    # A difference carries its sign on every bound (an unsigned "1.4%" beside "-6.4%" reads as a typo).
    import re

    assert re.search(r"\*\*[+-]\d+\.\d% \[[+-]\d+\.\d%, [+-]\d+\.\d%\]\*\*; the paper reports", md)
    assert all(re.search(rf"\| {p['seed']} \| \d+ \| \d+ \| [+-]\d+\.\d% \|", md)
               for p in c["headline"]["per_seed"])
    # Time spent in the runs: each crafted run took 100 + seed seconds, 3 strategies x seeds 0, 1, 2.
    assert c["runs_wall_s"] == on_disk["runs_wall_s"] == 3 * (100.0 + 101.0 + 102.0)


def test_compare_cli_validates_before_running(tmp_path: Path, fake_pipeline: FakePipeline) -> None:
    from typer.testing import CliRunner

    from gradual.cli import app

    cfg = tmp_path / "c.yaml"
    _write_config(cfg)
    res = CliRunner().invoke(app, ["compare", "--config", str(cfg), "--strategies", "gradual,bogus",
                                   "--seeds", "0", "--out", str(tmp_path / "o")])
    assert isinstance(res.exception, UserError) and "--strategies" in str(res.exception)
    res = CliRunner().invoke(app, ["compare", "--config", str(cfg), "--strategies", "gradual",
                                   "--seeds", "0,x", "--out", str(tmp_path / "o")])
    assert isinstance(res.exception, UserError) and "--seeds" in str(res.exception)
    with pytest.raises(UserError, match=r"(?s)--strategies.*--seeds"):  # every bad flag in one message
        flags.parse_flags("bogus", "x")
    assert fake_pipeline.calls == []


def test_terminal_tables_render(tmp_path: Path, fake_pipeline: FakePipeline) -> None:
    from rich.console import Console

    from gradual.console import print_comparison, print_eval, print_summary

    console = Console(record=True, width=200)
    s = make_summary("gradual", 0)
    print_summary(s, console)
    print_summary({"strategy": "known"}, console)  # a partial summary still prints
    print_eval({"model": "m", "data": "d", "n": 4, "accuracy": 0.5, "hallucination_rate": 0.25,
                "by_category": {"Unknown": {"n": 4, "correct": 2, "accuracy": 0.5}}}, console)
    cfg = tmp_path / "c.yaml"
    _write_config(cfg)
    c = cmp.run_compare(cfg, ["gradual", "maybeknown"], [0, 1], tmp_path / "o", progress=False, report=False)
    print_comparison(c, console)
    text = console.export_text()
    assert f"{s['highly_known']['before']} → {s['highly_known']['after']}" in text
    assert "base-Unknown" in text and "25.0%" in text
    assert "maybeknown" in text and "headline" in text and "noise control" in text


def test_power_sentence_says_when_it_rests_on_few_pairs() -> None:
    from gradual.formatting import power_sentence

    assert power_sentence({"n": 1, "detectable": None}).startswith("Too few pairs")
    few = power_sentence({"n": 4, "detectable": 0.077}, pct=True)
    assert few.startswith("With 4 pairs this compare detects a true difference of 7.7% or more with 80% power")
    assert "itself uncertain" in few
    assert "uncertain" not in power_sentence({"n": 5, "detectable": 3.0})
