"""The probe's Hugging Face backend (HFEngine), and the contract every backend keeps (the interface
itself is gradual.lm.protocol; the sampling maths gradual.lm.sampling).

Run as: used by gradual.probe.run; `python benchmarks/probe_speed.py` measures it.

Interface (ProbeEngine): every call takes a batch of `suffixes` (the questions' "Q: ...\nA:") and a
`prefix` (the few-shot exemplars): one text shared by all suffixes, or one per suffix. The SliCK
logic only ever calls `run`, whose three parts can also be called alone:
  greedy(prefix, suffixes)                        -> the greedy (T=0) answer text of each suffix
  sample(prefix, suffixes, n, temperature, top_k) -> n sampled answer texts per suffix
  score(prefix, suffixes, continuations, ...)     -> per suffix, the exact probability of generating
                                                     any of its continuations followed by a stop
A vLLM (or other) backend implements the same four methods; nothing in slick.py or run.py changes.

HFEngine, how it is fast (each measured; see benchmarks/probe_speed.py):
  - Each prefix (plus the opening tokens its batch's questions share, e.g. "Q: What is the capital
    of") is run through the model once; its KV cache is kept (LRU) and copied into every row that
    uses it. A batch may mix prefixes (rows of several exemplar sets), so batches stay full.
  - Row layout [pad | prefix KV | pad | suffix draft]: padding is masked and position ids skip it;
    logits are computed only for each row's last prompt column and its draft columns.
  - Drafts (speculative greedy decoding whose draft is the item's first accepted answer, _Drafts):
    the answer's tokens ride along in the prompt forward, so a prompt whose greedy answer is that
    answer, or leaves it for a token that cannot be right, is settled without one decode step, and
    the same logits give that answer's exact probability. On the demo's probes this cut the model
    tokens by 18-30% (36,519 -> 29,977 on the base train probe) with identical categories.
  - Decoding (greedy and sampling rows together) stops a row at any token whose text contains "\n"
    or at eos, and drops finished rows from the batch (cache rows included) once enough have finished;
    the cache has its decode slots preallocated, so a step writes in place instead of re-concatenating.
  - The samples of a prompt are rows that copy the prompt's cache: the prompt is never recomputed.
  - A call's prompt rows run in length buckets, but the rows left to decode (no draft settled them)
    and to score (extra aliases) are gathered from every bucket into one batch (_gather): each
    forward reads all the weights, so one decode loop and one scoring pass per call, not per bucket
    (300 world items: 245 -> 128 forward calls, 122.7 -> 108.0 s on a 2-core AVX2 CPU, fp32).
  - score() teacher-forces every accepted continuation in one forward pass on copies of the
    question's cache; the first token's distribution comes from the prompt pass already done.
  - On CPU, attention runs as two grouped matmuls (gradual.lm.kernels) instead of torch SDPA,
    whose masked path on CPU is ~10x slower at these shapes.
  - Only the top-k logits are converted to fp32; argmax runs on the model's dtype.

Sampling is reproducible per row: row r's t-th uniform draw is a hash of (row key, t), whatever batch
the row lands in, and a token is drawn by inverse CDF over the tempered top-k distribution. What the
draw is applied to, the row's logits, is batch-independent in fp32 only:
  - fp32: a row's logits are the same whatever it is batched with, so early exit, --full and any
    batch size give identical greedy answers, samples and categories (tests/test_probe.py checks it
    on the real model; benchmarks/dtype_agreement.py: 0 of 100 world items differ).
  - bf16 (CPUs with native bf16, GPUs): the matmul kernels' blocking follows the batch's shape, so a
    row's logits move at bf16 resolution with its batch, and a sample near an inverse-CDF boundary or
    a greedy argmax between near-tied tokens can come out the other way. Categories stay
    deterministic for the same batches, but early exit vs --full moved 3 of 100 world items and batch
    size 256 vs 16 moved 4 (sample estimator, AVX512 CPU; 13 of ~1,000 greedy answers differed).
    Force `--dtype fp32` where identical categories across settings matter more than speed.

Exact probabilities (score): for a continuation c (e.g. " Paris", the answer as
gradual.prompts.answer_continuation writes it, without the stop) with canonical tokens b_0..b_{m-1}:
    p(c) = prod_j q(b_j | prompt, b_<j) * q(STOP_OK | prompt, b)
where q is the tempered top-k distribution the sampler draws from and STOP_OK is the set of tokens
whose text, up to the first newline, is only punctuation or white space (so the extracted answer is
still c), plus eos. If m equals max_new_tokens the stop factor is dropped (generation is cut there
and the text is still c); if m exceeds it, p(c) = 0. Distinct token sequences are distinct events
(none contains a newline token), so p(set) is the sum over distinct sequences. Only canonical
tokenizations are counted: a sample that spells "Paris" as " Par" + "is" is correct for the sampling
estimator but not counted here, so `exact` slightly under-estimates P(T>0). Continuations whose
first token has probability below SCORE_EPS (1e-6) are skipped (counted as 0), which saves the
teacher-forcing pass for answers the model cannot reach.
"""

from __future__ import annotations

import inspect
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from gradual.answers import PUNCTUATION
from gradual.lm.kernels import (ATTN_NAME, cache_over, can_use_grouped_attention, new_cache,
                                   register_grouped_attention)
# The interface and the sampling maths live in their own modules (every backend shares them); they are
# re-exported here because callers and tests reach them through the engine.
from gradual.lm.protocol import Prefixes, ProbeEngine, RunOutput, RunParts, Select  # noqa: F401
from gradual.lm.sampling import (  # noqa: F401
    draw, row_key, set_prob, tempered_topk, token_prob, uniforms,
)

# A continuation whose first token has probability below this is not teacher-forced (its p counts as 0).
# Bound on the error: p_seen = 1 - prod_i (1 - p_i)^samples moves by at most nex * samples * SCORE_EPS
# (1.6e-4 with the paper's protocol), far below the 0.5 threshold's resolution.
SCORE_EPS = 1e-6

