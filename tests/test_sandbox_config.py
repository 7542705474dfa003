"""Sandbox settings: the --faults and --fail-numbers mini-languages and the sliding windows."""

from __future__ import annotations

import pytest

from kaleyra_async.sandbox import FailRule, FaultSpec, SandboxConfig, parse_faults
from kaleyra_async.sandbox._config import parse_fail_rules
from kaleyra_async.sandbox._window import SlidingWindowCounter, SlidingWindowLimiter


def test_parse_faults_keeps_the_canonical_order() -> None:
    """Faults are laid out in FAULT_NAMES order whatever order they were written in."""
    spec = parse_faults("slow=0.01, 429=0.05,reset_after_accept=0.01,503=0.02")
    assert spec.probabilities == (
        ("429", 0.05),
        ("503", 0.02),
        ("reset_after_accept", 0.01),
        ("slow", 0.01),
    )


@pytest.mark.parametrize("text", ["", "none", "  NONE "])
def test_empty_fault_spec_means_no_faults(text: str) -> None:
    """An empty spec or "none" injects nothing."""
    spec = parse_faults(text)
    assert not spec
    assert spec.pick(0.0) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("teapot=0.1", "unknown fault 'teapot'", id="unknown"),
        pytest.param("429", "expected NAME=PROBABILITY", id="no-value"),
        pytest.param("429=lots", "'lots' is not a number", id="not-a-number"),
        pytest.param("429=1.5", "between 0 and 1", id="above-1"),
        pytest.param("429=0.6,503=0.6", "more than 1", id="sum-above-1"),
        pytest.param("429=0.1,429=0.2", "given twice", id="twice"),
    ],
)
def test_bad_fault_specs_explain_themselves(text: str, message: str) -> None:
    """Each mistake in --faults is a ValueError naming it."""
    with pytest.raises(ValueError, match=message):
        parse_faults(text)


def test_fault_bands_cover_the_unit_interval_in_order() -> None:
    """pick() maps [0, p1) to the first fault, [p1, p1+p2) to the second, the rest to None."""
    spec = FaultSpec((("429", 0.25), ("503", 0.25)))
    assert [spec.pick(u) for u in (0.0, 0.2499, 0.25, 0.4999, 0.5, 0.99)] == [
        "429",
        "429",
        "503",
        "503",
        None,
        None,
    ]


def test_parse_fail_rules() -> None:
    """DIGITS=STATUS:TRACE items become FailRules; "none" clears them."""
    assert parse_fail_rules("0000=NotSent:KLR-INV-NUMBER, 77=UnDelivered:NET-ERR") == (
        FailRule("0000", "NotSent", "KLR-INV-NUMBER"),
        FailRule("77", "UnDelivered", "NET-ERR"),
    )
    assert parse_fail_rules("none") == ()


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("0000=NotSent", id="no-trace"),
        pytest.param("ab=NotSent:X", id="suffix-not-digits"),
        pytest.param("00=Delivered:X", id="bad-status"),
    ],
)
def test_bad_fail_rules_are_rejected(text: str) -> None:
    """A malformed --fail-numbers item is a ValueError."""
    with pytest.raises(ValueError, match="fail rule"):
        parse_fail_rules(text)


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"pod": "XX"}, id="pod"),
        pytest.param({"rate_per_s": -1}, id="rate"),
        pytest.param({"latency_ms": -1.0}, id="latency"),
        pytest.param({"flush_interval_s": 0.0}, id="flush"),
        pytest.param({"status_capacity": 0}, id="capacity"),
        pytest.param({"port": 70000}, id="port"),
    ],
)
def test_invalid_config_values_are_rejected(overrides: dict[str, object]) -> None:
    """SandboxConfig checks its values when built."""
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        SandboxConfig(**overrides)  # type: ignore[arg-type]


def test_config_repr_hides_the_api_key() -> None:
    """The API key is not part of the config's repr."""
    assert "s3cret" not in repr(SandboxConfig(api_key="s3cret"))


def test_counter_finds_the_busiest_sliding_window() -> None:
    """The max is over every (t-1, t] window, not over calendar seconds."""
    counter = SlidingWindowCounter(1.0)
    counts = [counter.add(t) for t in (0.0, 0.6, 0.9, 1.2, 1.59, 1.6, 3.0)]
    # (0.6, 1.6] holds 0.9, 1.2, 1.59, 1.6; the event at exactly t-1 is out of the window.
    assert counts == [1, 2, 3, 3, 4, 4, 1]
    assert counter.max_count == 4


def test_limiter_admits_at_most_limit_per_sliding_window() -> None:
    """A strict sliding log: the limit+1-th event waits until the oldest leaves the window."""
    limiter = SlidingWindowLimiter(2, 1.0)
    assert limiter.try_acquire(10.0) == 0.0
    assert limiter.try_acquire(10.3) == 0.0
    assert limiter.try_acquire(10.5) == pytest.approx(0.5)
    assert limiter.try_acquire(11.0) == 0.0
    assert limiter.try_acquire(11.2) == pytest.approx(0.1)
    assert limiter.try_acquire(11.3) == 0.0


def test_limiter_needs_a_positive_limit() -> None:
    """A limit below 1 is a programming error."""
    with pytest.raises(ValueError, match="limit"):
        SlidingWindowLimiter(0)
