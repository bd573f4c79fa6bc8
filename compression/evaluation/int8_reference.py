"""What every compressed variant is held to: onnxruntime's plain int8 of the same baseline (int8
encoder per channel, table per row), built in a scratch directory once per run and embedded as every
variant is — held-out texts, evaluation sets and the --eval pairs — on this CPU.

`ctx` is the build's BuildContext (compression/build.py): its inputs and its caches."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from common import contract
from common.fidelity import fidelity
from compression.evaluation.evaluate import Embedded
from compression.evaluation.languages import language_figures
from compression.export import quantize


def int8_embeddings(ctx, baseline: str) -> tuple[Embedded, np.ndarray | None]:
    """The int8 export's evaluation embeddings and its embeddings of the --eval pairs (None without)."""
    if baseline in ctx.evals.int8:
        return ctx.evals.int8[baseline]
    tmp = Path(tempfile.mkdtemp(prefix=f".{baseline}-int8.tmp-", dir=ctx.out_root))
    try:
        quantize.plain_int8(ctx.out_root / baseline / contract.MODEL_FILE, tmp / contract.MODEL_FILE)
        shutil.copy(ctx.out_root / baseline / contract.TOKENIZER_FILE, tmp / contract.TOKENIZER_FILE)
        # Embedded as every variant is (one length-ordered pass with the evaluation texts): int8's
        # activation scales are per batch, so the batches must be the ones its rival's figure had.
        result = ctx.evals.embed(tmp), ctx.evals.embed_pairs(tmp) if ctx.pair_sets else None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ctx.evals.int8[baseline] = result
    return result


def int8_heldout_fidelity(ctx, baseline: str) -> tuple[float, float]:
    """Held-out fidelity (mean, 1st percentile) of the int8 export to its baseline."""
    mean, p1 = fidelity(int8_embeddings(ctx, baseline)[0].held_out, ctx.evals.embedded(baseline).held_out)
    return round(mean, 5), round(p1, 5)


def language_report(ctx, model_dir: Path, baseline: str) -> dict[str, dict]:
    """Per-language figures of the model in model_dir beside its baseline's and int8's (empty without --eval)."""
    if not ctx.pair_sets:
        return {}
    return language_figures(
        ctx.pair_sets,
        ctx.evals.embed_pairs(model_dir),
        ctx.evals.embedded_pairs(baseline),
        int8_embeddings(ctx, baseline)[1],
    )
