"""The Hugging Face engine (gradual.lm.hf): prefix reuse and scoring equal a full recompute through the
model's own forward (so the engine's attention kernel, cache and stop sets are checked against it), exact
probabilities match sampling frequencies, drafts give the decoder's texts, and samples do not depend on
the batch size. Tiny random model.

Run as: .venv/bin/pytest tests/lm/test_hf.py -x
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from gradual.answers import answer_stop
from gradual.config import ProbeConfig
from gradual.lm.hf import HFEngine
from gradual.lm.sampling import tempered_topk
from gradual.probe import probe
from tests.conftest import items_of


def _prompt_logits(eng: HFEngine, prefix, suffixes) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """Next-token logits after each prefix + suffix, through the engine's prefix-reuse path."""
    return eng._prompt_pass(prefix, suffixes)[0].float()


PREFIX = "Q: What is the capital of France?\nA: Paris\nQ: Which continent is Peru on?\nA: South America\n"
SUFFIXES = ["Q: What is the capital of Japan?\nA:", "Q: What is the capital of Peru?\nA:", "Q: Hi?\nA:"]


@pytest.mark.parametrize("prefix", [PREFIX, ""])
def test_prefix_reuse_equals_full_recompute(tiny_lm, prefix: str) -> None:
    eng = HFEngine(tiny_lm.model, tiny_lm.tokenizer, batch_size=8)
    for suffixes in (SUFFIXES, SUFFIXES[:2]):  # the second shares a long common opening (LCP path)
        got = _prompt_logits(eng, prefix, suffixes)
        for i, s in enumerate(suffixes):
            ids = torch.tensor([eng.encode(prefix) + eng.encode(s)])
            with torch.no_grad():
                full = tiny_lm.model(input_ids=ids).logits[0, -1]
            torch.testing.assert_close(got[i], full, atol=1e-5, rtol=1e-4)
    # One prefix per row (several exemplar sets in one batch, of different lengths).
    prefixes = [prefix, "Q: Which continent is Peru on?\nA: South America\n", prefix]
    got = _prompt_logits(eng, prefixes, SUFFIXES)
    for i, s in enumerate(SUFFIXES):
        ids = torch.tensor([eng.encode(prefixes[i]) + eng.encode(s)])
        with torch.no_grad():
            full = tiny_lm.model(input_ids=ids).logits[0, -1]
        torch.testing.assert_close(got[i], full, atol=1e-5, rtol=1e-4)


def test_score_equals_full_recompute(tiny_lm) -> None:
    eng = HFEngine(tiny_lm.model, tiny_lm.tokenizer, batch_size=8, max_new_tokens=6)
    conts = [" Paris", " Tokyo"]
    t, k = 2.0, 0  # flat distribution so the probabilities are not all ~0
    got = eng.score(PREFIX, SUFFIXES, [conts] * len(SUFFIXES), t, k)
    for i, s in enumerate(SUFFIXES):
        want = 0.0
        for c in conts:
            ids = eng.encode(PREFIX) + eng.encode(s) + eng.encode(c)
            n = len(eng.encode(PREFIX) + eng.encode(s))
            with torch.no_grad():
                logits = tiny_lm.model(input_ids=torch.tensor([ids])).logits[0].float()
            probs, idx = tempered_topk(logits, t, k)
            p = 1.0
            for j in range(n, len(ids)):
                p *= float(probs[j - 1][idx[j - 1] == ids[j]].sum())
            p *= float((probs[-1] * eng.stop_ok[idx[-1]]).sum())
            want += p
        assert got[i] == pytest.approx(want, rel=1e-3, abs=1e-12)
        assert want > 0


class _StopBiased(torch.nn.Module):
    """The tiny model with +bias on the newline token's logit, so that answers end often enough for the
    stop factor of the exact probability to be tested (a random model almost never emits "\\n")."""

    def __init__(self, inner: torch.nn.Module, token: int, bias: float) -> None:
        super().__init__()
        self.inner, self.token, self.bias = inner, token, bias
        self.config = inner.config

    def get_output_embeddings(self) -> torch.nn.Module:
        return self.inner.get_output_embeddings()

    def forward(self, **kw):  # type: ignore[no-untyped-def]
        out = self.inner(**kw)
        out.logits[..., self.token] += self.bias
        return out


