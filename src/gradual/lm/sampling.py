"""Sampling maths shared by every backend: counter-based randomness (a row's draws do not depend on
the batch it landed in) and the tempered top-k distribution that the sampler draws from and the
exact estimator scores under, so the two agree exactly.

Run as: imported by gradual.lm.hf (HF) and gradual.lm.vllm; no command of its own.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

# A continuation whose first token has probability below this is not teacher-forced (its p counts as 0).
# Bound on the error: p_seen = 1 - prod_i (1 - p_i)^samples moves by at most nex * samples * SCORE_EPS
# (1.6e-4 with the paper's protocol), far below the 0.5 threshold's resolution.
SCORE_EPS = 1e-6


_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return z ^ (z >> np.uint64(31))


def uniforms(keys: Sequence[int], steps: int) -> torch.Tensor:
    """[len(keys), steps] uniforms in [0, 1): draw t of row r is a hash of (keys[r], t)."""
    k = _splitmix64(np.asarray([int(x) & 0xFFFFFFFFFFFFFFFF for x in keys], dtype=np.uint64))
    t = np.arange(steps, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = _splitmix64(k[:, None] ^ _splitmix64(t + np.uint64(0x5851F42D4C957F2D))[None, :])
    return torch.from_numpy((z >> np.uint64(11)).astype(np.float64) / float(1 << 53))


def row_key(base: int, j: int) -> int:
    """The key of sample j of a prompt whose key is `base`."""
    return int(_splitmix64(np.asarray([(base ^ (j * 0x9E3779B97F4A7C15)) & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0])


# ---------------------------------------------------------------------------------------------
# The tempered top-k distribution: shared by the sampler and the scorer so they agree exactly.

def tempered_topk(logits: torch.Tensor, temperature: float, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(probs [N, k], token ids [N, k]) of softmax(logits / T) restricted to the k largest logits."""
    v = logits.shape[-1]
    if 0 < top_k < v:
        # top-k on the model's own dtype (same order as on its fp32 copy), fp32 only for the k kept values
        vals, idx = torch.topk(logits, top_k, dim=-1)
    else:
        vals, idx = logits, torch.arange(v, device=logits.device).expand_as(logits)
    return torch.softmax(vals.float() / temperature, dim=-1), idx


def draw(logits: torch.Tensor, u: torch.Tensor, temperature: float, top_k: int) -> torch.Tensor:
    """Inverse-CDF draw of one token per row from the tempered top-k distribution."""
    probs, idx = tempered_topk(logits, temperature, top_k)
    cdf = probs.double().cumsum(-1)
    pick = torch.searchsorted(cdf, (u.to(cdf) * cdf[:, -1]).unsqueeze(-1)).clamp(max=probs.shape[-1] - 1)
    return idx.gather(-1, pick).squeeze(-1)


def token_prob(logits: torch.Tensor, tokens: torch.Tensor, temperature: float, top_k: int) -> torch.Tensor:
    """q(tokens[r] | row r) under the tempered top-k distribution (0 outside the top k)."""
    probs, idx = tempered_topk(logits, temperature, top_k)
    return (probs * (idx == tokens.unsqueeze(-1))).sum(-1)


def set_prob(logits: torch.Tensor, member: torch.Tensor, temperature: float, top_k: int) -> torch.Tensor:
    """q(token in set | row) where `member` is a bool [vocab] mask."""
    probs, idx = tempered_topk(logits, temperature, top_k)
    return (probs * member[idx]).sum(-1)