# Appended to a greedy answer cut short because it could no longer match any accepted answer.
CUT_MARK = "…"
_ARTICLE_LETTERS = frozenset("anthe")  # every letter of "a", "an", "the"


def answer_skeleton(text: str) -> str:
    """Accent-folded, case-folded letters and digits of `text`, without the letters a, n, t, h, e.

    Conservative by construction for gradual.answers.is_correct: both of its normalizations only fold
    accents and case, drop punctuation and white space (which this drops too) and delete whole
    articles "a"/"an"/"the" (whose letters this drops everywhere). So a correct prediction has the
    same skeleton as one of its accepted answers, and every prefix of its text has a skeleton that
    is a prefix of that one. Case folding, not lower(): it maps every char on its own (lower() turns
    a final sigma into a different letter than a medial one)."""
    out = []
    for ch in unicodedata.normalize("NFKD", text):
        if unicodedata.combining(ch):
            continue
        for c in unicodedata.normalize("NFKD", ch.casefold()):
            if c.isalnum() and not unicodedata.combining(c) and c not in _ARTICLE_LETTERS:
                out.append(c)
    return "".join(out)


def can_still_match(partial: str, skeletons: Sequence[str]) -> bool:
    """False only when no continuation of `partial` can be a correct answer (see answer_skeleton)."""
    key = answer_skeleton(partial)
    return any(s.startswith(key) for s in skeletons)


# ---------------------------------------------------------------------------------------------

