"""Contract tests of the vLLM probe backend (`--backend vllm`) against a stand-in `vllm` module.

vLLM is an optional extra (`pip install 'gradual[vllm]'`) that needs a GPU; CI and `make setup` do not
install it. So these tests put a fake `vllm` package into sys.modules (LLM, SamplingParams, LoRARequest
that record every call and answer with RequestOutput-like objects) and check the contract on our side:
the requests gradual makes (prefix caching, greedy at T=0, n samples with stop ["\\n"], top-k, per-request
seeds, prompt_logprobs for the exact estimator, LoRA requests) and how it parses what comes back. The
fake's prompt_logprobs come from the tiny random HF model, so the vLLM exact estimator is checked
against HFEngine.score on the same model. Nothing here runs real vLLM; that needs a GPU machine.

Run as: .venv/bin/pytest tests/lm/test_vllm.py -x
"""

from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from gradual.config import ProbeConfig
from gradual.data.items import Item, item_from_dict
from gradual.errors import UserError
from gradual.probe import probe
from gradual.lm import backends, vllm_model
from gradual.lm.hf import HFEngine
from gradual.lm.sampling import set_prob, token_prob
from gradual.probe.run import _prompt_key
from gradual.probe.slick import assign_exemplar_sets
from gradual.lm.vllm import continuation_prob, topk_set_prob, topk_token_prob
from gradual.prompts import probe_prefix, query

FAKE_VERSION = "0.0-fake"


# -- the stand-in vllm package ------------------------------------------------------------------------

@dataclass
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


class SamplingParams:
    def __init__(self, **kw: Any) -> None:
        self.kw = kw
        self.n = kw.get("n", 1)
        self.temperature = kw.get("temperature", 1.0)
        self.prompt_logprobs = kw.get("prompt_logprobs")

    def __repr__(self) -> str:
        return f"SamplingParams({self.kw})"


@dataclass
class LoRARequest:
    lora_name: str
    lora_int_id: int
    lora_path: str


@dataclass
class Completion:
    text: str
    token_ids: list[int] = field(default_factory=list)


@dataclass
class RequestOutput:
    prompt_token_ids: list[int]
    outputs: list[Completion]
    prompt_logprobs: list[dict[int, Logprob] | None] | None = None
    num_cached_tokens: int = 0


class World:
    """What the fake model answers: canned greedy and sampled texts by question, and real prompt logprobs
    from a HF model (the tiny random one) for scoring requests."""

    def __init__(self, tokenizer: Any, model: Any) -> None:
        self.tok, self.model = tokenizer, model
        self.greedy_seen: dict[str, int] = {}

    def question(self, ids: list[int]) -> str:
        text = self.tok.decode(ids)
        return text.rsplit("Q: ", 1)[1].split("\n", 1)[0]

    def greedy(self, q: str) -> str:
        k = self.greedy_seen[q] = self.greedy_seen.get(q, 0) + 1
        return {"What is the capital of France?": " Paris",
                "What is the capital of Germany?": " Berlin" if k == 1 else " Bonn",  # right once, then wrong
                "What is the capital of Peru?": " Cusco"}.get(q, " Giza")

    def samples(self, q: str, n: int) -> list[str]:
        if q == "What is the capital of Peru?":
            return [" Lima"] + [" Cusco"] * (n - 1)
        return [" Giza"] * n

    @torch.no_grad()
    def prompt_logprobs(self, ids: list[int], k: int) -> list[dict[int, Logprob] | None]:
        logits = self.model(input_ids=torch.tensor([ids])).logits[0].double()
        lp = torch.log_softmax(logits, -1)
        out: list[dict[int, Logprob] | None] = [None]
        for i in range(1, len(ids)):
            row = lp[i - 1]
            order = torch.argsort(row, descending=True)
            d = {int(t): Logprob(float(row[t]), r + 1) for r, t in enumerate(order[:k].tolist())}
            actual = ids[i]
            if actual not in d:  # vLLM adds the prompt's own token with its rank
                d[actual] = Logprob(float(row[actual]), int((order == actual).nonzero()[0, 0]) + 1)
            out.append(d)
        return out


