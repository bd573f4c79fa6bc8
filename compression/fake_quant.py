"""Simulated quantization in torch, so recovery can train against what onnxruntime will run.

Each function rounds in the forward pass and passes gradients straight through
(the straight-through estimator: x + (q(x) − x).detach()). The schemes mirror
compression.quantize: symmetric int8 per output channel for encoder weights,
asymmetric uint8 per tensor for their input activations (onnxruntime's
DynamicQuantizeLinear), and the factor table's int8-per-row or int4-per-block.
"""
from __future__ import annotations

import torch
from torch import nn


def _ste(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return x + (q - x).detach()


def fq_symmetric(x: torch.Tensor, dim: int, levels: int = 127) -> torch.Tensor:
    """Symmetric per-slice along `dim`: scale = max|x| / levels."""
    scale = x.detach().abs().amax(dim=dim, keepdim=True).clamp(min=1e-12) / levels
    return _ste(x, torch.clamp(torch.round(x / scale), -levels, levels) * scale)


def fq_asymmetric_tensor(x: torch.Tensor, qmax: int = 255) -> torch.Tensor:
    """Per-tensor uint8 with 0 inside the range, as DynamicQuantizeLinear computes it."""
    lo = torch.clamp(x.detach().min(), max=0.0)
    hi = torch.clamp(x.detach().max(), min=0.0)
    scale = torch.clamp((hi - lo) / qmax, min=1e-12)
    zp = torch.round(-lo / scale)
    q = (torch.clamp(torch.round(x / scale) + zp, 0, qmax) - zp) * scale
    return _ste(x, q)


def fq_blockwise_asymmetric(x_vr: torch.Tensor, block: int, qmax: int = 15) -> torch.Tensor:
    """int4 per block of `block` elements along each row (GatherBlockQuantized's layout)."""
    V, r = x_vr.shape
    blocks = x_vr.reshape(V, r // block, block)
    lo = torch.clamp(blocks.detach().amin(dim=-1, keepdim=True), max=0.0)
    hi = torch.clamp(blocks.detach().amax(dim=-1, keepdim=True), min=0.0)
    scale = torch.clamp((hi - lo) / qmax, min=1e-12)
    zp = torch.round(-lo / scale)
    q = (torch.clamp(torch.round(blocks / scale) + zp, 0, qmax) - zp) * scale
    return _ste(blocks, q).reshape(V, r)


def fake_quant_table(weight_vr: torch.Tensor, bits: int | None, block: int) -> torch.Tensor:
    if bits == 8:
        return fq_symmetric(weight_vr, dim=1)
    if bits == 4:
        return fq_blockwise_asymmetric(weight_vr, block)
    return weight_vr


class FakeQuantLinear(nn.Module):
    """Wraps an nn.Linear (sharing its parameters) with int8 weight and input simulation."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = fq_symmetric(self.linear.weight, dim=1)  # weight is (out, in): one scale per output channel
        return nn.functional.linear(fq_asymmetric_tensor(x), w, self.linear.bias)


def set_encoder_fake_quant(encoder: nn.Module, enabled: bool) -> None:
    """Swap every nn.Linear inside `encoder` (the transformer layers) for its fake-quant wrapper, or back."""
    for name, child in list(encoder.named_children()):
        if enabled and isinstance(child, nn.Linear):
            setattr(encoder, name, FakeQuantLinear(child))
        elif not enabled and isinstance(child, FakeQuantLinear):
            setattr(encoder, name, child.linear)
        else:
            set_encoder_fake_quant(child, enabled)
