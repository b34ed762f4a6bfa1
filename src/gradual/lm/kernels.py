"""Two CPU kernels the probe engine relies on: grouped attention and a preallocated KV cache layer.

Run as: used by gradual.lm.hf; tests/lm/test_hf.py checks both against the model's own path.
"""

from __future__ import annotations

import inspect
from typing import Any, Sequence

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

# Attention for CPU: torch's SDPA with an explicit mask (which every padded probe batch needs) takes a
# slow path on CPU, ~10x slower than two grouped matmuls (and HF repeats the KV heads for it first).
# Registered as a transformers attention implementation and switched on only around our own forward
# calls, so the model is left as it was found.

ATTN_NAME = "gradual_probe_grouped"


def _grouped_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                       attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                       **kwargs: Any) -> tuple[torch.Tensor, None]:
    b, hq, n, d = query.shape
    hkv, kv = key.shape[1], key.shape[2]
    g = hq // hkv  # query heads per KV head; head h uses KV head h // g (as HF's repeat_kv)
    scale = scaling if scaling is not None else d ** -0.5
    scores = torch.matmul(query.reshape(b, hkv, g * n, d), key.transpose(-1, -2)).float().mul_(scale)
    scores = scores.view(b, hkv, g, n, kv)
    neg = torch.finfo(torch.float32).min  # not -inf: a fully masked (padding) row stays finite
    if attention_mask is None:
        if n > 1:
            causal = torch.ones((n, kv), dtype=torch.bool, device=query.device).tril(kv - n)
            scores.masked_fill_(~causal, neg)
    elif attention_mask.dtype == torch.bool:
        scores.masked_fill_(~attention_mask[:, :, None, :, :kv], neg)
    else:
        scores.add_(attention_mask[:, :, None, :, :kv].float())
    probs = torch.softmax(scores, dim=-1).to(value.dtype).view(b, hkv, g * n, kv)
    out = torch.matmul(probs, value).view(b, hq, n, d).transpose(1, 2).contiguous()
    return out, None


def register_grouped_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(ATTN_NAME, _grouped_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTN_NAME, sdpa_mask)  # boolean masks, True = attend


def can_use_grouped_attention(model: Any, device: torch.device) -> bool:
    cfg = getattr(model, "config", None)
    if device.type != "cpu" or cfg is None or getattr(cfg, "_attn_implementation", None) not in ("sdpa", "eager"):
        return False
    # Sliding windows, logit soft-capping and attention sinks need their own kernels: keep the model's.
    return not any(getattr(cfg, a, None) for a in ("sliding_window", "attn_logit_softcapping", "layer_types"))


class _PreallocatedLayer(DynamicLayer):
    """A cache layer with free slots preallocated: a decode step writes its token in place instead of
    re-concatenating (copying) the whole cache, as DynamicLayer does at every step."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor, room: int) -> None:
        super().__init__()
        b, h, n, d = k.shape
        kb = k.new_empty((b, h, n + room, d))
        vb = v.new_empty((b, v.shape[1], n + room, v.shape[3]))
        kb[:, :, :n], vb[:, :, :n] = k, v
        self._attach(kb, vb, n)

    @classmethod
    def over(cls, k: torch.Tensor, v: torch.Tensor, n: int) -> "_PreallocatedLayer":
        """A layer over buffers the caller filled up to column n: no copy."""
        layer = cls.__new__(cls)
        DynamicLayer.__init__(layer)
        layer._attach(k, v, n)
        return layer

    def _attach(self, k: torch.Tensor, v: torch.Tensor, n: int) -> None:
        self._k, self._v, self._n, self._room = k, v, n, max(k.shape[2] - n, 1)
        self.dtype, self.device, self.is_initialized = k.dtype, k.device, True
        self._view()

    def _view(self) -> None:
        self.keys, self.values = self._k[:, :, : self._n], self._v[:, :, : self._n]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        # transformers 4 passes cache_kwargs positionally, 5 as keywords; neither is needed here.
        n = key_states.shape[-2]
        if self._n + n > self._k.shape[2]:  # out of room: grow (not expected within max_new_tokens)
            grow = max(n, self._room)
            self._k = torch.cat([self._k, self._k.new_empty(self._k.shape[:2] + (grow, self._k.shape[3]))], 2)
            self._v = torch.cat([self._v, self._v.new_empty(self._v.shape[:2] + (grow, self._v.shape[3]))], 2)
        self._k[:, :, self._n: self._n + n] = key_states
        self._v[:, :, self._n: self._n + n] = value_states
        self._n += n
        self._view()
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._k, self._v = self._k[indices], self._v[indices]
        self._view()


def cache_over(buffers: Sequence[tuple[torch.Tensor, torch.Tensor]], filled: int) -> Any:
    """A DynamicCache over preallocated (keys, values) buffers whose first `filled` columns hold the
    cache: the forward writes its new columns in place instead of concatenating a copy of it all."""
    return _cache_of([_PreallocatedLayer.over(k, v, filled) for k, v in buffers])


def new_cache(layers: Sequence[tuple[torch.Tensor, torch.Tensor]], room: int = 0) -> Any:
    """A DynamicCache holding copies of `layers`; with `room`, free slots per row are preallocated."""
    if room <= 0:
        return DynamicCache(ddp_cache_data=list(layers))
    return _cache_of([_PreallocatedLayer(k, v, room) for k, v in layers])


def _cache_of(layers: list[_PreallocatedLayer]) -> Any:
    """A DynamicCache made of these layers (DynamicCache's own constructor would build DynamicLayers)."""
    cache = DynamicCache.__new__(DynamicCache)
    Cache.__init__(cache, layers=layers)
    return cache


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


def out_cache(res: Any) -> Any:
    """The KV cache of a forward's output, under either version's field name (5's `past_key_values`
    property warns)."""
    return res["cache"] if "cache" in res else res.past_key_values


def cache_layers(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return [(k, v) for k, v in cache.to_legacy_cache()]