class LLM:
    world: World | None = None
    instances: list["LLM"] = []

    def __init__(self, **kw: Any) -> None:
        self.kw = kw
        self.calls: list[dict[str, Any]] = []
        LLM.instances.append(self)

    def generate(self, prompts: list[dict[str, Any]], params: list[SamplingParams], use_tqdm: bool = True,
                 lora_request: Any = None) -> list[RequestOutput]:
        assert isinstance(params, list) and len(params) == len(prompts)
        self.calls.append({"prompts": prompts, "params": params, "lora_request": lora_request})
        world = LLM.world
        assert world is not None
        outs = []
        for p, sp in zip(prompts, params):
            ids = p["prompt_token_ids"]
            if sp.prompt_logprobs is not None:
                outs.append(RequestOutput(ids, [Completion("", [0])], world.prompt_logprobs(ids, sp.prompt_logprobs)))
                continue
            q = world.question(ids)
            texts = [world.greedy(q)] if sp.temperature == 0 else world.samples(q, sp.n)
            outs.append(RequestOutput(ids, [Completion(t, [1, 2]) for t in texts]))
        return outs


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch, tiny_lm: Any) -> type[LLM]:
    mod = types.ModuleType("vllm")
    mod.__version__ = FAKE_VERSION  # type: ignore[attr-defined]
    mod.LLM = LLM  # type: ignore[attr-defined]
    mod.SamplingParams = SamplingParams  # type: ignore[attr-defined]
    lora = types.ModuleType("vllm.lora")
    req = types.ModuleType("vllm.lora.request")
    req.LoRARequest = LoRARequest  # type: ignore[attr-defined]
    for name, m in (("vllm", mod), ("vllm.lora", lora), ("vllm.lora.request", req)):
        monkeypatch.setitem(sys.modules, name, m)
    LLM.instances = []
    LLM.world = World(tiny_lm.tokenizer, tiny_lm.model)
    vllm_model._LLM.clear()
    yield LLM
    vllm_model._LLM.clear()


def _items(rows: list[dict]) -> list[Item]:
    return [item_from_dict(r, "test", i) for i, r in enumerate(rows, 1)]


def _requests(llm: LLM) -> list[tuple[list[int], SamplingParams]]:
    return [(p["prompt_token_ids"], sp) for c in llm.calls for p, sp in zip(c["prompts"], c["params"])]


# -- the maths: vLLM's top-k logprobs give HFEngine's tempered top-k probabilities ------------------------

@pytest.mark.parametrize("temperature,k", [(0.5, 40), (1.0, 5), (0.7, 1)])
def test_topk_logprob_maths_equals_hf_tempered_topk(temperature: float, k: int) -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 300, generator=g, dtype=torch.float64) * 3
    lp = torch.log_softmax(logits, -1)
    member = torch.zeros(300, dtype=torch.bool)
    member[torch.randperm(300, generator=g)[:40]] = True
    member[logits[0].argmax()] = True  # a stop token among the top k of row 0
    order = torch.argsort(logits, -1, descending=True)
    tokens = torch.stack([order[0, 0], order[1, min(k, 299)], order[2, k - 1], order[3, 2], order[4, 250],
                          order[5, 0]])  # inside and outside the top k
    want_tok = token_prob(logits, tokens, temperature, k)
    want_set = set_prob(logits, member, temperature, k)
    members = {int(i) for i in member.nonzero().flatten()}
    for r in range(6):
        pos = {int(t): Logprob(float(lp[r, t])) for t in order[r, :k]}  # what prompt_logprobs=k returns
        pos.setdefault(int(tokens[r]), Logprob(float(lp[r, tokens[r]])))
        assert topk_token_prob(pos, int(tokens[r]), temperature, k) == pytest.approx(float(want_tok[r]), rel=1e-5, abs=1e-9)
        assert topk_set_prob(pos, members, temperature, k) == pytest.approx(float(want_set[r]), rel=1e-5, abs=1e-9)
    # a continuation's p: prod of token probs times the stop factor at the position after it
    pl: list[Any] = [None] + [{int(t): Logprob(float(lp[r, t])) for t in order[r, :k]} for r in range(6)]
    toks = [int(order[0, 0]), int(order[1, 0])]
    got = continuation_prob(pl, 1, toks, members, temperature, k, max_new_tokens=12)
    want = float(token_prob(logits[:2], torch.tensor(toks), temperature, k).prod() *
                 set_prob(logits[2:3], member, temperature, k)[0])
    assert got == pytest.approx(want, rel=1e-5)
    assert continuation_prob(pl, 1, toks, members, temperature, k, max_new_tokens=2) == pytest.approx(
        float(token_prob(logits[:2], torch.tensor(toks), temperature, k).prod()), rel=1e-5)  # cut: no stop
    assert continuation_prob(pl, 1, toks, members, temperature, k, max_new_tokens=1) == 0.0  # too long


