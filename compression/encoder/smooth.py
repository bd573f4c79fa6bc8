"""Step 2 of 8 (see build.py) — smooth the encoder's activations for int8 (SmoothQuant, Xiao et al. 2023).

onnxruntime's dynamic int8 quantizes each MatMul's input activation with one
scale per tensor, so the few channels with large activations set the step for
all the others; the weights get a scale per output channel and have room to
spare. Dividing input channel j by s_j and multiplying row j of the weight by
s_j leaves the fp32 function unchanged,

    x W = (x / s) (diag(s) W),

but moves range from the activation into the weight. With
s_j = max|x_j|^α / max_k|W_jk|^(1-α) (activation maxima from calibration
sentences, padding included, as onnxruntime sees it), α near 1 flattens the
activations almost completely. With share_qkv the query, key and value
projections, which read the same input, get one scale (their weights'
maxima taken together), so the graph divides and int8-quantizes that input
once for the three instead of three times (compression.export.quantize merges the
three identical Muls before quantizing). For the query/key/value input and the
FFN's first linear the division stays in the graph as a Mul before the MatMul:
that input also feeds a residual connection, so it cannot be folded into the
LayerNorm before it. The attention's output projection reads softmax(QKᵀ)·V,
and since each softmax row sums to 1,

    softmax · (x W_v + b_v) / s = softmax · (x (W_v / s) + b_v / s),

so its division folds exactly into the value projection's output columns
(W_v's per-output-channel int8 scales absorb it): no Mul in the graph. The
FFN's second linear reads GELU's output, which no weight precedes; with
ffn_output=False it is left unsmoothed, which saves its Mul (the widest, 4·H)
at whatever int8 error its input's outliers then cause. Applied before
recovery, so the distillation's int8 simulation trains against the smoothed
graph.
"""

from __future__ import annotations

import torch
from torch import nn

from compression.model import hidden_states, padded_batches
from compression.sources.architectures import FORM


class SmoothedLinear(nn.Module):
    """linear(x · inv_scale), the linear's input columns already multiplied by the scale."""

    def __init__(self, linear: nn.Linear, inv_scale: torch.Tensor):
        super().__init__()
        self.linear = linear
        self.register_buffer("inv_scale", inv_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x * self.inv_scale)


def _input_maxima(
    bert: nn.Module, linears: dict[str, nn.Linear], ids: list[list[int]], batch_size: int
) -> dict[str, torch.Tensor]:
    """max |x_j| over every position (padding too) of each linear's input, over the calibration ids."""
    maxima: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def record(_module: nn.Module, args: tuple) -> None:
            m = args[0].detach().abs().flatten(0, -2).amax(dim=0)
            maxima[name] = m if name not in maxima else torch.maximum(maxima[name], m)

        return record

    handles = [lin.register_forward_pre_hook(hook(name)) for name, lin in linears.items()]
    try:
        for input_ids, mask in padded_batches(ids, batch_size):
            hidden_states(bert, input_ids, mask)
    finally:
        for h in handles:
            h.remove()
    return maxima


QKV = ("query", "key", "value")


def _shared_input_groups(linears: dict[str, nn.Linear], share_qkv: bool) -> list[list[str]]:
    """Linears that get one smoothing scale: each alone, or with share_qkv the query, key and value of
    one attention, which read the same input (one Mul, one int8 quantization of it, for the three)."""
    groups: dict[str, list[str]] = {}
    for name in linears:
        parent, _, attr = name.rpartition(".")
        key = parent if share_qkv and attr in QKV else name
        groups.setdefault(key, []).append(name)
    return list(groups.values())


ATTENTION_OUTPUT = FORM.attention_output  # reads softmax(QKᵀ)·V
VALUE = FORM.value


def _is_ffn_output(name: str) -> bool:
    """The FFN's second linear, `layer.N.output.dense` (not the attention's `…attention.output.dense`)."""
    return name.endswith("output.dense") and not name.endswith(ATTENTION_OUTPUT)


def _unwrapped(module: nn.Module) -> nn.Linear:
    return module.linear if isinstance(module, SmoothedLinear) else module


def outlier_ratio(x_max: torch.Tensor) -> float:
    """How far an input's largest channel stands out: max over channels of max|x_j|, over their median."""
    return float(x_max.max() / x_max.median().clamp(min=1e-12))


@torch.no_grad()
def smooth_encoder(
    bert: nn.Module,
    ids: list[list[int]],
    alpha: float,
    batch_size: int = 64,
    share_qkv: bool = False,
    ffn_output: bool = True,
    min_ratio: float | None = None,
) -> int:
    """Smooth every nn.Linear in bert.encoder (in place; the FFN's second one only with ffn_output):
    a SmoothedLinear, or for the attention's output projection its division folded into the value
    projection. With min_ratio, an input that would keep a Mul in the graph is smoothed only if its
    outlier_ratio reaches min_ratio (the folded attention output costs nothing and is always smoothed).
    Returns how many linears were smoothed."""
    linears = {name: m for name, m in bert.encoder.named_modules() if isinstance(m, nn.Linear)}
    if not ffn_output:
        linears = {name: m for name, m in linears.items() if not _is_ffn_output(name)}
    if not ids:
        raise ValueError("smoothing needs calibration sentences")
    maxima = _input_maxima(bert, linears, ids, batch_size)
    groups = _shared_input_groups(linears, share_qkv)
    if min_ratio is not None:
        groups = [g for g in groups if g[0].endswith(ATTENTION_OUTPUT) or outlier_ratio(maxima[g[0]]) >= min_ratio]
    for group in groups:
        # weight is (out, in): one maximum per input channel, over every linear of the group
        w_max = torch.stack([linears[name].weight.abs().amax(dim=0) for name in group]).amax(dim=0)
        x_max = maxima[group[0]]  # a group's linears read the same input
        s = x_max.clamp(min=1e-5) ** alpha / w_max.clamp(min=1e-5) ** (1 - alpha)
        s = s / s.log().mean().exp()  # geometric mean 1: the overall scale stays where it was
        inv_scale = (1.0 / s).to(linears[group[0]].weight.dtype)  # one tensor: one initializer when exported
        for name in group:
            lin = linears[name]
            lin.weight.mul_(s)
            if name.endswith(ATTENTION_OUTPUT):
                # value's output channel j feeds this input channel j (per head, the same order)
                value = _unwrapped(bert.encoder.get_submodule(name[: -len(ATTENTION_OUTPUT)] + VALUE))
                value.weight.mul_(inv_scale[:, None])
                if value.bias is not None:
                    value.bias.mul_(inv_scale)
                continue
            parent_name, _, attr = name.rpartition(".")
            parent = bert.encoder.get_submodule(parent_name) if parent_name else bert.encoder
            setattr(parent, attr, SmoothedLinear(lin, inv_scale))
    return sum(len(g) for g in groups)
