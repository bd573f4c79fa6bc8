"""Step 1c of 8 (see build.py) — prune each FFN's least useful intermediate neurons, then refit.

The table's compression leaves the encoder as it was, so its int8 products set the speed floor: at
batch 1 the compressed model can be no faster than plain int8. The FFN holds two thirds of those
products (H·I twice per token against 4·H² for attention, I = 4·H). Dropping a share of its I
neurons shrinks both of its products by that share.

Which neurons: the FFN's output is Σ_j a_j·w_j + b (a_j: neuron j's GELU output, w_j: column j of the
output projection). A neuron whose a_j barely varies over real tokens adds almost a constant, which
the bias can take; so neurons are ranked by std(a_j)·‖w_j‖ over calibration tokens.

Refit: with the kept neurons' activations X (and a column of ones), the output projection and bias
are solved by ridge least squares to reproduce the full FFN's output A·Wᵀ on the same tokens,

    [W'ᵀ; b'] = (XᵀX + λI)⁻¹ Xᵀ (A Wᵀ),

so the kept neurons and the bias absorb what the dropped ones carried. XᵀX and XᵀA are sub-blocks
of one Gram matrix of [A, 1] accumulated over the tokens. Layers are pruned in order, each on the
activations of the already-pruned layers before it, so no layer's error is fitted on inputs it will
not see. Recovery (step 4) then distils the whole model as usual.
"""

from __future__ import annotations

import torch
from torch import nn

from compression.errors import ModelLayoutError
from compression.model import hidden_states, padded_batches

MULTIPLE = 32  # kept neurons are rounded to this: int8 kernels work in blocks of columns


def kept_neurons(intermediate: int, share: float) -> int:
    """How many of `intermediate` neurons a share keeps: rounded to MULTIPLE, at least MULTIPLE."""
    return min(intermediate, max(MULTIPLE, round(intermediate * share / MULTIPLE) * MULTIPLE))


def _ffn(layer: nn.Module) -> tuple[nn.Linear, nn.Linear]:
    """A BERT layer's FFN linears (intermediate.dense, output.dense)."""
    try:
        up, down = layer.intermediate.dense, layer.output.dense
    except AttributeError as exc:
        raise ModelLayoutError(
            f"FFN pruning needs BERT's layer.intermediate.dense / layer.output.dense: {exc}"
        ) from exc
    if not (isinstance(up, nn.Linear) and isinstance(down, nn.Linear)):
        raise ModelLayoutError("FFN pruning needs nn.Linear FFN layers")
    return up, down


@torch.no_grad()
def _gram(bert: nn.Module, down: nn.Linear, ids: list[list[int]], batch_size: int) -> tuple[torch.Tensor, int]:
    """Σ over real tokens of [a, 1]ᵀ[a, 1] in float64, a being `down`'s input, and the token count."""
    width = down.in_features + 1
    gram = torch.zeros(width, width, dtype=torch.float64)
    count = 0
    real = torch.zeros(0, dtype=torch.bool)  # the running batch's real-token mask

    def record(_module: nn.Module, args: tuple) -> None:
        nonlocal count
        a = args[0].detach()[real].double()  # real tokens only: (T, I)
        x = torch.cat([a, torch.ones(a.shape[0], 1, dtype=a.dtype)], dim=1)
        gram.add_(x.T @ x)
        count += a.shape[0]

    handle = down.register_forward_pre_hook(record)
    try:
        for input_ids, mask in padded_batches(ids, batch_size):
            real = mask.bool()
            hidden_states(bert, input_ids, mask)
    finally:
        handle.remove()
    return gram, count


@torch.no_grad()
def prune_ffn(bert: nn.Module, ids: list[list[int]], share: float, ridge: float = 1e-3, batch_size: int = 64) -> int:
    """Keep `share` of every FFN's neurons in bert.encoder (in place), refitting each output projection
    on the calibration token ids; returns the neurons kept per layer."""
    if not ids:
        raise ValueError("pruning needs calibration sentences")
    kept = 0
    for layer in bert.encoder.layer:
        up, down = _ffn(layer)
        inter = down.in_features
        kept = kept_neurons(inter, share)
        if kept == inter:
            continue
        gram, n = _gram(bert, down, ids, batch_size)
        mean = gram[-1, :inter] / n
        std = (gram.diagonal()[:inter] / n - mean**2).clamp(min=0).sqrt()
        w = down.weight.double()  # (H, I)
        keep = torch.argsort(std * w.norm(dim=0), descending=True)[:kept].sort().values
        rows = torch.cat([keep, torch.tensor([inter])])  # the kept neurons and the ones column
        xtx = gram[rows][:, rows]
        xtx += ridge * xtx.diagonal().mean() * torch.eye(len(rows), dtype=xtx.dtype)
        xty = gram[rows][:, :inter] @ w.T + gram[rows][:, inter:] @ down.bias.double()[None, :]
        solution = torch.linalg.solve(xtx, xty)  # (kept + 1, H): W'ᵀ and b'
        new_up = nn.Linear(up.in_features, kept, dtype=up.weight.dtype)
        new_up.weight.copy_(up.weight[keep])
        new_up.bias.copy_(up.bias[keep])
        new_down = nn.Linear(kept, down.out_features, dtype=down.weight.dtype)
        new_down.weight.copy_(solution[:-1].T)
        new_down.bias.copy_(solution[-1])
        layer.intermediate.dense, layer.output.dense = new_up, new_down
    if hasattr(bert.config, "intermediate_size"):
        bert.config.intermediate_size = kept
    return kept
