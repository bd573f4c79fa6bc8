"""`python -m bench.ops`: where each model's inference time goes, by onnxruntime operator, on this CPU.

A compressed model runs the int8 encoder, so its speed over the fp32 baseline is bounded by how much
faster this CPU's int8 matrix products are than its fp32 ones (AVX2's u8×s8 kernel against AVX-512
VNNI's differ a lot) and by the work int8 does not touch (attention's activation products, softmax,
LayerNorm, GELU). onnxruntime's own profiler splits one session's kernel time by operator; this sums
it into int8 products, fp32 products and the rest, per model and batch size, so a speed ratio in the
benchmark can be explained from a measurement rather than a guess.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from common import contract
from common.machine import cpu_info, describe
from common.markdown import replace_block, table
from common.onnx_encoder import DISABLED_FUSIONS, SERVING, SessionConfig, make_session

BENCH_PAGE = Path(__file__).resolve().parents[1] / "docs" / "benchmark.md"

# onnxruntime's operators after its graph optimizations, by what kind of work they do
INT8_PRODUCTS = {
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
    "MatMulInteger",
    "QAttention",
    "DynamicQuantizeLinear",
    "QGemm",
}
FP32_PRODUCTS = {"MatMul", "FusedMatMul", "Gemm", "Attention", "MultiHeadAttention"}
# operators whose kernel time is that of the subgraph they run, whose operators the profile lists too
# (the dense route's If, compression/export/dense_route.py): counting both would count that time twice
CONTROL_FLOW = {"If", "Loop", "Scan"}


def _batch_feeds(session, model_dir: Path, texts: list[str], batch: int) -> list[dict]:
    """The session's inputs for consecutive batches of `batch` texts, each padded to its own longest."""
    from common.onnx_encoder import batch_arrays, load_tokenizer

    tokenizer = load_tokenizer(model_dir / contract.TOKENIZER_FILE, 256)
    inputs = {i.name for i in session.get_inputs()}
    feeds = [
        {k: v for k, v in batch_arrays(tokenizer.encode_batch(texts[i : i + batch])).items() if k in inputs}
        for i in range(0, len(texts) - batch + 1, batch)
    ]
    if not feeds:
        raise ValueError(f"fewer than {batch} texts")
    return feeds


def op_times(
    model_dir: Path,
    texts: list[str],
    batch: int,
    threads: int,
    work: Path,
    disabled_fusions: tuple[str, ...] = DISABLED_FUSIONS,
) -> dict[str, float]:
    """Mean kernel milliseconds per batch, by operator type, over batches of `batch` consecutive texts,
    in a session like the service's (its graph fusions; spinning threads, so no wake-up in the times)."""
    session = make_session(
        model_dir / contract.MODEL_FILE,
        SessionConfig(threads=threads),
        disabled_fusions=disabled_fusions,
        profile_prefix=str(work / model_dir.name),
    )
    feeds = _batch_feeds(session, model_dir, texts, batch)
    for feed in feeds[:2] + feeds:  # two warm-up runs, profiled too but left out below
        session.run([contract.OUTPUT_EMBEDDING], feed)
    profile = Path(session.end_profiling())
    events = json.loads(profile.read_text())
    profile.unlink()
    runs = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    warm_end = runs[1]["ts"] + runs[1]["dur"] if len(runs) > 2 else 0
    totals: collections.Counter[str] = collections.Counter()
    for e in events:
        if (
            e.get("cat") == "Node"
            and e["name"].endswith("_kernel_time")
            and e["ts"] > warm_end
            and e["args"]["op_name"] not in CONTROL_FLOW
        ):
            totals[e["args"]["op_name"]] += e["dur"] / 1e3
    return {op: ms / len(feeds) for op, ms in totals.items()}


