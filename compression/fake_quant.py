"""Simulated quantization in torch, so recovery can train against what onnxruntime will run.

Each function rounds in the forward pass and passes gradients straight through
(the straight-through estimator: x + (q(x) − x).detach()). The schemes mirror
compression.export.quantize: for the encoder either symmetric int8 per output channel
for weights and asymmetric uint8 per tensor for their input activations
(onnxruntime's DynamicQuantizeLinear), or — the block scheme of MatMulNBits at
accuracy level 4 — symmetric int8 per block of input rows for weights and per
block of each activation row; and the factor table's int8-per-row or
int4-per-block.
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


def fq_symmetric_blocks(x: torch.Tensor, block: int, weight: bool = False) -> torch.Tensor:
    """Symmetric int8 per block of `block` consecutive elements of the last axis (a multiple of block).

    Activations: scale = max|x| / 127 (MLAS's per-row-block quantization at accuracy level 4).
    Weights: onnxruntime's symmetric 8-bit MatMulNBits quantizer maps a block's largest-magnitude
    weight to -128 exactly (scale = that weight / -128), so the grid step is max|w| / 128.
    """
    shape = x.shape
    blocks = x.reshape(*shape[:-1], shape[-1] // block, block)
    levels = 128 if weight else 127
    scale = blocks.detach().abs().amax(dim=-1, keepdim=True).clamp(min=1e-12) / levels
    q = torch.clamp(torch.round(blocks / scale), -levels, levels) * scale
    return _ste(blocks, q).reshape(shape)


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
    """Wraps an nn.Linear (sharing its parameters) with int8 weight and input simulation.

    block None: dynamic int8 (per output channel / per tensor); an int: the block scheme,
    blocks of `block` along the input dimension for both the weight and each input row.
    """

    def __init__(self, linear: nn.Linear, block: int | None = None, weight_levels: int = 127):
        super().__init__()
        self.linear = linear
        self.block = block
        self.weight_levels = weight_levels  # 64 for reduce_range's 7-bit weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.block is None:
            # weight is (out, in): one scale per output channel
            w = fq_symmetric(self.linear.weight, dim=1, levels=self.weight_levels)
            return nn.functional.linear(fq_asymmetric_tensor(x), w, self.linear.bias)
        # weight (out, in): its rows are split along `in` exactly as MatMulNBits splits B's K axis
        w = fq_symmetric_blocks(self.linear.weight, self.block, weight=True)
        return nn.functional.linear(fq_symmetric_blocks(x, self.block), w, self.linear.bias)


def set_encoder_fake_quant(
    encoder: nn.Module, enabled: bool, block: int | None = None, weight_levels: int = 127
) -> None:
    """Swap every nn.Linear inside `encoder` (the transformer layers) for its fake-quant wrapper, or back."""
    for name, child in list(encoder.named_children()):
        if enabled and isinstance(child, nn.Linear):
            setattr(encoder, name, FakeQuantLinear(child, block, weight_levels))
        elif not enabled and isinstance(child, FakeQuantLinear):
            setattr(encoder, name, child.linear)
        else:
            set_encoder_fake_quant(child, enabled, block, weight_levels)
