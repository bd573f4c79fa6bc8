"""The default recipe, sized to the model: from a target ratio of the table's bytes (or a byte budget)
to the number of one-byte codes per token, the rank and the rest, for any V × H table.

The method is the one measured on MiniLM (docs: the pq factorization in the encoder's sensitivity
metric, distilled with the int8 encoder simulated); what depends on the model is only how many
codes a token gets. A token's row costs M bytes of codes; beside them the table stores, in int8,
M·K centroids of d coordinates (with a float scale per group and coordinate) and the basis B
(r × H, r = d·M, with a float scale per row). The largest M whose total fits the budget is taken,
with r ≤ H (a basis never needs more directions than the table has).

Groups of d = 4 coordinates cap M at H/4 (96 codes for H = 384, a table 15.7× smaller than fp32). A
larger budget (a lower --target-ratio) buys narrower groups, 3, 2 or 1 coordinates a code, so more
bits per coordinate: the narrowest whose codes still span MIN_KEPT of the table's directions.

A budget too tight for groups narrower than 4 is tiered instead when the corpus shows enough tokens
often (tier_rows_for): every row keeps M codes of d coordinates (d the narrowest of TIER_GROUP_DIMS
whose floor spans TIER_MIN_KEPT of the directions), and the tier's rows get M more.
"""

from __future__ import annotations

from compression.config import (
    FactorizeConfig,
    GraphConfig,
    PruneConfig,
    QuantizeConfig,
    RecoverConfig,
    with_settings,
)
from compression.errors import ConfigError
from compression.recipes import VariantRecipe
from compression.table.factorize import resolve_rank

GROUP_DIM = 4  # coordinates per pq group (d): 4 kept fidelity ≥ 0.99 on MiniLM at 16×
GROUP_DIMS = (GROUP_DIM, 3, 2, 1)  # narrower groups for larger budgets
MIN_KEPT = 0.9  # a narrower group is taken only if its rank d·M keeps this share of the H directions
CODEBOOK = 256  # centroids per group: one byte per code
FP32 = 4
# Recovery's length: steps of 64 texts from a distillation set of DEFAULT_SENTENCES corpus texts, and the
# texts the sensitivity metric is estimated on. Chosen so the default compress of MiniLM-L6 fits in
# 12 minutes on 2 cores (docs/results.md has the time and what fewer steps cost).
DEFAULT_STEPS = 400
DEFAULT_SENTENCES = 12800  # two passes of the 400 × 64 texts
DEFAULT_METRIC_SENTENCES = 256
# smooth an int8 input only if its largest channel maximum is ≥ 7× the median one (smooth.outlier_ratio):
# on MiniLM that is the FFN's inputs (8.5–21) and not the query/key/value input (4–6), eight Muls
# fewer for 0.0007 of mean fidelity (docs/experiments.md)
SMOOTH_MIN_RATIO = 7.0


def pq_table_bytes(
    vocab: int,
    hidden: int,
    codes: int,
    codebook: int = CODEBOOK,
    group_dim: int = GROUP_DIM,
    tier_rows: int = 0,
    tier_codes: int = 0,
) -> int:
    """Bytes of a pq table stored as the default does (uint8 codes, int8 centroids and B with float scales);
    tiered, with the tier's codes, its groups' centroids, its rows of B and the token → tier-slot map."""
    groups = codes + (tier_codes if tier_rows else 0)
    rank = groups * group_dim
    tier = (tier_rows + 1) * tier_codes + vocab * (2 if tier_rows < 2**15 else 4) if tier_rows else 0
    return (
        vocab * codes  # one byte per code
        + tier
        + groups * codebook * group_dim
        + groups * group_dim * FP32  # int8 centroids and their scales
        + rank * hidden
        + rank * FP32  # int8 B and a scale per row
        + groups * 8
        + 256
    )  # the groups' int64 offsets into the flat centroids, and slack for small tensors


# The tier (factorize.py's tiered pq): the rows of tokens the corpus shows at least TIER_MIN_COUNT times,
# at most TIER_MAX_ROWS (a 2-byte slot map) and half the vocabulary, get twice the codes. On MiniLM at
# 16× the held-out loss sits in the rows of tokens seen 10–99 times (docs/experiments.md), and a tier
# over them beat the same bytes spent on every row (docs/experiments.md has the figures).
TIER_MIN_COUNT = 5
TIER_MAX_ROWS = 2**15 - 1
TIER_GROUP_DIMS = (4, 6, 8, 12, 16)  # the floor's groups, narrowest first
TIER_MIN_KEPT = 0.8  # of the H directions the floor's codes must span


