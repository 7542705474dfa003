"""The heap trimmer the command line runs: found where glibc is, harmless where it is not; the
collector's young-generation threshold send-bulk sets."""

from __future__ import annotations

import gc
import platform
import sys

import anyio
import pytest

from kaleyra_async import _heap
from kaleyra_async._cli_common import collect_young_less_often


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="malloc_trim is glibc's",
)
def test_glibc_malloc_trim_is_found_and_runs() -> None:
    trim = _heap.malloc_trim()
    assert trim is not None
    assert trim(0) in (0, 1)  # 1: memory was released, 0: there was none to release


async def test_the_trimmer_trims_every_period_until_cancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(_heap, "malloc_trim", lambda: lambda pad: calls.append(pad) or 0)
    with anyio.move_on_after(0.2):
        await _heap.return_free_heap(period_s=0.01)
    assert len(calls) >= 2 and set(calls) == {0}


async def test_without_malloc_trim_the_trimmer_returns_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_heap, "malloc_trim", lambda: None)
    with anyio.fail_after(1):
        await _heap.return_free_heap(period_s=10)


def test_send_bulk_collects_the_young_generation_at_10000_objects_and_keeps_the_rest() -> None:
    """Only the first threshold moves (700 -> 10,000); the older generations' stay as they were."""
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 11, 12)
        collect_young_less_often()
        assert gc.get_threshold() == (10_000, 11, 12)
    finally:
        gc.set_threshold(*before)
