"""In-process sampling: contenders' turns alternate, and each turn goes on through the pool."""

from __future__ import annotations

from bench.inprocess import interleaved


def test_turns_alternate_and_continue_through_the_pool():
    calls: list[tuple[str, str]] = []

    def encoder(name: str):
        def encode(texts: list[str]) -> None:
            calls.append((name, texts[0]))

        return encode

    pool = [f"t{i}" for i in range(1000)]
    out = interleaved({"a": encoder("a"), "b": encoder("b")}, pool, batch=2, seconds=0.0, slices=3)
    # seconds=0: each turn is its minimum of 3 batches, so 3 turns of 3 batches each, a then b
    assert [name for name, _ in calls] == (["a"] * 3 + ["b"] * 3) * 3
    assert [t for name, t in calls if name == "a"] == [f"t{2 * i}" for i in range(9)]
    assert out["a"]["batches"] == out["b"]["batches"] == 9 and out["a"]["batch"] == 2
    assert out["a"]["sentences_per_s"] > 0 and {"p50_ms", "p99_ms"} <= set(out["a"])