def test_vllm_score_equals_hf_engine_score(fake_vllm: type[LLM], tiny_lm: Any, tiny_model_dir: Path) -> None:
    prefix = "Q: What is the capital of France?\nA: Paris\nQ: Which continent is Peru on?\nA: South America\n"
    suffixes = ["Q: What is the capital of Japan?\nA:", "Q: Hi?\nA:"]
    conts = [[" Tokyo", " Paris", " Paris"], [" South America", " A"]]
    model = vllm_model.vllm_model(str(tiny_model_dir))
    for max_new in (12, 2):  # 2: " South America" is cut (longer than max_new_tokens or exactly at it)
        eng = backends.make_engine("vllm", model, max_new_tokens=max_new, top_k=40)
        hf = HFEngine(tiny_lm.model, tiny_lm.tokenizer, batch_size=8, max_new_tokens=max_new)
        for temperature, k in ((0.5, 40), (1.0, 5)):
            got = eng.score(prefix, suffixes, conts, temperature, k)
            want = hf.score(prefix, suffixes, conts, temperature, k)
            assert got == pytest.approx(want, rel=1e-4, abs=1e-9)
    sent = _requests(fake_vllm.instances[-1])
    assert all(sp.kw["prompt_logprobs"] == 5 or sp.kw["prompt_logprobs"] == 40 for _, sp in sent)
    assert all(sp.kw["max_tokens"] == 1 for _, sp in sent)
    # distinct continuations only (" Paris" twice is one event), each as prompt + c + one newline token
    tok = tiny_lm.tokenizer
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    first = fake_vllm.instances[-1].calls[0]["prompts"]  # max_new_tokens 12, T 0.5: one request per distinct c
    want = [enc(prefix) + enc(suffixes[q]) + enc(c) + [enc("\n")[-1]]
            for q, c in ((0, " Tokyo"), (0, " Paris"), (1, " South America"), (1, " A"))]
    assert [p["prompt_token_ids"] for p in first] == want


# -- probe() through the vLLM backend -------------------------------------------------------------------

CFG = dict(nex=3, shots=2, samples=4, temperature=0.5, top_k=7, seed=5, max_new_tokens=6, backend="vllm")


def _probe_items(sample_items: list[dict]) -> tuple[list[Item], list[Item]]:
    pool = _items(sample_items)
    names = ("France", "Germany", "Peru", "Egypt")
    return [it for it in pool if it.relation == "capital" and it.subject in names], pool


