"""`python -m compression …` — the pipeline's commands. Errors are one line and exit 2."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from compression.config import METHODS, METRICS
from compression.corpus import default_data_dir
from compression.errors import PipelineError
from compression.recipes import DEFAULT_RECIPES, load_recipes

log = logging.getLogger("compression")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("models"), help="models directory (default: models)")
    p.add_argument("--data-dir", type=Path, default=None, help="shared data directory (default: ../shared/data)")
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        help="a sentence-transformers or Hugging Face folder, or an ONNX export (file or folder); "
        "default: the bundled all-MiniLM-L6-v2",
    )
    p.add_argument("--threads", type=int, default=0, help="onnxruntime threads for evaluation (0: all cores)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _fidelity_target(value: str) -> float | str:
    if value == "int8":
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number between 0 and 1, or int8, not {value!r}") from None


def _diagnose_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--diagnose",
        action="store_true",
        help="also measure where a compressed variant's infidelity comes from: table rows or int8 "
        "encoder (about a minute more; in the log and the manifest's diagnosis)",
    )


def _context(args: argparse.Namespace):
    from compression.build import BuildContext

    return BuildContext(
        out_root=args.out,
        data_dir=args.data_dir or default_data_dir(),
        model_dir=args.model,
        progress=not args.no_progress,
        threads=args.threads,
        diagnose=getattr(args, "diagnose", False),
    )


def cmd_build(args: argparse.Namespace) -> None:
    from compression.build import build_variant

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


# compress flag → (config section, field): flags left unset keep the sized recipe's value.
OVERRIDES = {
    "method": ("factorize", "method"),
    "rank": ("factorize", "rank"),
    "subspaces": ("factorize", "subspaces"),
    "codebook_size": ("factorize", "codebook_size"),
    "metric": ("factorize", "metric"),
    "alpha": ("factorize", "alpha"),
    "metric_sentences": ("factorize", "metric_sentences"),
    "high_rows": ("factorize", "high_rows"),
    "low_rank": ("factorize", "low_rank"),
    "steps": ("recover", "steps"),
    "batch_size": ("recover", "batch_size"),
    "num_sentences": ("recover", "num_sentences"),
    "lr": ("recover", "lr"),
    "b_lr": ("recover", "b_lr"),
    "encoder_lr": ("recover", "encoder_lr"),
    "anchor": ("recover", "anchor"),
    "token_weight": ("recover", "token_weight"),
    "augment_share": ("recover", "augment_share"),
    "augment_tokens": ("recover", "augment_tokens"),
    "table_bits": ("quantize", "table_bits"),
    "table_block": ("quantize", "table_block"),
    "b_fp16": ("quantize", "b_fp16"),
    "factors_int8": ("quantize", "factors_int8"),
    "encoder_int8": ("quantize", "encoder_int8"),
    "smooth_alpha": ("quantize", "smooth_alpha"),
    "smooth_shared_qkv": ("quantize", "smooth_shared_qkv"),
    "smooth_ffn_output": ("quantize", "smooth_ffn_output"),
    "smooth_min_ratio": ("quantize", "smooth_min_ratio"),
    "encoder_block": ("quantize", "encoder_block"),
    "positions_fp16": ("quantize", "positions_fp16"),
    "reduce_range": ("quantize", "reduce_range"),
    "decode_int8": ("quantize", "decode_int8"),
    "fuse_attention": ("graph", "fuse_attention"),
    "remove_padding": ("graph", "remove_padding"),
    "dense_route": ("graph", "dense_route"),
    "tanh_gelu": ("graph", "tanh_gelu"),
    "ffn_keep": ("prune", "ffn_keep"),
}


def overrides_from_args(args: argparse.Namespace) -> dict[str, dict]:
    """The recipe settings a compress command line sets explicitly, by config section."""
    out: dict[str, dict] = {}
    for flag, (section, key) in OVERRIDES.items():
        value = getattr(args, flag, None)
        if value is not None:
            out.setdefault(section, {})[key] = value
    if args.no_smoothing:
        out.setdefault("quantize", {}).update(
            smooth_alpha=None, smooth_shared_qkv=False, smooth_ffn_output=True, smooth_min_ratio=None
        )
    return out


def cmd_compress(args: argparse.Namespace) -> None:
    """The user's model, in one command: baseline export, compressed variant, heads (compression.compress)."""
    from compression.api import compress

    manifest = compress(
        args.model,
        args.out,
        name=args.name,
        target_ratio=args.target_ratio,
        max_table_mb=args.max_table_mb,
        corpus=args.corpus,
        data_dir=args.data_dir,
        device=args.device,
        seed=args.seed,
        pooling=args.pooling,
        tokenizer=args.tokenizer,
        overrides=overrides_from_args(args),
        heads=not args.no_heads,
        progress=not args.no_progress,
        threads=args.threads,
        diagnose=args.diagnose,
        min_fidelity=args.min_fidelity,
        prompt=args.prompt,
        evaluate=args.eval,
        trim_vocab=args.trim_vocab,
    )
    print(manifest.model_dump_json(indent=2))


