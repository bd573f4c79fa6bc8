"""make_session leaves out the fusions in DISABLED_FUSIONS (SkipLayerNormalization was slower on the
CPU than the LayerNormalization and Add it replaces), and the profile shows which kernels ran."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bench.ops import sessions
from common.onnx_encoder import DISABLED_FUSIONS, make_session


def _residual_layernorm(path: Path) -> Path:
    """y = LayerNorm(x + r): the pattern onnxruntime fuses into SkipLayerNormalization."""
    dim = 8
    nodes = [
        helper.make_node("Add", ["x", "r"], ["s"]),
        helper.make_node("LayerNormalization", ["s", "gamma", "beta"], ["y"], axis=-1, epsilon=1e-12),
    ]
    inits = [
        numpy_helper.from_array(np.ones(dim, np.float32), "gamma"),
        numpy_helper.from_array(np.zeros(dim, np.float32), "beta"),
    ]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["b", "t", dim]) for n in ("x", "r", "y")]
    graph = helper.make_graph(nodes, "g", io[:2], io[2:], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _kernels(model: Path, work: Path, disabled: tuple[str, ...]) -> set[str]:
    session = make_session(model, disabled_fusions=disabled, profile_prefix=str(work / "p"))
    x = np.random.default_rng(0).standard_normal((2, 3, 8)).astype(np.float32)
    out = session.run(["y"], {"x": x, "r": x})[0]
    s = x + x
    expected = (s - s.mean(-1, keepdims=True)) / np.sqrt(s.var(-1, keepdims=True) + 1e-12)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    events = json.loads(Path(session.end_profiling()).read_text())
    return {e["args"]["op_name"] for e in events if e.get("cat") == "Node" and "op_name" in e.get("args", {})}


def test_serving_sessions_leave_the_residual_add_unfused(tmp_path: Path):
    model = _residual_layernorm(tmp_path / "m.onnx")
    assert "SkipLayerNormFusion" in DISABLED_FUSIONS
    served = _kernels(model, tmp_path, DISABLED_FUSIONS)
    assert "SkipLayerNormalization" not in served and "LayerNormalization" in served
    assert "SkipLayerNormalization" in _kernels(model, tmp_path, ())  # the fusion does apply when allowed


def test_ops_profiles_each_model_as_served_and_with_a_fusion_back_on():
    rows = sessions(["a", "b"], ["SkipLayerNormFusion"])
    assert [label for label, _, _ in rows] == ["a", "a +SkipLayerNormFusion", "b", "b +SkipLayerNormFusion"]
    assert rows[0][2] == DISABLED_FUSIONS and "SkipLayerNormFusion" not in rows[1][2]
