"""Offline compression pipeline: source → (prune) → (smooth) → factorize → recover → export + parity → quantize
→ evaluate → manifest (compression/build.py runs them in that order).

`compression.compress(source, out_dir, …)` is the front door (compression/api.py); it is imported
on first use, so `import compression` and the CLI's --help stay free of torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["compress"]


def __getattr__(name: str) -> Any:
    if name == "compress":
        from compression.api import compress

        globals()["compress"] = compress
        return compress
    raise AttributeError(f"module 'compression' has no attribute {name!r}")
