"""The README and docs/ hold together: every relative link resolves, and the README stays a user's page."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+://", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#", 1)[0]).resolve()
        assert path.exists(), f"{page.name} links to {target}, which does not exist"


def test_the_readme_is_short_and_links_every_docs_page():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    for page in (REPO / "docs").glob("*.md"):
        assert f"docs/{page.name}" in readme, f"README does not link docs/{page.name}"


def test_generated_blocks_live_in_their_pages():
    readme = (REPO / "README.md").read_text()
    assert "<!-- results:start -->" not in readme and "<!-- bench:start -->" not in readme
    assert "<!-- results:start -->" in (REPO / "docs" / "results.md").read_text()
    assert "<!-- bench:start -->" in (REPO / "docs" / "benchmark.md").read_text()


def _cells(row: str) -> int:
    """Cells in a Markdown table row (a | inside a code span or escaped does not split)."""
    row = re.sub(r"`[^`]*`", "x", row).replace("\\|", "x")
    return row.strip().strip("|").count("|") + 1


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_table_row_has_its_header_s_cells(page):
    rows: list[tuple[int, str]] = []
    for number, line in enumerate([*page.read_text().splitlines(), ""], start=1):
        if line.startswith("|"):
            rows.append((number, line))
            continue
        for n, row in rows:  # a table ended: every row as wide as its header
            assert _cells(row) == _cells(rows[0][1]), (
                f"{page.name}:{n} has {_cells(row)} cells, its header {_cells(rows[0][1])}"
            )
        rows = []
