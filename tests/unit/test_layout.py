"""compression/'s layout as docs/architecture.md draws it: every module is the front door's or a stage
package's, and imports go one way. A stage may use earlier stages and the shared top level (config,
errors, corpus, model, recipes, steps, the ONNX graph index, the quantization simulated in torch),
never a later stage or the front door (api, cli, build)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "compression"
STAGES = ("sources", "encoder", "table", "recovery", "export", "evaluation")  # in pipeline order
SHARED = {"config", "errors", "corpus", "model", "recipes", "recipe_settings", "steps"}
SHARED |= {"onnx_graph", "fake_quant", "cache"}  # tools several stages use
FRONT = {"api", "cli", "build", "__main__", "__init__"}


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(PACKAGE).with_suffix("").parts): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path) -> set[str]:
    """The compression modules a file imports (at module level or inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("compression"):
            out.add(node.module.removeprefix("compression").lstrip("."))
        elif isinstance(node, ast.Import):
            out |= {a.name.removeprefix("compression.") for a in node.names if a.name.startswith("compression.")}
    return out


def test_every_module_is_the_front_doors_or_a_stages():
    stray = [m for m in _modules() if "." not in m and m not in SHARED | FRONT]
    stray += [m for m in _modules() if "." in m and m.split(".")[0] not in STAGES]
    assert not stray, f"modules outside the stage packages and the front door: {stray}"


def test_no_stage_imports_a_later_stage_or_the_front_door():
    wrong = []
    for name, path in _modules().items():
        stage = name.split(".")[0]
        if stage not in STAGES:
            continue
        for target in _imports(path):
            top = target.split(".")[0]
            if top in FRONT or (top in STAGES and STAGES.index(top) > STAGES.index(stage)):
                wrong.append(f"{name} → {target}")
    assert not wrong, "imports against the pipeline's direction:\n" + "\n".join(wrong)
