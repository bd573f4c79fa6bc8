"""The issue's targets for the compressed model, each a ratio taken within one repetition
of the same run, summarised as min / median / max over repetitions."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
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
    return {
        "target": target.name,
        "op": target.op,
        "goal": target.goal,
        **s,
        "values": values,
        "met": margin >= 0,
        "by": margin,
    }


def efficiency_concurrency(concurrencies: Iterable[int]) -> int:
    """The concurrency whose throughput is judged against the in-process ceiling: 32, as the issue asks."""
    concurrencies = list(concurrencies)
    return 32 if 32 in concurrencies else max(concurrencies)


def samples(section: dict, name: str, mode: str) -> list[dict]:
    """One contender's samples of one mode, one per repetition ([] if it was not measured)."""
    return section.get(name, {}).get(mode, [])


def against_ceiling(
    measured: list[dict], ceilings: list[dict], key: str, combine: Callable[[float, float], float]
) -> list[float]:
    """combine(HTTP value, ceiling value) per repetition; the ceiling taken just before each HTTP
    sample when the run recorded one, else the same repetition's in-process sample."""
    return [combine(s[key], s.get("ceiling", c)[key]) for s, c in zip(measured, ceilings)]


def evaluate(results: dict, compressed: str, baseline: str, st: str | None, int8: str | None = None) -> list[dict]:
    """Ratios per repetition from the in-process, HTTP and memory samples of one run (int8: the plain
    int8 variant the compressed model must be at least as fast as, at batch 1 and at the largest batch)."""
    ip, http, mem = results["in_process"], results["http"], results["memory"]

    def per_rep(section: dict, name: str, mode: str, key: str) -> list[float]:
        return [s[key] for s in samples(section, name, mode)]

    out = []
    b32 = f"b{max(results['config']['batches'])}"
    c_b32, base_b32 = per_rep(ip, compressed, b32, "sentences_per_s"), per_rep(ip, baseline, b32, "sentences_per_s")
    if c_b32 and base_b32:
        out.append(
            judge(
                Target(f"{compressed} / {baseline} in-process throughput at {b32}", ">=", 3.0),
                [a / b for a, b in zip(c_b32, base_b32)],
            )
        )
    for mode in ("b1", b32) if int8 else ():
        a, b = per_rep(ip, compressed, mode, "sentences_per_s"), per_rep(ip, int8, mode, "sentences_per_s")
        if a and b:
            out.append(
                judge(
                    Target(f"{compressed} / {int8} in-process throughput at {mode}", ">=", 1.0),
                    [x / y for x, y in zip(a, b)],
                )
            )
    fidelity = (results["static"][compressed].get("quality") or {}).get("fidelity_mean")
    if fidelity is not None:
        out.append(judge(Target(f"{compressed} mean fidelity to {baseline} (manifest)", ">=", 0.99), [fidelity]))
    if st:
        for mode, goal in ((b32, 4.0), ("b1", 10.0)):
            a, b = per_rep(ip, compressed, mode, "sentences_per_s"), per_rep(ip, st, mode, "sentences_per_s")
            if a and b:
                out.append(
                    judge(
                        Target(f"{compressed} / {st} in-process throughput at {mode}", ">=", goal),
                        [x / y for x, y in zip(a, b)],
                    )
                )
    conc = efficiency_concurrency(results["config"]["concurrencies"])
    served, ceilings = samples(http, compressed, f"c{conc}"), samples(ip, compressed, b32)
    if served and ceilings:
        out.append(
            judge(
                Target(f"{compressed} service at concurrency {conc} / its in-process {b32}", ">=", 0.85),
                against_ceiling(served, ceilings, "sentences_per_s", lambda a, b: a / b),
            )
        )
    c1, b1 = samples(http, compressed, "c1"), samples(ip, compressed, "b1")
    if c1 and b1:
        out.append(
            judge(
                Target(f"{compressed} service p99 at concurrency 1 minus its in-process b1 p99 (ms)", "<=", 2.0),
                against_ceiling(c1, b1, "p99_ms", lambda a, b: a - b),
            )
        )
    rss = results.get("service_rss", {})
    if compressed in rss and baseline in rss:  # each service holds only its own model
        c_rss, b_rss = (rss[n].get("after_each_rep") or [rss[n]["after_load"]] for n in (compressed, baseline))
        out.append(
            judge(
                Target(
                    f"service RSS holding only {compressed} / only {baseline} (after each repetition's load)", "<=", 0.5
                ),
                [a / b for a, b in zip(c_rss, b_rss)],
            )
        )
    c_mem = [m["rss_warm"] - m["rss_empty"] for m in mem.get(compressed, [])]
    b_mem = [m["rss_warm"] - m["rss_empty"] for m in mem.get(baseline, [])]
    if c_mem and b_mem:
        out.append(
            judge(
                Target(f"{compressed} / {baseline} resident memory (warm, over an empty interpreter)", "<=", 0.5),
                [a / b for a, b in zip(c_mem, b_mem)],
            )
        )
    return out
