"""The HTML report: every chart drawn as inline SVG, nothing fetched, for a run and a compare folder;
and (where Chromium is installed) the page renders offline in a headless browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from gradual.errors import UserError
from gradual.report import write_report
from tests.fake_runs import FakePipeline, make_summary, write_run

RUN_CHARTS = ("categories", "transitions", "test-accuracy", "training")
COMPARE_CHARTS = ("accuracy-by-category", "knowledge", "categories", "transitions",
                  "training-gradual", "training-maybeknown", "training-all")


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return write_run(tmp_path / "run", make_summary("gradual", 0))


@pytest.fixture(scope="module")
def compare_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A compare folder of crafted runs (built once: rendering it is the slow part)."""
    import gradual.pipeline as pipeline
    from gradual.compare import run_compare

    tmp = tmp_path_factory.mktemp("compare")
    cfg = tmp / "c.yaml"
    model = tmp / "tiny-model"  # checked before any run starts; the fake pipeline never loads it
    model.mkdir()
    (model / "config.json").write_text("{}")
    cfg.write_text(f"model: {model}\n")
    out = tmp / "cmp"
    write_report(write_run(out / "runs" / "gradual-seed0", make_summary("gradual", 0)))  # a run report to link to
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline, "run_pipeline", FakePipeline())
        run_compare(cfg, ["gradual", "maybeknown", "all"], [0, 1, 2], out, progress=False)  # writes report.html
    return out


def chart_blocks(html: str) -> dict[str, str]:
    """data-chart name -> the markup of its figure element."""
    blocks = {}
    for m in re.finditer(r'<figure class="chart" data-chart="([^"]+)">(.*?)</figure>', html, re.S):
        blocks[m.group(1)] = m.group(2)
    return blocks


def assert_self_contained(html: str) -> None:
    # No resource is loaded from anywhere: no remote src/href, no scripts, no external CSS or fonts.
    assert not re.search(r'(src|href)\s*=\s*["\']?\s*(https?:)?//', html, re.I)
    assert "<script" not in html.lower()
    assert "<link" not in html.lower() and "@import" not in html
    assert not re.search(r"url\(\s*['\"]?(?!#)", html)  # only in-page references such as url(#clip)
    assert "<!DOCTYPE svg" not in html and "<?xml" not in html


def test_run_report_has_every_chart(run_dir: Path) -> None:
    out = write_report(run_dir)
    assert out == run_dir / "report.html"
    html = out.read_text(encoding="utf-8")
    blocks = chart_blocks(html)
    for name in RUN_CHARTS:
        assert name in blocks, name
        assert "<svg" in blocks[name] and "<path" in blocks[name], name
    assert_self_contained(html)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert "tiny-test-model" in html and "gradual" in html
    assert f"{summary['highly_known']['before']} → {summary['highly_known']['after']}" in html
    assert 'id="noise"' in html and "5.0%" in html  # the flip rate beside the transition matrix


def test_run_report_without_training_still_draws_every_slot(tmp_path: Path) -> None:
    s = make_summary("known", 1)
    s["stages"] = []
    run = write_run(tmp_path / "r", s)
    html = write_report(run).read_text()
    assert set(RUN_CHARTS) <= set(chart_blocks(html))


def test_compare_report_has_every_chart(compare_dir: Path) -> None:
    html = (compare_dir / "report.html").read_text(encoding="utf-8")
    blocks = chart_blocks(html)
    for name in COMPARE_CHARTS:
        assert name in blocks and "<svg" in blocks[name], name
    assert_self_contained(html)
    assert 'id="headline"' in html and "+24%" in html
    assert 'href="runs/gradual-seed0/report.html"' in html  # relative link to a run report, not a URL
    comparison = json.loads((compare_dir / "comparison.json").read_text())
    assert comparison["strategies_order"] == ["gradual", "maybeknown", "all"]


def test_compare_report_states_what_each_comparison_could_detect(compare_dir: Path) -> None:
    """Issue 22: the report, not only comparison.md, carries the paired intervals and the power figure."""
    from gradual.formatting import fmt_paired

    html = (compare_dir / "report.html").read_text(encoding="utf-8")
    comparison = json.loads((compare_dir / "comparison.json").read_text())
    head = comparison["headline"]["relative_increase"]
    mdd = f"{100 * head['detectable']:.1f}%"
    assert f"With 3 pairs this compare detects a true difference of {mdd} or more with 80% power" in html
    assert "Paired comparisons (A - B)" in html
    for p in comparison["paired"]:  # every pair's row, with its interval and detectable difference
        cell = fmt_paired(p["highly_known_after"])
        assert "[" in cell and "(±" in cell
        assert f"<td>{p['a']} - {p['b']}</td><td>{p['n']}</td><td>{cell}</td>" in html


def test_report_rejects_other_folders(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="neither a run folder"):
        write_report(tmp_path)
    with pytest.raises(UserError, match="no such folder"):
        write_report(tmp_path / "missing")


def test_report_command(run_dir: Path) -> None:
    from typer.testing import CliRunner

    from gradual.cli import app

    res = CliRunner().invoke(app, ["report", str(run_dir)])
    assert res.exit_code == 0, res.output
    assert (run_dir / "report.html").is_file()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    # Flags that keep the browser off the network and free of first-run state.
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-default-apps", "--disable-extensions", f"--user-data-dir={tmp_path / 'chromium-profile'}",
           *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
@pytest.mark.parametrize("kind", ["run", "compare"])
def test_report_renders_in_headless_chromium(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    folder = request.getfixturevalue("run_dir" if kind == "run" else "compare_dir")
    url = (write_report(folder) if kind == "run" else folder / "report.html").resolve().as_uri()
    dom = _chromium(tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    blocks = chart_blocks(dom.stdout)  # the DOM after parsing: the charts are real elements
    for name in RUN_CHARTS if kind == "run" else COMPARE_CHARTS:
        assert name in blocks and "<svg" in blocks[name], name
    png = tmp_path / "shot.png"
    shot = _chromium(tmp_path, "--hide-scrollbars", "--window-size=1280,2400", f"--screenshot={png}", url)
    assert shot.returncode == 0 and png.is_file(), shot.stderr[-2000:]
    from PIL import Image

    img = Image.open(png).convert("L")
    lo, hi = img.getextrema()
    assert hi - lo > 100  # not a blank page: dark ink on a light background
    colors = Image.open(png).convert("RGB").getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 50  # charts, not just text
