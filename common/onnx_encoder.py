"""A torch-free sentence encoder over a model directory: tokenizers + onnxruntime.

The pipeline uses it to evaluate what it exported exactly as the service will
run it; the service's runtime builds on the same tokenization and session code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import contract
from .memory import release_free_heap

log = logging.getLogger(__name__)

PAD_TOKENS = ("[PAD]", "<pad>")  # WordPiece (BERT) and SentencePiece (XLM-R: id 1) names


def pad_token(tok) -> tuple[int, str]:
    """(id, text) of a tokenizer's padding token: its own padding setting, else the token named as BERT
    or SentencePiece vocabularies name it, else id 0."""
    if tok.padding is not None:
        return int(tok.padding["pad_id"]), str(tok.padding["pad_token"])
    for name in PAD_TOKENS:
        if tok.token_to_id(name) is not None:
            return int(tok.token_to_id(name)), name
    return 0, "[PAD]"


def load_tokenizer(path: Path, max_length: int):
    """A `tokenizers.Tokenizer` that pads to the longest item (with its own pad token) and truncates to
    max_length."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    tok.enable_truncation(max_length=max_length)
    pad_id, pad = pad_token(tok)
    tok.enable_padding(pad_id=pad_id, pad_token=pad)
    return tok


@dataclass(frozen=True)
class SessionConfig:
    threads: int = 0  # intra-op threads; 0 lets onnxruntime pick (one per core)
    # Idle intra-op threads spin for a while after each run: best for a tight in-process loop,
    # but in a server they burn the cores the event loop and the tokenizer need.
    spin: bool = True
    # The memory arena keeps the largest batch's buffers for reuse: faster, but resident for good.
    arena: bool = True
    # A batch of more tokens (rows × padded length) than this gives its arena growth back when it ends
    # (onnxruntime's arena shrinkage), so one long batch does not stay resident; None: never shrink.
    arena_keep_tokens: int | None = None


# How the service runs models (its EMBED_ORT_* defaults); the benchmark measures the same. 1024 tokens
# holds a batch of 32 one-sentence requests, the common case that should reuse its buffers.
SERVING = SessionConfig(spin=False, arena=True, arena_keep_tokens=1024)


def shrinking_run_options(config: SessionConfig):
    """RunOptions that return the CPU arena's extensions to the system at the end of a run, for the
    batches over config.arena_keep_tokens; None when the config never shrinks (or has no arena)."""
    if not config.arena or config.arena_keep_tokens is None:
        return None
    import onnxruntime as ort

    options = ort.RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return options


# onnxruntime graph fusions left out of every session. SkipLayerNormFusion merges a residual Add into
# the LayerNormalization after it; on the CPU the fused kernel ran about 1 ms per call at batch 32
# against 0.14 ms for LayerNormalization plus 0.11 for the Add it replaces (`python -m bench.ops
# --fusion SkipLayerNormFusion`, docs/benchmark.md): the same arithmetic, fused only at a cost.
DISABLED_FUSIONS: tuple[str, ...] = ("SkipLayerNormFusion",)


def make_session(
    model_file: Path,
    config: SessionConfig = SessionConfig(),
    optimize: bool = True,
    disabled_fusions: tuple[str, ...] = DISABLED_FUSIONS,
    profile_prefix: str | None = None,
):
    """An onnxruntime CPU session (profile_prefix: profile its runs into that file prefix)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = config.threads
    opts.inter_op_num_threads = 1
    opts.enable_cpu_mem_arena = config.arena
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if config.spin else "0")
    opts.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    if profile_prefix is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    session = ort.InferenceSession(
        str(model_file),
        sess_options=opts,
        providers=["CPUExecutionProvider"],
        disabled_optimizers=list(disabled_fusions) or None,
    )
    release_free_heap()  # the parsed model file is freed now; hand its pages back
    return session


def pad_ids(rows) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token id rows (any int sequences) to the longest: ids and attention mask, int64 [batch, seq]."""
    width = max(len(r) for r in rows)
    ids = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return ids, mask


def batch_arrays(encodings) -> dict[str, np.ndarray]:
    """Stack tokenizer encodings into the int64 feeds the graph takes."""
    return {
        contract.INPUT_IDS: np.asarray([e.ids for e in encodings], dtype=np.int64),
        contract.ATTENTION_MASK: np.asarray([e.attention_mask for e in encodings], dtype=np.int64),
    }


class OnnxEncoder:
    """Embed lists of texts with a model directory's model.onnx and tokenizer.json."""

    def __init__(
        self, model_dir: Path, max_length: int = 256, threads: int = 0, model_file: Path | None = None, prompt: str = ""
    ):
        self.model_dir = Path(model_dir)
        self.prompt = prompt  # put before every text encode() embeds (an e5 model's "query: ")
        self.tokenizer = load_tokenizer(self.model_dir / contract.TOKENIZER_FILE, max_length)
        self.session = make_session(model_file or self.model_dir / contract.MODEL_FILE, SessionConfig(threads))

    def encode(self, texts: list[str], batch_size: int = 64, progress: str | None = None) -> np.ndarray:
        """(n, dim) float32 embeddings; batches are sorted by length to cut padding. progress: a bar's
        label (the pipeline's long passes; needs tqdm, which the service does not install)."""
        return self._in_length_order(
            [len(t) for t in texts],
            batch_size,
            lambda idx: batch_arrays(self.tokenizer.encode_batch([self.prompt + texts[i] for i in idx])),
            progress,
        )

    def encode_ids(self, rows: list[list[int]], batch_size: int = 64, progress: str | None = None) -> np.ndarray:
        """(n, dim) unit vectors of already tokenized rows (ids with [CLS]/[SEP]), batched like encode()."""

        def feeds(idx: np.ndarray) -> dict[str, np.ndarray]:
            ids, mask = pad_ids([rows[i] for i in idx])
            return {contract.INPUT_IDS: ids, contract.ATTENTION_MASK: mask}

        return self._in_length_order([len(r) for r in rows], batch_size, feeds, progress)

    def _in_length_order(self, lengths: list[int], batch_size: int, feeds, progress: str | None = None) -> np.ndarray:
        """Run batches of similar length (feeds(indices) → the graph's inputs) and put each row back."""
        order = np.argsort(lengths, kind="stable")
        out: np.ndarray | None = None
        starts = range(0, len(lengths), batch_size)
        if progress is not None:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=progress, unit="batch", leave=False, disable=None)  # None: only on a tty
        every = max(1, len(lengths) // batch_size // 4)
        for n, start in enumerate(starts):
            idx = order[start : start + batch_size]
            emb = self.session.run([contract.OUTPUT_EMBEDDING], feeds(idx))[0]
            if progress is not None and n and n % every == 0:  # the log hears a long pass as well as the bar
                log.info("%s: %d of %d texts", progress, start, len(lengths))
            if out is None:
                out = np.empty((len(lengths), emb.shape[1]), dtype=np.float32)
            out[idx] = emb
        return out if out is not None else np.zeros((0, 0), np.float32)