def test_probe_sample_estimator_requests_and_parsing(fake_vllm: type[LLM], tiny_model_dir: Path,
                                                     sample_items: list[dict], tmp_path: Path) -> None:
    items, pool = _probe_items(sample_items)
    model = vllm_model.vllm_model(str(tiny_model_dir))
    cfg = ProbeConfig(**CFG)  # type: ignore[arg-type]
    res = probe(model, items, pool, cfg, progress=False, cache_dir=tmp_path)
    cats = {r.question.split()[-1].rstrip("?"): r.category for r in res.rows}
    assert cats == {"France": "HighlyKnown", "Germany": "MaybeKnown", "Peru": "WeaklyKnown", "Egypt": "Unknown"}
    peru = next(r for r in res.rows if "Peru" in r.question)
    assert peru.n_samples == 4 and peru.n_sample_correct == 1  # early exit: sampling stops at the first correct one
    assert res.summary["backend"] == {"name": "vllm", "version": FAKE_VERSION}
    assert res.summary["config"]["backend"] == "vllm"

    llm = fake_vllm.instances[-1]
    assert llm.kw["enable_prefix_caching"] is True and llm.kw["model"] == str(tiny_model_dir)
    assert llm.kw["seed"] == 5 and llm.kw["max_logprobs"] >= 7 and "enable_lora" not in llm.kw
    sent = _requests(llm)
    greedy = [sp for _, sp in sent if sp.kw["temperature"] == 0]
    samples = [(ids, sp) for ids, sp in sent if sp.kw["temperature"] != 0]
    assert greedy and all(sp.kw["n"] == 1 and sp.kw["stop"] == ["\n"] and sp.kw["max_tokens"] == 6 for sp in greedy)
    assert samples and all(sp.kw["n"] == 4 and sp.kw["top_k"] == 7 and sp.kw["temperature"] == 0.5
                           and sp.kw["stop"] == ["\n"] and sp.kw["max_tokens"] == 6 for _, sp in samples)
    # Each prompt's seed is the probe's (seed, item, exemplar set) key: the same whatever the batching.
    tok = model.tokenizer
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    sets = assign_exemplar_sets(items, pool, cfg.nex, cfg.shots, cfg.seed)
    want = {tuple(enc(probe_prefix(es.items)) + enc(query(it.question))): _prompt_key(cfg.seed, it.id, es.key)
            & ((1 << 63) - 1) for it in items for es in sets.sets[it.id]}
    assert all(want[tuple(ids)] == sp.kw["seed"] for ids, sp in samples)
    # only Peru and Egypt (every greedy answer wrong) are sampled, once per prompt used
    sampled_questions = {fake_vllm.world.question(ids) for ids, _ in samples}  # type: ignore[union-attr]
    assert sampled_questions == {"What is the capital of Peru?", "What is the capital of Egypt?"}

    # Same config again: a cache hit, no request. A batch size of 1 computes the same rows and seeds.
    n_calls = len(llm.calls)
    again = probe(model, items, pool, cfg, progress=False, cache_dir=tmp_path)
    assert again.summary["passes_cached"] == 1 and len(llm.calls) == n_calls
    fake_vllm.world.greedy_seen.clear()  # type: ignore[union-attr]
    one = probe(model, items, pool, ProbeConfig(**{**CFG, "batch_size": 1, "cache": False}),  # type: ignore[arg-type]
                progress=False)
    assert [r.to_dict() for r in one.rows] == [r.to_dict() for r in res.rows]
    seeds_one = {tuple(ids): sp.kw["seed"] for ids, sp in _requests(llm)[len(sent):] if sp.kw["temperature"] != 0}
    assert seeds_one == {tuple(ids): sp.kw["seed"] for ids, sp in samples}


def test_probe_exact_estimator_requests_prompt_logprobs(fake_vllm: type[LLM], tiny_model_dir: Path,
                                                        sample_items: list[dict], tmp_path: Path) -> None:
    items, pool = _probe_items(sample_items)
    model = vllm_model.vllm_model(str(tiny_model_dir))
    cfg = ProbeConfig(**{**CFG, "estimator": "exact"})  # type: ignore[arg-type]
    res = probe(model, items, pool, cfg, progress=False, cache_dir=tmp_path)
    cats = {r.question.split()[-1].rstrip("?"): r.category for r in res.rows}
    assert cats["France"] == "HighlyKnown" and cats["Germany"] == "MaybeKnown"
    sent = _requests(fake_vllm.instances[-1])
    scored = [(ids, sp) for ids, sp in sent if sp.kw.get("prompt_logprobs") is not None]
    assert scored and all(sp.kw["prompt_logprobs"] == 7 and sp.kw["max_tokens"] == 1 for _, sp in scored)
    assert {fake_vllm.world.question(ids) for ids, _ in scored} <= {  # type: ignore[union-attr]
        "What is the capital of Peru?", "What is the capital of Egypt?"}
    for r in res.rows:
        if r.category in ("WeaklyKnown", "Unknown"):
            assert r.n_scored >= 1 and all(p is None or 0.0 <= p <= 1.0 for p in r.p_prompts or [])

    # The backend is part of the cache key: the same model and config under hf is a miss.
    class Counting:
        stops_rows = verifies_drafts = False

        def __init__(self, inner: Any) -> None:
            self.inner, self.calls = inner, 0

        def run(self, *a: Any, **kw: Any) -> Any:
            self.calls += 1
            return self.inner.run(*a, **kw)

    eng = Counting(backends.make_engine("vllm", model, max_new_tokens=6, top_k=7))
    hf = probe(model, items, pool, ProbeConfig(**{**CFG, "estimator": "exact", "backend": "hf"}),  # type: ignore[arg-type]
               progress=False, cache_dir=tmp_path, engine=eng)  # type: ignore[arg-type]
    assert eng.calls > 0 and hf.summary["passes_cached"] == 0
    import transformers

    assert hf.summary["backend"] == {"name": "hf", "version": transformers.__version__}


