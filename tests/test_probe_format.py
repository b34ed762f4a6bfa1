"""probe.format zeroshot: the categories measured in the prompt the fine-tuned model is asked in."""

from __future__ import annotations

from pathlib import Path

import pytest

from gradual.config import ProbeConfig
from gradual.data.items import Item
from gradual.prompts import FinetuneFormat
from tests.memorized import FACTS, memorized_model_dir

OTHERS = (("What is the capital of Peru?", "Lima"), ("Which continent is Japan on?", "Asia"))


@pytest.fixture(scope="module")
def memorized(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from gradual.lm.load import load_model

    return load_model(str(memorized_model_dir(tmp_path_factory)), "cpu", "fp32")


def _items() -> list[Item]:
    return [Item(f"q{i}", q, (a,), "r", f"s{i}") for i, (q, a) in enumerate(FACTS + OTHERS)]


class Recording:
    """The real engine, with every prompt it is asked written down."""

    def __init__(self, engine) -> None:  # type: ignore[no-untyped-def]
        self.engine, self.prompts = engine, []

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.engine, name)

    def run(self, prefix, suffixes, **kw):  # type: ignore[no-untyped-def]
        prefixes = prefix if isinstance(prefix, list) else [prefix] * len(suffixes)
        self.prompts += [p + s for p, s in zip(prefixes, suffixes)]
        return self.engine.run(prefix, suffixes, **kw)


@pytest.mark.parametrize("estimator", ["exact", "sample"])
def test_zeroshot_asks_the_fine_tune_prompt_once_and_agrees_with_eval(memorized, estimator: str,
                                                                       tmp_path: Path) -> None:
    from gradual.evaluate import evaluate_items
    from gradual.probe import probe
    from gradual.lm.backends import make_engine

    items = _items()
    cfg = ProbeConfig(estimator=estimator, format="zeroshot", nex=10, shots=4, samples=4, max_new_tokens=6)
    engine = Recording(make_engine("hf", memorized, batch_size=8, max_new_tokens=6, top_k=cfg.top_k, seed=0))
    res = probe(memorized, items, None, cfg, progress=False, cache_dir=tmp_path, engine=engine)
    # One prompt per item, exactly what fine-tuning trains on and eval asks: no exemplars.
    assert sorted(engine.prompts) == sorted(FinetuneFormat().prompt(it.question) for it in items)
    assert all(r.n_prompts == 1 for r in res.rows)
    assert res.summary["config"]["format"] == "zeroshot" and res.summary["config"]["nex"] == 1
    assert res.counts()["MaybeKnown"] == 0  # one greedy answer: right or wrong, never partly
    # HighlyKnown under zeroshot is exactly "eval (greedy, fine-tune format) gets it right".
    ev = evaluate_items(memorized, items, progress=False, max_new_tokens=6)
    right = {p["id"] for p in ev.predictions if p["correct"]}
    assert {r.id for r in res.rows if r.category == "HighlyKnown"} == right
    assert {f"q{i}" for i in range(len(FACTS))} <= right  # the memorized facts are known zero-shot


def test_fewshot_is_the_default_and_puts_exemplars_before_the_question(memorized, tmp_path: Path) -> None:
    from gradual.probe import probe
    from gradual.lm.backends import make_engine

    items = _items()
    cfg = ProbeConfig(estimator="exact", nex=2, shots=2, max_new_tokens=6, full=True)
    assert cfg.format == "fewshot"
    engine = Recording(make_engine("hf", memorized, batch_size=8, max_new_tokens=6, top_k=cfg.top_k, seed=0))
    probe(memorized, items, None, cfg, progress=False, cache_dir=tmp_path, engine=engine)
    assert len(engine.prompts) == 2 * len(items)  # nex prompts per item (--full)
    assert all(p.count("Q: ") == 3 and p.endswith("\nA:") for p in engine.prompts)  # 2 exemplars + the question


def test_bad_format_is_a_flag_error(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    res = run_cli("probe", "--data", str(tmp_path / "x.jsonl"), "--out", str(tmp_path / "p.jsonl"), "--format", "oneshot")
    assert res.returncode == 2 and "--format" in res.stderr and "fewshot" in res.stderr
