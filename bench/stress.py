"""`make stress` (`python -m bench.stress`): the service under hostile input, a burst far above
capacity, many concurrent clients, a soak, schema fuzzing with schemathesis and a pip-audit
of the pinned dependencies. Prints the figures and writes bench/results/<ts>/stress.json.
The test suite runs the same functions on tiny models with small sizes."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import hostile, overload, soak
from .loadgen import read_sentences
from .server import Server

REPO = Path(__file__).resolve().parents[1]
FUZZ_CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance,negative_data_rejection"
)
# The default body timeout: under a burst a starved client can take seconds between headers and body.
STRESS_ENV = {"EMBED_QUEUE_SIZE": "256", "EMBED_BODY_TIMEOUT_S": "10", "EMBED_LOG_LEVEL": "warning"}


def hostile_round(server: Server) -> dict:
    before = server.rss() / 1e6
    results = [hostile.run_case(server.url, c) for c in hostile.cases(2_000_000, 10.0)]
    time.sleep(1.0)
    return {
        "cases": results,
        "failed": [r for r in results if not r["ok"]],
        "rss_before_mb": before,
        "rss_after_mb": server.rss() / 1e6,
    }


def fuzz(url: str, examples: int, seed: int = 1) -> dict:
    """schemathesis against the service's own OpenAPI schema."""
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        cmd = [
            exe,
            "run",
            f"{url}/openapi.json",
            "--checks",
            FUZZ_CHECKS,
            "--max-examples",
            str(examples),
            "--seed",
            str(seed),
            "--report",
            "junit",
            "--report-junit-path",
            str(report),
            "--no-color",
        ]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        tail = (r.stdout + r.stderr).strip().splitlines()[-25:]
    return {
        "exit_code": r.returncode,
        "seconds": round(time.perf_counter() - t0, 1),
        "max_examples": examples,
        "summary": tail,
        "command": " ".join(cmd[1:]),
    }


