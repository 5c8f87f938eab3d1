"""The README and docs/ point at code that exists, and speak about the software, not how it was made."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[([^\]]+)\]\(([^)\s#]+)(?:#[^)]*)?\)")


def links(page: Path) -> list[tuple[str, str]]:
    return [(text, target) for text, target in LINK.findall(page.read_text()) if "://" not in target]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_resolves_and_every_named_function_is_there(page: Path):
    assert links(page) or page.name != "README.md"
    for text, target in links(page):
        path = (page.parent / target).resolve()
        assert path.exists(), f"{page.name}: {target} does not exist"
        named = re.fullmatch(r"`(?:([A-Z]\w*)\.)?(\w+)(\(\))?`", text)  # `function()`, `Class`, `Class.method()`
        if named and path.suffix == ".py":
            owner, name, called = named.groups()
            source = path.read_text()
            if owner:
                assert re.search(rf"^class {owner}\b", source, re.M), f"{page.name}: no class {owner} in {target}"
            kind = "def" if called else "(?:class|def)"
            assert re.search(rf"^\s*{kind} {name}\b", source, re.M), f"{page.name}: no {name} in {target}"


def test_the_readme_is_short_and_nothing_tells_how_it_was_developed():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300
    for page in PAGES:
        found = re.findall(r"(?i)session|this run of|previous run", page.read_text())
        assert found == [], f"{page.name}: {found}"