def cmd_heads(args: argparse.Namespace) -> None:
    """Train heads for every built variant (or --only some): the standard tasks, or a user's file."""
    from compression.evaluation.heads import add_heads, standard_tasks, user_task
    from compression.evaluation.report import built_manifests

    data_dir = args.data_dir or default_data_dir()
    if args.train_file:
        if not args.name:
            raise PipelineError("--train-file needs --name for the head")
        tasks = {args.name: user_task(args.train_file, text_column=args.text_column, label_column=args.label_column)}
    else:
        tasks = standard_tasks(data_dir, args.task)
    variants = [m.name for m in built_manifests(args.out)]
    unknown = set(args.only or []) - set(variants)
    if unknown:
        raise PipelineError(f"not built: {sorted(unknown)}; built variants: {variants}")
    for name in args.only or variants:
        todo = {
            t: d
            for t, d in tasks.items()
            if not (args.if_missing and (args.out / name / "heads" / f"{t}.json").is_file())
        }
        if not todo:
            continue
        manifest = add_heads(args.out / name, todo, threads=args.threads)
        log.info("%s heads: %s", name, {t: manifest.quality.heads[t] for t in todo})


def cmd_report(args: argparse.Namespace) -> None:
    from compression.evaluation.report import RESULTS_PAGE, write_report

    print(write_report(args.out, args.report_dir, page=None if args.no_docs else RESULTS_PAGE))


def cmd_sweep(args: argparse.Namespace) -> None:
    from compression.evaluation.sweep import run_sweep

    run_sweep(
        _context(args),
        args.report_dir,
        ranks=args.ranks,
        methods=args.methods,
        baseline=args.baseline,
        subspaces=args.subspaces,
        metrics=args.metrics,
    )


