"""Step 5 of 8 (see build.py) — export a SentenceEncoder to ONNX and prove parity with PyTorch.

Names, dynamic axes and opset are the contract's constants (common.contract).
After export the graph is run by onnxruntime on several batch sizes and
lengths and compared with the torch module; a mismatch raises ShapeError or
ToleranceError saying what differs.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from common import contract
from common.onnx_encoder import make_session
from compression.errors import ShapeError, ToleranceError
from compression.model import SentenceEncoder, random_batch

log = logging.getLogger(__name__)

# (batch, seq) shapes checked after export: single, small, odd lengths, long.
PARITY_SHAPES = ((1, 7), (3, 16), (8, 33), (2, 128))
MIN_COSINE = 0.9999


def output_names(encoder: SentenceEncoder) -> list[str]:
    return [contract.OUTPUT_EMBEDDING] + ([contract.OUTPUT_POOLED] if encoder.pooling.normalize else [])


def export_onnx(encoder: SentenceEncoder, path: Path, vocab_size: int) -> None:
    """TorchScript-based export (stable op patterns that onnxruntime's BERT fusions recognise)."""
    encoder.eval()
    names = output_names(encoder)
    ids = torch.randint(1, vocab_size, (2, 16), dtype=torch.long)
    mask = torch.ones_like(ids)
    # The tracer warns about Python-bool conversions in transformers' masking code and about advanced
    # indexing; the parity check after export is what proves the graph, so keep the user's terminal clean.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        encoder.export_pooled = len(names) == 2
        try:
            torch.onnx.export(
                encoder,
                (ids, mask),
                str(path),
                input_names=[contract.INPUT_IDS, contract.ATTENTION_MASK],
                output_names=names,
                dynamic_axes={
                    k: v for k, v in contract.DYNAMIC_AXES.items() if k not in contract.OUTPUTS or k in names
                },
                opset_version=contract.OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        finally:
            encoder.export_pooled = False


@dataclass(frozen=True)
class ParityResult:
    shape: tuple[int, int]
    min_cosine: float
    max_abs_diff: float
    ok: bool


def check_parity(
    encoder: SentenceEncoder,
    onnx_path: Path,
    vocab_size: int,
    max_length: int = 512,
    min_cosine: float = MIN_COSINE,
    seed: int = 0,
) -> list[ParityResult]:
    """Compare onnxruntime with torch per shape (lengths capped at max_length); raise after logging all."""
    session = make_session(onnx_path)
    rng = np.random.default_rng(seed)
    results = []
    for batch, seq in PARITY_SHAPES:
        seq = min(seq, max_length)
        ids, mask = random_batch(batch, seq, vocab_size, rng)
        with torch.no_grad():
            pooled, embedding = encoder.pooled_and_embedding(torch.from_numpy(ids), torch.from_numpy(mask))
        refs = {contract.OUTPUT_EMBEDDING: embedding.numpy(), contract.OUTPUT_POOLED: pooled.numpy()}
        names = [o.name for o in session.get_outputs()]
        outs = session.run(names, {contract.INPUT_IDS: ids, contract.ATTENTION_MASK: mask})
        cos_min, diff_max = 1.0, 0.0
        for name, got in zip(names, outs):
            ref = refs[name]
            if got.shape != ref.shape:
                raise ShapeError(
                    f"{onnx_path.name}: output {name!r} shape {got.shape} != torch {ref.shape} for input {(batch, seq)}"
                )
            cos = (got * ref).sum(-1) / (np.linalg.norm(got, axis=-1) * np.linalg.norm(ref, axis=-1) + 1e-12)
            # the pooled vector's length must match too: it is what normalize=false returns
            scale = np.abs(np.linalg.norm(got, axis=-1) / (np.linalg.norm(ref, axis=-1) + 1e-12) - 1.0)
            cos_min = min(cos_min, float(cos.min()), 1.0 - float(scale.max()))
            diff_max = max(diff_max, float(np.abs(got - ref).max()))
        res = ParityResult((batch, seq), cos_min, diff_max, bool(cos_min >= min_cosine))
        log.info(
            "parity %s %s: min cosine %.6f, max |diff| %.2e",
            "✓" if res.ok else "✗",
            res.shape,
            res.min_cosine,
            res.max_abs_diff,
        )
        results.append(res)
    bad = [r for r in results if not r.ok]
    if bad:
        r = bad[0]
        raise ToleranceError(
            f"{onnx_path.name}: cosine to torch {r.min_cosine:.6f} < {min_cosine} at input shape {r.shape}"
        )
    return results
