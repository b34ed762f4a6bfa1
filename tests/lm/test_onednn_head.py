"""The LM head on oneDNN: same outputs and input gradients as nn.Linear, swapped only where it pays."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from gradual.lm.onednn_head import MIN_OUT_FEATURES, OneDNNHead, onednn_available, use_onednn_head

pytestmark = pytest.mark.skipif(not onednn_available(), reason="torch built without oneDNN")


class _Tiny(nn.Module):
    """The two things use_onednn_head looks at: an output-embeddings accessor and its module."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.lm_head = head

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head


def _head(out: int = MIN_OUT_FEATURES, bias: bool = False, dtype: torch.dtype = torch.float32) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(24, out, bias=bias, dtype=dtype)


def test_swapped_head_matches_linear_in_outputs_and_input_gradients() -> None:
    ref = _head()
    ref.weight.requires_grad_(False)  # frozen, as under LoRA or in a merged model
    model = _Tiny(copy.deepcopy(ref))
    assert use_onednn_head(model)
    head = model.lm_head
    assert type(head) is OneDNNHead and isinstance(head, nn.Linear)
    x = torch.randn(3, 5, 24)
    with torch.inference_mode():
        torch.testing.assert_close(head(x), ref(x), rtol=1e-5, atol=1e-4)
        strided = torch.randn(3, 9, 24)[:, 2:7]  # logits_to_keep hands the head a strided view
        torch.testing.assert_close(head(strided), ref(strided), rtol=1e-5, atol=1e-4)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    g = torch.randn(3, 5, MIN_OUT_FEATURES)
    (head(xa) * g).sum().backward()
    (ref(xb) * g).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-5, atol=1e-4)


def test_a_trained_head_weight_still_gets_its_gradient() -> None:
    ref = _head()
    model = _Tiny(copy.deepcopy(ref))
    assert use_onednn_head(model)
    x = torch.randn(2, 24)
    model.lm_head(x).square().sum().backward()
    ref(x).square().sum().backward()
    assert model.lm_head.weight.grad is not None
    torch.testing.assert_close(model.lm_head.weight.grad, ref.weight.grad)


def test_state_dict_and_tied_weight_are_untouched() -> None:
    emb = nn.Embedding(MIN_OUT_FEATURES, 24)
    head = _head()
    head.weight = emb.weight  # tied, as in SmolLM2
    model = _Tiny(head)
    keys = list(model.state_dict())
    assert use_onednn_head(model)
    assert list(model.state_dict()) == keys
    assert model.lm_head.weight is emb.weight


@pytest.mark.parametrize("head", [
    _head(out=MIN_OUT_FEATURES // 2),  # narrow: both libraries are level there
    _head(bias=True),
    _head(dtype=torch.bfloat16),
])
def test_left_alone_where_it_would_not_pay(head: nn.Linear) -> None:
    model = _Tiny(head)
    assert not use_onednn_head(model)
    assert type(model.lm_head) is nn.Linear
