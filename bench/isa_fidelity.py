"""`python -m bench.isa_fidelity`: each model's host self-check on this CPU and on an emulated one.

onnxruntime picks its int8 kernels from the CPU's features at run time (MLAS reads cpuid): on AVX-512
VNNI a u8×s8 product accumulates in int32, on AVX2 it goes through `vpmaddubsw`, which adds two
products in a saturating int16. So one model file can be more or less faithful depending on the host,
and a machine with VNNI cannot measure the AVX2 figure natively. qemu's user-mode emulator can:
`qemu-x86_64 -cpu Haswell` runs this same interpreter and onnxruntime on a virtual CPU that reports
AVX2 and FMA but no AVX-512, so MLAS takes its AVX2 kernels and computes exactly their integer
arithmetic. The floating-point ops around them may round differently from real silicon only where an
instruction's result is not fixed by IEEE 754 (none of those MLAS uses here), so the fidelity measured
is the AVX2 kernel's; the *speed* under emulation means nothing and is not reported.

The same AVX2 kernels also run at native speed on this silicon when `cpuid` is answered without
AVX-512 and VNNI (bench/cpuid, where the CPU can fault on cpuid): a second, independent way to the
AVX2 figure, and the one bench.ops times.

Each measurement is the service's own host check (service/host_check.py: the directory's probe set
against the fp32 baseline's stored embeddings), run in a child process natively and under each
emulated CPU; the child reports the features the CPU advertises to it (numpy's runtime dispatch reads
the same cpuid), so the table shows which kernels could run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from common import contract
from common.machine import cpu_info, describe
from common.markdown import replace_block, table

REPO = Path(__file__).resolve().parents[1]
RESULTS_PAGE = REPO / "docs" / "results.md"
# cpuid features (numpy's names) that decide which int8 kernel MLAS runs
KERNEL_FEATURES = ("AVX2", "FMA3", "AVX512F", "AVX512BW", "AVX512VNNI")
DEFAULT_CPUS = ("Haswell",)  # AVX2 + FMA, no AVX-512: the AVX2-only machines' kernels
CHILD_TIMEOUT_S = 3600
HIDDEN = "hidden"  # run_child's `emulate` for this CPU with AVX-512/VNNI hidden from cpuid
HIDDEN_LABEL = "AVX2 kernels here"


def advertised_features() -> list[str]:
    """The kernel-relevant features this process's CPU reports through cpuid (real or emulated)."""
    from numpy._core._multiarray_umath import __cpu_features__

    return [f for f in KERNEL_FEATURES if __cpu_features__.get(f)]


def child(model_dirs: list[Path]) -> dict:
    """Runs in the measured process: each directory loaded as the service loads it (validation,
    session settings, warm-up, host check), and the host check's figures."""
    from common.onnx_encoder import SERVING
    from service.registry import read_model_dir

    out = {"features": advertised_features(), "models": {}}
    for d in model_dirs:
        host = read_model_dir(d, SERVING)[3]
        out["models"][d.name] = (
            None
            if host is None
            else {"mean": host.mean, "p1": host.p1, "texts": host.texts, "built_mean": host.built_mean}
        )
    return out


def run_child(model_dirs: list[Path], emulate: str | None) -> dict:
    """One child process (under `qemu-x86_64 -cpu <emulate>`, or with the cpuid shim for HIDDEN, when
    given); its JSON answer."""
    cmd = [sys.executable, "-m", "bench.isa_fidelity", "--child", *map(str, model_dirs)]
    env = None
    if emulate == HIDDEN:
        from bench.cpuid import avx2_env

        env = avx2_env()
    elif emulate:
        qemu = shutil.which("qemu-x86_64")
        if qemu is None:
            raise RuntimeError("qemu-x86_64 not found (Debian: apt-get install qemu-user)")
        cmd = [qemu, "-cpu", emulate, *cmd]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, env=env)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{'under ' + emulate if emulate else 'native'} check failed: {tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(model_dirs: list[Path], cpus: list[str], hidden: bool = True) -> str:
    """The table: natively, with AVX-512/VNNI hidden from cpuid (`hidden`, where this CPU can), and
    under each emulated CPU."""
    import onnxruntime

    from bench.cpuid import unavailable_reason

    runs = {"native": run_child(model_dirs, None)}
    why_not = unavailable_reason() if hidden else "not asked for"
    if why_not is None:
        runs[HIDDEN_LABEL] = run_child(model_dirs, HIDDEN)
    runs.update({f"emulated {c}": run_child(model_dirs, c) for c in cpus})
    rows = []
    for d in model_dirs:
        row = {"model": d.name, "built with (manifest)": (runs["native"]["models"][d.name] or {}).get("built_mean")}
        for label, result in runs.items():
            host = result["models"][d.name]
            row[label] = "–" if host is None else f"{host['mean']:.5f} / p1 {host['p1']:.5f}"
        rows.append(row)
    features = "; ".join(
        f"{label}: {' '.join(r['features']) or 'none of ' + ', '.join(KERNEL_FEATURES)}" for label, r in runs.items()
    )
    texts = next((m["texts"] for m in runs["native"]["models"].values() if m), 0)
    return (
        table(("model", "built with (manifest)", *runs), rows)
        + f"\n\nMeasured by `python -m bench.isa_fidelity` on {describe(cpu_info())}, onnxruntime "
        f"{onnxruntime.__version__}: the service's host check (mean / p1 cosine to the fp32 baseline over "
        f"{texts} probe texts), natively, "
        + (
            "with AVX-512 and VNNI hidden from cpuid (bench/cpuid: this silicon running the AVX2 kernels)"
            if why_not is None
            else f"not with AVX-512 hidden ({why_not})"
        )
        + ", and under `qemu-x86_64 -cpu NAME` (user-mode emulation: the virtual CPU's features pick "
        f"onnxruntime's kernels; fidelity only, no speed). Features each process saw through cpuid — "
        f"{features}."
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "model_dirs",
        nargs="*",
        type=Path,
        default=[Path("models") / n for n in ("minilm-l6", "minilm-l6-int8", "minilm-l6-fact")],
    )
    p.add_argument("--cpu", action="append", dest="cpus", help=f"qemu CPU model to emulate (default: {DEFAULT_CPUS})")
    p.add_argument("--no-hidden", action="store_true", help="skip the run with AVX-512/VNNI hidden from cpuid")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--publish", action="store_true", help="also write the table into docs/results.md's isa block")
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.model_dirs)))
        return 0
    missing = [str(d) for d in args.model_dirs if not (d / contract.MANIFEST_FILE).is_file()]
    if missing:
        p.error(f"not a model directory: {', '.join(missing)}")
    try:
        out = report([d.resolve() for d in args.model_dirs], args.cpus or list(DEFAULT_CPUS), not args.no_hidden)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"isa_fidelity: {exc}", file=sys.stderr)
        return 1
    print(out)
    if args.publish:
        replace_block(RESULTS_PAGE, "isa", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
