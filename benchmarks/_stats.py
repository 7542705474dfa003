"""Summaries of repeated runs: median with min-max, and ratios taken pair by pair (pure).

Runs alternate between contenders (us, peer a, peer b, ..., us, peer a, ...), so run ``i`` of
us and run ``i`` of a peer saw the same machine state as closely as one run can. A ratio to a
peer is therefore taken run by run (``ours[i] / peer[i]``) and then summarised, rather than as
a ratio of two medians that may come from different moments.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence

__all__ = ["Spread", "paired_ratios", "spread"]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Spread:
    """The median of some runs, with the smallest and largest value and how many there were."""

    median: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        return {"median": self.median, "min": self.low, "max": self.high, "n": self.n}


def spread(values: Sequence[float]) -> Spread | None:
    """Median, min and max of ``values``; None when there are none."""
    if not values:
        return None
    return Spread(
        median=statistics.median(values), low=min(values), high=max(values), n=len(values)
    )


def paired_ratios(ours: Sequence[float | None], theirs: Sequence[float | None]) -> list[float]:
    """``ours[i] / theirs[i]`` for every run ``i`` where both exist and the divisor is > 0.

    Runs are paired by position (round number); a round that is missing on either side, or
    failed (None), is left out rather than paired with another round.
    """
    return [
        a / b
        for a, b in zip(ours, theirs, strict=False)
        if a is not None and b is not None and b > 0
    ]
