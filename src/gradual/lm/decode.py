"""HFEngine's decode loop and exact scores, on the prompt pass's KV cache (see gradual.lm.hf).

Run as: mixed into gradual.lm.hf.HFEngine; benchmarks/probe_speed.py measures it.

Exact probabilities (_score): for a continuation c (e.g. " Paris", the answer as
gradual.prompts.answer_continuation writes it, without the stop) with canonical tokens b_0..b_{m-1}:
    p(c) = prod_j q(b_j | prompt, b_<j) * q(STOP_OK | prompt, b)
where q is the tempered top-k distribution the sampler draws from and STOP_OK is the set of tokens
whose text, up to the first newline, is only punctuation or white space (so the extracted answer is
still c), plus eos (gradual.lm.stops). If m equals max_new_tokens the stop factor is dropped
(generation is cut there and the text is still c); if m exceeds it, p(c) = 0. Distinct token
sequences are distinct events (none contains a newline token), so p(set) is the sum over distinct
sequences. Only canonical tokenizations are counted: a sample that spells "Paris" as " Par" + "is"
is correct for the sampling estimator but not counted here, so `exact` slightly under-estimates
P(T>0). Continuations whose first token has probability below SCORE_EPS (1e-6) are skipped
(counted as 0), which saves the teacher-forcing pass for answers the model cannot reach.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from gradual.lm.drafts import Drafts
from gradual.lm.kernels import cache_over, new_cache, out_cache
from gradual.lm.protocol import RowStop
from gradual.lm.sampling import SCORE_EPS, draw, row_key, set_prob, token_prob, uniforms


class DecodeScore:
    """Greedy and sampled decoding and exact scores over prompt passes; HFEngine provides the model
    (`_forward`), the tokenizer (`tok`), the stop sets and the settings these read."""

    def _greedy_texts(self, passes: Sequence[tuple[list[int], tuple[Any, ...]]], checks: Sequence[Drafts | None],
                      keys: Sequence[RowStop | None] | None, n_q: int, temperature: float, top_k: int) -> list[str]:
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
                top_k: int, targets: Sequence[RowStop | None] | None = None) -> list[str]:
        """Decode one text per row; row = (question index, None for greedy or the sample's key).

        `targets` (per row, a RowStop or None): such a row stops as soon as its callback returns a text
        for what it has decoded so far, and ends with that text."""
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
        cut: dict[int, str] = {}  # row -> the text its callback ended it with
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
                ended = {r: targets[r](text) for r, text in zip(check, texts)}  # type: ignore[index, misc]
                dead = [r for r, end in ended.items() if end is not None]
                if dead:
                    finished[torch.tensor(dead, device=self.device)] = True
                    cut.update((r, ended[r]) for r in dead)  # type: ignore[misc]
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
            cache = out_cache(res)
            cur_logits = res.logits[:, -1, :]
            cur_pos = cur_pos + 1
        seqs = [gen[r, : int(lengths[r])].tolist() for r in range(n)]
        texts = self.tok.batch_decode(seqs, skip_special_tokens=True)
        return [cut.get(r, text) for r, text in enumerate(texts)]

    def _sample_selected(self, passes: Sequence[tuple[list[int], tuple[Any, ...]]], flags: Sequence[bool],
                         samples: int, sample_keys: Sequence[int], temperature: float, top_k: int) -> list[list[str]]:
        """`samples` texts for every suffix `flags` selects ([] for the others), decoded on the prompt
        cache in chunks of about batch_size rows (each suffix's samples are rows copying its cache)."""
        out: list[list[str]] = [[] for _ in flags]
        step = max(1, self.batch_size // samples)  # type: ignore[attr-defined]
        for rows, (logits, layers, mask, ends) in passes:
            local = [i for i, q in enumerate(rows) if flags[q]]
            for start in range(0, len(local), step):
                part = local[start: start + step]
                drows = [(i, row_key(int(sample_keys[rows[i]]), j)) for i in part for j in range(samples)]
                got = self._decode(logits, layers, mask, ends, drows, temperature, top_k)
                for m, i in enumerate(part):
                    out[rows[i]] = got[m * samples: (m + 1) * samples]
        return out

    def _scores_of(self, passes: Sequence[tuple[list[int], tuple[Any, ...]]], checks: Sequence[Drafts | None],
                   wanted: set[int], n_q: int, continuations: Sequence[Sequence[str]],
                   drafts: Sequence[str | None] | None, temperature: float, top_k: int) -> list[float | None]:
        """The exact probability of each wanted suffix's continuations (None for the others)."""
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
        return scores
