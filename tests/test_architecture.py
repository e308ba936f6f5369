"""The README's architecture tree lists every module of the package, and nothing else."""

from __future__ import annotations

import re

from tests.conftest import ROOT


def _readme_tree() -> set[str]:
    text = (ROOT / "README.md").read_text()
    tree = text.split("The tree, a line per module", 1)[1].split("```", 2)[1]
    found, folder = set(), ""
    for line in tree.splitlines():
        name = line.strip().split(" ")[0]
        if name.endswith("/"):
            folder = "" if line.startswith("market_sim") else name
        elif name.endswith(".py"):
            found.add(folder + name if line.startswith("    ") else name)
    return found


def test_readme_tree_matches_the_package():
    package = ROOT / "market_sim"
    modules = {
        str(p.relative_to(package)) for p in package.rglob("*.py") if p.name != "__init__.py"
    }
    assert _readme_tree() == modules


def test_every_module_has_a_docstring_that_says_what_it_is():
    for path in (ROOT / "market_sim").rglob("*.py"):
        assert re.match(r'\s*"""\S', path.read_text()), path