def wall_times(
    model_dirs: dict[str, Path], texts: list[str], batch: int, threads: int, repetitions: int, spin: bool = False
) -> dict[str, list[float]]:
    """Wall-clock ms per batch of session.run alone (the service's session settings, no profiler), per
    repetition: the profile counts kernels, not the time between them, which at batch 1 is a large
    share. Each repetition runs every model over the same batches, starting with a different model."""
    runs = {}
    for name, model_dir in model_dirs.items():
        session = make_session(model_dir / contract.MODEL_FILE, replace(SERVING, threads=threads, spin=spin))
        feeds = _batch_feeds(session, model_dir, texts, batch)
        session.run([contract.OUTPUT_EMBEDDING], feeds[0])  # warm-up
        runs[name] = (session, feeds)
    ms: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for rep in range(repetitions):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            session, feeds = runs[name]
            start = time.perf_counter()
            for feed in feeds:
                session.run([contract.OUTPUT_EMBEDDING], feed)
            ms[name].append((time.perf_counter() - start) * 1e3 / len(feeds))
    return ms


def wall_table(batch: int, ms: dict[str, list[float]]) -> list[dict]:
    """Rows of median ms per batch and the median of per-repetition speed ratios to the first model."""
    first = next(iter(ms.values()))
    rows = []
    for name, times in ms.items():
        ratios = sorted(f / t for f, t in zip(first, times))
        rows.append(
            {
                "model": name,
                "batch": batch,
                "wall ms per batch": round(statistics.median(times), 3),
                "× first model's speed": round(statistics.median(ratios), 3),
                "range over repetitions": f"{ratios[0]:.3f}–{ratios[-1]:.3f}",
            }
        )
    return rows


def split(times: dict[str, float]) -> dict[str, float]:
    int8 = sum(v for k, v in times.items() if k in INT8_PRODUCTS)
    fp32 = sum(v for k, v in times.items() if k in FP32_PRODUCTS)
    return {"int8 products": int8, "fp32 products": fp32, "other": sum(times.values()) - int8 - fp32}


def operator_table(batch: int, per_model: dict[str, dict[str, float]], rows: int = 15) -> str:
    """ms per batch of each operator type, one column per model, the largest in the last model first:
    where one model's extra time goes relative to another's."""
    names = list(per_model)
    ops = sorted(
        {op for times in per_model.values() for op in times}, key=lambda op: -per_model[names[-1]].get(op, 0.0)
    )
    body = [{"operator": op, **{name: round(per_model[name].get(op, 0.0), 2) for name in names}} for op in ops[:rows]]
    return f"Batch {batch}, ms per batch by operator:\n\n" + table(("operator", *names), body)


def sessions(names: list[str], fusions: list[str]) -> list[tuple[str, str, tuple[str, ...]]]:
    """(row label, model, fusions disabled) for each model as served, then with each of `fusions`
    turned back on (a fusion the service leaves out, to show what it would cost)."""
    out = []
    for name in names:
        out.append((name, name, DISABLED_FUSIONS))
        out += [(f"{name} +{f}", name, tuple(d for d in DISABLED_FUSIONS if d != f)) for f in fusions]
    return out


def run(
    models_dir: Path,
    names: list[str],
    batches: list[int],
    threads: int,
    data_dir: Path,
    sentences: int,
    by_operator: bool = False,
    fusions: list[str] = (),
    wall: int = 0,
    spin: bool = False,
) -> str:
    from compression.corpus import read_sts

    sts = read_sts(data_dir, "test")
    texts = (sts.s1 + sts.s2)[:sentences]
    rows, detail = [], []
    with tempfile.TemporaryDirectory(prefix="ops-") as work:
        for batch in batches:
            base_total = None
            per_model = {}
            for label, name, disabled in sessions(names, list(fusions)):
                times = per_model[label] = op_times(models_dir / name, texts, batch, threads, Path(work), disabled)
                parts = split(times)
                total = sum(parts.values())
                base_total = base_total or total  # the first model listed is the reference
                top = sorted(times.items(), key=lambda kv: -kv[1])[:3]
                rows.append(
                    {
                        "model": label,
                        "batch": batch,
                        "ms per batch": round(total, 2),
                        **{k: round(v, 2) for k, v in parts.items()},
                        "× first model's speed": round(base_total / total, 2),
                        "largest operators (ms)": ", ".join(f"{k} {v:.1f}" for k, v in top),
                    }
                )
            if by_operator:
                detail.append(operator_table(batch, per_model))
    cols = (
        "model",
        "batch",
        "ms per batch",
        "int8 products",
        "fp32 products",
        "other",
        "× first model's speed",
        "largest operators (ms)",
    )
    return (
        table(cols, rows) + f"\n\nMeasured by `python -m bench.ops` on {describe(cpu_info())}, onnxruntime's "
        f"profiler, {threads} thread(s), {len(texts)} STS-B test sentences in consecutive batches; "
        "kernel time only (no tokenizer, no Python), after two warm-up batches; onnxruntime fusions "
        f"left out as the service does: {', '.join(DISABLED_FUSIONS) or 'none'}."
        + (_wall_section(models_dir, names, batches, threads, texts, wall, spin) if wall else "")
        + "".join(f"\n\n{d}" for d in detail)
    )


