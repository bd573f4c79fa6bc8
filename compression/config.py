"""The steps' settings as data (nanoGPT's GPTConfig style): frozen dataclasses, one comment on
each field whose meaning is not obvious. Torch-free, so `python -m compression --help`, `report`
and recipe parsing never import torch."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from compression.errors import ConfigError


class Method(StrEnum):
    """How the table is factorized (compression/table/factorize.py)."""

    SVD = "svd"
    WEIGHTED = "weighted"
    BANDED = "banded"
    PQ = "pq"


class Metric(StrEnum):
    """How a row's error is measured: plain, or by how much it moves sentence embeddings."""

    EUCLIDEAN = "euclidean"
    SENSITIVITY = "sensitivity"


METHODS = tuple(Method)
METRICS = tuple(Metric)


def as_enum(kind: type[StrEnum], value: Any, what: str) -> StrEnum:
    """A setting's string (from a recipe file, --set or code) as its Enum, or a one-line ConfigError."""
    try:
        return kind(value)
    except ValueError:
        raise ConfigError(f"unknown {what} {value!r}; choose one of {', '.join(kind)}") from None


TABLE_BITS = (None, 8, 4)


@dataclass(frozen=True)
class FactorizeConfig:
    method: Method = Method.WEIGHTED
    rank: int | None = 64
    # If set instead of rank: the rank whose fp32 factor bytes are ≈ V·H / ratio.
    target_ratio: float | None = None
    # Weight w_v = (count_v + smoothing) ** alpha; alpha=0 gives plain SVD, 1 is pure frequency.
    alpha: float = 0.5
    # Added to every count: unseen tokens still matter on text outside the corpus.
    smoothing: float = 10.0
    # banded only: rows that keep the full rank (most frequent first), and the rank of all others.
    high_rows: int = 16000
    low_rank: int = 64
    # pq only: groups M per row (rank must be a multiple), centroids K per group (≤ 256: one-byte codes).
    subspaces: int = 64
    codebook_size: int = 256
    # pq only: the tier_rows most frequent tokens get tier_subspaces more codes (same group width), a
    # residual over the basis's first tier_subspaces·d directions; the others keep the `subspaces` codes.
    tier_rows: int = 0
    tier_subspaces: int = 0
    kmeans_iters: int = 20
    seed: int = 0
    # How a row's error is measured: "euclidean", or "sensitivity" (by how much it moves sentence
    # embeddings, estimated from metric_sentences train sentences; see compression/table/sensitivity.py).
    metric: Metric = Metric.EUCLIDEAN
    metric_sentences: int = 512

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", as_enum(Method, self.method, "method"))  # frozen: set once, here
        object.__setattr__(self, "metric", as_enum(Metric, self.metric, "metric"))
        if self.metric_sentences <= 0:
            raise ConfigError(f"metric_sentences must be positive, got {self.metric_sentences}")


@dataclass(frozen=True)
class RecoverConfig:
    steps: int = 0  # 0 disables recovery
    batch_size: int = 64
    lr: float = 2e-3  # factors start from the (weighted) SVD, so a fairly large step is safe
    encoder_lr: float = 0.0  # > 0 also fine-tunes the encoder's weights (slower, more capacity)
    # B is shared by every token: moving it shifts the rows of tokens the corpus never shows,
    # whose low-rank codes A_v cannot follow. 0 keeps B at its (weighted) SVD value. With pq
    # factors an unseen token's row is made of trained centroids, so B may move with them.
    b_lr: float = 0.0
    max_length: int = 64  # training truncation; nearly every train sentence is shorter
    num_sentences: int = 40000  # size of the distillation corpus drawn from the train splits
    qat: bool = True  # simulate the export's quantization while training
    # Weight of the table anchor (see distill): tokens the corpus never shows get no signal from
    # the distillation loss, so this term keeps their rows near the original's as centroids move.
    anchor: float = 0.0
    anchor_tokens: int = 4096  # vocabulary rows drawn (uniformly) per step for the anchor term
    # Augmented copies (compression/recovery/augment.py): this share of the corpus again, each copy with
    # augment_tokens positions swapped for tokens the corpus shows fewer than augment_below times.
    augment_share: float = 0.0
    augment_tokens: int = 2
    augment_below: int = 10
    # Weight of the token-level term: the mean 1 − cos between the student's and the teacher's last
    # hidden state at every real token (the teacher, the source model in fp32, runs beside the student).
    # Each sentence then trains on its every token rather than on one pooled vector.
    token_weight: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if (
            self.steps < 0
            or self.batch_size <= 0
            or self.lr <= 0
            or self.max_length < 8
            or self.anchor < 0
            or self.anchor_tokens <= 0
            or self.token_weight < 0
            or not 0 <= self.augment_share <= 1
            or self.augment_tokens < 1
            or self.augment_below < 1
        ):
            raise ConfigError(f"recovery settings out of range: {self}")


