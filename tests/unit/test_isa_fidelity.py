"""bench.isa_fidelity: the host check of model directories in a child process, natively and under
qemu's emulated CPU (the only way a VNNI machine can measure what AVX2's int8 kernels compute)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.cpuid import unavailable_reason
from bench.isa_fidelity import (
    HIDDEN_LABEL,
    KERNEL_FEATURES,
    advertised_features,
    main,
    report,
    run_child,
)
from common.probe_set import ProbeSet
from tests.onnx_tiny import make_served


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Path:
    return make_served(tmp_path_factory.mktemp("isa"))


def test_features_are_the_kernel_relevant_ones():
    assert set(advertised_features()) <= set(KERNEL_FEATURES)


def test_child_measures_each_directory_like_the_service(served: Path):
    out = run_child([served / "tiny", served / "tiny-fact"], None)
    assert out["models"]["tiny"]["mean"] == pytest.approx(1.0, abs=1e-4)  # the baseline against itself
    fact = out["models"]["tiny-fact"]
    assert 0.5 < fact["mean"] < 0.9999 and fact["texts"] > 0
    assert fact["built_mean"] is not None


def test_a_perturbed_probe_set_shows_in_the_figure(served: Path, tmp_path: Path):
    copy = tmp_path / "tiny-fact"
    shutil.copytree(served / "tiny-fact", copy)
    probe = ProbeSet.read(copy)
    rng = np.random.default_rng(0)
    ProbeSet(probe.texts, rng.standard_normal(probe.reference.shape).astype(np.float16)).write(copy)
    assert run_child([copy], None)["models"]["tiny-fact"]["mean"] < 0.5


def test_cli_refuses_what_is_not_a_model_directory(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path)])
    assert exc.value.code != 0
    assert "not a model directory" in capsys.readouterr().err


@pytest.mark.skipif(
    shutil.which("qemu-x86_64") is None and not os.environ.get("CI"),
    reason="qemu-user not installed (.ci/run installs it)",
)
def test_emulated_haswell_sees_avx2_and_no_avx512(served: Path):
    """Under `qemu-x86_64 -cpu Haswell` the child sees AVX2 and FMA but no AVX-512, so onnxruntime
    takes its AVX2 kernels; the table has a column for it."""
    out = report([served / "tiny", served / "tiny-fact"], ["Haswell"], hidden=False)
    assert "emulated Haswell" in out
    assert "emulated Haswell: AVX2 FMA3." in out  # the features the emulated CPU reported, nothing more
    row = next(line for line in out.splitlines() if line.startswith("| tiny-fact |"))
    native, emulated = (cell.strip() for cell in row.strip("|").split("|")[2:4])
    assert native.split(" / ")[0] == emulated.split(" / ")[0]  # fp32 graph: the same on both kernels


@pytest.mark.skipif(unavailable_reason() is not None, reason=f"cpuid shim: {unavailable_reason()}")
def test_avx512_hidden_from_cpuid_gives_the_avx2_column(served: Path):
    """With the cpuid shim the child sees AVX2 and FMA but no AVX-512 on this silicon: its own column."""
    out = report([served / "tiny", served / "tiny-fact"], [], hidden=True)
    assert f"{HIDDEN_LABEL}: AVX2 FMA3;" in out or out.rstrip().endswith(f"{HIDDEN_LABEL}: AVX2 FMA3.")
    header = next(line for line in out.splitlines() if line.startswith("| model |"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "model",
        "built with (manifest)",
        "native",
        HIDDEN_LABEL,
    ]
    row = next(line for line in out.splitlines() if line.startswith("| tiny-fact |"))
    native, hidden = (cell.strip() for cell in row.strip("|").split("|")[2:4])
    assert native.split(" / ")[0] == hidden.split(" / ")[0]  # fp32 graph: the same on both kernels
    assert "not with AVX-512 hidden" in report([served / "tiny"], [], hidden=False)
