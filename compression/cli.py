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


def overrides_from_args(args: argparse.Namespace) -> dict[str, dict]:
    """The recipe settings a compress command line sets explicitly (--set section.key=value), by section."""
    from compression.recipe_settings import parse_sets

    return parse_sets(args.set or [])


class HelpRecipe(argparse.Action):
    """--help-recipe: every recipe knob with the sized default's value (for a 30522×384 table) and its help."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        import dataclasses

        from compression.recipe_settings import SECTIONS, recipe_help
        from compression.table.sizing import sized_recipe

        recipe = sized_recipe("model-fact", "model", 30522, 384, target_ratio=16)
        print(recipe_help({s: dataclasses.asdict(getattr(recipe, s)) for s in SECTIONS}))
        parser.exit()


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


def cmd_shapes(args: argparse.Namespace) -> None:
    from compression.evaluation.shapes import measure_shapes, shapes_table

    ctx = _context(args)
    ctx.corpus_path = [Path(c) for c in args.corpus] if args.corpus else None
    print(shapes_table(measure_shapes(ctx, args.baseline, args.shapes)))


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
    p.add_argument(
        "--set",
        action="append",
        metavar="SECTION.KEY=VALUE",
        help="one recipe setting over the sized default, e.g. recover.steps=800 (repeatable; --help-recipe lists them)",
    )
    p.add_argument("--help-recipe", action=HelpRecipe, help="list every recipe setting with its default and exit")
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

    p = sub.add_parser(
        "shapes", help="held-out fidelity of table shapes before recovery (fp32 encoder): where bytes buy most"
    )
    _common(p)
    p.add_argument("shapes", nargs="+", help="MxD (M codes of D coordinates) or MxD+N (the N most frequent get M more)")
    p.add_argument("--corpus", nargs="+", default=None, help="the texts compress was given (default: the train splits)")
    p.add_argument("--baseline", default="minilm-l6", help="the built baseline in --out to compare with")
    p.set_defaults(func=cmd_shapes)

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