def test_exact_probability_matches_sampling_frequency(tiny_lm) -> None:
    """score() must equal the sampler's frequency of producing that text, within Monte-Carlo error."""
    t, k, n = 1.0, 8, 20000
    newline = tiny_lm.tokenizer("\n", add_special_tokens=False)["input_ids"][0]
    model = _StopBiased(tiny_lm.model, newline, 1.0)
    eng = HFEngine(model, tiny_lm.tokenizer, batch_size=n + 1, max_new_tokens=2)
    texts = eng.sample(PREFIX, SUFFIXES[:1], n, t, k, sample_keys=[12345])[0]

    # Event of answer a: the text is a + "\n" (a, then the newline stop), or exactly a (a, then eos; or
    # two tokens cut by max_new_tokens=2). The tiny vocabulary has no other stop tokens.
    assert set(eng.stop.nonzero().flatten().tolist()) == set(eng.stop_ok.nonzero().flatten().tolist())
    freq = Counter(x[:-1] if x.endswith("\n") else x for x in texts)
    # Targets: the most frequent answers the tiny model produces, of 1 token (needs the stop factor)
    # and 2 tokens; canonical tokenization only, so partial UTF-8 bytes (U+FFFD) are left out.
    targets = [a for a, _ in freq.most_common(200) if "\n" not in a and "\ufffd" not in a
               and eng.tok.decode(eng.encode(a)) == a]
    one = [a for a in targets if len(eng.encode(a)) == 1][:3]
    two = [a for a in targets if len(eng.encode(a)) == 2][:3]
    assert one and two
    for a in one + two:
        p = eng.score(PREFIX, SUFFIXES[:1], [[a]], t, k)[0]
        f = freq[a] / n
        se = (max(p, 1e-4) * (1 - p) / n) ** 0.5
        assert abs(f - p) <= 5 * se + 1e-3, (a, f, p)
    targets = one + two
    assert any(freq[a] / n > 0.01 for a in targets)  # non-degenerate


class _StopEvery(_StopBiased):
    """A model whose newline logit gets a large bias at every `period`-th position: greedy answers end
    after 1 .. period tokens depending on the prompt's length, so both ways an answer ends (a stop, or
    max_new_tokens) occur in one batch."""

    def __init__(self, inner: torch.nn.Module, token: int, period: int) -> None:
        super().__init__(inner, token, 30.0)
        self.period = period

    def forward(self, **kw):  # type: ignore[no-untyped-def]
        out = self.inner(**kw)
        pos = kw["position_ids"][:, -out.logits.shape[1]:]
        out.logits[..., self.token] += self.bias * (pos % self.period == 0)
        return out


