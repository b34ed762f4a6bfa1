"""A ProbeEngine on vLLM (`--backend vllm`): the same greedy / sample / score contract as HFEngine, on a GPU.

Run as: `gradual probe --backend vllm --model ./my-model --data data/world --out probe.jsonl`
        (needs `pip install 'gradual[vllm]'` and a GPU; gradual.lm.backends builds this engine).

What each call sends (gradual.lm.hf's module docstring defines what the results mean):
  - every prompt is token ids, encode(prefix) + encode(suffix) without special tokens, exactly as
    HFEngine builds it, so both backends see the same tokens; vLLM's automatic prefix caching
    (`enable_prefix_caching=True`) then reuses the exemplar prefix's KV across questions, as HFEngine's
    prefix cache does by hand, and continuous batching replaces HFEngine's row compaction.
  - greedy: one request per prompt, temperature 0, `stop=["\\n"]`, max_tokens = max_new_tokens
    (eos also stops: vLLM's default).
  - sample: one request per prompt with `n` samples, temperature, top_k (0 -> -1, the whole vocabulary),
    `stop=["\\n"]` and a per-request `seed` taken from the probe's sample key (hash of seed, item and
    exemplar set), so a prompt's samples do not depend on batching or on what else is in flight.
    vLLM draws with its own generator, so samples differ from HFEngine's (both are draws from the
    same tempered top-k distribution); the backend is part of the probe cache key for that reason.
  - score: one request per accepted continuation c (distinct canonical token sequences, as HFEngine):
    prompt + c + one newline token, `max_tokens=1`, `prompt_logprobs=top_k`. vLLM's prompt logprobs
    are of the raw model distribution, but tempering and top-k depend only on logit differences, so
    the top-k raw logprobs at a position give the tempered top-k distribution exactly:
        q(t) = exp(lp_t / T) / sum_{i in top k} exp(lp_i / T)   (0 when t is outside the top k).
    p(c) = prod_j q(b_j) * q(STOP_OK) where q(STOP_OK) sums q over the STOP_OK tokens among the top k
    at the appended newline's position (the distribution after c); STOP_OK is computed from the
    tokenizer by the HF engine's own helper (gradual.lm.stops.stop_sets). Same rules as HFEngine: no stop factor
    when len(c) == max_new_tokens, p = 0 when longer, p = 0 when q(b_0) < SCORE_EPS, the sum over
    continuations capped at 1. The exact estimator therefore needs 1 <= top_k <= max_logprobs
    (the engine raises max_logprobs to top_k); top_k 0 (whole vocabulary) is refused for it.
    vLLM recomputes a prompt whose prompt logprobs are requested (no prefix-cache hit), so a score
    costs a full prefill of its ~100-token prompt: cheap on a GPU, and only items whose greedy answers
    are all wrong are scored under early exit.

Stage adapters (how gradual.lm.vllm_model.vllm_model serves a model with a LoRA adapter):
  - exactly one LoRA adapter on top of the base weights (stage 1, or `gradual eval --adapter`): the base
    model is loaded once with `enable_lora=True` and every request carries a LoRARequest for the
    adapter folder; vLLM applies the adapter unmerged (same function, no merged copy on disk).
    Allowed when the adapter is plain LoRA (no DoRA, no modules_to_save) of rank <= 512; vLLM itself
    refuses architectures without LoRA support, and then the fallback below is used.
  - otherwise (a later stage's adapter was trained on merged weights, so it needs them underneath;
    an adapter vLLM cannot serve; a model already in memory): the merged weights are saved once to
    a folder under the gradual cache, keyed by fingerprint, and served without LoRA.
  Not wired yet: `gradual run` (Pipeline.model_after) still hands the probe an in-memory merged model,
  so a run with probe.backend vllm takes the merged-folder route for every stage, base included
  (correct, one saved copy per probed model); using the stage-1 LoRA request there needs
  Pipeline.probe_split to pass vllm_model(cfg.model, adapter=stage1/adapter) when stages == 1, and the
  HF copy of the model then should not sit on the GPU while vLLM reserves its memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from gradual.lm.protocol import Prefixes, RunOutput, Select
from gradual.lm.sampling import SCORE_EPS
from gradual.lm.protocol import RunParts

STOP_STRINGS = ["\n"]  # the probe's answers end at the first newline (gradual.prompts.STOP)
# Mask for seeds: vLLM seeds a torch.Generator, whose manual_seed takes a signed or unsigned 64-bit int.
_SEED_MASK = (1 << 63) - 1


# ---------------------------------------------------------------------------------------------
# The exact estimator's maths on vLLM logprobs (pure Python: tested against engine.token_prob).

def _logprob(v: Any) -> float:
    return float(v.logprob if hasattr(v, "logprob") else v)


def topk_logprobs(position: Mapping[int, Any], k: int) -> dict[int, float]:
    """The k most likely tokens at one position, from vLLM's {token id: Logprob} (which holds the top
    `prompt_logprobs` tokens plus the prompt's own token, when that is outside them)."""
    ranked = sorted(((int(t), _logprob(v)) for t, v in position.items()), key=lambda x: -x[1])
    return dict(ranked[:k])