def _stop_sets(tokenizer: Any, model: Any, vocab: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Bool masks over the model's vocab: tokens that stop decoding, and stops that keep the answer intact.

    Kept on the tokenizer (decoding the whole vocab takes ~0.5 s, and eval and the trainer's dev check
    build an engine per batch)."""
    eos_ids = tuple(sorted(_eos_ids(tokenizer, model)))
    memo = getattr(tokenizer, "_gradual_stop_sets", None)
    key = (len(tokenizer), vocab, str(device), eos_ids)
    if memo is not None and memo[0] == key:
        return memo[1]
    sets = _compute_stop_sets(tokenizer, vocab, device, eos_ids)
    try:
        tokenizer._gradual_stop_sets = (key, sets)
    except AttributeError:  # a tokenizer that takes no attributes just recomputes
        pass
    return sets


def _eos_ids(tokenizer: Any, model: Any) -> set[int]:
    eos: set[int] = set()
    for src in (tokenizer.eos_token_id, getattr(getattr(model, "config", None), "eos_token_id", None),
                getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        if isinstance(src, int):
            eos.add(src)
        elif isinstance(src, (list, tuple)):
            eos.update(int(x) for x in src)
    return eos


def _compute_stop_sets(tokenizer: Any, vocab: int, device: torch.device,
                       eos: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    n = min(len(tokenizer), vocab)
    texts = tokenizer.batch_decode([[i] for i in range(n)], skip_special_tokens=False,
                                   clean_up_tokenization_spaces=False)
    stop = torch.zeros(vocab, dtype=torch.bool)
    ok = torch.zeros(vocab, dtype=torch.bool)
    for i, text in enumerate(texts):
        if "\n" in text:
            stop[i] = True
            head = text.split("\n", 1)[0]
            ok[i] = all(ch.isspace() or ch in PUNCTUATION for ch in head)
    for e in eos:
        if 0 <= e < vocab:
            stop[e] = ok[e] = True
    return stop.to(device), ok.to(device)


def _common_prefix_len(seqs: Sequence[Sequence[int]], max_len: int) -> int:
    n = 0
    while n < max_len and all(seq[n] == seqs[0][n] for seq in seqs):
        n += 1
    return n


def cache_argument(model: Any) -> str:
    """The name the model's forward takes its KV cache by: `cache` in transformers 5 models that renamed
    it (`past_key_values` warns there, and goes in 5.40), `past_key_values` in transformers 4 and in
    architectures not yet renamed. Read from the signature, not the version, for both kinds."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a peft wrapper
    try:
        params = inspect.signature(type(base).forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def _out_cache(res: Any) -> Any:
    """The KV cache of a forward's output, under either version's field name (5's `past_key_values`
    property warns)."""
    return res["cache"] if "cache" in res else res.past_key_values


def _layers(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return [(k, v) for k, v in cache.to_legacy_cache()]


@dataclass
class _Drafts:
    """Greedy decoding checked against a draft in the prompt pass (speculative decoding whose draft is
    the item's own answer).

    Each row's draft tokens d (its first accepted continuation) follow its suffix in the prompt
    forward, whose logits are kept at the suffix's last column and at every draft column. With a
    = the number of leading draft tokens equal to the argmax before them, greedy decoding provably
    emits d[:a] and then the argmax after them, g = d[:a] + [argmax_a]. The row is settled without
    decoding when g ends in a stop token, when it reaches max_new_tokens, or when (with `answers`)
    g's text can no longer match an accepted answer (the decoder would cut it there, see
    can_still_match); the text is then exactly the decoder's. Other rows (a wrong answer that still
    could match, or a right one that goes on) are decoded as before, with the draft columns masked.
    The same logits give the draft's exact probability (see the module docstring), so a prompt
    whose accepted answer is the draft needs no separate scoring pass. Measured on the world split:
    94% of prompts settle here, replacing ~5 one-token forward calls per batch by one wider forward."""

    tokens: list[list[int]]  # per row, the draft tokens checked (at most max_new_tokens)
    argmax: list[list[int]]  # per row, the argmax after the suffix and after each draft column
    scores: list[float]  # per row, the draft's exact probability (0 where not computed)

    @staticmethod
    def check(logits: torch.Tensor, tokens: list[list[int]], full_len: list[int], stop_ok: torch.Tensor,
              max_new_tokens: int, temperature: float, top_k: int, score: bool) -> _Drafts:
        """`logits` [B, D+1, V], right-aligned: row r's last D_r + 1 columns are the logits after its
        suffix, then after each of its D_r draft tokens (D = the longest draft)."""
        nd = logits.shape[1] - 1
        argmax = [am[nd - len(d):] for am, d in zip(logits.argmax(-1).tolist(), tokens)]
        scores = [0.0] * len(tokens)
        rows = [r for r, d in enumerate(tokens) if d and full_len[r] <= max_new_tokens]
        if score and rows:
            dev = logits.device
            pairs = [(r, nd - len(tokens[r]) + j, t) for r in rows for j, t in enumerate(tokens[r])]
            r_idx = torch.tensor([r for r, _, _ in pairs], device=dev)
            c_idx = torch.tensor([j for _, j, _ in pairs], device=dev)
            tp = token_prob(logits[r_idx, c_idx], torch.tensor([t for _, _, t in pairs], device=dev),
                            temperature, top_k).tolist()
            stop = set_prob(logits[torch.tensor(rows, device=dev), nd], stop_ok, temperature, top_k).tolist()
            k = 0
            for m, r in enumerate(rows):
                n = len(tokens[r])
                probs = tp[k: k + n]
                k += n
                if probs[0] < SCORE_EPS:  # as _score: an answer out of reach counts 0
                    continue
                p = 1.0
                for x in probs:
                    p *= x
                scores[r] = p * (1.0 if n >= max_new_tokens else stop[m])
        return _Drafts(tokens, argmax, scores)

    def resolve(self, stop: torch.Tensor, max_new_tokens: int, keys: Sequence[list[str] | None] | None,
                tok: Any) -> list[str | None]:
        """Per row, the greedy text plain decoding would give, or None where it must still be decoded."""
        out: list[str | None] = []
        stops = set(stop.nonzero().flatten().tolist())  # one device read, not one per token
        for r, d in enumerate(self.tokens):
            am = self.argmax[r]
            a = 0
            while a < len(d) and am[a] == d[a] and d[a] not in stops:  # decoding ends at a stop
                a += 1
            g = d[:a] + [am[a]]
            key = keys[r] if keys is not None else None
            # The decoder checks every token before the next one: if the accepted part can no longer
            # match (a caller's draft need not be an accepted answer), it was cut inside the draft.
            if key is not None and a and not can_still_match(tok.decode(d[:a], skip_special_tokens=True), key):
                out.append(None)
                continue
            if len(g) > max_new_tokens:  # the whole draft, as long as decoding may go: no stop
                out.append(tok.decode(g[:max_new_tokens], skip_special_tokens=True))
                continue
            if g[-1] in stops:
                out.append(tok.decode(g, skip_special_tokens=True))
                continue
            if key is None:
                out.append(None)
                continue
            text = tok.decode(g, skip_special_tokens=True)
            out.append(None if can_still_match(text, key) else text + CUT_MARK)
        return out


class HFEngine(RunParts):
    """ProbeEngine over any Hugging Face causal LM (already placed on its device and dtype)."""

    # run() takes `answers` and cuts greedy answers that can no longer be right (probe.run passes them
    # only to engines that say so: other backends and test doubles keep the narrow interface).
    cuts_wrong_greedy = True
    # run() takes `drafts` and checks them in the prompt pass (see _Drafts).
    verifies_drafts = True

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int = 64, max_new_tokens: int = 12,
                 prefix_cache_size: int = 128, compact_at: float = 0.25, grouped_attention: bool | None = None,
                 bucket_cost: int = 64) -> None:
        self.model, self.tok = model, tokenizer
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.device = next(model.parameters()).device
        vocab = model.get_output_embeddings().weight.shape[0] if model.get_output_embeddings() is not None else len(tokenizer)
        self.stop, self.stop_ok = _stop_sets(tokenizer, model, vocab, self.device)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._prefixes: OrderedDict[tuple[str, tuple[int, ...]], tuple[int, list[tuple[torch.Tensor, torch.Tensor]]]] = OrderedDict()
        self._prefix_cache_size = prefix_cache_size
        self.compact_at = compact_at
        if grouped_attention is None:
            grouped_attention = can_use_grouped_attention(model, self.device)
        if grouped_attention:
            register_grouped_attention()
        self.grouped_attention = grouped_attention
        self.tokens_processed = 0  # running total, for the benchmark's efficiency figure
        self._cont_tokens: dict[str, tuple[int, ...]] = {}  # continuation text -> tokens (one item, nex prompts)
        self.forward_calls = 0
        # Padding in the prompt passes: suffix tokens the rows need vs tokens run (benchmark figures).
        self.prompt_tokens_real = self.prompt_tokens_run = 0
        self.bucket_cost = bucket_cost  # tokens one more prompt batch is worth (see _buckets)
        self._cache_arg = cache_argument(model)

    # -- tokenization -----------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        # No special tokens anywhere: the prompt is prefix + suffix + continuation tokens, the same
        # as greedy_answers tokenizes whole prompts (add_special_tokens=False).
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, past: Any, keep: int) -> Any:
        self.tokens_processed += int(ids.numel())
        self.forward_calls += 1
        cfg = self.model.config
        saved = cfg._attn_implementation
        if self.grouped_attention:
            cfg._attn_implementation = ATTN_NAME
        try:
            return self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                              logits_to_keep=keep, **{self._cache_arg: past})
        finally:
            cfg._attn_implementation = saved

    def _cached_prefix(self, prefix: str, tokens: Sequence[int], lcp: int) -> tuple[int, tuple[int, ...]] | None:
        """The longest cached extra of `prefix` that the rows' shared opening `tokens[:lcp]` starts with."""
        best: tuple[int, tuple[int, ...]] | None = None
        for pf, extra in self._prefixes:
            if pf == prefix and len(extra) <= lcp and tuple(tokens[: len(extra)]) == extra:
                if best is None or len(extra) > best[0]:
                    best = (len(extra), extra)
        return best

    def _prefixes_batch(self, wanted: Sequence[tuple[str, tuple[int, ...]]]
                        ) -> dict[tuple[str, tuple[int, ...]], tuple[int, list[tuple[torch.Tensor, torch.Tensor]]]]:
        """Compute and cache the KV of every (prefix text, extra tokens) in `wanted`, batched.

        One padded forward for all the prefixes a batch lacks instead of one forward each (one pass of
        30 layers' Python and weight reads instead of many). Rows are left-padded; the pad columns are
        masked and positions start at each row's first real token, so every row's KV equals its own
        single-row forward; each row is stored without its padding."""
        out = {}
        for start in range(0, len(wanted), 32):
            chunk = list(wanted[start: start + 32])
            seqs = [self.encode(pf) + list(extra) for pf, extra in chunk]
            width = max(len(q) for q in seqs)
            ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(seqs), width), dtype=torch.long)
            pos = torch.zeros((len(seqs), width), dtype=torch.long)
            for r, q in enumerate(seqs):
                ids[r, width - len(q):] = torch.tensor(q)
                mask[r, width - len(q):] = 1
                pos[r, width - len(q):] = torch.arange(len(q))
            layers = _layers(_out_cache(self._forward(ids.to(self.device), mask.to(self.device),
                                                      pos.to(self.device), None, 1)))
            for r, (key, q) in enumerate(zip(chunk, seqs)):
                n = len(q)
                out[key] = (n, [(k[r: r + 1, :, width - n:].clone(), v[r: r + 1, :, width - n:].clone())
                                for k, v in layers])
                self._prefixes[key] = out[key]
                self._prefixes.move_to_end(key)
        while len(self._prefixes) > self._prefix_cache_size:
            self._prefixes.popitem(last=False)
        return out

    @torch.inference_mode()
    def prompt_logits(self, prefix: Prefixes, suffixes: Sequence[str]) -> torch.Tensor:
        """Next-token logits after each prefix + suffix, through the prefix-reuse path (for tests)."""
        logits, _, _, _ = self._prompt_pass(prefix, suffixes)
        return logits.float()

    @torch.inference_mode()
    def run(
        self, prefix: Prefixes, suffixes: Sequence[str], *, greedy: bool = True, samples: int = 0,
        sample_keys: Sequence[int] | None = None, continuations: Sequence[Sequence[str]] | None = None,
        temperature: float = 1.0, top_k: int = 0, select: Select | None = None,
        answers: Sequence[Sequence[str]] | None = None, drafts: Sequence[str | None] | None = None,
    ) -> RunOutput:
        """See the module docstring. `answers` (per suffix, its accepted answers): a greedy answer is cut
        as soon as it can no longer match any of them (see can_still_match), ending in CUT_MARK.
        `drafts` (per suffix, a likely greedy continuation, e.g. its first accepted answer): verified
        in the prompt pass itself (see _Drafts); the greedy texts are those of plain decoding."""
        out = RunOutput()
        if not suffixes:
            return out
        before = self.tokens_processed
        n_q = len(suffixes)
        if samples and sample_keys is None:
            sample_keys = list(range(n_q))
        keys = [[answer_skeleton(a) for a in ans] for ans in answers] if answers is not None and greedy else None
        enc, kv = self._plan(prefix, suffixes)
        dtoks: list[list[int]] | None = None
        if drafts is not None and greedy:
            if len(drafts) != n_q:
                raise ValueError("one draft per suffix")
            dtoks = [self.encode(d) if d else [] for d in drafts]
        # Each length bucket is its own batch: prompt pass, then decode and score on its cache.
        lengths = [len(e) + (min(len(d), self.max_new_tokens) if dtoks is not None else 0)
                   for e, d in zip(enc, dtoks or enc)]
        passes, checks = [], []
        for rows in self._buckets(lengths):
            *state, check = self._run_rows([enc[r] for r in rows], [kv[r] for r in rows],
                                           None if dtoks is None else [dtoks[r] for r in rows],
                                           temperature, top_k, continuations is not None)
            passes.append((rows, tuple(state)))
            checks.append(check)
        chosen = list(range(n_q))
        if select is not None and greedy:
            # Two phases on the same prompt cache: greedy answers first, then samples and scores only
            # for the suffixes that still need them (decoding samples is ~16x the greedy work).
            texts = self._greedy_texts(passes, checks, keys, n_q, temperature, top_k)
            out.greedy = texts
            flags = list(select(texts))
            chosen = [q for q in range(n_q) if flags[q]]
            if samples:
                out.samples = [[] for _ in range(n_q)]
                step = max(1, self.batch_size // samples)
                for rows, (logits, layers, mask, ends) in passes:
                    local = [i for i, q in enumerate(rows) if flags[q]]
                    for start in range(0, len(local), step):
                        part = local[start: start + step]
                        drows = [(i, row_key(int(sample_keys[rows[i]]), j)) for i in part for j in range(samples)]  # type: ignore[index]
                        got = self._decode(logits, layers, mask, ends, drows, temperature, top_k)
                        for m, i in enumerate(part):
                            out.samples[rows[i]] = got[m * samples: (m + 1) * samples]
        elif dtoks is not None and not samples:
            out.greedy = self._greedy_texts(passes, checks, keys, n_q, temperature, top_k)
        elif greedy or samples:
            per = int(greedy) + samples
            greedy_out: list[str] = [""] * n_q
            samples_out: list[list[str]] = [[] for _ in range(n_q)]
            for rows, (logits, layers, mask, ends) in passes:
                drows = [(i, None if j < 0 else row_key(int(sample_keys[rows[i]]), j))  # type: ignore[index]
                         for i in range(len(rows)) for j in ([-1] if greedy else []) + list(range(samples))]
                row_keys = None if keys is None else [keys[rows[i]] if k is None else None for i, k in drows]
                texts = self._decode(logits, layers, mask, ends, drows, temperature, top_k, row_keys)
                for i, q in enumerate(rows):
                    greedy_out[q] = texts[i * per] if greedy else ""
                    samples_out[q] = texts[i * per + int(greedy): (i + 1) * per]
            out.greedy = greedy_out if greedy else None
            out.samples = samples_out if samples else None
        if continuations is not None:
            wanted = set(chosen)
            scores: list[float | None] = [None] * n_q
            picks: list[tuple[int, int]] = []  # (pass, row in it) with a continuation left to teacher-force
            todo: list[list[list[int]]] = []  # per pick, those continuations' tokens
            base: list[float] = []  # per pick, the probability already known (its draft's)
            for pi, ((rows, _), check) in enumerate(zip(passes, checks)):
                for i, q in enumerate(rows):
                    if q not in wanted:
                        continue
                    # A continuation that was a row's draft already has its probability from the prompt pass.
                    known = None
                    if check is not None and drafts is not None and drafts[q] in continuations[q] and check.tokens[i]:
                        known = (tuple(check.tokens[i]), check.scores[i])
                    seqs = self._to_score(continuations[q], known)
                    if seqs:
                        picks.append((pi, i))
                        todo.append(seqs)
                        base.append(known[1] if known else 0.0)
                    else:
                        scores[q] = min(1.0, known[1]) if known else 0.0
            if picks:
                # From every length bucket at once: one scoring forward instead of one per bucket.
                for (pi, i), sc in zip(picks, self._score(passes, picks, todo, base, temperature, top_k)):
                    scores[passes[pi][0][i]] = sc
            out.scores = scores
        out.tokens_processed = self.tokens_processed - before
        return out

    def _greedy_texts(self, passes: Sequence[tuple[list[int], tuple[Any, ...]]], checks: Sequence[_Drafts | None],
                      keys: Sequence[list[str]] | None, n_q: int, temperature: float, top_k: int) -> list[str]:
        """The greedy text of every suffix: from its draft's check where that settles it, else decoded."""
        texts = [""] * n_q
        left: list[tuple[int, int]] = []  # (pass, row in it) of the drafts' rows still to decode
        for pi, ((rows, (logits, layers, mask, ends)), check) in enumerate(zip(passes, checks)):
            local = None if keys is None else [keys[q] for q in rows]
            if check is None:  # no drafts: every row decodes, on its own bucket's cache (no gather copy)
                got = self._decode(logits, layers, mask, ends, [(i, None) for i in range(len(rows))],
                                   temperature, top_k, local)
                for q, t in zip(rows, got):
                    texts[q] = t
                continue
            for i, t in enumerate(check.resolve(self.stop, self.max_new_tokens, local, self.tok)):
                if t is None:
                    left.append((pi, i))
                else:
                    texts[rows[i]] = t
        if left:
            # The few rows no draft settles (~6% on the world split), from every length bucket at once:
            # one decode loop instead of one per bucket (each step reads all the weights).
            got = self._decode(*self._gather(passes, left), [(j, None) for j in range(len(left))],
                               temperature, top_k, None if keys is None else [keys[passes[pi][0][i]] for pi, i in left])
            for (pi, i), t in zip(left, got):
                texts[passes[pi][0][i]] = t
        return texts

    def _gather(self, passes: Sequence[tuple[list[int], tuple[Any, ...]]], picks: Sequence[tuple[int, int]],
                room: int = 0) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor, torch.Tensor]:
        """(logits, layers, mask, ends) of the rows `picks` ((pass, row in it)) of several prompt passes,
        as one batch. A pass's columns are right-aligned in the widest pass's (its layout keeps the last
        column last); the added columns on the left are masked, and zeroed (a NaN would leak through 0 x
        NaN). Position ids come from `ends`, so the shift changes nothing the model sees. With `room`,
        each layer's buffers have that many free columns after the mask's (see kernels.cache_over)."""
        groups: dict[int, tuple[list[int], list[int]]] = {}
        for j, (pi, i) in enumerate(picks):
            groups.setdefault(pi, ([], []))[0].append(j)
            groups[pi][1].append(i)
        cols = max(passes[pi][1][2].shape[1] for pi in groups)
        logits0, layers0, mask0, ends0 = passes[picks[0][0]][1]
        n = len(picks)
        logits = logits0.new_empty((n, logits0.shape[1]))
        mask = mask0.new_zeros((n, cols))
        ends = ends0.new_empty((n,))
        layers = [(k.new_empty((n, k.shape[1], cols + room, k.shape[3])),
                   v.new_empty((n, v.shape[1], cols + room, v.shape[3]))) for k, v in layers0]
        for pi, (dst_l, src_l) in groups.items():
            lg, lay, mk, en = passes[pi][1]
            dst = torch.tensor(dst_l, device=logits.device)
            src = torch.tensor(src_l, device=logits.device)
            c = mk.shape[1]
            logits[dst], mask[dst, cols - c:], ends[dst] = lg[src], mk[src], en[src]
            for (k_out, v_out), (k, v) in zip(layers, lay):
                k_out[dst, :, cols - c: cols] = k[src]
                v_out[dst, :, cols - c: cols] = v[src]
                if c < cols:
                    k_out[dst, :, : cols - c] = 0
                    v_out[dst, :, : cols - c] = 0
        return logits, layers, mask, ends

    # -- the passes ----------------------------------------------------------------------------
    def _plan(self, prefix: Prefixes, suffixes: Sequence[str]) -> tuple[list[list[int]], list[tuple[int, Any]]]:
        """Tokenize, choose each row's shared prefix (exemplars + the opening its group shares) and make
        sure its KV is cached. Returns per row the suffix tokens still to run and (prefix length, KV)."""
        prefixes = [prefix] * len(suffixes) if isinstance(prefix, str) else list(prefix)
        if len(prefixes) != len(suffixes):
            raise ValueError("one prefix per suffix")
        enc = [self.encode(s) for s in suffixes]
        if any(not e for e in enc):
            raise ValueError("empty suffix")
        groups: dict[str, list[int]] = {}
        for r, pf in enumerate(prefixes):
            groups.setdefault(pf, []).append(r)
        plans: list[tuple[str, list[int], tuple[int, ...]]] = []
        missing: dict[tuple[str, tuple[int, ...]], None] = {}
        got: dict[tuple[str, tuple[int, ...]], tuple[int, list[tuple[torch.Tensor, torch.Tensor]]]] = {}
        for pf, rows in groups.items():
            # Questions of one relation share their opening tokens ("Q: What is the capital of"): those
            # join the shared prefix, computed once. Every row keeps >= 1 token to read its logits from.
            # Any cached entry of this prefix whose extra tokens the rows start with is reused (the rows
            # run their few remaining shared tokens themselves): recomputing the whole prefix for a
            # slightly longer shared opening would cost far more. A lone row never makes its own entry.
            lcp = _common_prefix_len([enc[r] for r in rows], max_len=min(len(enc[r]) for r in rows) - 1)
            hit = self._cached_prefix(pf, enc[rows[0]], lcp)
            if hit is not None:
                extra = hit[1]
                got[(pf, extra)] = self._prefixes[(pf, extra)]
                self._prefixes.move_to_end((pf, extra))
            else:
                extra = tuple(enc[rows[0]][:lcp]) if len(rows) > 1 else ()
                if pf or extra:
                    missing.setdefault((pf, extra), None)
            plans.append((pf, rows, extra))
        if missing:
            got.update(self._prefixes_batch(list(missing)))
        kv: list[tuple[int, Any]] = [(0, None)] * len(enc)
        for pf, rows, extra in plans:
            entry = got[(pf, extra)] if (pf or extra) else (0, None)
            for r in rows:
                enc[r], kv[r] = enc[r][len(extra):], entry
        return enc, kv

    def _buckets(self, lengths: Sequence[int]) -> list[list[int]]:
        """Rows split into groups of similar suffix length, each run as its own batch.

        One batch pads every row to its longest suffix: a few rows whose group shares no opening
        (a lone question under its exemplar set) made every row of a 256-row batch run ~3x its own
        tokens. A split costs one more prompt forward and one more decode loop, counted as
        `bucket_cost` tokens (the fixed per-call cost of reading the weights, ~8 decode steps);
        an exact DP over the sorted lengths picks the cheapest split (at most 4 groups)."""
        order = sorted(range(len(lengths)), key=lambda r: lengths[r])
        ls = [lengths[r] for r in order]
        n, k_max, big = len(ls), 8, float("inf")
        # best[k][j]: cheapest cost of the first j sorted rows in k groups (a group's cost: rows x its max)
        best = [[big] * (n + 1) for _ in range(k_max + 1)]
        cut = [[0] * (n + 1) for _ in range(k_max + 1)]
        best[0][0] = 0.0
        for k in range(1, k_max + 1):
            for j in range(1, n + 1):
                for i in range(k - 1, j):
                    c = best[k - 1][i] + (j - i) * ls[j - 1]
                    if c < best[k][j]:
                        best[k][j], cut[k][j] = c, i
        k = min(range(1, k_max + 1), key=lambda k: best[k][n] + (k - 1) * self.bucket_cost)
        bounds, j = [], n
        while k > 0:
            i = cut[k][j]
            bounds.append((i, j))
            j, k = i, k - 1
        return [sorted(order[i:j]) for i, j in reversed(bounds)]

    def _prompt_pass(self, prefix: Prefixes, suffixes: Sequence[str]):
        """Run each suffix after its prefix, in one batch (see _run_rows)."""
        enc, kv = self._plan(prefix, suffixes)
        return self._run_rows(enc, kv)[:4]

    def _run_rows(self, enc: Sequence[list[int]], kv: Sequence[tuple[int, Any]],
                  drafts: Sequence[list[int]] | None = None, temperature: float = 1.0, top_k: int = 0,
                  score_drafts: bool = False):
        """One prompt forward over these rows. Returns last-token logits [B, V] (model dtype), the cache
        layers, the attention mask [B, columns], each row's next position, and the drafts' check
        (_Drafts, or None without drafts).

        Column layout of row r: [padding | prefix_r KV | padding | suffix_r draft_r]. Rows may have
        different prefixes (several exemplar sets in one batch); a prefix's KV is computed once and
        copied into its rows, right-aligned; padding is masked and positions skip it. Suffix and
        draft are one right-aligned run, so a row pads only to the longest suffix + draft of its
        batch, and the last draft column is the last column of every row. The draft columns (see
        _Drafts) are masked in the returned mask: to decoding and scoring that follow, the cache is
        the prompt's alone."""
        plen = [n for n, _ in kv]
        group_kv: list[tuple[list[int], int, Any]] = []
        by_id: dict[int, int] = {}
        for r, (n, layers) in enumerate(kv):
            if id(layers) not in by_id:
                by_id[id(layers)] = len(group_kv)
                group_kv.append(([], n, layers))
            group_kv[by_id[id(layers)]][0].append(r)
        # Drafts longer than max_new_tokens are checked up to it: decoding never goes further.
        dt = [list(d[: self.max_new_tokens]) for d in drafts] if drafts is not None else [[] for _ in enc]
        nd = max(len(d) for d in dt)
        b, p, s = len(enc), max(plen), max(len(e) + len(d) for e, d in zip(enc, dt))
        self.prompt_tokens_real += sum(len(e) + len(d) for e, d in zip(enc, dt))
        self.prompt_tokens_run += b * s
        ids = torch.full((b, s), self.pad_id, dtype=torch.long)
        mask = torch.ones((b, p + s), dtype=torch.long)
        pos = torch.zeros((b, s), dtype=torch.long)
        for r, (e, d) in enumerate(zip(enc, dt)):
            n = len(e) + len(d)
            ids[r, s - n:] = torch.tensor(e + d)
            mask[r, : p - plen[r]] = 0  # left of a shorter prefix
            mask[r, p: p + s - n] = 0  # between prefix and suffix
            pos[r, s - n:] = torch.arange(plen[r], plen[r] + n)
        ends = torch.tensor([plen[r] + len(e) for r, e in enumerate(enc)])
        past = None
        if p > 0:
            ref = next(layers for _, _, layers in group_kv if layers is not None)
            if len(group_kv) == 1:
                past = new_cache([(k.expand(b, -1, -1, -1), v.expand(b, -1, -1, -1)) for k, v in ref])
            else:
                # Each row's prefix is copied once into buffers with room for the s prompt columns, which
                # the forward then writes in place (a DynamicCache would concatenate a second copy of it
                # all, per layer and call). Padding is zeroed: masked, but a NaN there would still leak.
                stacked = []
                for li, (k0, v0) in enumerate(ref):
                    k = k0.new_empty((b, k0.shape[1], p + s, k0.shape[3]))
                    v = v0.new_empty((b, v0.shape[1], p + s, v0.shape[3]))
                    for rows, n, layers in group_kv:
                        idx = torch.tensor(rows, device=self.device)
                        if layers is not None and n:
                            k[idx, :, p - n: p] = layers[li][0]
                            v[idx, :, p - n: p] = layers[li][1]
                        if n < p:
                            k[idx, :, : p - n] = 0
                            v[idx, :, : p - n] = 0
                    stacked.append((k, v))
                past = cache_over(stacked, p)
        res = self._forward(ids.to(self.device), mask.to(self.device), pos.to(self.device), past, nd + 1)
        layers = _layers(_out_cache(res))
        # Row r's prompt ends nd - len(draft_r) columns before the kept block's last column.
        # Model dtype: argmax and top-k need no fp32 copy of the vocab.
        off = torch.tensor([nd - len(d) for d in dt], device=self.device)
        logits = res.logits[torch.arange(b, device=self.device), off] if nd else res.logits[:, -1, :]
        check = None
        if drafts is not None:
            check = _Drafts.check(res.logits, dt, [len(d) for d in drafts], self.stop_ok, self.max_new_tokens,
                                  temperature, top_k, score_drafts)
            for r, d in enumerate(dt):
                if d:
                    mask[r, p + s - len(d):] = 0  # what follows sees the prompt only
        del res
        return logits, layers, mask.to(self.device), ends.to(self.device), check

    def _to_score(self, continuations: Sequence[str], known: tuple[tuple[int, ...], float] | None) -> list[list[int]]:
        """The token sequences of one question's continuations still to teacher-force: distinct (equal
        sequences are one event, counted once), not the known draft's, and within max_new_tokens."""
        seen: set[tuple[int, ...]] = {known[0]} if known is not None else set()
        out = []
        for c in continuations:
            t = self._cont_tokens.get(c)
            if t is None:
                t = self._cont_tokens[c] = tuple(self.encode(c))
            if t and t not in seen and len(t) <= self.max_new_tokens:
                seen.add(t)
                out.append(list(t))
        return out

    def _score(self, passes: Sequence[tuple[list[int], tuple[Any, ...]]], picks: Sequence[tuple[int, int]],
               todo: Sequence[Sequence[list[int]]], base: Sequence[float], temperature: float,
               top_k: int) -> list[float]:
        """Per pick ((pass, row in it) of the prompt passes), `base` (the probability already known, e.g.
        its draft's) plus the exact probability of each token sequence in `todo` (see _to_score)."""
        rows = [(q, t) for q, seqs in enumerate(todo) for t in seqs]
        scores = list(base)
        if not rows:
            return [min(1.0, x) for x in scores]
        # Prune continuations whose first token is (nearly) out of reach: p(c) <= q(b_0) < SCORE_EPS.
        first = token_prob(torch.stack([passes[picks[q][0]][1][0][picks[q][1]] for q, _ in rows]),
                           torch.tensor([t[0] for _, t in rows], device=self.device), temperature, top_k)
        rows = [row for row, f in zip(rows, first.tolist()) if f >= SCORE_EPS]
        rows.sort(key=lambda row: len(row[1]))  # similar lengths per chunk: little padding to run
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start: start + self.batch_size]
            c = max(len(t) for _, t in chunk)
            ids = torch.full((len(chunk), c), self.pad_id, dtype=torch.long)
            cmask = torch.zeros((len(chunk), c), dtype=torch.long)
            for r, (_, t) in enumerate(chunk):
                ids[r, : len(t)] = torch.tensor(t)
                cmask[r, : len(t)] = 1
            ids, cmask = ids.to(self.device), cmask.to(self.device)
            # The chunk's rows are copied once, from whichever length bucket they come, into buffers with
            # room for the c continuation columns, which the forward writes in place.
            logits, layers, mask, ends = self._gather(passes, [picks[q] for q, _ in chunk], room=c)
            pos = ends[:, None] + torch.arange(c, device=self.device)[None]
            res = self._forward(ids, torch.cat([mask, cmask], 1), pos, cache_over(layers, mask.shape[1]), c)
            # Row r's distribution before token j: the prompt's logits for j=0, else position j-1.
            dists = torch.cat([logits[:, None, :], res.logits.to(logits.dtype)], 1)  # [R, c+1, V]
            r_n, v = len(chunk), dists.shape[-1]
            flat = dists[:, :c, :].reshape(r_n * c, v)
            tp = token_prob(flat, ids.reshape(-1), temperature, top_k).reshape(r_n, c)
            tp = torch.where(cmask.bool(), tp, torch.ones_like(tp))
            lens = cmask.sum(1)
            after = dists[torch.arange(r_n, device=self.device), lens]  # distribution after the last token
            stop_p = set_prob(after, self.stop_ok, temperature, top_k)
            stop_p = torch.where(lens >= self.max_new_tokens, torch.ones_like(stop_p), stop_p)
            p = tp.prod(1) * stop_p
            for (q, _), val in zip(chunk, p.tolist()):
                scores[q] += val
        return [min(1.0, s) for s in scores]

    def _decode(self, logits, layers, mask, ends, rows: Sequence[tuple[int, int | None]], temperature: float,
                top_k: int, targets: Sequence[list[str] | None] | None = None) -> list[str]:
        """Decode one text per row; row = (question index, None for greedy or the sample's key).

        `targets` (per row, the answer_skeleton of each accepted answer, or None): such a row stops as
        soon as its text can no longer match any of them; its text then ends in CUT_MARK."""
        n = len(rows)
        src = torch.tensor([q for q, _ in rows], device=self.device)
        is_sample = torch.tensor([k is not None for _, k in rows], device=self.device)
        u_all = torch.zeros((n, self.max_new_tokens), dtype=torch.float64)
        keys = [k for _, k in rows if k is not None]
        if keys:
            u_all[is_sample.cpu()] = uniforms(keys, self.max_new_tokens)
        u_all = u_all.to(self.device)
        # A decode that covers every question once, in order, uses the prompt cache as it is (no copy).
        same = n == logits.shape[0] and bool((src == torch.arange(n, device=self.device)).all())
        room = self.max_new_tokens
        cache = new_cache(layers if same else [(k[src], v[src]) for k, v in layers], room=room)
        cur_logits = logits if same else logits[src]
        cur_mask, cur_pos = mask[src], ends[src].clone()
        alive = torch.arange(n, device=self.device)  # original row index of each batch row
        gen = torch.full((n, self.max_new_tokens), -1, dtype=torch.long, device=self.device)
        lengths = torch.zeros(n, dtype=torch.long, device=self.device)
        finished = torch.zeros(n, dtype=torch.bool, device=self.device)
        watch = [r for r in range(n) if targets is not None and targets[r] is not None]
        cut: set[int] = set()
        for t in range(self.max_new_tokens):
            samp = is_sample[alive]
            nxt = cur_logits.argmax(-1)
            if bool(samp.any()):
                nxt_s = draw(cur_logits[samp], u_all[alive[samp], t], temperature, top_k)
                nxt[samp] = nxt_s
            live = ~finished[alive]
            gen[alive[live], t] = nxt[live]
            lengths[alive[live]] += 1
            finished[alive[live & self.stop[nxt]]] = True
            if watch:
                # A greedy answer that can no longer become correct is wrong whatever follows: stop it.
                check = [r for r in watch if not bool(finished[r])]
                texts = self.tok.batch_decode([gen[r, : int(lengths[r])].tolist() for r in check],
                                              skip_special_tokens=True)
                dead = [r for r, text in zip(check, texts) if not can_still_match(text, targets[r])]  # type: ignore[index, arg-type]
                if dead:
                    finished[torch.tensor(dead, device=self.device)] = True
                    cut.update(dead)
                watch = [r for r in check if r not in cut]
            if t + 1 == self.max_new_tokens or bool(finished.all()):
                break
            keep_rows = ~finished[alive]
            if float((~keep_rows).sum()) >= self.compact_at * len(alive):
                keep = keep_rows.nonzero().squeeze(-1)
                cache.batch_select_indices(keep)
                alive, nxt, cur_mask, cur_pos = alive[keep], nxt[keep], cur_mask[keep], cur_pos[keep]
            cur_mask = torch.cat([cur_mask, torch.ones_like(cur_mask[:, :1])], 1)
            res = self._forward(nxt[:, None], cur_mask, cur_pos[:, None], cache, 1)
            cache = _out_cache(res)
            cur_logits = res.logits[:, -1, :]
            cur_pos = cur_pos + 1
        seqs = [gen[r, : int(lengths[r])].tolist() for r in range(n)]
        texts = self.tok.batch_decode(seqs, skip_special_tokens=True)
        return [text + CUT_MARK if r in cut else text for r, text in enumerate(texts)]


