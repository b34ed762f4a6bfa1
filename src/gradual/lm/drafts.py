"""Speculative greedy decoding whose draft is the item's own answer, checked in the prompt pass.

Run as: used by gradual.lm.hf (HFEngine.run with `drafts`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from gradual.lm.protocol import RowStop
from gradual.lm.sampling import SCORE_EPS, set_prob, token_prob


@dataclass
class Drafts:
    """Greedy decoding checked against a draft in the prompt pass (speculative decoding whose draft is
    the item's own answer).

    Each row's draft tokens d (its first accepted continuation) follow its suffix in the prompt
    forward, whose logits are kept at the suffix's last column and at every draft column. With a
    = the number of leading draft tokens equal to the argmax before them, greedy decoding provably
    emits d[:a] and then the argmax after them, g = d[:a] + [argmax_a]. The row is settled without
    decoding when g ends in a stop token, when it reaches max_new_tokens, or when (with a row-stop
    callback) the caller ends g's text (the decoder would stop it there); the text is then exactly
    the decoder's. Other rows (a wrong answer that still
    could match, or a right one that goes on) are decoded as before, with the draft columns masked.
    The same logits give the draft's exact probability (see the module docstring), so a prompt
    whose accepted answer is the draft needs no separate scoring pass. Measured on the world split:
    94% of prompts settle here, replacing ~5 one-token forward calls per batch by one wider forward."""

    tokens: list[list[int]]  # per row, the draft tokens checked (at most max_new_tokens)
    argmax: list[list[int]]  # per row, the argmax after the suffix and after each draft column
    scores: list[float]  # per row, the draft's exact probability (0 where not computed)

    @staticmethod
    def check(logits: torch.Tensor, tokens: list[list[int]], full_len: list[int], stop_ok: torch.Tensor,
              max_new_tokens: int, temperature: float, top_k: int, score: bool) -> Drafts:
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
        return Drafts(tokens, argmax, scores)

    def resolve(self, stop: torch.Tensor, max_new_tokens: int, row_stops: Sequence[RowStop | None] | None,
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
            ends = row_stops[r] if row_stops is not None else None
            # The decoder checks every token before the next one: if the caller ends the accepted part
            # (a caller's draft need not be an accepted answer), it was cut inside the draft.
            if ends is not None and a and ends(tok.decode(d[:a], skip_special_tokens=True)) is not None:
                out.append(None)
                continue
            if len(g) > max_new_tokens:  # the whole draft, as long as decoding may go: no stop
                out.append(tok.decode(g[:max_new_tokens], skip_special_tokens=True))
                continue
            if g[-1] in stops:
                out.append(tok.decode(g, skip_special_tokens=True))
                continue
            out.append(None if ends is None else ends(tok.decode(g, skip_special_tokens=True)))
        return out