def test_drafts_give_the_decoders_greedy_texts_and_scores(tiny_model_dir: Path) -> None:
    """Checking a draft in the prompt pass (speculative decoding) must give exactly the texts plain
    decoding gives, with or without cutting, for drafts that are the answer, a prefix of it, longer
    than it, wrong at the first or a later token, empty, longer than max_new_tokens, or ending in the
    stop; and the same exact probabilities as the separate scoring pass."""
    from gradual.lm.load import load_model

    lm = load_model(str(tiny_model_dir), device="cpu", dtype="fp32")
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # larger random weights: answers that differ between questions
        for prm in lm.model.parameters():
            if prm.dim() == 2:
                prm.copy_(torch.randn(prm.shape, generator=gen) * 0.1)
    newline = lm.tokenizer("\n", add_special_tokens=False)["input_ids"][0]
    model = _StopEvery(lm.model, newline, 4)
    suffixes = [f"Q: What is the capital of {c}?\nA:" for c in
                ("Japan", "Peru", "the Republic of Chile", "Mali", "Laos", "Fiji", "Iran", "Oman", "Cuba")]
    plain = HFEngine(model, lm.tokenizer, batch_size=16, max_new_tokens=2)
    want = plain.greedy(PREFIX, suffixes)
    ends = [w.endswith("\n") for w in want]
    assert any(ends) and not all(ends)  # both ways a greedy answer ends are covered
    answers = [w.split("\n")[0] for w in want]
    other = plain.tok.decode([7, 9])
    drafts = [
        answers[0], answers[1][:2], answers[2] + " and more",  # the answer, a prefix, longer
        other + answers[3], answers[4][:1] + other, "",  # wrong first token, wrong later token, empty
        answers[6] * 4, answers[7] + "\n", None,  # longer than max_new_tokens, with its stop, none
    ]
    conts = [[d] if d else [answers[q] or "x"] for q, d in enumerate(drafts)]
    for accepted in (None, [[a] for a in answers], [["zzz"]] * len(suffixes)):  # no cut, cut, cut all
        stops = None if accepted is None else [answer_stop(a) for a in accepted]
        base = plain.run(PREFIX, suffixes, greedy=True, row_stops=stops, continuations=conts,
                         temperature=1.0, top_k=0, select=lambda g: [True] * len(g))
        # bucket_cost 0: every question length its own prompt batch, so the rows left to decode and
        # to score come from several batches and are gathered into one.
        for cost in (64, 0):
            eng = HFEngine(model, lm.tokenizer, batch_size=16, max_new_tokens=2, bucket_cost=cost)
            got = eng.run(PREFIX, suffixes, greedy=True, row_stops=stops, drafts=drafts, continuations=conts,
                          temperature=1.0, top_k=0, select=lambda g: [True] * len(g))
            assert got.greedy == base.greedy
            assert got.scores == pytest.approx(base.scores, rel=1e-4, abs=1e-9)
            assert any(s and s > 1e-4 for s in got.scores or [])  # the probabilities compared are not all ~0
    # The rows left from several prompt batches decode in one loop (max_new_tokens 2: one step) and
    # score in one forward: a decode loop and a scoring pass per batch would read the weights each time.
    eng = HFEngine(model, lm.tokenizer, batch_size=16, max_new_tokens=2, bucket_cost=0)
    calls = {"_run_rows": 0, "_decode": 0, "_score": 0}
    for name in calls:
        def counted(*a: object, _f: object = getattr(eng, name), _n: str = name, **k: object) -> object:
            before = eng.forward_calls
            out = _f(*a, **k)  # type: ignore[operator]
            calls[_n] += eng.forward_calls - before
            return out
        setattr(eng, name, counted)
    eng.run(PREFIX, suffixes, greedy=True, drafts=drafts, continuations=conts, temperature=1.0, top_k=0,
            select=lambda g: [True] * len(g))
    assert calls["_run_rows"] >= 3 and calls["_decode"] == 1 and calls["_score"] == 1
    assert eng.run(PREFIX, suffixes, greedy=True, drafts=drafts).greedy == want  # the branch without select
    # Drafts that are the greedy answers settle every row in the prompt pass: no decode step is run.
    eng = HFEngine(model, lm.tokenizer, batch_size=16, max_new_tokens=2, bucket_cost=10**6)  # one batch
    assert eng.greedy(PREFIX, suffixes) == want
    calls = eng.forward_calls
    assert eng.run(PREFIX, suffixes, drafts=answers).greedy == want
    assert eng.forward_calls == calls + 1


def test_sampling_independent_of_batch_size(tiny_lm, sample_items: list[dict]) -> None:
    items = items_of(sample_items)
    cfg = ProbeConfig(nex=3, shots=2, samples=4, max_new_tokens=4, cache=False)
    a = probe(tiny_lm, items, None, cfg, progress=False)
    b = probe(tiny_lm, items, None, ProbeConfig(**{**cfg.__dict__, "batch_size": 5}), progress=False)
    assert [r.to_dict() for r in a.rows] == [r.to_dict() for r in b.rows]
