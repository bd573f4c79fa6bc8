"""The issue's targets for the compressed model, each a ratio taken within one repetition
of the same run, summarised as min / median / max over repetitions."""
from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    name: str
    op: str  # ">=" or "<="
    goal: float


def spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def judge(target: Target, values: list[float]) -> dict:
    """Met on the median; `by` says how far the median is from the goal (negative: missed)."""
    s = spread(values)
    margin = s["median"] - target.goal if target.op == ">=" else target.goal - s["median"]
    return {"target": target.name, "op": target.op, "goal": target.goal, **s, "values": values,
            "met": margin >= 0, "by": margin}


def evaluate(results: dict, compressed: str, baseline: str, st: str | None) -> list[dict]:
    """Ratios per repetition from the in-process, HTTP and memory samples of one run."""
    ip, http, mem = results["in_process"], results["http"], results["memory"]

    def per_rep(section: dict, name: str, mode: str, key: str) -> list[float]:
        return [s[key] for s in section.get(name, {}).get(mode, [])]

    out = []
    b32 = f"b{max(results['config']['batches'])}"
    c_b32, base_b32 = per_rep(ip, compressed, b32, "sentences_per_s"), per_rep(ip, baseline, b32, "sentences_per_s")
    if c_b32 and base_b32:
        out.append(judge(Target(f"{compressed} / {baseline} in-process throughput at {b32}", ">=", 3.0),
                         [a / b for a, b in zip(c_b32, base_b32)]))
    fidelity = (results["static"][compressed].get("quality") or {}).get("fidelity_mean")
    if fidelity is not None:
        out.append(judge(Target(f"{compressed} mean fidelity to {baseline} (manifest)", ">=", 0.99), [fidelity]))
    if st:
        for mode, goal in ((b32, 4.0), ("b1", 10.0)):
            a, b = per_rep(ip, compressed, mode, "sentences_per_s"), per_rep(ip, st, mode, "sentences_per_s")
            if a and b:
                out.append(judge(Target(f"{compressed} / {st} in-process throughput at {mode}", ">=", goal),
                                 [x / y for x, y in zip(a, b)]))
    conc = 32 if 32 in results["config"]["concurrencies"] else max(results["config"]["concurrencies"])
    served = per_rep(http, compressed, f"c{conc}", "sentences_per_s")
    if served and c_b32:
        out.append(judge(Target(f"{compressed} service at concurrency {conc} / its in-process {b32}", ">=", 0.85),
                         [a / b for a, b in zip(served, c_b32)]))
    c1, b1 = per_rep(http, compressed, "c1", "p99_ms"), per_rep(ip, compressed, "b1", "p99_ms")
    if c1 and b1:
        out.append(judge(Target(f"{compressed} service p99 at concurrency 1 minus its in-process b1 p99 (ms)",
                                "<=", 2.0), [a - b for a, b in zip(c1, b1)]))
    rss = results.get("service_rss", {})
    if compressed in rss and baseline in rss:  # one value: each service holds only its own model
        out.append(judge(Target(f"service RSS holding only {compressed} / only {baseline} (after the load test)",
                                "<=", 0.5), [rss[compressed]["after_load"] / rss[baseline]["after_load"]]))
    c_mem = [m["rss_warm"] - m["rss_empty"] for m in mem.get(compressed, [])]
    b_mem = [m["rss_warm"] - m["rss_empty"] for m in mem.get(baseline, [])]
    if c_mem and b_mem:
        out.append(judge(Target(f"{compressed} / {baseline} resident memory (warm, over an empty interpreter)",
                                "<=", 0.5), [a / b for a, b in zip(c_mem, b_mem)]))
    return out
