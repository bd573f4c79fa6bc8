"""`python -m bench.long_inputs`: what windowing keeps of a long document (service/windows.py).

Documents are made by joining consecutive STS-B dev sentences until they hold about N tokens (held-out
text: no model here trained on dev). For each, against the mean of its sentences' own vectors (what the
document says, sentence by sentence), the cosine of
- the windowed vector (`"truncate": false`), and
- the truncated one (the first max_seq_length tokens, `"truncate": true`);
and the windowed path's time per 1,000 tokens, through the service's own backend (onnxruntime, one
session). --publish writes the table to docs/benchmark.md's long-inputs block, with the CPU."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from common.machine import cpu_info
from common.markdown import replace_block, table
from common.onnx_encoder import SessionConfig
from service.runtime import OnnxBackend, Tokenized
from service.windows import Piece, plan

REPO = Path(__file__).resolve().parents[1]
DOC_LENGTHS = (256, 1024, 4096)


def documents(sentences: list[str], tokens: int, backend: OnnxBackend, count: int) -> list[list[str]]:
    out, i = [], 0
    while len(out) < count and i < len(sentences):
        doc, n = [], 0
        while n < tokens and i < len(sentences):
            doc.append(sentences[i])
            n += len(backend.tokenizer.encode(sentences[i]).ids) - 2
            i += 1
        out.append(doc)
    return out


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def embed(backend: OnnxBackend, items: list[Tokenized]) -> np.ndarray:
    out = backend.run(items)
    return unit(out)


def measure(model_dir: Path, max_length: int, sentences: list[str], count: int, overlap: int) -> list[dict]:
    backend = OnnxBackend(model_dir, max_length, SessionConfig(threads=0, spin=False))
    rows = []
    for length in DOC_LENGTHS:
        docs = documents(sentences, length, backend, count)
        win_cos, cut_cos, seconds, tokens = [], [], 0.0, 0
        for doc in docs:
            reference = unit(embed(backend, backend.tokenize(doc, truncate=True)).mean(0))
            text = " ".join(doc)
            whole = backend.tokenize([text], truncate=False)
            start = time.perf_counter()
            p = plan([Piece(t.ids, t.head, t.tail) for t in whole], max_length, overlap, 10**6, 10**6)
            windowed = p.pool(embed(backend, [Tokenized(w) for w in p.windows]), normalize=True)[0]
            seconds += time.perf_counter() - start
            tokens += len(whole[0].ids)
            cut = embed(backend, backend.tokenize([text], truncate=True))[0]
            win_cos.append(float(windowed @ reference))
            cut_cos.append(float(cut @ reference))
        rows.append(
            {
                "document tokens": f"~{length}",
                "documents": len(docs),
                "windowed vs its sentences": f"{np.mean(win_cos):.4f}",
                "truncated vs its sentences": f"{np.mean(cut_cos):.4f}",
                "windowed ms per 1k tokens": f"{1000 * seconds / tokens * 1000:.1f}",
            }
        )
    return rows


def main() -> None:
    from compression.corpus import read_sts

    parser = argparse.ArgumentParser(prog="python -m bench.long_inputs", description=__doc__)
    parser.add_argument("--models-dir", type=Path, default=REPO / "models")
    parser.add_argument("--model", default="minilm-l6-fact")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--documents", type=int, default=20)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--publish", action="store_true")
    a = parser.parse_args()
    from common.manifest import Manifest

    model_dir = a.models_dir / a.model
    max_length = Manifest.read(model_dir).max_seq_length
    dev = read_sts(a.data_dir, "dev")
    sentences = list(dict.fromkeys(dev.s1 + dev.s2))
    rows = measure(model_dir, max_length, sentences, a.documents, a.overlap)
    cpu = cpu_info()
    body = (
        f"{a.model} (max_seq_length {max_length}, window overlap {a.overlap}); {cpu['model']}, "
        f"{cpu['cores']} cores, int8 features: {' '.join(cpu['features'])}\n\n" + table(list(rows[0]), rows)
    )
    print(body)
    if a.publish:
        replace_block(REPO / "docs" / "benchmark.md", "long-inputs", body)


if __name__ == "__main__":
    main()
