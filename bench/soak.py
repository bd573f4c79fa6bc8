"""Steady load for a while, sampling the server's resident memory and the latency per
window; a least-squares slope per minute says whether either drifts upward."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import psutil

from .loadgen import drive, mixed_traffic


def slope_per_minute(t_s: list[float], values: list[float]) -> float:
    if len(t_s) < 2:
        return 0.0
    return float(np.polyfit(np.asarray(t_s) / 60, np.asarray(values), 1)[0])


def soak(
    url: str, pid: int, texts: list[str], models: list[str], seconds: float, window_s: float, concurrency: int = 8
) -> dict:
    proc = psutil.Process(pid)
    make = mixed_traffic(texts, models, seed=3)
    t, rss, p50, p99, statuses = [], [], [], [], {}
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        s = asyncio.run(drive(url, make, concurrency, window_s)).summary()
        t.append(time.perf_counter() - start)
        rss.append(proc.memory_info().rss / 1e6)
        p50.append(s["p50_ms"])
        p99.append(s["p99_ms"])
        for k, v in s["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    return {
        "seconds": round(time.perf_counter() - start, 1),
        "windows": len(t),
        "statuses": statuses,
        "rss_mb": rss,
        "p99_ms": p99,
        "rss_first_mb": rss[0],
        "rss_max_mb": max(rss),
        "rss_last_mb": rss[-1],
        "rss_slope_mb_per_min": slope_per_minute(t, rss),
        "p50_slope_ms_per_min": slope_per_minute(t, p50),
        "p99_slope_ms_per_min": slope_per_minute(t, p99),
    }