def tempered_probs(top: Mapping[int, float], temperature: float) -> dict[int, float]:
    """softmax(lp / T) over the top-k tokens: the distribution HFEngine's tempered_topk samples from
    (raw logprobs differ from logits by a constant per position, which the softmax cancels)."""
    m = max(top.values())
    w = {t: math.exp((lp - m) / temperature) for t, lp in top.items()}
    z = sum(w.values())
    return {t: x / z for t, x in w.items()}


def topk_token_prob(position: Mapping[int, Any], token: int, temperature: float, k: int) -> float:
    """q(token) under the tempered top-k distribution at one position (0 outside the top k)."""
    return tempered_probs(topk_logprobs(position, k), temperature).get(int(token), 0.0)


def topk_set_prob(position: Mapping[int, Any], members: set[int] | frozenset[int], temperature: float,
                  k: int) -> float:
    """q(token in `members`) under the tempered top-k distribution at one position."""
    return sum(p for t, p in tempered_probs(topk_logprobs(position, k), temperature).items() if t in members)


def continuation_prob(prompt_logprobs: Sequence[Mapping[int, Any] | None], start: int, tokens: Sequence[int],
                      stop_ok: set[int] | frozenset[int], temperature: float, k: int, max_new_tokens: int) -> float:
    """p(c) of one continuation from the prompt logprobs of prompt + c (+ one newline token).

    `start` is the index of c's first token in the scored sequence; position start + j holds the
    distribution before b_j, position start + len(c) the one after c (the appended newline's)."""
    m = len(tokens)
    if m == 0 or m > max_new_tokens:
        return 0.0
    p = 1.0
    for j, t in enumerate(tokens):
        q = topk_token_prob(prompt_logprobs[start + j] or {}, t, temperature, k)
        if j == 0 and q < SCORE_EPS:  # HFEngine prunes these without teacher forcing: counted as 0
            return 0.0
        p *= q
    if m < max_new_tokens:
        p *= topk_set_prob(prompt_logprobs[start + m] or {}, stop_ok, temperature, k)
    return p


# ---------------------------------------------------------------------------------------------

@dataclass
class _Request:
    ids: list[int]
    params: Any


