"""Target arithmetic of the benchmark: the service is judged against the ceiling sampled next to it."""
from __future__ import annotations

from bench.targets import against_ceiling, efficiency_concurrency, evaluate


def _results(http_c32: list[dict], ip_b32: list[float]) -> dict:
    return {"config": {"batches": [1, 32], "concurrencies": [1, 32]},
            "static": {"fact": {}}, "memory": {}, "service_rss": {},
            "in_process": {"fact": {"b32": [{"sentences_per_s": v} for v in ip_b32]}},
            "http": {"fact": {"c32": http_c32}}}


def test_efficiency_uses_the_adjacent_ceiling_when_recorded():
    served = [{"sentences_per_s": 90.0, "ceiling": {"sentences_per_s": 100.0}},
              {"sentences_per_s": 45.0, "ceiling": {"sentences_per_s": 50.0}}]
    [t] = evaluate(_results(served, [200.0, 200.0]), "fact", "base", None)
    assert t["values"] == [0.9, 0.9] and t["met"]


def test_efficiency_falls_back_to_the_same_repetition():
    [t] = evaluate(_results([{"sentences_per_s": 80.0}], [100.0]), "fact", "base", None)
    assert t["values"] == [0.8] and not t["met"] and round(t["by"], 6) == -0.05


def test_latency_gap_subtracts_the_ceiling():
    gaps = against_ceiling([{"p99_ms": 7.0, "ceiling": {"p99_ms": 4.0}}, {"p99_ms": 6.0}], [{"p99_ms": 9.0}] * 2,
                           "p99_ms", lambda a, b: a - b)
    assert gaps == [3.0, -3.0]


def test_efficiency_concurrency():
    assert efficiency_concurrency((1, 8, 32, 64)) == 32 and efficiency_concurrency((1, 8)) == 8


def test_service_memory_is_judged_after_each_repetition():
    r = _results([], [])
    r["service_rss"] = {"fact": {"after_load": 60, "after_each_rep": [40, 50, 60]},
                        "base": {"after_load": 100, "after_each_rep": [100, 100, 100]}}
    [t] = evaluate(r, "fact", "base", None)
    assert t["values"] == [0.4, 0.5, 0.6] and t["median"] == 0.5 and t["met"]
    del r["service_rss"]["fact"]["after_each_rep"]  # a run from before per-repetition samples
    [t] = evaluate(r, "fact", "base", None)
    assert t["values"] == [0.6] and not t["met"]