def tier_rows_for(counts_v) -> int:
    """How many rows the tier takes, from the corpus's token counts."""
    seen = int((counts_v >= TIER_MIN_COUNT).sum())
    return min(seen, TIER_MAX_ROWS, len(counts_v) // 2)


def tiered_shape(vocab: int, hidden: int, budget_bytes: float, codebook: int, tier_rows: int) -> tuple[int, int] | None:
    """(codes per token, coordinates per code) of a tiered table within the budget — every row M codes
    of d coordinates, the tier's rows M more — with d the narrowest whose floor spans TIER_MIN_KEPT of
    the directions; None when no width does (the plain shape is used then)."""
    if tier_rows <= 0 or codebook < 3:
        return None
    for d in TIER_GROUP_DIMS:
        codes = codes_for_budget(vocab, hidden, budget_bytes, codebook, d, tier_rows)
        if codes * d >= TIER_MIN_KEPT * hidden:
            return codes, d
    return None


def codebook_for(vocab: int) -> int:
    """256 centroids per group, fewer for a vocabulary too small to fill them (a toy model's)."""
    k = CODEBOOK
    while k > 2 and k * 4 > vocab:
        k //= 2
    return k


def codes_for_budget(
    vocab: int, hidden: int, budget_bytes: float, codebook: int, group_dim: int = GROUP_DIM, tier_rows: int = 0
) -> int:
    """The most codes per token of group_dim coordinates whose table fits the budget, with rank ≤ hidden
    (0: not even one); with tier_rows, as many again for the tier's rows."""
    best = 0
    for codes in range(1, hidden // group_dim + 1):
        if pq_table_bytes(vocab, hidden, codes, codebook, group_dim, tier_rows, codes) <= budget_bytes:
            best = codes
    return best


def pq_shape_for_budget(vocab: int, hidden: int, budget_bytes: float, codebook: int) -> tuple[int, int]:
    """(codes per token, coordinates per code) of the largest table within the budget: groups of 4, or
    the narrowest group whose codes keep MIN_KEPT of the directions once 4 reach the rank cap."""
    codes = codes_for_budget(vocab, hidden, budget_bytes, codebook)
    if codes == 0:
        raise ConfigError(
            f"a {vocab}×{hidden} table cannot be stored in {budget_bytes / 1e6:.3f} MB even with one "
            f"code per token ({pq_table_bytes(vocab, hidden, 1, codebook) / 1e6:.3f} MB); lower "
            "--target-ratio or raise --max-table-mb"
        )
    shape = (codes, GROUP_DIM)
    for d in GROUP_DIMS[1:]:
        m = codes_for_budget(vocab, hidden, budget_bytes, codebook, d)
        if d * m >= MIN_KEPT * hidden:
            shape = (m, d)
    return shape


def table_budget(vocab: int, hidden: int, target_ratio: float | None, max_table_mb: float | None) -> float:
    if max_table_mb is not None:
        if max_table_mb <= 0:
            raise ConfigError(f"--max-table-mb must be positive, got {max_table_mb}")
        return max_table_mb * 1e6
    if target_ratio is None or target_ratio <= 1:
        raise ConfigError(f"--target-ratio must be more than 1, got {target_ratio}")
    return vocab * hidden * FP32 / target_ratio


def sized_recipe(
    name: str,
    baseline: str,
    vocab: int,
    hidden: int,
    *,
    target_ratio: float | None = 16.0,
    max_table_mb: float | None = None,
    seed: int = 0,
    overrides: dict | None = None,
    tier_rows: int = 0,
) -> VariantRecipe:
    """The default compressed variant for a vocab × hidden table, with explicit settings laid over it.

    tier_rows: rows the corpus shows often enough for the tier (tier_rows_for); 0 sizes every row alike.

    overrides: {"factorize": {...}, "recover": {...}, "quantize": {...}} of the configs' own field names;
    a method other than pq without a rank takes the rank whose fp32 factors meet the target ratio.
    """
    overrides = overrides or {}
    budget = table_budget(vocab, hidden, target_ratio, max_table_mb)
    fz = dict(overrides.get("factorize", {}))
    method = fz.get("method", "pq")
    if method == "pq":
        codebook = fz.get("codebook_size", codebook_for(vocab))
        tier_rows = fz.get("tier_rows", tier_rows)  # --set factorize.tier_rows=0: every row sized alike
        tier = 0
        if fz.get("subspaces") or fz.get("rank"):  # the user's shape; groups of 4 unless both are given
            codes, group_dim = fz.get("subspaces") or fz["rank"] // GROUP_DIM, GROUP_DIM
        else:
            codes, group_dim = pq_shape_for_budget(vocab, hidden, budget, codebook)
            # A budget too tight for groups narrower than 4 is where the tier wins; a larger one buys
            # every row more bits instead (at 12× on MiniLM, 3 coordinates a code measured better).
            shape = tiered_shape(vocab, hidden, budget, codebook, tier_rows) if group_dim == GROUP_DIM else None
            if shape is not None:
                (codes, group_dim), tier = shape, tier_rows
        base_fz = FactorizeConfig(
            method="pq",
            metric="sensitivity",
            rank=fz.get("rank", codes * group_dim),
            subspaces=codes,
            codebook_size=codebook,
            tier_rows=tier,
            tier_subspaces=codes if tier else 0,
            alpha=0.75,
            seed=seed,
            metric_sentences=DEFAULT_METRIC_SENTENCES,
        )
    else:
        ratio = target_ratio if max_table_mb is None else vocab * hidden * FP32 / budget
        base_fz = FactorizeConfig(
            method=method,
            rank=None if "rank" not in fz else fz["rank"],
            target_ratio=None if "rank" in fz else ratio,
            seed=seed,
        )
    factorize = with_settings(base_fz, fz, "factorize")
    recover = with_settings(
        RecoverConfig(
            steps=DEFAULT_STEPS,
            batch_size=64,
            lr=5e-4,
            b_lr=1e-4,
            encoder_lr=5e-5,
            anchor=0.1,
            num_sentences=DEFAULT_SENTENCES,
            seed=seed,
        ),
        overrides.get("recover", {}),
        "recover",
    )
    qz = dict(overrides.get("quantize", {}))
    if qz.get("encoder_block") is not None or qz.get("encoder_int8") is False:
        qz.setdefault("reduce_range", False)  # 7-bit weights are the dynamic int8 scheme's
    if method != "pq" or qz.get("factors_int8") is False:
        qz.setdefault("decode_int8", False)  # a pq table's decode, with int8 factors
    if "smooth_alpha" in qz and qz["smooth_alpha"] is None:  # nothing smoothed, nothing to choose
        qz.setdefault("smooth_min_ratio", None)
        qz.setdefault("smooth_shared_qkv", False)
    quantize = with_settings(
        QuantizeConfig(
            factors_int8=True,
            positions_fp16=True,
            encoder_int8=True,
            smooth_alpha=0.9,
            smooth_shared_qkv=True,
            reduce_range=True,
            decode_int8=True,
            smooth_min_ratio=SMOOTH_MIN_RATIO,
        ),
        qz,
        "quantize",
    )
    gz = dict(overrides.get("graph", {}))
    if gz.get("fuse_attention") is False:
        gz.setdefault("remove_padding", False)  # padding is removed only around fused attention
    graph = with_settings(GraphConfig(fuse_attention=True, remove_padding=True, tanh_gelu=True), gz, "graph")
    check_shape(factorize, vocab, hidden)
    target = f"{max_table_mb:g} MB table" if max_table_mb is not None else f"{target_ratio:g}× smaller table"
    tier = factorize.tier_rows
    tiered = f", {factorize.tier_subspaces} more for the {tier} most frequent" if tier else ""
    prune = with_settings(PruneConfig(), overrides.get("prune", {}), "prune")
    return VariantRecipe(
        name=name,
        baseline=baseline,
        prune=prune,
        factorize=factorize,
        recover=recover,
        quantize=quantize,
        graph=graph,
        description=f"default recipe sized for a {vocab}×{hidden} table ({target}): {factorize.method}"
        f", rank {factorize.rank}, {factorize.subspaces} codes per token{tiered}",
    )


def check_shape(config: FactorizeConfig, vocab: int, hidden: int) -> None:
    """The settings' checks that need the table's shape, run before anything is built."""
    rank = resolve_rank(config, vocab, hidden)
    if config.method == "pq" and (config.subspaces <= 0 or rank % config.subspaces):
        raise ConfigError(f"pq: rank {rank} must be a positive multiple of subspaces, got {config.subspaces}")
    if config.method == "pq" and not 2 <= config.codebook_size <= min(256, vocab):
        raise ConfigError(
            f"pq: codebook_size must be in [2, min(256, V) = {min(256, vocab)}], got {config.codebook_size}"
        )


# --min-fidelity's larger tables, tried in turn: on a 384-wide table, groups of 4, 3, 2 and 1 coordinates.
FALLBACK_RATIOS = (16.0, 12.0, 8.0, 4.0)


def larger_tables(
    first: VariantRecipe,
    vocab: int,
    hidden: int,
    target_ratio: float,
    seed: int = 0,
    overrides: dict | None = None,
    tier_rows: int = 0,
) -> list[VariantRecipe]:
    """The sized recipes at each fallback ratio below target_ratio, each with a larger table than the
    one before (a ratio whose sizing gives the same shape is skipped)."""
    out, shape = [], (first.factorize.subspaces, first.factorize.rank)
    for ratio in (r for r in FALLBACK_RATIOS if r < target_ratio):
        recipe = sized_recipe(
            first.name,
            first.baseline,
            vocab,
            hidden,
            target_ratio=ratio,
            seed=seed,
            overrides=overrides,
            tier_rows=tier_rows,
        )
        if (recipe.factorize.subspaces, recipe.factorize.rank) != shape:
            out.append(recipe)
            shape = (recipe.factorize.subspaces, recipe.factorize.rank)
    return out
