"""The README's library example runs as written, against the sandbox."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import anyio

from kaleyra_async.sandbox import Sandbox, SandboxConfig

README = Path(__file__).parent.parent / "README.md"


def library_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## The library") :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "no python block in the README's library section"
    return match.group(1)


async def test_readme_library_example_runs_against_the_sandbox(tmp_path: Path) -> None:
    """Every call in the example succeeds and the sandbox accepts its six SMS."""
    code = library_example()
    assert "http://127.0.0.1:8787" in code
    async with Sandbox(SandboxConfig()) as sandbox:
        script = tmp_path / "example.py"
        script.write_text(code.replace("http://127.0.0.1:8787", sandbox.base_url))
        done = await anyio.run_process([sys.executable, str(script)], check=False)
        assert done.returncode == 0, done.stderr.decode()
        assert "MSG106" in done.stdout.decode()
        assert len(sandbox.ledger_records()) == 6


def test_readme_input_section_names_every_message_column() -> None:
    """Each per-row column the CSV reader honours is documented where a user looks for it."""
    from kaleyra_async._prepare import MESSAGE_COLUMNS

    text = README.read_text(encoding="utf-8")
    start = text.index("### The input CSV")
    section = text[start : text.index("\n### ", start + 1)]
    missing = [c for c in MESSAGE_COLUMNS if f"`{c}`" not in section]
    assert not missing, f"README's input CSV section does not name: {missing}"
