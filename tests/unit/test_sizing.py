"""The default recipe sized to the model, and the compress flags laid over it."""

import pytest

from compression.api import start_ratio
from compression.cli import build_parser, overrides_from_args
from compression.errors import ConfigError
from compression.table.sizing import DEFAULT_STEPS, pq_table_bytes, sized_recipe


@pytest.mark.parametrize("vocab,hidden", [(30522, 384), (30522, 768), (250002, 384), (21128, 1024)])
def test_the_default_meets_the_target_ratio_for_any_table(vocab, hidden):
    r = sized_recipe("x-fact", "x", vocab, hidden)
    fz = r.factorize
    assert fz.method == "pq" and fz.rank == 4 * fz.subspaces and fz.rank <= hidden
    table = pq_table_bytes(vocab, hidden, fz.subspaces, fz.codebook_size)
    assert vocab * hidden * 4 / table >= 16
    # the largest that fits: one more code per token would miss the target (or exceed the rank)
    more = fz.subspaces + 1
    assert 4 * more > hidden or vocab * hidden * 4 / pq_table_bytes(vocab, hidden, more, fz.codebook_size) < 16


def test_a_wider_table_gets_more_codes_at_the_same_ratio():
    narrow = sized_recipe("a", "b", 30522, 384).factorize.subspaces
    wide = sized_recipe("a", "b", 30522, 768).factorize.subspaces
    assert narrow == 88 and 160 < wide < 192


def test_a_byte_budget_and_an_unreachable_target():
    r = sized_recipe("a", "b", 30522, 384, target_ratio=None, max_table_mb=1.5)
    assert pq_table_bytes(30522, 384, r.factorize.subspaces, 256) <= 1.5e6
    with pytest.raises(ConfigError, match="one code per token"):
        sized_recipe("a", "b", 30522, 384, target_ratio=2000)


def test_the_search_starts_smaller_for_a_large_vocabulary():
    assert start_ratio(30522) == 16 and start_ratio(250037) == 32


def _recipe(*argv):
    args = build_parser().parse_args(["compress", *argv])
    ratio = args.target_ratio if args.target_ratio or args.max_table_mb else start_ratio(30522)  # as compress() does
    return sized_recipe(
        "m-fact",
        "m",
        30522,
        384,
        target_ratio=ratio,
        max_table_mb=args.max_table_mb,
        seed=args.seed,
        overrides=overrides_from_args(args),
    )


def test_no_flag_gives_the_default_and_each_flag_overrides_one_knob():
    default = _recipe()
    assert default.recover.steps == DEFAULT_STEPS and default.quantize.smooth_alpha == 0.9
    assert default.quantize.encoder_int8 and default.quantize.reduce_range  # 7-bit weights: the same on every CPU
    assert (
        default.quantize.decode_int8
        and not _recipe("--set", "factorize.method=svd", "--set", "factorize.rank=64").quantize.decode_int8
    )
    assert (
        default.quantize.smooth_min_ratio == 7.0
        and _recipe("--set", "quantize.smooth_alpha=none").quantize.smooth_min_ratio is None
    )
    assert _recipe("--set", "quantize.smooth_min_ratio=1").quantize.smooth_min_ratio == 1.0
    assert default.graph.tanh_gelu and not _recipe("--set", "graph.tanh_gelu=false").graph.tanh_gelu
    assert default.graph.dense_route and not _recipe("--set", "graph.dense_route=false").graph.dense_route
    assert default.prune.ffn_keep == 1.0 and _recipe("--set", "prune.ffn_keep=0.75").prune.ffn_keep == 0.75
    block = _recipe(
        "--set", "quantize.encoder_block=32"
    ).quantize  # the decode's product does not depend on the encoder's scheme
    assert block.decode_int8 and not block.reduce_range
    r = _recipe(
        "--set",
        "factorize.subspaces=48",
        "--set",
        "recover.steps=10",
        "--set",
        "recover.encoder_lr=0",
        "--set",
        "quantize.factors_int8=false",
        "--set",
        "quantize.b_fp16=true",
        "--set",
        "quantize.smooth_alpha=none",
        "--seed",
        "3",
    )
    assert (r.factorize.subspaces, r.factorize.rank) == (48, 192)
    assert (r.recover.steps, r.recover.encoder_lr, r.recover.seed, r.factorize.seed) == (10, 0, 3, 3)
    assert r.quantize.b_fp16 and not r.quantize.factors_int8
    assert r.quantize.smooth_alpha is None and not r.quantize.smooth_shared_qkv
    assert r.recover.lr == default.recover.lr  # untouched knobs keep the default
    svd = _recipe("--set", "factorize.method=svd", "--set", "factorize.rank=64")
    assert (svd.factorize.method, svd.factorize.rank) == ("svd", 64)
    weighted = _recipe("--set", "factorize.method=weighted", "--target-ratio", "8")
    assert weighted.factorize.rank is None and weighted.factorize.target_ratio == 8


def test_out_of_range_knobs_are_config_errors():
    with pytest.raises(ConfigError):
        _recipe("--set", "recover.steps=-1")
    with pytest.raises(ConfigError):
        _recipe("--set", "quantize.smooth_alpha=2")
    with pytest.raises(ConfigError):
        _recipe("--set", "prune.ffn_keep=0")


@pytest.mark.parametrize("ratio,group_dim", [(16, 4), (12, 3), (8, 2), (4.2, 1)])
def test_a_lower_ratio_buys_narrower_groups_not_a_capped_table(ratio, group_dim):
    # Groups of 4 stop at 96 codes (rank 384, 15.7×): below that a lower ratio must still buy bytes.
    fz = sized_recipe("a", "b", 30522, 384, target_ratio=ratio).factorize
    assert fz.rank == group_dim * fz.subspaces <= 384
    table = pq_table_bytes(30522, 384, fz.subspaces, fz.codebook_size, group_dim)
    assert ratio <= 30522 * 384 * 4 / table < ratio * 1.1
    if group_dim < 4:
        assert fz.rank >= 0.9 * 384  # narrower groups only where they still span the table's directions


def test_min_fidelity_tries_each_larger_table_once():
    from compression.table.sizing import larger_tables

    first = sized_recipe("a", "b", 30522, 384)
    shapes = [(r.factorize.subspaces, r.factorize.rank) for r in larger_tables(first, 30522, 384, 16)]
    assert shapes == [(120, 360), (184, 368), (375, 375)]
    assert larger_tables(first, 30522, 384, 4) == []  # nothing below the smallest fallback ratio


def test_recipe_settings_come_from_the_config_dataclasses(capsys):
    from compression.cli import main

    with pytest.raises(SystemExit) as done:
        main(["compress", "--help-recipe"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "recover.steps = 400" in out and "quantize.reduce_range = True" in out
    assert "AVX2's u8×s8 kernel" in out  # the field's own comment is its help
    assert "--steps" not in build_parser().format_help() and "--set" in _compress_help()
    for bad, fragment in (
        ("recover.nope=1", "recover has no 'nope'"),
        ("quant.steps=1", "unknown section"),
        ("steps=1", "section.key=value"),
    ):
        assert main(["compress", "--set", bad, "--out", "/nonexistent/x"]) == 2
        err = capsys.readouterr().err.strip()
        assert fragment in err and "\n" not in err


def _compress_help() -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices["compress"].format_help()
