"""The README and docs/ stay true to the code they document."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from scripts.settings_table import DOC, settings_table
from services.worker.engine.catalog import CATALOG
from shared.settings import PROJECT_ROOT

README = (PROJECT_ROOT / "README.md").read_text()


def test_settings_table_is_current():
    assert settings_table() in DOC.read_text(), "regenerate it: python -m scripts.settings_table --update"


def test_the_readme_links_the_settings_table_instead_of_copying_it():
    assert "(docs/settings.md)" in README
    assert "| variable | default | meaning |" not in README


def test_every_style_is_documented():
    for style in CATALOG:
        assert f"`{style.name}`" in README


def test_the_two_commands_are_there():
    assert "make run" in README and "make test" in README


# --------------------------------------------------------------- links between the README and docs/ (#23)

_LINK = re.compile(r"(?<!!)\[[^\]]+\]\(([^)\s]+)\)")


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation other than - and _ dropped, spaces to -."""
    anchors = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def _documents() -> list[Path]:
    return [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("document", _documents(), ids=lambda p: p.relative_to(PROJECT_ROOT).as_posix())
def test_every_link_resolves(document: Path):
    text = document.read_text()
    for target in _LINK.findall(text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        linked = (document.parent / path).resolve() if path else document
        assert linked.exists(), f"{document.name}: {target} (no such file)"
        if anchor and linked.suffix == ".md":
            assert anchor in _anchors(linked.read_text()), f"{document.name}: {target} (no such heading)"


def test_the_anchor_rule_is_githubs():
    assert _anchors("## Faults and `make chaos`\n### Painted by a GAN\n") == {
        "faults-and-make-chaos",
        "painted-by-a-gan",
    }
