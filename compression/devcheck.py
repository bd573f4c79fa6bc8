"""`python -m compression dev-check` — quality on the dev splits, for choosing a recipe's settings.

The manifest's figures are on test splits and only report the result; rank, α,
learning rates and the like are compared here instead, on STS-B dev pairs and
SST-2 dev sentences, so that no setting is tuned on a test split.
"""
from __future__ import annotations

from pathlib import Path

from common import contract
from common.markdown import table
from common.onnx_encoder import OnnxEncoder

from .corpus import read_sst2, read_sts
from .errors import ModelLayoutError
from .evaluate import fidelity, spearman_x100

COLUMNS = ("model", "stsb_dev_spearman", "fidelity_dev_mean", "fidelity_dev_p1")


def _encoder(model_dir: Path, threads: int) -> OnnxEncoder:
    if not (model_dir / contract.MODEL_FILE).is_file() or not (model_dir / contract.TOKENIZER_FILE).is_file():
        raise ModelLayoutError(f"{model_dir} is not a built model directory "
                               f"(needs {contract.MODEL_FILE} and {contract.TOKENIZER_FILE})")
    return OnnxEncoder(model_dir, threads=threads)


def dev_quality(model_dirs: list[Path], baseline_dir: Path, data_dir: Path, threads: int = 0) -> list[dict]:
    """One row per model: STS-B dev Spearman ×100 and fidelity to the baseline on the dev sentences."""
    sts = read_sts(data_dir, "dev")
    sst, _ = read_sst2(data_dir, "dev")
    n = len(sts.s1)
    texts = list(sts.s1) + list(sts.s2) + list(sst)
    base = _encoder(baseline_dir, threads).encode(texts)
    rows = []
    for model_dir in model_dirs:
        vecs = _encoder(model_dir, threads).encode(texts)
        mean, p1 = fidelity(vecs, base)
        rows.append({"model": model_dir.name,
                     "stsb_dev_spearman": round(spearman_x100(vecs[:n], vecs[n:2 * n], sts.scores), 2),
                     "fidelity_dev_mean": round(mean, 5), "fidelity_dev_p1": round(p1, 5)})
    return rows


def dev_table(rows: list[dict]) -> str:
    return table(COLUMNS, rows)
