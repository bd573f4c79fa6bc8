"""Typed errors of the pipeline. The CLI turns each into a one-line message and exit code 2."""

from __future__ import annotations


class PipelineError(Exception):
    """A user-facing failure: bad input, bad model directory, failed check."""


class ModelLayoutError(PipelineError):
    """The model directory is missing a file the loader needs."""


class ConfigError(PipelineError):
    """A recipe or a command-line value is out of range."""


class CorpusError(PipelineError):
    """A corpus is missing, empty or unreadable."""


class ShapeError(PipelineError):
    """ONNX output shape differs from the PyTorch reference."""


class ToleranceError(PipelineError):
    """ONNX output values differ from the PyTorch reference beyond tolerance."""
