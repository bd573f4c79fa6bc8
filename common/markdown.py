"""Markdown tables and the generated blocks of the README (between `<!-- NAME:start -->`
and `<!-- NAME:end -->`), shared by the compression report and the benchmark."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path


def table(columns: Sequence[str], rows: Iterable[dict]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join("–" if r.get(c) is None else str(r[c]) for c in columns) + " |")
    return "\n".join(lines)


def replace_block(readme: Path, name: str, body: str) -> bool:
    """Rewrite the README's block `name` with `body`; False if the file or its markers are missing."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if not readme.is_file():
        return False
    text = readme.read_text()
    if start not in text or end not in text:
        return False
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{body}\n{end}{tail}")
    return True
