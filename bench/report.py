"""The benchmark's markdown: the full report beside the raw JSON, and the README summary."""

from __future__ import annotations

import statistics

from common.markdown import table

MB = 1e6
PLOTS = ("throughput.png", "latency_vs_concurrency.png", "pareto.png")


def _spread(samples: list[dict], key: str, fmt: str = "{:.0f}") -> str:
    vals = [s[key] for s in samples]
    med = fmt.format(statistics.median(vals))
    return med if len(vals) == 1 else f"{med} [{fmt.format(min(vals))}–{fmt.format(max(vals))}]"


def _med(samples: list[dict], key: str) -> float:
    return statistics.median(s[key] for s in samples)


def machine_line(results: dict) -> str:
    m, v = results["machine"], results["versions"]
    features = ", ".join(m.get("features") or []) or "features not recorded"
    return (
        f"{m['cpu']} ({m['cpus']} cores; {features}), {m['platform']}, Python {m['python']}; "
        + ", ".join(f"{k} {val}" for k, val in v.items())
        + f"; run {results['started']}, "
        f"{results['duration_s'] / 60:.1f} min, {results['config']['reps']} repetitions of "
        f"{results['config']['seconds']:g} s per sample, contenders interleaved"
        f"{_slices(results['config'])}, "
        f"HTTP load from {results.get('load_generator', 'httpx')}" + _server_line(results)
    )


def _slices(config: dict) -> str:
    n = config.get("slices", 1)  # runs before 2026-12-06 (late) took each in-process sample whole
    return f" (in-process samples in {n} turns each)" if n > 1 else ""


def _server_line(results: dict) -> str:
    s = results.get("server_settings")
    if not s:
        return ""
    threads = s["threads"] or "auto"
    return (
        f"; service: {s['workers']} inference worker(s) × {threads} onnxruntime thread(s), "
        f"GIL switch {s['gil_switch_ms']:g} ms, max wait {s['max_wait_ms']:g} ms"
    )


def static_table(results: dict) -> str:
    rows = []
    for name, s in results["static"].items():
        q, p = s.get("quality") or {}, s.get("params") or {}
        rows.append(
            {
                "contender": name,
                "file MB": f"{s['file_bytes'] / MB:.2f}",
                "table MB": f"{s['embedding_bytes'] / MB:.2f}" if s.get("embedding_bytes") else None,
                "params emb / enc / total": f"{p['embedding']:,} / {p['encoder']:,} / {p['total']:,}" if p else None,
                "STS-B": q.get("stsb_spearman"),
                "fidelity mean": q.get("fidelity_mean"),
                "fidelity p1": q.get("fidelity_p1"),
            }
        )
    return table(list(rows[0]), rows)


def memory_table(results: dict) -> str:
    rows = []
    for name, probes in results["memory"].items():
        delta = [
            {k: (p[k] - p["rss_empty"]) / MB for k in ("rss_runtime", "rss_load", "rss_warm", "rss_peak")}
            for p in probes
        ]
        own = [{"own": (p["rss_warm"] - p["rss_runtime"]) / MB} for p in probes]
        rows.append(
            {
                "contender": name,
                "runtime libraries MB": _spread(delta, "rss_runtime"),
                "RSS after load MB": _spread(delta, "rss_load"),
                "after warm batch MB": _spread(delta, "rss_warm"),
                "model's own (warm − libraries) MB": _spread(own, "own"),
                "peak in batch-32 runs MB": _spread(delta, "rss_peak"),
                "cold start s": _spread(probes, "first_answer_s", "{:.2f}"),
            }
        )
    return table(list(rows[0]), rows)


def in_process_table(results: dict) -> str:
    rows = [
        {
            "contender": name,
            "mode": mode,
            "sentences/s": _spread(samples, "sentences_per_s"),
            "p50 ms": f"{_med(samples, 'p50_ms'):.2f}",
            "p95 ms": f"{_med(samples, 'p95_ms'):.2f}",
            "p99 ms": f"{_med(samples, 'p99_ms'):.2f}",
        }
        for name, modes in results["in_process"].items()
        for mode, samples in modes.items()
    ]
    return table(list(rows[0]), rows)


def http_table(results: dict) -> str:
    b = f"b{max(results['config']['batches'])}"
    rows = []
    for name, modes in results["http"].items():
        ceiling = _med(results["in_process"][name][b], "sentences_per_s")
        for mode, samples in modes.items():
            errors = sum(v for s in samples for k, v in s["statuses"].items() if k != "200")
            rows.append(
                {
                    "contender": name,
                    "mode": mode,
                    "sentences/s": _spread(samples, "sentences_per_s"),
                    "p50 ms": f"{_med(samples, 'p50_ms'):.2f}",
                    "p95 ms": f"{_med(samples, 'p95_ms'):.2f}",
                    "p99 ms": f"{_med(samples, 'p99_ms'):.2f}",
                    f"efficiency (÷ in-process {b})": f"{_med(samples, 'sentences_per_s') / ceiling:.0%}",
                    "non-200": errors,
                }
            )
    return table(list(rows[0]), rows)


