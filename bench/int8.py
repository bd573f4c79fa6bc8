"""`python -m bench.int8`: how faithful onnxruntime's dynamic int8 encoder is on this CPU, per setting.

The int8 kernels differ by instruction set: AVX2's u8×s8 kernel adds pairs of products in int16 and
saturates where AVX-512 VNNI's does not. This measures, on the host, the cosine to the fp32 export of
the bundled all-MiniLM-L6-v2 (no table compression, no distillation: the encoder's int8 alone) for
plain dynamic int8 and SmoothQuant-smoothed int8, each with 8-bit and 7-bit (reduce_range) weights,
over STS-B test and SST-2 test sentences, and prints one markdown table with the CPU's features.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import tempfile
from pathlib import Path

import numpy as np

from common.machine import cpu_info, describe
from common.markdown import replace_block, table
from common.onnx_encoder import OnnxEncoder

RESULTS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "results.md"


def _int8(src: Path, dst_dir: Path, tokenizer: Path, reduce_range: bool) -> Path:
    from compression.export.quantize import quantize_encoder

    dst_dir.mkdir(parents=True, exist_ok=True)
    quantize_encoder(src, dst_dir / "model.onnx", per_channel=True, reduce_range=reduce_range)
    shutil.copy(tokenizer, dst_dir / "tokenizer.json")
    return dst_dir


def run(data_dir: Path, alphas: list[float], work: Path) -> str:
    from compression.build import BuildContext
    from compression.corpus import read_sst2, read_sts
    from compression.encoder.smooth import smooth_encoder
    from compression.export.onnx_export import export_onnx
    from compression.model import SentenceEncoder

    sts = read_sts(data_dir, "test")
    texts = sts.s1 + sts.s2 + read_sst2(data_dir, "test")[0]
    ctx = BuildContext(out_root=work, data_dir=data_dir, progress=False)
    src = ctx.source
    fp32 = work / "fp32"
    fp32.mkdir()
    export_onnx(SentenceEncoder(src.bert, src.pooling), fp32 / "model.onnx", src.vocab_size)
    shutil.copy(src.tokenizer_file, fp32 / "tokenizer.json")
    ref = OnnxEncoder(fp32, max_length=src.max_seq_length).encode(texts)
    graphs = {"plain": fp32 / "model.onnx"}
    _, calibration = ctx.sample_train(1024, 64, 0)
    for alpha in alphas:
        bert = copy.deepcopy(src.bert)
        smooth_encoder(bert, calibration, alpha, share_qkv=True)
        path = work / f"smooth{alpha:g}.onnx"
        export_onnx(SentenceEncoder(bert, src.pooling), path, src.vocab_size)
        graphs[f"SmoothQuant α {alpha:g}"] = path
    rows = []
    for name, graph in graphs.items():
        for reduce_range in (False, True):
            d = _int8(graph, work / f"{name}-{reduce_range}".replace(" ", "_"), src.tokenizer_file, reduce_range)
            vecs = OnnxEncoder(d, max_length=src.max_seq_length).encode(texts)
            cos = (vecs * ref).sum(1) / (np.linalg.norm(vecs, axis=1) * np.linalg.norm(ref, axis=1))
            rows.append(
                {
                    "encoder int8": name,
                    "weights": "7-bit (reduce_range)" if reduce_range else "8-bit",
                    "fidelity mean": round(float(cos.mean()), 5),
                    "fidelity p1": round(float(np.percentile(cos, 1)), 5),
                }
            )
    cols = ("encoder int8", "weights", "fidelity mean", "fidelity p1")
    return table(cols, rows) + f"\n\nMeasured on {describe(cpu_info())}, {len(texts)} STS-B and SST-2 test sentences."


def main(argv: list[str] | None = None) -> int:
    from compression.corpus import default_data_dir

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=None, help="shared data directory (default: ../shared/data)")
    p.add_argument("--alphas", type=float, nargs="+", default=[0.9, 0.5], help="SmoothQuant α values to measure")
    p.add_argument("--publish", action="store_true", help="also write the table into docs/results.md's int8 block")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="int8-check-") as work:
        out = run(args.data_dir or default_data_dir(), args.alphas, Path(work))
    print(out)
    if args.publish:
        replace_block(RESULTS_PAGE, "int8", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