def test_lora_adapter_rides_on_a_lora_request(fake_vllm: type[LLM], tiny_model_dir: Path, tmp_path: Path) -> None:
    adapter = tmp_path / "stage1" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 12, "lora_alpha": 32,
                                                             "target_modules": ["q_proj", "v_proj"]}))
    (adapter / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    model = vllm_model.vllm_model(str(tiny_model_dir), adapter=adapter)
    assert model.lora == str(adapter) and model.lora_rank == 16  # rounded up to a rank vLLM accepts
    assert model.fingerprint != vllm_model.vllm_model(str(tiny_model_dir)).fingerprint
    eng = backends.make_engine("vllm", model, max_new_tokens=4)
    assert eng.greedy("", ["Q: What is the capital of France?\nA:"]) == [" Paris"]
    llm = fake_vllm.instances[-1]
    assert llm.kw["enable_lora"] is True and llm.kw["max_lora_rank"] == 16
    lr = llm.calls[-1]["lora_request"]
    assert isinstance(lr, LoRARequest) and lr.lora_path == str(adapter) and lr.lora_int_id == 1
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8, "use_dora": True}))
    assert "DoRA" in (vllm_model.lora_unsupported(adapter) or "")


def test_eval_decodes_through_vllm_greedy(fake_vllm: type[LLM], tiny_model_dir: Path, tmp_path: Path) -> None:
    from gradual.evaluate import evaluate_file

    data = tmp_path / "test.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "a", "question": "What is the capital of France?", "answers": ["Paris"]},
        {"id": "b", "question": "What is the capital of Peru?", "answers": ["Lima"]}]))
    got = evaluate_file(str(tiny_model_dir), data, tmp_path / "eval.json", backend="vllm", progress=False)
    assert got["accuracy"] == 0.5 and got["backend"] == {"name": "vllm", "version": FAKE_VERSION}
    sent = _requests(fake_vllm.instances[-1])
    tok = fake_vllm.world.tok  # type: ignore[union-attr]
    # zero-shot: the prompt is the fine-tune format's query alone (empty prefix), greedy
    assert sorted(tuple(ids) for ids, _ in sent) == sorted(
        tuple(tok(query(q), add_special_tokens=False)["input_ids"])
        for q in ("What is the capital of France?", "What is the capital of Peru?"))
    assert all(sp.kw["temperature"] == 0 and sp.kw["max_tokens"] == 16 for _, sp in sent)


# -- without vLLM installed -------------------------------------------------------------------------------

def _main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[int, str]:
    from gradual.cli import main

    monkeypatch.setattr(sys, "argv", ["gradual", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    return int(exc.value.code or 0), " ".join(capsys.readouterr().err.split())


def test_backend_vllm_without_vllm_exits_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                           tiny_model_dir: Path, sample_items: list[dict], tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` now fails, as when it is not installed
    data = tmp_path / "items.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in sample_items))
    for args in (["probe", "--data", str(data), "--out", str(tmp_path / "p.jsonl")],
                 ["eval", "--data", str(data), "--out", str(tmp_path / "e.json")]):
        code, err = _main(monkeypatch, capsys, args + ["--model", str(tiny_model_dir), "--backend", "vllm"])
        assert code == 2 and vllm_model.NOT_INSTALLED in err, err
    assert not (tmp_path / "p.jsonl").exists() and not (tmp_path / "e.json").exists()
    with pytest.raises(UserError, match=r"vLLM is not installed \(pip install 'gradual\[vllm\]'\)"):
        probe(vllm_model.VLLMModel("x", "x", None, "f", vllm_model._placement("auto", "test")),
              _items(sample_items), None, ProbeConfig(backend="vllm"), progress=False)
    code, err = _main(monkeypatch, capsys, ["probe", "--data", str(data), "--out", str(tmp_path / "p.jsonl"),
                                            "--model", str(tiny_model_dir), "--backend", "tpu"])
    assert code == 2 and "--backend: 'tpu' is not one of hf, vllm" in err, err