class VLLMEngine(RunParts):
    """ProbeEngine over a vLLM `LLM` (see the module docstring).

    `llm` is a vllm.LLM built with enable_prefix_caching=True (gradual.lm.vllm_model.build_llm);
    `vllm` is the imported module (passed in so that nothing here imports vLLM at import time);
    `tokenizer` is the model's HF tokenizer; `stop_ok` the STOP_OK token ids; `lora_request` a
    vllm LoRARequest sent with every request, or None."""

    name = "vllm"

    def __init__(self, llm: Any, vllm: Any, tokenizer: Any, *, stop_ok: Iterable[int], newline_id: int,
                 max_new_tokens: int = 12, lora_request: Any = None) -> None:
        self.llm, self.vllm, self.tok = llm, vllm, tokenizer
        self.stop_ok = frozenset(int(t) for t in stop_ok)
        self.newline_id = int(newline_id)
        self.max_new_tokens = max_new_tokens
        self.lora_request = lora_request
        self.tokens_processed = 0  # prompt tokens not served from vLLM's prefix cache, plus generated ones
        self.requests_sent = 0
        self._enc: dict[str, list[int]] = {}

    # -- tokenization: the same ids HFEngine feeds its model --------------------------------------
    def encode(self, text: str) -> list[int]:
        got = self._enc.get(text)
        if got is None:
            got = list(self.tok(text, add_special_tokens=False)["input_ids"])
            if len(self._enc) < 4096:  # exemplar prefixes repeat for every question: encode each once
                self._enc[text] = got
        return list(got)

    def _prompt_ids(self, prefix: Prefixes, suffixes: Sequence[str]) -> list[list[int]]:
        prefixes = [prefix] * len(suffixes) if isinstance(prefix, str) else list(prefix)
        if len(prefixes) != len(suffixes):
            raise ValueError("one prefix per suffix")
        out = []
        for pf, s in zip(prefixes, suffixes):
            enc = self.encode(s)
            if not enc:
                raise ValueError("empty suffix")
            out.append((self.encode(pf) if pf else []) + enc)
        return out

    # -- requests ------------------------------------------------------------------------------
    def _greedy_params(self) -> Any:
        return self.vllm.SamplingParams(n=1, temperature=0.0, max_tokens=self.max_new_tokens, stop=list(STOP_STRINGS))

    def _sample_params(self, n: int, temperature: float, top_k: int, key: int) -> Any:
        return self.vllm.SamplingParams(n=n, temperature=temperature, top_k=top_k if top_k > 0 else -1,
                                        max_tokens=self.max_new_tokens, stop=list(STOP_STRINGS),
                                        seed=int(key) & _SEED_MASK)

    def _generate(self, requests: Sequence[_Request]) -> list[Any]:
        if not requests:
            return []
        kwargs: dict[str, Any] = {"use_tqdm": False}
        if self.lora_request is not None:
            kwargs["lora_request"] = self.lora_request
        outs = list(self.llm.generate([{"prompt_token_ids": r.ids} for r in requests],
                                      [r.params for r in requests], **kwargs))
        if len(outs) != len(requests):
            raise RuntimeError(f"vLLM returned {len(outs)} outputs for {len(requests)} requests")
        self.requests_sent += len(requests)
        for r, o in zip(requests, outs):
            cached = getattr(o, "num_cached_tokens", None) or 0
            self.tokens_processed += len(r.ids) - int(cached)
            self.tokens_processed += sum(len(getattr(c, "token_ids", ()) or ()) for c in o.outputs)
        return outs

    def run(
        self, prefix: Prefixes, suffixes: Sequence[str], *, greedy: bool = True, samples: int = 0,
        sample_keys: Sequence[int] | None = None, continuations: Sequence[Sequence[str]] | None = None,
        temperature: float = 1.0, top_k: int = 0, select: Select | None = None,
    ) -> RunOutput:
        out = RunOutput()
        if not suffixes:
            return out
        before = self.tokens_processed
        n_q = len(suffixes)
        ids = self._prompt_ids(prefix, suffixes)
        keys = list(sample_keys) if sample_keys is not None else list(range(n_q))
        chosen = list(range(n_q))
        if select is not None and greedy:
            # Greedy answers first; samples and scores only where `select` says they still matter. The
            # second round hits vLLM's prefix cache for the prompts just run.
            outs = self._generate([_Request(q, self._greedy_params()) for q in ids])
            out.greedy = [o.outputs[0].text for o in outs]
            flags = list(select(out.greedy))
            chosen = [q for q in range(n_q) if flags[q]]
            if samples:
                out.samples = [[] for _ in range(n_q)]
                got = self._generate([_Request(ids[q], self._sample_params(samples, temperature, top_k, keys[q]))
                                      for q in chosen])
                for q, o in zip(chosen, got):
                    out.samples[q] = [c.text for c in o.outputs]
        elif greedy or samples:
            # One generate call for greedy and sample requests together: continuous batching fills the GPU.
            reqs = [_Request(q, self._greedy_params()) for q in ids] if greedy else []
            reqs += [_Request(ids[q], self._sample_params(samples, temperature, top_k, keys[q]))
                     for q in range(n_q)] if samples else []
            outs = self._generate(reqs)
            if greedy:
                out.greedy = [o.outputs[0].text for o in outs[:n_q]]
            if samples:
                out.samples = [[c.text for c in o.outputs] for o in outs[n_q if greedy else 0:]]
        if continuations is not None:
            wanted = set(chosen)
            scores = self._score(ids, [c if q in wanted else [] for q, c in enumerate(continuations)],
                                 temperature, top_k)
            out.scores = [sc if q in wanted else None for q, sc in enumerate(scores)]
        out.tokens_processed = self.tokens_processed - before
        return out

    def _score(self, ids: Sequence[list[int]], continuations: Sequence[Sequence[str]], temperature: float,
               top_k: int) -> list[float]:
        if top_k <= 0:
            raise ValueError("the vLLM exact estimator needs top_k >= 1 (prompt_logprobs give the top k only)")
        rows: list[tuple[int, int, tuple[int, ...]]] = []  # (question, start of c, c's tokens)
        reqs: list[_Request] = []
        # detokenize=False: the ranked tokens' text is never read, and decoding k of them per position costs.
        params = self.vllm.SamplingParams(n=1, temperature=0.0, max_tokens=1, prompt_logprobs=top_k,
                                          detokenize=False)
        for q, conts in enumerate(continuations):
            seen: set[tuple[int, ...]] = set()  # equal token sequences are one event, counted once
            for c in conts:
                t = tuple(self.encode(c))
                if t and t not in seen and len(t) <= self.max_new_tokens:
                    seen.add(t)
                    tail = [self.newline_id] if len(t) < self.max_new_tokens else []
                    rows.append((q, len(ids[q]), t))
                    reqs.append(_Request(ids[q] + list(t) + tail, params))
        scores = [0.0] * len(continuations)
        for (q, start, t), o in zip(rows, self._generate(reqs)):
            scores[q] += continuation_prob(o.prompt_logprobs, start, t, self.stop_ok, temperature, top_k,
                                           self.max_new_tokens)
        return [min(1.0, s) for s in scores]
