"""probe() (gradual.probe.run): early exit gives the categories of --full with less work (a scripted
engine, the tiny model, and the real model), the accepted continuations, config errors, and the prompt
format (probe.format zeroshot: the categories measured in the prompt the fine-tuned model is asked in).

Run as: .venv/bin/pytest tests/probe/test_run.py -x
"""

from __future__ import annotations

import os
import string
from pathlib import Path

import pytest
import torch

from gradual.answers import is_correct
from gradual.config import ProbeConfig
from gradual.data.items import Item
from gradual.errors import UserError
from gradual.lm.hf import HFEngine
from gradual.probe import CATEGORIES, categorize, probe
from gradual.probe.run import accepted_continuations
from gradual.probe.slick import assign_exemplar_sets
from gradual.prompts import FinetuneFormat, probe_prefix, query
from tests.conftest import items_of
from tests.memorized import FACTS, memorized_model_dir


PUNCT = string.punctuation + " "


# -- early exit: the categories of --full with less work ---------------------------------------------

def _u(*parts: object) -> float:
    """A deterministic uniform in [0, 1) from any parts (the scripted engine's only randomness)."""
    import hashlib

    h = hashlib.sha256("\x00".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:8], "little") / 2.0 ** 64


class _ScriptedEngine:
    """A ProbeEngine whose outcomes are fixed per (prompt, draw) by a hash, so early exit and --full see the
    same evidence for every prompt they both compute. Each question has a chance of a right greedy answer
    and of a right sample (its p_i under exact); the engine counts the work it was asked for."""

    stops_rows = verifies_drafts = False  # the narrow interface (gradual.lm.protocol.ProbeEngine)

    def __init__(self, truth: dict[str, tuple[str, float, float]]) -> None:
        self.truth = truth  # query text -> (answer, P(greedy right), P(sample right))
        self.greedy_rows = self.sample_rows = self.score_rows = 0

    def run(self, prefix, suffixes, *, greedy=True, samples=0, sample_keys=None, continuations=None,  # type: ignore[no-untyped-def]
            temperature=1.0, top_k=0, select=None):
        from gradual.lm.protocol import RunOutput

        prefixes = [prefix] * len(suffixes) if isinstance(prefix, str) else list(prefix)
        out = RunOutput(greedy=[])
        for pf, sfx in zip(prefixes, suffixes):
            ans, pg, _ = self.truth[sfx]
            out.greedy.append(" " + (ans if _u(pf, sfx, "greedy") < pg else "nope") + "\n")
        self.greedy_rows += len(suffixes)
        flags = list(select(out.greedy)) if select is not None else [True] * len(suffixes)
        if samples:
            out.samples = []
            for q, (pf, sfx) in enumerate(zip(prefixes, suffixes)):
                ans, _, ps = self.truth[sfx]
                out.samples.append([ans if _u(pf, sfx, j) < ps else "nope" for j in range(samples)] if flags[q] else [])
                self.sample_rows += samples * flags[q]
        if continuations is not None:
            out.scores = [self.truth[sfx][2] * _u(pf, sfx, "p") if f else None
                          for pf, sfx, f in zip(prefixes, suffixes, flags)]
            self.score_rows += sum(flags)
        return out


def _scripted_items() -> tuple[list[Item], list[Item], dict[str, tuple[str, float, float]]]:
    items, truth = [], {}
    levels = [(pg, ps) for pg in (0.0, 0.2, 0.6, 0.95, 1.0) for ps in (0.0, 0.002, 0.02, 0.3)]
    for i, (pg, ps) in enumerate(levels * 3):
        it = Item(f"q{i}", f"What is the answer to puzzle {i}?", (f"ans{i}",), "puzzle", str(i))
        items.append(it)
        truth[query(it.question)] = (f"ans{i}", pg, ps)
    pool = [Item(f"e{i}", f"What is example {i}?", (f"ex{i}",), "puzzle", f"e{i}") for i in range(12)]
    return items, pool, truth


