"""Target arithmetic of the benchmark: the service is judged against the ceiling sampled next to it."""

from __future__ import annotations

from bench.targets import against_ceiling, efficiency_concurrency, evaluate


def _results(http_c32: list[dict], ip_b32: list[float]) -> dict:
    return {
        "config": {"batches": [1, 32], "concurrencies": [1, 32]},
        "static": {"fact": {}},
        "memory": {},
        "service_rss": {},
        "in_process": {"fact": {"b32": [{"sentences_per_s": v} for v in ip_b32]}},
        "http": {"fact": {"c32": http_c32}},
    }


def test_efficiency_uses_the_adjacent_ceiling_when_recorded():
    served = [
        {"sentences_per_s": 90.0, "ceiling": {"sentences_per_s": 100.0}},
        {"sentences_per_s": 45.0, "ceiling": {"sentences_per_s": 50.0}},
    ]
    [t] = evaluate(_results(served, [200.0, 200.0]), "fact", "base", None)
    assert t["values"] == [0.9, 0.9] and t["met"]


def test_efficiency_falls_back_to_the_same_repetition():
    [t] = evaluate(_results([{"sentences_per_s": 80.0}], [100.0]), "fact", "base", None)
    assert t["values"] == [0.8] and not t["met"] and round(t["by"], 6) == -0.05


def test_latency_gap_subtracts_the_ceiling():
    gaps = against_ceiling(
        [{"p99_ms": 7.0, "ceiling": {"p99_ms": 4.0}}, {"p99_ms": 6.0}],
        [{"p99_ms": 9.0}] * 2,
        "p99_ms",
        lambda a, b: a - b,
    )
    assert gaps == [3.0, -3.0]


def test_compressed_is_judged_against_int8_at_batch_1_and_the_largest_batch():
    r = _results([], [])

    def runs(*values: float) -> list[dict]:
        return [{"sentences_per_s": v} for v in values]

    r["in_process"] = {
        "fact": {"b1": runs(99.0, 105.0, 101.0), "b32": runs(130.0, 130.0, 130.0)},
        "int8": {"b1": runs(100.0, 100.0, 100.0), "b32": runs(100.0, 100.0, 100.0)},
    }
    b1, b32 = evaluate(r, "fact", "base", None, int8="int8")
    assert b1["target"] == "fact / int8 in-process throughput at b1" and b1["values"] == [0.99, 1.05, 1.01]
    assert b1["median"] == 1.01 and b1["met"] and b1["min"] == 0.99
    assert b32["median"] == 1.3 and b32["met"]
    r["in_process"]["fact"]["b1"] = [{"sentences_per_s": 98.0}] * 3
    assert not evaluate(r, "fact", "base", None, int8="int8")[0]["met"]
    assert evaluate(r, "fact", "base", None) == []  # no int8 in the run: nothing judged


def test_efficiency_concurrency():
    assert efficiency_concurrency((1, 8, 32, 64)) == 32 and efficiency_concurrency((1, 8)) == 8


def test_service_memory_is_judged_after_each_repetition():
    r = _results([], [])
    r["service_rss"] = {
        "fact": {"after_load": 60, "after_each_rep": [40, 50, 60]},
        "base": {"after_load": 100, "after_each_rep": [100, 100, 100]},
    }
    [t] = evaluate(r, "fact", "base", None)
    assert t["values"] == [0.4, 0.5, 0.6] and t["median"] == 0.5 and t["met"]
    del r["service_rss"]["fact"]["after_each_rep"]  # a run from before per-repetition samples
    [t] = evaluate(r, "fact", "base", None)
    assert t["values"] == [0.6] and not t["met"]


def test_service_floor_line_bounds_the_memory_ratio():
    from bench.report import service_floor_line

    mb = 1e6
    results = {
        "compressed": "fact",
        "baseline": "base",
        "static": {"fact": {"file_bytes": 16 * mb}, "base": {"file_bytes": 90 * mb}},
        "service_rss": {
            "fact": {"after_warmup": 140 * mb, "after_load": 150 * mb, "model_load_delta": 40 * mb},
            "base": {"after_warmup": 200 * mb, "after_load": 260 * mb, "model_load_delta": 110 * mb},
        },
    }
    line = service_floor_line(results)
    # 100 MB besides the model: 0.50 of the baseline's 200; with the 16 MB file added, 0.58.
    assert "holds 100 MB" in line and ": 0.50 of the base service after warm-up (200 MB)" in line
    assert line.endswith("no more than its 16.0 MB file, 0.58.")
    del results["service_rss"]["fact"]["model_load_delta"]
    assert service_floor_line(results) == ""