def cmd_dev_check(args: argparse.Namespace) -> None:
    from compression.evaluation.devcheck import dev_quality, dev_table, rarity_table

    rows, bands = dev_quality(
        args.models, args.baseline, args.data_dir or default_data_dir(), args.threads, by_rarity=args.by_rarity
    )
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
    _diagnose_flag(p)
    p.set_defaults(func=cmd_build)

    p = sub.add_parser(
        "compress",
        help="compress your own model: baseline + compressed variant (+ heads) in one go",
        description="Compress a BERT-family sentence encoder — a sentence-transformers or Hugging Face "
        "folder, or an ONNX export — into OUT/<name> and OUT/<name>-fact.",
    )
    _common(p)
    p.add_argument(
        "--name", default=None, help="output names <name> and <name>-fact (default: from the folder or file)"
    )
    p.add_argument(
        "--corpus",
        type=Path,
        nargs="+",
        default=None,
        help="your texts: files with one per line, .jsonl with a text field, STS-style .csv pairs, or "
        "folders of such files "
        "(default: the shared data's train splits, where they exist)",
    )
    p.add_argument(
        "--pooling",
        choices=["mean", "cls", "max", "mean_sqrt_len"],
        default=None,
        help="pooling of a plain Hugging Face folder or a token-state ONNX export (default: mean)",
    )
    p.add_argument(
        "--tokenizer", type=Path, default=None, help="tokenizer.json of an ONNX export that has none beside it"
    )
    p.add_argument(
        "--trim-vocab",
        action="store_true",
        help="cut the compressed model's vocabulary to the pieces your corpus produces plus every single "
        "character of its scripts (a Unigram or WordPiece tokenizer); texts in other scripts lose",
    )
    p.add_argument(
        "--eval",
        type=Path,
        nargs="+",
        default=None,
        metavar="PAIRS",
        help="STS-style pair files (sentence1, sentence2, score), one per language, named like "
        "stsb-de-dev.csv, or a folder of them: per-language STS and fidelity beside int8's",
    )
    p.add_argument(
        "--prompt",
        default=None,
        metavar="NAME",
        help="the model's prompt to embed the corpus and evaluations with and to serve by default (from "
        "its config_sentence_transformers.json; 'none' for none); default: its default prompt, else "
        "its 'query' prompt",
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--target-ratio",
        type=float,
        default=None,
        help="the table this many times smaller than fp32 (default: the smallest table as faithful as "
        "the model's own int8, searched from 16x, or 32x for a vocabulary of 100k pieces or more)",
    )
    size.add_argument("--max-table-mb", type=float, default=None, help="or: a byte budget for the table, in MB")
    p.add_argument("--device", default="cpu", help="where distillation runs: cpu (default) or cuda")
    p.add_argument("--seed", type=int, default=0, help="seeds sampling, k-means and training: a run is repeatable")
    p.add_argument("--no-heads", action="store_true", help="skip the classification heads")
    p.add_argument(
        "--min-fidelity",
        type=_fidelity_target,
        default=None,
        metavar="F|int8",
        help="held-out fidelity to reach (int8, the default without a size: the mean and 1st percentile "
        "of onnxruntime's plain int8 export of the model, measured here, and at least 0.99 / 0.97): "
        "if the sized table misses it, larger tables (16x, 12x, 8x, 4x) are built in turn until one does",
    )
    _diagnose_flag(p)
    k = p.add_argument_group("recipe knobs (each overrides the sized default)")
    k.add_argument("--method", choices=METHODS, default=None)
    k.add_argument("--rank", type=int, default=None)
    k.add_argument("--subspaces", type=int, default=None, help="pq: one-byte codes per token")
    k.add_argument("--codebook-size", type=int, default=None, help="pq: centroids per group (≤ 256)")
    k.add_argument("--metric", choices=METRICS, default=None)
    k.add_argument("--alpha", type=float, default=None, help="frequency weight exponent")
    k.add_argument(
        "--metric-sentences", type=int, default=None, help="corpus texts the sensitivity metric is estimated on"
    )
    k.add_argument("--high-rows", type=int, default=None, help="banded: most frequent tokens kept at full rank")
    k.add_argument("--low-rank", type=int, default=None, help="banded: rank of every other token")
    k.add_argument("--steps", type=int, default=None, help="distillation steps (0: none)")
    k.add_argument("--batch-size", type=int, default=None)
    k.add_argument("--num-sentences", type=int, default=None, help="size of the distillation set")
    k.add_argument("--lr", type=float, default=None, help="learning rate of the codes or centroids")
    k.add_argument("--b-lr", type=float, default=None, help="learning rate of the factor B")
    k.add_argument("--encoder-lr", type=float, default=None, help="learning rate of the encoder")
    k.add_argument("--anchor", type=float, default=None, help="weight of the table anchor")
    k.add_argument(
        "--token-weight",
        type=float,
        default=None,
        help="weight of the token-level distillation term (0: sentence vectors only)",
    )
    k.add_argument("--augment-share", type=float, default=None, help="share of rare-token augmented copies")
    k.add_argument("--augment-tokens", type=int, default=None, help="positions swapped per augmented copy")
    k.add_argument("--table-bits", type=int, choices=[4, 8], default=None)
    k.add_argument("--table-block", type=int, default=None)
    bool_flag = argparse.BooleanOptionalAction
    k.add_argument("--b-fp16", action=bool_flag, default=None, help="store B (and centroids) in float16")
    k.add_argument("--factors-int8", action=bool_flag, default=None, help="store B (and centroids) in int8")
    k.add_argument("--encoder-int8", action=bool_flag, default=None)
    k.add_argument("--smooth-alpha", type=float, default=None, help="SmoothQuant α of the int8 encoder")
    k.add_argument("--no-smoothing", action="store_true", help="int8 encoder without SmoothQuant")
    k.add_argument("--smooth-shared-qkv", action=bool_flag, default=None)
    k.add_argument(
        "--smooth-ffn-output",
        action=bool_flag,
        default=None,
        help="smooth the FFN's second linear too (keeps its 4·H-wide Mul in the graph)",
    )
    k.add_argument(
        "--smooth-min-ratio",
        type=float,
        default=None,
        help="smooth only inputs whose largest channel maximum is at least this many times the median one",
    )
    k.add_argument("--encoder-block", type=int, default=None, help="int8 encoder in the block scheme (MatMulNBits)")
    k.add_argument("--positions-fp16", action=bool_flag, default=None)
    k.add_argument(
        "--reduce-range",
        action=bool_flag,
        default=None,
        help="7-bit encoder weights: the same int8 arithmetic on AVX2 and AVX-512 VNNI CPUs",
    )
    k.add_argument(
        "--decode-int8",
        action=bool_flag,
        default=None,
        help="the pq table's product by B as an int8 MatMul (needs --factors-int8, dynamic int8 encoder)",
    )
    k.add_argument(
        "--fuse-attention",
        action=bool_flag,
        default=None,
        help="each attention as one onnxruntime MultiHeadAttention node (exact; faster)",
    )
    k.add_argument(
        "--remove-padding",
        action=bool_flag,
        default=None,
        help="run all but attention on the batch's real tokens only (exact; needs --fuse-attention)",
    )
    k.add_argument(
        "--dense-route",
        action=bool_flag,
        default=None,
        help="batches without padding skip the unpadding: one If, two graph bodies (exact; default on)",
    )
    k.add_argument(
        "--tanh-gelu",
        action=bool_flag,
        default=None,
        help="the FFN's GELU as its tanh approximation (≤ 5e-4; onnxruntime's FastGelu, faster on AVX2)",
    )
    k.add_argument(
        "--ffn-keep",
        type=float,
        default=None,
        help="share of each FFN's neurons kept, the rest pruned and the FFN refitted (default 1: none)",
    )
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
    p.add_argument("--no-docs", action="store_true", help="do not rewrite the results block of docs/results.md")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("sweep", help="trade-off curve: bytes vs STS-B / fidelity per method and rank")
    _common(p)
    p.add_argument("--report-dir", type=Path, default=Path("reports"))
    p.add_argument("--ranks", type=int, nargs="+", default=[16, 32, 64, 96, 128, 192])
    p.add_argument("--methods", nargs="+", default=["svd", "weighted", "pq"], choices=METHODS)
    p.add_argument(
        "--subspaces",
        type=int,
        nargs="+",
        default=[16, 32, 64, 96],
        help="pq: one-byte codes per token, one point each (at full rank)",
    )
    p.add_argument(
        "--metrics",
        nargs="+",
        default=["euclidean"],
        choices=METRICS,
        help="error metrics to factorize in, one curve per method and metric",
    )
    p.add_argument("--baseline", default="minilm-l6")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("dev-check", help="STS-B dev and fidelity on dev sentences: compare settings without test")
    p.add_argument("models", type=Path, nargs="+", help="built model directories")
    p.add_argument("--baseline", type=Path, default=Path("models/minilm-l6"), help="directory to compare with")
    p.add_argument("--data-dir", type=Path, default=None, help="shared data directory (default: ../shared/data)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument(
        "--by-rarity",
        action="store_true",
        help="also fidelity by how often each sentence's rarest token occurs in the train splits",
    )
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