@pytest.mark.parametrize("estimator", ["sample", "exact"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_early_exit_same_categories_less_work(estimator: str, seed: int) -> None:
    items, pool, truth = _scripted_items()
    cfg = ProbeConfig(estimator=estimator, nex=10, shots=2, samples=4, cache=False, seed=seed)  # type: ignore[arg-type]
    e_full, e_early = _ScriptedEngine(truth), _ScriptedEngine(truth)
    from types import SimpleNamespace

    lm = SimpleNamespace(spec="scripted", fingerprint="scripted", model=None, tokenizer=None,
                         placement=SimpleNamespace(device=torch.device("cpu"), dtype=torch.float32))
    full = probe(lm, items, pool, ProbeConfig(**{**cfg.__dict__, "full": True}), progress=False, engine=e_full)  # type: ignore[arg-type]
    early = probe(lm, items, pool, cfg, progress=False, engine=e_early)  # type: ignore[arg-type]
    assert early.categories() == full.categories()
    assert set(full.counts()) == set(CATEGORIES) and all(full.counts()[c] > 0 for c in CATEGORIES)
    assert e_early.greedy_rows < e_full.greedy_rows == len(items) * cfg.nex
    if estimator == "exact":
        assert e_early.score_rows < e_full.score_rows
    else:
        assert e_early.sample_rows < e_full.sample_rows
    by_id = {r.id: r for r in full.rows}
    for r in early.rows:
        f = by_id[r.id]
        assert r.category == categorize(r.p_greedy, r.p_sample, p_seen=r.p_seen)
        assert r.n_prompts == len(r.greedy_answers) and f.n_prompts == cfg.nex
        assert r.greedy_answers == f.greedy_answers[: r.n_prompts]  # the same prompts, in order
        if r.category in ("HighlyKnown", "Unknown"):
            assert r.n_prompts == cfg.nex  # every prompt is needed to tell these apart
        if r.category == "MaybeKnown":  # stops at the first pair of one right and one wrong answer
            oks = [is_correct(a, [it]) for a, it in zip(r.greedy_answers, r.answers * r.n_prompts)]
            assert oks[-1] != oks[-2] and len(set(oks[:-1])) == 1
        if r.category == "HighlyKnown":
            assert (r.n_scored if estimator == "exact" else r.n_samples) == 0
    s = early.summary["early_exit"]
    assert s["enabled"] and s["prompts_used"] == sum(r.n_prompts for r in early.rows) < s["prompts_total"]


def test_early_exit_same_categories_on_tiny_model(tiny_model_dir: Path, sample_items: list[dict]) -> None:
    """The real engine: answers are set to what a tiny model says at some of its prompts (or samples), so
    items spread over categories; early exit and --full must agree for both estimators and three seeds."""
    import dataclasses

    from gradual.lm.load import load_model
    from gradual.probe.run import _prompt_key

    lm = load_model(str(tiny_model_dir), device="cpu", dtype="fp32")
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # larger random weights: answers that differ between questions and prompts
        for prm in lm.model.parameters():
            if prm.dim() == 2:
                prm.copy_(torch.randn(prm.shape, generator=gen) * 0.1)
    items = items_of(sample_items)
    cfg = ProbeConfig(nex=4, shots=2, samples=4, max_new_tokens=4, cache=False)
    first = probe(lm, items, None, dataclasses.replace(cfg, full=True), progress=False)
    eng = HFEngine(lm.model, lm.tokenizer, max_new_tokens=cfg.max_new_tokens)
    sets = assign_exemplar_sets(items, items, cfg.nex, cfg.shots, 0)
    crafted = []
    for k, (it, row) in enumerate(zip(items, first.rows)):
        g = [a for a in row.greedy_answers if a.strip(PUNCT)]
        if k % 4 == 0 and g:
            answers = [g[0]]
        elif k % 4 == 1 and g:
            answers = [g[-1]]
        elif k % 4 == 2:  # a sampled answer no greedy answer matches: WeaklyKnown under sample
            es = sets.sets[it.id][0]
            drawn = eng.sample(probe_prefix(es.items), [query(it.question)], cfg.samples, cfg.temperature,
                               cfg.top_k, sample_keys=[_prompt_key(0, it.id, es.key)])[0]
            answers = [x.strip() for x in drawn if x.strip(PUNCT + "\n") and not is_correct(x, row.greedy_answers)][:1]
        else:
            answers = []
        crafted.append(dataclasses.replace(it, answers=tuple(answers or ["nothing it says"])))
    seen: set[str] = set()
    for estimator in ("sample", "exact"):
        for seed in (0, 1, 2):
            c = dataclasses.replace(cfg, estimator=estimator, seed=seed)
            early = probe(lm, crafted, items, c, progress=False)
            full = probe(lm, crafted, items, dataclasses.replace(c, full=True), progress=False)
            assert early.categories() == full.categories(), (estimator, seed)
            assert early.summary["tokens_processed"] <= full.summary["tokens_processed"]
            seen |= set(full.categories().values())
    assert len(seen) >= 3, seen


# -- probe(): continuations and config -------------------------------------------------------------

def test_accepted_continuations_cover_aliases_and_trailing_punctuation() -> None:
    it = Item("x", "q?", ("Washington, D.C.", "Washington"))
    assert accepted_continuations(it) == [" Washington, D.C.", " Washington, D.C", " Washington"]


def test_bad_config_is_user_error(tiny_lm, sample_items: list[dict]) -> None:
    with pytest.raises(UserError, match="--nex"):
        probe(tiny_lm, items_of(sample_items), None, ProbeConfig(nex=0), progress=False)


# -- probe.format: fewshot (default) and zeroshot --------------------------------------------------

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


# -- real model ------------------------------------------------------------------------------------------

@pytest.mark.real_model
def test_real_model_capital_of_france_is_highly_known() -> None:
    from gradual.lm.load import load_model

    lm = load_model("smollm2-135m")
    caps = [("France", "Paris"), ("Germany", "Berlin"), ("Japan", "Tokyo"), ("Italy", "Rome"),
            ("Spain", "Madrid"), ("Egypt", "Cairo"), ("Canada", "Ottawa")]
    items = [Item(f"c{i}", f"What is the capital of {c}?", (a,), "capital", c) for i, (c, a) in enumerate(caps)]
    res = probe(lm, items[:1], items, ProbeConfig(cache=False), progress=False)
    row = res.rows[0]
    assert row.category == "HighlyKnown", row
    assert all(a.strip() == "Paris" for a in (x.split("\n")[0] for x in row.greedy_answers))
    exact = probe(lm, items[:1], items, ProbeConfig(estimator="exact", cache=False, full=True), progress=False)
    assert exact.rows[0].category == "HighlyKnown" and exact.rows[0].p_sample > 0.5
    early = probe(lm, items[:1], items, ProbeConfig(estimator="exact", cache=False), progress=False)
    assert early.rows[0].category == "HighlyKnown" and early.rows[0].n_scored == 0  # nothing to score


def _early_exit_items() -> list[Item]:
    facts = [("France", "Paris", "Europe"), ("Chad", "N'Djamena", "Africa"), ("Laos", "Vientiane", "Asia"),
             ("Peru", "Lima", "South America"), ("Bhutan", "Thimphu", "Asia"), ("Malta", "Valletta", "Europe"),
             ("Tuvalu", "Funafuti", "Oceania"), ("Guyana", "Georgetown", "South America"),
             ("Eritrea", "Asmara", "Africa"), ("Japan", "Tokyo", "Asia")]
    items = [Item(f"cap{i}", f"What is the capital of {c}?", (a,), "capital", c) for i, (c, a, _) in enumerate(facts)]
    return items + [Item(f"con{i}", f"Which continent is {c} on?", (k,), "continent", c)
                    for i, (c, _, k) in enumerate(facts)]


@pytest.mark.real_model
@pytest.mark.parametrize("estimator", ["sample", "exact"])
def test_real_model_early_exit_keeps_categories(estimator: str) -> None:
    """In fp32 a row's logits do not depend on the rows batched with it, so early exit (other rows, other
    batches) gives exactly the categories of --full, on every CPU kind (fp32 forced: the promise is fp32's)."""
    from gradual.lm.load import load_model

    lm = load_model("smollm2-135m", dtype="fp32")
    items = _early_exit_items()
    for seed in (0, 1):
        cfg = ProbeConfig(estimator=estimator, nex=5, shots=3, cache=False, seed=seed)  # type: ignore[arg-type]
        early = probe(lm, items, None, cfg, progress=False)
        full = probe(lm, items, None, ProbeConfig(**{**cfg.__dict__, "full": True}), progress=False)
        assert early.categories() == full.categories(), (seed, early.counts(), full.counts())
        assert len(set(full.categories().values())) >= 2  # a meaningful mix, not one category
        assert early.summary["tokens_processed"] < full.summary["tokens_processed"]


# In bf16 a row's logits move with its batch at bf16 resolution (the kernels' blocking follows the
# batch's shape), so a sample near an inverse-CDF boundary, or a greedy argmax between near-tied tokens,
# can flip, and with it an item near a category threshold. benchmarks/dtype_agreement.py measured 3 of
# 100 world items between early exit and --full, and 4 of 100 between batch sizes 256 and 16 (sample
# estimator, AVX512 with native bf16); run to run with the same batches it is deterministic.
BF16_MAX_FLIPS = 4  # of 20 items per seed: at a 4% flip rate, 5 or more happen with probability < 0.1%


@pytest.mark.real_model
def test_real_model_bf16_early_exit_flips_few_categories() -> None:
    """The bf16 contract (what CPUs with native bf16 and GPUs run): the same probe twice gives the same
    categories, and early exit differs from --full on at most a few items near a threshold. Runs where
    gradual picks bf16 itself; elsewhere (bf16 emulated, ~7x slower) set GRADUAL_TEST_BF16=1 to force it."""
    from gradual.lm.load import choose_placement, load_model

    if choose_placement("cpu").dtype != torch.bfloat16 and not os.environ.get("GRADUAL_TEST_BF16"):
        pytest.skip("this CPU runs fp32 (no native bf16); GRADUAL_TEST_BF16=1 runs this test in emulated bf16")
    lm = load_model("smollm2-135m", device="cpu", dtype="bf16")
    items = _early_exit_items()
    for seed in (0, 1):
        cfg = ProbeConfig(estimator="sample", nex=5, shots=3, cache=False, seed=seed)  # type: ignore[arg-type]
        early = probe(lm, items, None, cfg, progress=False)
        again = probe(lm, items, None, cfg, progress=False)
        full = probe(lm, items, None, ProbeConfig(**{**cfg.__dict__, "full": True}), progress=False)
        assert early.categories() == again.categories(), seed  # deterministic for the same batches
        flips = [i for i, c in early.categories().items() if full.categories()[i] != c]
        assert len(flips) <= BF16_MAX_FLIPS, (seed, flips, early.counts(), full.counts())
        assert len(set(full.categories().values())) >= 2
