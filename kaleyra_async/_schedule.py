"""The scheduled-send rule: ``time`` is ISO-8601 with a UTC offset, 15 minutes to 3 calendar
months ahead (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ._exceptions import ValidationError
from ._limits import MIN_SCHEDULE_LEAD, SCHEDULE_HORIZON_MONTHS

__all__ = ["validate_time"]


def validate_time(value: str, *, now: datetime) -> str:
    """Return a scheduled send time, normalised to ISO-8601 seconds with its UTC offset.

    The spec: ISO-8601 with a UTC offset, at least 15 minutes after the request and within 3
    months of it. Read as: ``now + 15 min <= time <= now + 3 calendar months``, where 3 calendar
    months is the same day and time three months on, clamped to the month's last day (30 Nov ->
    28/29 Feb). ``now`` is the time the run starts; a run that takes longer than the margin you
    leave above 15 minutes can still reach Kaleyra too late, so schedule with room to spare.
    Fractions of a second are dropped. "Z" is accepted for UTC.

    Args:
        value: e.g. "2024-07-13T12:58:00+04:30".
        now: the current time, timezone-aware (injected so that tests are deterministic).

    Raises:
        ValidationError: ``time`` / ``format``, ``timezone_required``, ``too_soon`` or
            ``too_late``.
        ValueError: ``now`` is naive.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    try:
        when = datetime.fromisoformat(value.strip())
    except (ValueError, AttributeError, TypeError):
        raise ValidationError(
            "time", "format", f"{value!r} is not an ISO-8601 date and time"
        ) from None
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValidationError(
            "time",
            "timezone_required",
            f"{value!r} has no UTC offset; write it like 2024-07-13T12:58:00+05:30",
        )
    earliest = now + MIN_SCHEDULE_LEAD
    if when < earliest:
        raise ValidationError(
            "time",
            "too_soon",
            f"{value!r} is less than 15 minutes after now ({_iso(now)})",
        )
    latest = _add_months(now.astimezone(UTC), SCHEDULE_HORIZON_MONTHS)
    if when > latest:
        raise ValidationError(
            "time",
            "too_late",
            f"{value!r} is more than {SCHEDULE_HORIZON_MONTHS} months after now ({_iso(now)})",
        )
    return _iso(when)


def _iso(when: datetime) -> str:
    return when.replace(microsecond=0).isoformat()


def _add_months(when: datetime, months: int) -> datetime:
    """The same day and time ``months`` later, on the month's last day if that day is missing."""
    month_index = when.month - 1 + months
    year, month = when.year + month_index // 12, month_index % 12 + 1
    next_month = datetime(year + month // 12, month % 12 + 1, 1)
    last_day = (next_month - timedelta(days=1)).day
    return when.replace(year=year, month=month, day=min(when.day, last_day))