def service_memory_table(results: dict) -> str:
    """Each service's RSS, and how much of it loading and warming its model added (the service's own
    gauge): the rest is what a service pays whatever it serves, which bounds any RSS ratio."""
    rows = []
    for name, r in results["service_rss"].items():
        delta, rest = r.get("model_load_delta"), _service_rest(r)
        rows.append(
            {
                "contender": name,
                "service RSS after warm-up MB": f"{r['after_warmup'] / MB:.0f}",
                "after the load test MB": f"{r['after_load'] / MB:.0f}",
                "model's load delta MB": None if delta is None else f"{delta / MB:.0f}",
                "rest of the process after warm-up MB": None if rest is None else f"{rest / MB:.0f}",
            }
        )
    return table(list(rows[0]), rows)


def _service_rest(r: dict) -> float | None:
    """A service's RSS after warm-up less what its model's load added (None: the run has no gauge)."""
    delta = r.get("model_load_delta")
    return None if delta is None else r["after_warmup"] - delta


def service_floor_line(results: dict) -> str:
    """What the service RSS target could reach at best, both after warm-up: the compressed model's service
    without its model's load delta (the service imports its libraries before measuring it), then with
    only the model file's bytes added back, over the baseline's service."""
    rss, c, b = results["service_rss"], results.get("compressed"), results.get("baseline")
    rest = _service_rest(rss[c]) if c in rss and b in rss else None
    if rest is None:
        return ""
    base = rss[b]["after_warmup"]
    line = (
        f"Less its model's load delta, the {c} service after warm-up holds {rest / MB:.0f} MB (interpreter, "
        f"web stack, onnxruntime, tokenizers): {rest / base:.2f} of the {b} service after warm-up "
        f"({base / MB:.0f} MB), the ratio a model that added nothing would reach"
    )
    file_bytes = results.get("static", {}).get(c, {}).get("file_bytes")
    if file_bytes:
        line += (
            f"; were the model to add no more than its {file_bytes / MB:.1f} MB file, {(rest + file_bytes) / base:.2f}"
        )
    return line + "."


def targets_table(results: dict) -> str:
    rows = [
        {
            "target": t["target"],
            "goal": f"{t['op']} {t['goal']:g}",
            "min": f"{t['min']:.3g}",
            "median": f"{t['median']:.3g}",
            "max": f"{t['max']:.3g}",
            "verdict": "met" if t["met"] else f"missed by {abs(t['by']):.3g}",
        }
        for t in results["targets"]
    ]
    return table(["target", "goal", "min", "median", "max", "verdict"], rows) if rows else "(no targets applied)"


def full_report(results: dict) -> str:
    parts = [
        f"# Benchmark {results['started']}",
        "",
        machine_line(results),
        "",
        f"Sentences: {results['config']['sentences']} from STS-B test. `python -m bench "
        f"{'--quick ' if results['quick'] else ''}` made this report.",
        "",
        "## Targets (ratios within each repetition; min / median / max)",
        "",
        targets_table(results),
        "",
        "## Static",
        "",
        static_table(results),
        "",
        "## Memory and cold start (each contender in fresh processes; RSS over an empty interpreter)",
        "",
        memory_table(results),
        "",
        "## In-process (tokenization + inference, as served)",
        "",
        in_process_table(results),
        "",
        "## Over HTTP (the real service on loopback, keep-alive clients from "
        f"{results.get('load_generator', 'httpx')})",
        "",
        http_table(results),
        "",
        service_memory_table(results),
        "",
        service_floor_line(results),
        "",
        "## Plots",
        "",
        *[f"![{p}]({p})" for p in PLOTS],
        "",
    ]
    return "\n".join(parts)


def readme_summary(results: dict, plot_dir: str) -> str:
    b = f"b{max(results['config']['batches'])}"
    rows = []
    for name in results["static"]:
        ip = results["in_process"].get(name, {})
        http = results["http"].get(name, {})
        mem = results["memory"].get(name, [])
        rows.append(
            {
                "contender": name,
                "in-process b1 sent/s": _spread(ip["b1"], "sentences_per_s") if "b1" in ip else None,
                f"in-process {b} sent/s": _spread(ip[b], "sentences_per_s") if b in ip else None,
                "HTTP c32 sent/s": _spread(http["c32"], "sentences_per_s") if "c32" in http else None,
                "HTTP c1 p99 ms": f"{_med(http['c1'], 'p99_ms'):.1f}" if "c1" in http else None,
                "RSS warm MB": f"{statistics.median((m['rss_warm'] - m['rss_empty']) / MB for m in mem):.0f}"
                if mem
                else None,
                "cold start s": _spread(mem, "first_answer_s", "{:.2f}") if mem else None,
            }
        )
    return "\n".join(
        [
            f"Machine: {machine_line(results)}.",
            "",
            table(list(rows[0]), rows),
            "",
            targets_table(results),
            "",
            " ".join(f"![{p}]({plot_dir}/{p})" for p in PLOTS),
        ]
    )
