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
  - Drafts (speculative greedy decoding whose draft is the item's first accepted answer, Drafts):
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
    batch size give identical greedy answers, samples and categories (tests/probe/test_run.py checks
    it on the real model; benchmarks/dtype_agreement.py: 0 of 100 world items differ).
  - bf16 (CPUs with native bf16, GPUs): the matmul kernels' blocking follows the batch's shape, so a
    row's logits move at bf16 resolution with its batch, and a sample near an inverse-CDF boundary or
    a greedy argmax between near-tied tokens can come out the other way. Categories stay
    deterministic for the same batches, but early exit vs --full moved 3 of 100 world items and batch
    size 256 vs 16 moved 4 (sample estimator, AVX512 CPU; 13 of ~1,000 greedy answers differed).
    Force `--dtype fp32` where identical categories across settings matter more than speed.

Exact probabilities (score): the probability, under the sampler's own tempered top-k distribution, of
generating an accepted continuation and then a stop, by teacher forcing: see gradual.lm.decode.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import torch

from gradual.lm.decode import DecodeScore
from gradual.lm.drafts import Drafts
from gradual.lm.kernels import (ATTN_NAME, cache_argument, cache_layers, cache_over, can_use_grouped_attention,
                                new_cache, out_cache, register_grouped_attention)
from gradual.lm.protocol import Prefixes, RowStop, RunOutput, RunParts, Select
from gradual.lm.sampling import row_key
from gradual.lm.stops import stop_sets

# ---------------------------------------------------------------------------------------------

def _common_prefix_len(seqs: Sequence[Sequence[int]], max_len: int) -> int:
    n = 0
    while n < max_len and all(seq[n] == seqs[0][n] for seq in seqs):
        n += 1
    return n


class HFEngine(DecodeScore, RunParts):
    """ProbeEngine over any Hugging Face causal LM (already placed on its device and dtype)."""

    # run() takes `row_stops` and ends a greedy row when its callback says so (probe.run passes them
    # only to engines that say so: other backends and test doubles keep the narrow interface).
    stops_rows = True
    # run() takes `drafts` and checks them in the prompt pass (see Drafts).
    verifies_drafts = True

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int = 64, max_new_tokens: int = 12,
                 prefix_cache_size: int = 128, compact_at: float = 0.25, grouped_attention: bool | None = None,
                 bucket_cost: int = 64) -> None:
        self.model, self.tok = model, tokenizer
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.device = next(model.parameters()).device
        vocab = model.get_output_embeddings().weight.shape[0] if model.get_output_embeddings() is not None else len(tokenizer)
        self.stop, self.stop_ok = stop_sets(tokenizer, model, vocab, self.device)
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
            layers = cache_layers(out_cache(self._forward(ids.to(self.device), mask.to(self.device),
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
    @torch.inference_mode()
    def run(
        self, prefix: Prefixes, suffixes: Sequence[str], *, greedy: bool = True, samples: int = 0,
        sample_keys: Sequence[int] | None = None, continuations: Sequence[Sequence[str]] | None = None,
        temperature: float = 1.0, top_k: int = 0, select: Select | None = None,
        row_stops: Sequence[RowStop | None] | None = None, drafts: Sequence[str | None] | None = None,
    ) -> RunOutput:
        """See the module docstring. `row_stops` (per suffix, a RowStop or None): a greedy row ends as
        soon as its callback returns a text for what it has decoded so far, with that text.
        `drafts` (per suffix, a likely greedy continuation, e.g. its first accepted answer): verified
        in the prompt pass itself (see Drafts); the greedy texts are those of plain decoding."""
        out = RunOutput()
        if not suffixes:
            return out
        before = self.tokens_processed
        n_q = len(suffixes)
        if samples and sample_keys is None:
            sample_keys = list(range(n_q))
        keys = list(row_stops) if row_stops is not None and greedy else None
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
                out.samples = self._sample_selected(passes, flags, samples, sample_keys, temperature, top_k)  # type: ignore[arg-type]
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
            out.scores = self._scores_of(passes, checks, set(chosen), n_q, continuations, drafts, temperature, top_k)
        out.tokens_processed = self.tokens_processed - before
        return out

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
        (Drafts, or None without drafts).

        Column layout of row r: [padding | prefix_r KV | padding | suffix_r draft_r]. Rows may have
        different prefixes (several exemplar sets in one batch); a prefix's KV is computed once and
        copied into its rows, right-aligned; padding is masked and positions skip it. Suffix and
        draft are one right-aligned run, so a row pads only to the longest suffix + draft of its
        batch, and the last draft column is the last column of every row. The draft columns (see
        Drafts) are masked in the returned mask: to decoding and scoring that follow, the cache is
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
        layers = cache_layers(out_cache(res))
        # Row r's prompt ends nd - len(draft_r) columns before the kept block's last column.
        # Model dtype: argmax and top-k need no fp32 copy of the vocab.
        off = torch.tensor([nd - len(d) for d in dt], device=self.device)
        logits = res.logits[torch.arange(b, device=self.device), off] if nd else res.logits[:, -1, :]
        check = None
        if drafts is not None:
            check = Drafts.check(res.logits, dt, [len(d) for d in drafts], self.stop_ok, self.max_new_tokens,
                                  temperature, top_k, score_drafts)
            for r, d in enumerate(dt):
                if d:
                    mask[r, p + s - len(d):] = 0  # what follows sees the prompt only
        del res
        return logits, layers, mask.to(self.device), ends.to(self.device), check

@torch.no_grad()
def greedy_answers(model: Any, tokenizer: Any, prompts: Sequence[str], *, max_new_tokens: int = 16,
                   batch_size: int = 32, row_stops: Sequence[RowStop | None] | None = None,
                   drafts: Sequence[str | None] | None = None) -> list[str]:
    """Greedy answers (text before the first newline) of whole prompts, with no shared prefix: eval and
    the trainer's dev check decode through the probe's own engine, so every answer in gradual comes from
    one decoder with one stop rule. `row_stops` (per prompt; e.g. gradual.answers.answer_stop for callers
    that only need right or wrong) let a row stop once its callback ends it.
    `drafts` (per prompt, e.g. its gold answer as the model would write it): checked in the prompt pass
    (see Drafts), which settles most rows without decoding; the answers are the same."""
    from gradual.answers import extract_answer

    engine = HFEngine(model, tokenizer, batch_size=batch_size, max_new_tokens=max_new_tokens)
    # Similar lengths together keep padding low; results go back to the order asked.
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    out: list[str] = [""] * len(prompts)
    for start in range(0, len(order), batch_size):
        idx = order[start: start + batch_size]
        res = engine.run("", [prompts[i] for i in idx], greedy=True,
                         row_stops=[row_stops[i] for i in idx] if row_stops is not None else None,
                         drafts=[drafts[i] for i in idx] if drafts is not None else None)
        for i, text in zip(idx, res.greedy or []):
            out[i] = extract_answer(text)
    return out