@dataclass(frozen=True)
class PruneConfig:
    """Structured pruning of the encoder's FFNs (compression/encoder/prune.py)."""

    ffn_keep: float = 1.0  # share of each FFN's intermediate neurons kept (rounded to 32); 1.0: none pruned
    sentences: int = 1024  # corpus texts whose activations rank the neurons and refit the output projection
    ridge: float = 1e-3  # of the refit, relative to the Gram matrix's mean diagonal

    def __post_init__(self) -> None:
        if not 0 < self.ffn_keep <= 1 or self.sentences <= 0 or self.ridge < 0:
            raise ConfigError(f"prune settings out of range: {self}")


@dataclass(frozen=True)
class QuantizeConfig:
    table_bits: int | None = None  # None keeps the (factor) table fp32
    table_block: int = 64  # int4 only: elements per scale along the row
    encoder_int8: bool = False  # onnxruntime dynamic int8 of the encoder's MatMuls
    per_channel: bool = True  # per-output-channel weight scales (much better fidelity than per-tensor)
    # store the factor B (and pq centroids) in float16: half their bytes; B is 384² floats at full rank
    b_fp16: bool = False
    # or in int8 with float scales: a quarter of their fp32 bytes
    factors_int8: bool = False
    # SmoothQuant α for the encoder's int8 (compression/encoder/smooth.py); None: no smoothing
    smooth_alpha: float | None = None
    # one smoothing scale for the query, key and value of each attention (they read the same input):
    # that input is then divided and quantized once, not three times
    smooth_shared_qkv: bool = False
    # smooth the FFN's second linear too (its input, GELU's output, keeps a Mul in the graph: the widest)
    smooth_ffn_output: bool = True
    # smooth only the inputs whose largest channel maximum is at least this many times their median
    # one (smooth.outlier_ratio): an input without outliers gains little from its Mul; None: all
    smooth_min_ratio: float | None = None
    # None: dynamic int8 of the encoder; an int: the block scheme (MatMulNBits) with this many
    # input rows per weight scale (and elements per activation scale); a power of two ≥ 16
    encoder_block: int | None = None
    positions_fp16: bool = False  # store the position-embedding table in float16
    # dynamic int8 encoder with 7-bit weights (±64): AVX2's u8×s8 kernel sums pairs of products in int16,
    # which ±127 weights can overflow (it saturates); at ±64 no pair can, so AVX2 and AVX-512 VNNI CPUs
    # compute the same exact int8 arithmetic that recovery simulates (docs/method.md)
    reduce_range: bool = False
    # the pq table's decode (centroids · B) as one integer product of the stored int8 centroids by int8
    # B (their scales folded into B's rows), not an fp32 one: at batch 1 that product was a third of the
    # embedding block's time, and nothing is quantized at run time (quantize.quantize_decode)
    decode_int8: bool = False

    def __post_init__(self) -> None:
        if self.decode_int8 and not self.factors_int8:
            raise ConfigError("decode_int8 needs factors_int8 (the int8 centroids and B it multiplies)")
        if self.b_fp16 and self.factors_int8:
            raise ConfigError("b_fp16 and factors_int8 both set: choose one storage for the factors")
        if self.table_bits not in TABLE_BITS:
            raise ConfigError(f"table_bits must be one of {TABLE_BITS}, got {self.table_bits}")
        if self.table_block < 16 or self.table_block & (self.table_block - 1):
            raise ConfigError(f"table_block must be a power of two ≥ 16, got {self.table_block}")
        if self.smooth_alpha is not None and not (0 < self.smooth_alpha <= 1 and self.encoder_int8):
            raise ConfigError(f"smooth_alpha must be in (0, 1] and needs encoder_int8, got {self.smooth_alpha}")
        if self.smooth_shared_qkv and self.smooth_alpha is None:
            raise ConfigError("smooth_shared_qkv needs smooth_alpha")
        if self.smooth_min_ratio is not None and (self.smooth_alpha is None or self.smooth_min_ratio < 1):
            raise ConfigError(f"smooth_min_ratio must be ≥ 1 and needs smooth_alpha, got {self.smooth_min_ratio}")
        if not self.smooth_ffn_output and self.smooth_alpha is None:
            raise ConfigError("smooth_ffn_output=false needs smooth_alpha (without smoothing nothing is smoothed)")
        if self.reduce_range and not (self.encoder_int8 and self.encoder_block is None):
            raise ConfigError("reduce_range needs the dynamic int8 encoder (encoder_int8, no encoder_block)")
        if self.encoder_block is not None and not (
            self.encoder_int8 and self.encoder_block >= 16 and not self.encoder_block & (self.encoder_block - 1)
        ):
            raise ConfigError(
                f"encoder_block must be a power of two ≥ 16 and needs encoder_int8, got {self.encoder_block}"
            )

    @property
    def label(self) -> str:
        parts = []
        if self.table_bits:
            parts.append(f"table-int{self.table_bits}")
        if self.b_fp16:
            parts.append("B-fp16")
        if self.factors_int8:
            parts.append("factors-int8" + ("-decode-int8" if self.decode_int8 else ""))
        if self.positions_fp16:
            parts.append("positions-fp16")
        if self.encoder_int8:
            scheme = (
                f"-block{self.encoder_block}" if self.encoder_block else ("-per-channel" if self.per_channel else "")
            )
            scheme += "-7bit" if self.reduce_range else ""
            parts.append(
                "encoder-int8"
                + scheme
                + (f"-smooth{self.smooth_alpha:g}" if self.smooth_alpha is not None else "")
                + ("-qkv" if self.smooth_shared_qkv else "")
                + ("-ffn-out-plain" if self.smooth_alpha is not None and not self.smooth_ffn_output else "")
                + (f"-min-ratio{self.smooth_min_ratio:g}" if self.smooth_min_ratio is not None else "")
            )
        return "+".join(parts) or "fp32"