def audit() -> dict:
    """pip-audit of the installed environment (the pinned set), against PyPI's advisory data."""
    exe = shutil.which("pip-audit", path=str(Path(sys.executable).parent)) or "pip-audit"
    r = subprocess.run(
        [exe, "--format", "json", "--progress-spinner", "off", "--skip-editable"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    try:
        deps = json.loads(r.stdout)["dependencies"]
        vulns = [
            {"name": d["name"], "version": d["version"], "ids": [v["id"] for v in d["vulns"]]}
            for d in deps
            if d.get("vulns")
        ]
        return {"exit_code": r.returncode, "packages": len(deps), "vulnerable": vulns}
    except (ValueError, KeyError):
        return {"exit_code": r.returncode, "error": (r.stderr or r.stdout).strip().splitlines()[-3:]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--models-dir", type=Path, default=REPO / "models")
    p.add_argument("--models", nargs="+", default=["minilm-l6-fact", "minilm-l6"])
    p.add_argument("--sentences", type=Path, default=REPO.parent / "shared/data/stsbenchmark/sts-test.csv")
    p.add_argument("--burst-clients", type=int, default=300)
    p.add_argument("--soak-seconds", type=float, default=180)
    p.add_argument("--soak-window", type=float, default=10.0, help="seconds per memory/latency sample of the soak")
    p.add_argument("--fuzz-examples", type=int, default=200)
    p.add_argument("--no-audit", action="store_true")
    args = p.parse_args(argv)
    figures: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "models": args.models}
    with tempfile.TemporaryDirectory() as tmp:
        for m in args.models:
            (Path(tmp) / m).symlink_to((args.models_dir / m).resolve())
        with Server(Path(tmp), EMBED_DEFAULT_MODEL=args.models[0], **STRESS_ENV) as server:
            print("hostile inputs", flush=True)
            figures["hostile"] = hostile_round(server)
            print("references and concurrent clients", flush=True)
            texts = overload.distinct_texts(300, seed=0)
            refs = {m: overload.Reference(server.url, m, texts) for m in args.models}
            figures["concurrency"] = asyncio.run(overload.concurrent_clients(server.url, args.models, refs, 16, 20))
            print("burst", flush=True)
            figures["burst"] = asyncio.run(overload.burst(server.url, args.models, refs, args.burst_clients, 4, 5.0))
            figures["rss_after_burst_mb"] = server.rss() / 1e6
            print("soak", flush=True)
            assert server.proc is not None
            figures["soak"] = soak.soak(
                server.url,
                server.proc.pid,
                read_sentences(args.sentences),
                args.models,
                args.soak_seconds,
                window_s=args.soak_window,
            )
            print("fuzz", flush=True)
            figures["fuzz"] = fuzz(server.url, args.fuzz_examples)
            figures["rss_end_mb"] = server.rss() / 1e6
            figures["exit_code_on_sigterm"] = server.terminate()
    if not args.no_audit:
        print("pip-audit", flush=True)
        figures["audit"] = audit()
    out = REPO / "bench" / "results" / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    (out / "stress.json").write_text(json.dumps(figures, indent=1) + "\n")
    print(summary(figures))
    print(f"wrote {out / 'stress.json'}")
    return 0 if ok(figures) else 1


def ok(f: dict) -> bool:
    b, c = f["burst"]["burst"], f["concurrency"]
    return (
        not f["hostile"]["failed"]
        and b["failed"] == 0
        and b["wrong"] == 0
        and b["server_errors"] == 0
        and c["failed"] == 0
        and c["wrong"] == 0
        and f["fuzz"]["exit_code"] == 0
        and not any(k.startswith("5") for k in f["soak"]["statuses"])
        and not f.get("audit", {}).get("vulnerable")
    )


def summary(f: dict) -> str:
    b = f["burst"]
    s = f["soak"]
    lines = [
        f"hostile inputs: {len(f['hostile']['cases'])} cases, {len(f['hostile']['failed'])} failed; "
        f"RSS {f['hostile']['rss_before_mb']:.0f} -> {f['hostile']['rss_after_mb']:.0f} MB",
        f"concurrency: sent {f['concurrency']['sent']}, accepted {f['concurrency']['accepted']}, "
        f"wrong {f['concurrency']['wrong']}, failed {f['concurrency']['failed']}; lowest cosine of a batched "
        f"answer to the same text alone: {f['concurrency']['min_cos_to_alone']}",
        f"burst ({f['burst']['burst']['seconds']:.1f} s): sent {b['burst']['sent']}, "
        f"accepted {b['burst']['accepted']}, "
        f"shed {b['burst']['shed']} (without Retry-After {b['burst']['shed_without_retry_after']}), "
        f"failed {b['burst']['failed']}, 5xx {b['burst']['server_errors']}, wrong {b['burst']['wrong']}",
        f"p99 ms before / during (accepted) / after: {b['before']['p99_ms']:.1f} / "
        f"{(b['burst']['accepted_latency'] or {}).get('p99_ms', float('nan')):.1f} / {b['after']['p99_ms']:.1f}; "
        f"shed answers p99 {(b['burst']['shed_latency'] or {}).get('p99_ms', float('nan')):.1f} ms at the client, "
        f"server-side p99 of 429s <= {b['server_side']['status_429_p99_ms_at_most']} ms; "
        f"/healthz during burst: {b['healthz_during']['probes']} probes, {b['healthz_during']['failures']} failed, "
        f"p99 {b['healthz_during'].get('p99_ms', float('nan')):.1f} ms",
        f"soak {s['seconds']} s: statuses {s['statuses']}; RSS first/max/last {s['rss_first_mb']:.0f}/"
        f"{s['rss_max_mb']:.0f}/{s['rss_last_mb']:.0f} MB, slope {s['rss_slope_mb_per_min']:+.2f} MB/min; "
        f"p99 slope {s['p99_slope_ms_per_min']:+.2f} ms/min",
        f"fuzz: exit {f['fuzz']['exit_code']} with up to {f['fuzz']['max_examples']} examples per operation; "
        + " | ".join(x for x in f["fuzz"]["summary"] if x.strip())[-400:],
        f"max RSS after burst {f['rss_after_burst_mb']:.0f} MB, at end {f['rss_end_mb']:.0f} MB; "
        f"SIGTERM exit code {f['exit_code_on_sigterm']}",
    ]
    if "audit" in f:
        lines.append(f"pip-audit: {f['audit']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