@torch.no_grad()
def greedy_answers(model: Any, tokenizer: Any, prompts: Sequence[str], *, max_new_tokens: int = 16,
                   batch_size: int = 32, answers: Sequence[Sequence[str]] | None = None,
                   drafts: Sequence[str | None] | None = None) -> list[str]:
    """Greedy answers (text before the first newline) of whole prompts, with no shared prefix: eval and
    the trainer's dev check decode through the probe's own engine, so every answer in gradual comes from
    one decoder with one stop rule. `answers` (per prompt, its accepted answers; for callers that only
    need right or wrong) lets a row stop once it can no longer be right (its text then ends in CUT_MARK).
    `drafts` (per prompt, e.g. its gold answer as the model would write it): checked in the prompt pass
    (see _Drafts), which settles most rows without decoding; the answers are the same."""
    from gradual.answers import extract_answer

    engine = HFEngine(model, tokenizer, batch_size=batch_size, max_new_tokens=max_new_tokens)
    # Similar lengths together keep padding low; results go back to the order asked.
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    out: list[str] = [""] * len(prompts)
    for start in range(0, len(order), batch_size):
        idx = order[start: start + batch_size]
        res = engine.run("", [prompts[i] for i in idx], greedy=True,
                         answers=[answers[i] for i in idx] if answers is not None else None,
                         drafts=[drafts[i] for i in idx] if drafts is not None else None)
        for i, text in zip(idx, res.greedy or []):
            out[i] = extract_answer(text)
    return out
