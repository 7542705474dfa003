"""The import direction drawn in docs/ARCHITECTURE.md: pure modules import no adapter, and each
third-party library that does I/O or owns a policy has exactly one module that imports it.

(That the sandbox imports nothing of the client is tests/test_sandbox_rules.py.)
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import kaleyra_async

PACKAGE = Path(kaleyra_async.__file__).parent

#: Values and rules with no I/O: they may import each other, the standard library's pure parts,
#: orjson and phonenumbers, and nothing else.
PURE = frozenset(
    {
        "_attempts",
        "_batching",
        "_cells",
        "_config",
        "_csv_rows",
        "_delivery",
        "_encoding",
        "_exceptions",
        "_http",
        "_india",
        "_limits",
        "_lines",
        "_models",
        "_outcomes",
        "_phone",
        "_prepare",
        "_protocol",
        "_queue_codec",
        "_receipt_fields",
        "_redis_clock",
        "_redis_turns",
        "_refs",
        "_request_rules",
        "_responses",
        "_schedule",
        "_secrecy",
        "_send_checks",
        "_senders",
        "_summary",
        "_validate",
        "_version",
    }
)
#: Everything else: the command line, the bulk job, the client and the adapters.
NOT_PURE = frozenset(
    {
        "__init__",
        "__main__",
        "_bulk",
        "_cli",
        "_cli_bulk",
        "_cli_common",
        "_client",
        "_request_path",
    }
    | {"_config_file", "_dispatch", "_flight", "_heap", "_http_aiohttp", "_http_httpx"}
    | {"_lanes", "_ratelimit", "_results", "_resume", "_retry", "_sources"}
    | {"_cli_queue", "_queue_collector", "_queue_store", "_queue_worker", "_redis"}
    | {"_limiter_setup", "_redis_limiter", "_redis_reports", "_relay", "_turnstile"}
    | {"_chart", "_cli_receipts", "_receipt_server", "_receipt_store", "_report", "_status_poll"}
)
#: What a pure module may import from outside the package and the standard library.
PURE_THIRD_PARTY = frozenset({"orjson", "phonenumbers"})
#: Standard-library modules that do I/O, run threads or own the event loop.
IO_STDLIB = frozenset(
    {"asyncio", "ctypes", "io", "os", "pathlib", "shutil", "signal", "socket", "sqlite3"}
    | {"subprocess", "sys", "tempfile", "threading", "tomllib"}
)
#: The one module of the client package allowed to import each library (``aiohttp.web``, the
#: server half, apart from the client half).
ADAPTERS = {
    "aiohttp": "_http_aiohttp",
    "aiohttp.web": "_receipt_server",
    "matplotlib": "_chart",
    "aiolimiter": "_ratelimit",
    "httpx": "_http_httpx",
    "phonenumbers": "_phone",
    "redis": "_redis",
    "tenacity": "_retry",
    "tqdm": "_cli_bulk",
}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk_runtime(node: ast.AST) -> list[ast.AST]:
    """Every node below ``node`` except what sits under ``if TYPE_CHECKING:``."""
    found: list[ast.AST] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for statement in child.orelse:
                found.extend([statement, *_walk_runtime(statement)])
            continue
        found.append(child)
        found.extend(_walk_runtime(child))
    return found


def runtime_imports(name: str) -> set[str]:
    """The absolute module names ``kaleyra_async.<name>`` imports when it runs."""
    path = PACKAGE / f"{name}.py"
    found: set[str] = set()
    for node in _walk_runtime(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                found.add(node.module or "")
            else:
                assert node.level == 1, f"{name}: import leaves the package"
                base = f"kaleyra_async.{node.module}" if node.module else "kaleyra_async"
                found.update(
                    [base] if node.module else [f"{base}.{alias.name}" for alias in node.names]
                )
    return found


def client_modules() -> list[str]:
    return sorted(path.stem for path in PACKAGE.glob("*.py"))


def test_every_module_is_placed_on_one_side() -> None:
    """A new module is placed (here and in docs/ARCHITECTURE.md) before it lands; a removed one
    leaves both lists."""
    assert not PURE & NOT_PURE
    assert set(client_modules()) == PURE | NOT_PURE


def test_the_architecture_page_names_every_module() -> None:
    """docs/ARCHITECTURE.md draws every module of the package and of the sandbox."""
    page = (PACKAGE.parent / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    modules = [*PACKAGE.glob("*.py"), *(PACKAGE / "sandbox").glob("*.py")]
    missing = sorted(str(m.relative_to(PACKAGE)) for m in modules if f" {m.name} " not in page)
    assert missing == []


@pytest.mark.parametrize("name", sorted(PURE))
def test_a_pure_module_imports_only_pure_modules(name: str) -> None:
    """No pure module reaches an adapter, the pipeline, the client or the CLI, even by value."""
    imported = runtime_imports(name)
    ours = {m.removeprefix("kaleyra_async.") for m in imported if m.startswith("kaleyra_async")}
    assert ours <= PURE, f"{name} imports {sorted(ours - PURE)}"
    top = {m.split(".")[0] for m in imported if not m.startswith("kaleyra_async")}
    assert not top & IO_STDLIB, f"{name} imports {sorted(top & IO_STDLIB)}"
    third_party = {m for m in top if m not in sys.stdlib_module_names}
    assert third_party <= PURE_THIRD_PARTY, f"{name} imports {sorted(third_party)}"


@pytest.mark.parametrize("library", sorted(ADAPTERS))
def test_each_library_has_one_adapter(library: str) -> None:
    """Only its adapter imports the library at run time (type hints aside)."""
    importers = {
        name
        for name in client_modules()
        if any(_library_of(m) == library for m in runtime_imports(name))
    }
    assert importers == {ADAPTERS[library]}


def _library_of(module: str) -> str:
    """The ADAPTERS key a module name falls under: its longest listed prefix, else its top."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in ADAPTERS:
            return ".".join(parts[:n])
    return parts[0]


def test_nothing_below_the_command_line_imports_it() -> None:
    """The CLI is the top: only the CLI's own modules import it."""
    cli = {"_cli", "_cli_bulk", "_cli_common", "_cli_queue", "_cli_receipts", "__main__"}
    for name in sorted(set(client_modules()) - cli):
        leaks = {m for m in runtime_imports(name) if m.removeprefix("kaleyra_async.") in cli}
        assert leaks == set(), name
