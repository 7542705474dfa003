"""The sandbox states its own rules: it imports nothing from the client package."""

from __future__ import annotations

import ast
from pathlib import Path

import kaleyra_async.sandbox

SANDBOX_DIR = Path(kaleyra_async.sandbox.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """The absolute modules a file imports; relative imports that leave the sandbox as "..x"."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                found.add(node.module or "")
            elif node.level > 1:
                found.add("." * node.level + (node.module or ""))
    return found


def test_the_sandbox_imports_nothing_from_the_client_package() -> None:
    """No sandbox module imports the client package, so the sandbox's rules can disagree with it."""
    for path in sorted(SANDBOX_DIR.glob("*.py")):
        leaks = {
            name
            for name in imported_modules(path)
            if name.startswith("..")
            or (
                name.split(".")[0] == "kaleyra_async"
                and not name.startswith("kaleyra_async.sandbox")
            )
        }
        assert leaks == set(), path.name
