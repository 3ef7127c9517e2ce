"""The README and docs/: short README, every page linked from it, every relative link good."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def relative_links(page: Path) -> list[str]:
    return [t for t in LINK.findall(page.read_text()) if not re.match(r"[a-z]+:", t)]


def test_every_relative_link_in_the_readme_and_docs_resolves() -> None:
    broken = [
        f"{page.relative_to(ROOT)}: {target}"
        for page in [ROOT / "README.md", *PAGES]
        for target in relative_links(page)
        if not (page.parent / target).exists()
    ]
    assert broken == []


def test_the_readme_is_short_and_links_every_page() -> None:
    readme = ROOT / "README.md"
    assert len(readme.read_text().splitlines()) < 200
    linked = {(readme.parent / t).resolve() for t in relative_links(readme)}
    assert [p.name for p in PAGES if p.resolve() not in linked] == []


def tree_block() -> list[str]:
    """The lines of architecture.md's tree: `  name/  modules...` or `  name.py  what it is`."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text.split("```\nsrc/pyserving/\n", 1)[1].split("```", 1)[0]
    return block.splitlines()


def test_the_architecture_tree_names_every_module_and_no_other() -> None:
    package = ROOT / "src" / "pyserving"
    said: dict[str, set[str]] = {"": set()}
    for line in tree_block():
        name, _, rest = line.strip().partition(" ")
        if name.endswith("/"):
            said[""].add(name[:-1])
            said[name[:-1]] = set(rest.split())
        else:
            said[""].add(name.removesuffix(".py"))
    actual = {"": {p.stem for p in package.glob("*.py") if p.stem != "__init__"}}
    actual[""] |= {p.parent.name for p in package.glob("*/__init__.py")}
    for init in package.glob("*/__init__.py"):
        modules = {p.stem for p in init.parent.glob("*.py") if p.stem != "__init__"}
        actual[init.parent.name] = modules
    actual["_proto"] = said.get("_proto", set())  # generated: named as a folder only
    assert said == actual


def test_the_architecture_tree_is_in_the_order_of_the_layers_contract() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (layers,) = [
        c["layers"] for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"
    ]
    in_contract = [name.strip() for layer in layers for name in layer.split("|")]
    in_tree = [line.split()[0].removesuffix("/").removesuffix(".py") for line in tree_block()]
    assert in_tree == in_contract
