"""``make soak``'s harness, run at a tiny scale: every scenario runs, the table is complete."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import soak

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def test_soak_at_tiny_scale_prints_a_clean_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = soak.main(["--scale", "0.001", "--workdir", str(tmp_path)])

    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("| ")]
    assert status == 0, out
    assert len(lines) == 1 + len(soak.SCENARIOS)  # the header and one line each
    for line, scenario in zip(lines[1:], soak.SCENARIOS, strict=True):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert cells[0] == scenario.name
        assert cells[3] == "0", line  # rows lost
        assert cells[4] == "0", line  # duplicate sends
    assert "kill_9 10" in out
    assert "sandbox_restart 3" in out