@dataclass(frozen=True)
class GraphConfig:
    """Changes to the served graph for speed: exact rewrites of the export (compression/export/serving_graph.py),
    and one approximation made in torch before training (compression/encoder/activation.py)."""

    # each attention core as one onnxruntime MultiHeadAttention node (fewer, larger operators)
    fuse_attention: bool = False
    # run everything but attention on the batch's real tokens only (needs fuse_attention)
    remove_padding: bool = False
    # with remove_padding: batches without padding (every batch of one) run a copy of the int8 graph
    # without the packing, under one If; exact, weights stored once (compression/export/dense_route.py)
    dense_route: bool = True
    # the FFN's erf GELU as its tanh approximation (≤ 5e-4 per activation; onnxruntime's FastGelu),
    # swapped in torch before smoothing and recovery so the model is trained and checked as served
    tanh_gelu: bool = False

    def __post_init__(self) -> None:
        if self.remove_padding and not self.fuse_attention:
            raise ConfigError("remove_padding needs fuse_attention (padding is restored only around fused attention)")


def with_settings(config: Any, values: dict[str, Any], where: str) -> Any:
    """`config` (a settings dataclass instance) with `values` laid over it; a key it does not have is a
    ConfigError that lists the known ones (recipe files and command lines share this check)."""
    known = {f.name for f in dataclasses.fields(config)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(known)}")
    return dataclasses.replace(config, **values)
