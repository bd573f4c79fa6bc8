"""The evaluation embeddings of each built variant — held-out texts, STS-B and SST-2 test sentences, and
the --eval pairs — computed once per model file (kept on disk, keyed by its sha256) and remembered for
the variants compared with it. The int8 reference's are kept here too (int8_reference.py).

`ctx` is the build's BuildContext (compression/build.py): the inputs and the disk cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common import contract
from common.manifest import sha256_file
from common.onnx_encoder import OnnxEncoder
from compression.cache import texts_key
from compression.errors import PipelineError
from compression.evaluation.evaluate import Embedded, embed_eval_set
from compression.evaluation.languages import all_texts


class EvalEmbeddings:
    def __init__(self, ctx):
        self.ctx = ctx
        self._by_name: dict[str, Embedded] = {}
        self.int8: dict[str, tuple] = {}  # onnxruntime's plain int8 of a baseline, once per run

    def _encoder(self, model_dir: Path) -> OnnxEncoder:
        return OnnxEncoder(model_dir, max_length=self.ctx.source.max_seq_length, threads=self.ctx.threads)

    def _bar(self, label: str) -> str | None:
        return label if self.ctx.progress else None

    def remember(self, name: str, emb: Embedded) -> None:
        """Keep a just-built variant's eval embeddings for the variants compared with it."""
        self._by_name[name] = emb

    def embed(self, model_dir: Path) -> Embedded:
        ctx = self.ctx
        return embed_eval_set(
            self._encoder(model_dir), ctx.eval_set, ctx.corpus.held_out, self._bar(f"evaluate {model_dir.name}")
        )

    def embedded(self, name: str) -> Embedded:
        """The eval-set embeddings of a built variant (cached on disk, keyed by its model's sha256)."""
        if name in self._by_name:
            return self._by_name[name]
        ctx = self.ctx
        model_dir = ctx.out_root / name
        if not (model_dir / contract.MODEL_FILE).is_file():
            raise PipelineError(f"baseline {name} is not built in {ctx.out_root}; build it first")
        key = [
            sha256_file(model_dir / contract.MODEL_FILE),
            texts_key(ctx.corpus.held_out),
            ctx.eval_set is not None,
            ctx.source.max_seq_length,
        ]
        emb = Embedded(**ctx.disk.get("eval", key, lambda: self.embed(model_dir).arrays()))
        self._by_name[name] = emb
        return emb

    def embed_pairs(self, model_dir: Path) -> np.ndarray:
        ctx = self.ctx
        return self._encoder(model_dir).encode(
            all_texts(ctx.pair_sets, ctx.prompt_text), progress=self._bar(f"languages {model_dir.name}")
        )

    def embedded_pairs(self, name: str) -> np.ndarray:
        """A built variant's embeddings of the --eval pairs (cached on disk, keyed by its model's sha256)."""
        ctx = self.ctx
        model_dir = ctx.out_root / name
        key = [
            sha256_file(model_dir / contract.MODEL_FILE),
            texts_key(all_texts(ctx.pair_sets, ctx.prompt_text)),
            ctx.source.max_seq_length,
        ]
        return ctx.disk.get("pairs", key, lambda: {"vecs": self.embed_pairs(model_dir)})["vecs"]
