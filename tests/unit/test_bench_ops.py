"""bench.ops: onnxruntime's profile of a model summed by operator and by kind of work."""

from pathlib import Path

import pytest

from bench.cpuid import unavailable_reason
from bench.ops import main, op_times, operator_table, split, wall_table, wall_times
from common.machine import HIDDEN_BY_SHIM, cpu_info
from tests.onnx_tiny import make_model_dir


def test_profile_of_a_tiny_model_by_operator(tmp_path: Path):
    model = make_model_dir(tmp_path / "tiny")
    texts = [f"word{i} and more words" for i in range(40)]
    times = op_times(model, texts, batch=8, threads=1, work=tmp_path)
    assert "Gather" in times and all(v >= 0 for v in times.values())
    assert not list(tmp_path.glob("*.json"))  # the profiler's file is removed
    with pytest.raises(ValueError):
        op_times(model, texts[:3], batch=8, threads=1, work=tmp_path)


def test_a_routed_graph_s_if_is_not_counted_beside_its_body(tmp_path: Path):
    """The dense route's If reports its body's time as its own; the body's operators are listed too."""
    import onnx
    from onnx import helper

    from common import contract
    from compression.export.dense_route import as_branch

    model_dir = make_model_dir(tmp_path / "routed")
    model = onnx.load(str(model_dir / contract.MODEL_FILE))
    g = model.graph
    route = [
        helper.make_node("ReduceMin", [contract.ATTENTION_MASK], ["min"], keepdims=0),
        helper.make_node("Cast", ["min"], ["dense"], to=onnx.TensorProto.BOOL),
        helper.make_node(
            "If", ["dense"], [o.name for o in g.output], then_branch=as_branch(g, "a/"), else_branch=as_branch(g, "b/")
        ),
    ]
    routed = helper.make_graph(route, g.name, list(g.input), list(g.output), list(g.initializer))
    onnx.save(helper.make_model(routed, opset_imports=list(model.opset_import)), str(model_dir / contract.MODEL_FILE))
    times = op_times(model_dir, [f"word{i} and more words" for i in range(40)], batch=8, threads=1, work=tmp_path)
    assert "If" not in times and "Gather" in times and "ReduceMin" in times


def test_split_by_kind_of_work():
    parts = split(
        {
            "DynamicQuantizeMatMul": 3.0,
            "MatMulIntegerToFloat": 1.0,
            "DynamicQuantizeLinear": 0.5,
            "MatMul": 2.0,
            "FusedMatMul": 1.0,
            "Softmax": 0.25,
            "SkipLayerNormalization": 0.25,
        }
    )
    assert parts == {"int8 products": 4.5, "fp32 products": 3.0, "other": 0.5}


def test_operator_table_puts_the_last_models_largest_first():
    out = operator_table(32, {"int8": {"Mul": 0.1, "MatMul": 1.0}, "fact": {"Mul": 2.5, "MatMul": 2.0, "Gather": 0.5}})
    lines = [line for line in out.splitlines() if line.startswith("| ") and "operator" not in line]
    assert [line.split("|")[1].strip() for line in lines] == ["Mul", "MatMul", "Gather"]
    assert "| Gather | 0.0 | 0.5 |" in out  # an operator one model lacks counts as 0 there


def test_wall_clock_of_two_models_interleaved(tmp_path: Path):
    a, b = make_model_dir(tmp_path / "a"), make_model_dir(tmp_path / "b")
    texts = [f"word{i} and more words" for i in range(16)]
    ms = wall_times({"a": a, "b": b}, texts, batch=4, threads=1, repetitions=3)
    assert set(ms) == {"a", "b"} and all(len(v) == 3 and min(v) > 0 for v in ms.values())
    with pytest.raises(ValueError):
        wall_times({"a": a}, texts[:3], batch=4, threads=1, repetitions=1)


def test_wall_table_ratios_are_per_repetition_medians():
    rows = wall_table(1, {"int8": [1.0, 2.0, 1.0], "fact": [2.0, 2.0, 0.5]})
    assert rows[0]["× first model's speed"] == 1.0
    # per repetition int8/fact = 0.5, 1.0, 2.0: the median is 1.0 although the median times differ
    assert rows[1]["× first model's speed"] == 1.0 and rows[1]["range over repetitions"] == "0.500–2.000"


@pytest.mark.skipif(unavailable_reason() is not None, reason=f"cpuid shim: {unavailable_reason()}")
def test_avx2_kernels_run_in_a_child_that_names_what_it_hid(tmp_path: Path, capfd):
    make_model_dir(tmp_path / "a")
    assert (
        main(["--models-dir", str(tmp_path), "--models", "a", "--batches", "4", "--sentences", "16", "--cpu", "avx2"])
        == 0
    )
    out = capfd.readouterr().out
    assert "| a | 4 |" in out
    assert ("hidden from cpuid by bench/cpuid" in out) == bool(set(cpu_info()["features"]) & set(HIDDEN_BY_SHIM))


def test_wall_clock_with_spinning_threads(tmp_path: Path):
    a = make_model_dir(tmp_path / "a")
    texts = [f"word{i} and more words" for i in range(8)]
    ms = wall_times({"a": a}, texts, batch=4, threads=2, repetitions=2, spin=True)
    assert len(ms["a"]) == 2 and min(ms["a"]) > 0