def _wall_section(
    models_dir: Path,
    names: list[str],
    batches: list[int],
    threads: int,
    texts: list[str],
    repetitions: int,
    spin: bool = False,
) -> str:
    rows = [
        row
        for batch in batches
        for row in wall_table(
            batch, wall_times({n: models_dir / n for n in names}, texts, batch, threads, repetitions, spin)
        )
    ]
    cols = ("model", "batch", "wall ms per batch", "× first model's speed", "range over repetitions")
    settings = "but idle threads spinning, as in-process" if spin else "no spinning"
    return (
        f"\n\nWall-clock time of `session.run` alone, the same batches and threads, the service's session "
        f"settings ({settings}), {repetitions} repetitions with the models interleaved; speed ratios are "
        "medians of per-repetition ratios:\n\n" + table(cols, rows)
    )


def main(argv: list[str] | None = None) -> int:
    from compression.corpus import default_data_dir

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models-dir", type=Path, default=Path("models"))
    p.add_argument(
        "--models",
        nargs="+",
        default=["minilm-l6", "minilm-l6-int8", "minilm-l6-fact"],
        help="model directories under --models-dir; the first is the speed reference",
    )
    p.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (1: no scheduling noise)")
    p.add_argument("--sentences", type=int, default=640)
    p.add_argument("--data-dir", type=Path, default=None, help="shared data directory (default: ../shared/data)")
    p.add_argument("--by-operator", action="store_true", help="also a table per batch of every operator type's time")
    p.add_argument(
        "--fusion",
        action="append",
        default=[],
        choices=DISABLED_FUSIONS,
        help="also profile each model with this onnxruntime fusion back on (the service leaves it out)",
    )
    p.add_argument(
        "--wall",
        type=int,
        default=0,
        metavar="REPS",
        help="also time session.run by the wall clock, this many interleaved repetitions",
    )
    p.add_argument(
        "--spin",
        action="store_true",
        help="time --wall with idle threads spinning (the in-process default) instead of the service's",
    )
    p.add_argument(
        "--cpu",
        choices=("native", "avx2"),
        default="native",
        help="avx2: run in a child that sees this CPU without AVX-512/VNNI (bench/cpuid), so "
        "onnxruntime takes the kernels AVX2-only hosts run",
    )
    p.add_argument(
        "--publish",
        action="store_true",
        help="also write the table into docs/benchmark.md's ops block (ops-avx2 with --cpu avx2)",
    )
    args = p.parse_args(argv)
    if args.cpu == "avx2":
        from bench.cpuid import run_as_avx2

        status = run_as_avx2("bench.ops", argv)
        if status is not None:
            return status
    missing = [m for m in args.models if not (args.models_dir / m / contract.MODEL_FILE).is_file()]
    if missing:
        p.error(f"not built under {args.models_dir}: {', '.join(missing)}")
    out = run(
        args.models_dir,
        args.models,
        args.batches,
        args.threads,
        args.data_dir or default_data_dir(),
        args.sentences,
        args.by_operator,
        args.fusion,
        args.wall,
        args.spin,
    )
    print(out)
    if args.publish:
        replace_block(BENCH_PAGE, "ops" if args.cpu == "native" else "ops-avx2", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
