"""The LM head through oneDNN on CPU in fp32.

Run as: used by gradual.lm.load.load_model (every command's model).

Why: MKL's fp32 GEMM, which `F.linear` uses on CPU, runs the vocabulary projection of a small model
(576 -> 49,152 for SmolLM2-135M) at 58-83 GFLOPS on a 2-core AVX2 CPU, about half of what it reaches
on the layers' own projections, while oneDNN's matmul runs the same shape at 92-120 GFLOPS (M = 64 to
900 rows; `benchmarks/lm_head_speed.py`). The probe projects every kept position of every prompt row,
so the head was ~20% of its matrix-multiply time. The layers' projections stay on MKL: there
oneDNN is not faster.

The head keeps its class's state dict, parameters and tying (the class is swapped, not the module),
so saving, PEFT and merging see an ordinary nn.Linear. The gradient flows to the input (what LoRA
needs); where the weight itself trains (full fine-tuning) the standard F.linear runs instead.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

# Only a projection this wide is worth it: below, the two libraries are level (measured at N = 576 and 1,536).
MIN_OUT_FEATURES = 8192


def _onednn_linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, weight, None, "none", [], "")


class _HeadFn(torch.autograd.Function):
    """y = x W^T on oneDNN; backward gives dx = dy W (the weight is frozen on this path)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(weight)
        return _onednn_linear(x, weight)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (weight,) = ctx.saved_tensors
        return grad @ weight, None


class OneDNNHead(nn.Linear):
    """nn.Linear whose forward runs on oneDNN when it can (CPU, fp32, no bias, frozen weight)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.bias is None and x.device.type == "cpu" and x.dtype == torch.float32
                and self.weight.dtype == torch.float32 and x.dim() >= 2 and x.shape[-1] == self.in_features
                and not (self.weight.requires_grad and torch.is_grad_enabled())
                and not torch.is_autocast_enabled("cpu")):  # autocast would have cast F.linear's inputs
            return _HeadFn.apply(x, self.weight)
        return F.linear(x, self.weight, self.bias)


def onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def use_onednn_head(model: Any) -> bool:
    """Swap the model's output projection to OneDNNHead where that pays: an nn.Linear on the CPU in fp32,
    without bias, at least MIN_OUT_FEATURES wide. Returns whether it did."""
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    if (type(head) is not nn.Linear or head.bias is not None or head.out_features < MIN_OUT_FEATURES
            or head.weight.device.type != "cpu" or head.weight.dtype != torch.float32 or not onednn_available()):
        return False
    head.__class__ = OneDNNHead
    return True
