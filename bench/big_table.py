"""`python -m bench.big_table --tokenizer-from ME5_DIR --corpus TEXTS --work DIR`: does a bge-m3-sized
table (250,002 × 1,024) fit a build on this machine? Builds a random one-layer XLM-R with that table
(its quality means nothing; its memory is the point) around a real 250k SentencePiece tokenizer (the
multilingual-e5-small folder's), compresses it at 32× with a short recovery, and prints each step's
time and the process's peak memory (the manifest's `steps`)."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path


def build_source(tokenizer_from: Path, out: Path) -> Path:
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import XLMRobertaConfig, XLMRobertaModel

    torch.manual_seed(0)
    work = out.parent / f".{out.name}-hf"
    config = XLMRobertaConfig(
        vocab_size=250002,
        hidden_size=1024,
        num_hidden_layers=1,
        num_attention_heads=16,
        intermediate_size=4096,
        max_position_embeddings=514,
        type_vocab_size=1,
        pad_token_id=1,
    )
    XLMRobertaModel(config).save_pretrained(str(work))
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(tokenizer_from / name, work / name)
    modules = [models.Transformer(str(work), max_seq_length=512), models.Pooling(1024, "mean"), models.Normalize()]
    SentenceTransformer(modules=modules, device="cpu").save(str(out))
    return out


def main() -> None:
    from compression.api import compress

    parser = argparse.ArgumentParser(prog="python -m bench.big_table", description=__doc__)
    parser.add_argument("--tokenizer-from", type=Path, required=True, help="a folder with a 250k tokenizer.json")
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    a = parser.parse_args()
    source = a.work / "xlmr-1024"
    if not (source / "model.safetensors").is_file():
        build_source(a.tokenizer_from, source)
    empty = a.work / "no-data"
    empty.mkdir(parents=True, exist_ok=True)
    overrides = {
        "recover": {"steps": 10, "num_sentences": 256},
        "factorize": {"metric_sentences": 32, "kmeans_iters": 4},
    }
    manifest = compress(
        source,
        a.work / "out",
        corpus=a.corpus,
        data_dir=empty,
        heads=False,
        progress=False,
        target_ratio=32,
        overrides=overrides,
    )
    print(json.dumps({"table_bytes": manifest.bytes.embedding, "steps": manifest.steps}, indent=2))


if __name__ == "__main__":
    main()
