"""Step 1b of 8 (see build.py) — the FFN's exact GELU swapped for its tanh approximation, for speed.

BERT's GELU is x·Φ(x), with Φ through erf. onnxruntime runs it as one Gelu kernel whose erf is fast
with AVX-512 and up to 1.9× slower with AVX2 only (bench/cpuid): at batch 1 on AVX2 kernels the six
GELUs cost more than the compressed model's whole margin over plain int8. The tanh approximation
0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) (Hendrycks & Gimpel; GPT-2's `gelu_new`) differs from it
by at most 5e-4 per activation, far under the int8 encoder's rounding, and onnxruntime fuses its
exported pattern into one FastGelu kernel, as fast on AVX2 as on AVX-512. The swap is made on the
torch model before smoothing and recovery, so calibration, distillation and the export's parity
check all see the function that is served.
"""

from __future__ import annotations

from torch import nn


def tanh_gelu(bert: nn.Module) -> int:
    """Replace, in place, every exact-GELU activation module of `bert` (transformers' GELUActivation,
    torch's nn.GELU without approximation) by transformers' NewGELUActivation; how many were replaced.
    A model that calls GELU as a function has no such module: 0, and it stays as it was."""
    from transformers.activations import GELUActivation, NewGELUActivation

    swapped = 0
    for parent in list(bert.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is GELUActivation or (type(child) is nn.GELU and child.approximate == "none"):
                setattr(parent, name, NewGELUActivation())
                swapped += 1
    return swapped
