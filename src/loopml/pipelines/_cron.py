"""Cron arithmetic for schedules: validate an expression, find its next tick in a zone.

A tick is computed on the wall clock of the schedule's zone and converted to UTC, so
``0 3 * * *`` in ``Europe/Paris`` stays at 03:00 local across DST changes (it moves by an
hour in UTC). croniter handles the gaps and repeats: a local time skipped by a spring-forward
change fires at the next valid instant, and one repeated in autumn fires once.
"""

from __future__ import annotations

from datetime import UTC, datetime

from croniter import (
    CroniterBadCronError,
    CroniterBadDateError,
    croniter,
)

from loopml.core.automation import MAX_CRON_CHARS, validate_timezone
from loopml.core.errors import ValidationError

_HELP = (
    "expected 5 fields 'minute hour day-of-month month day-of-week' such as '0 3 * * *' "
    "(03:00 every day) or '*/15 * * * *'"
)


def validate_cron(expression: str) -> str:
    """``expression`` (stripped) if it is a 5-field cron expression, else ``ValidationError``."""
    if not isinstance(expression, str) or not 0 < len(expression) <= MAX_CRON_CHARS:
        raise ValidationError(f"invalid cron expression: {_HELP}", details={"field": "cron"})
    text = " ".join(expression.split())
    if len(text.split(" ")) != 5:
        raise ValidationError(
            f"invalid cron expression {text[:80]!r}: {_HELP}", details={"field": "cron"}
        )
    try:
        croniter(text, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except (CroniterBadCronError, CroniterBadDateError, ValueError, KeyError) as exc:
        raise ValidationError(
            f"invalid cron expression {text[:80]!r} ({exc}): {_HELP}", details={"field": "cron"}
        ) from exc
    return text


def _fixed_hours(expression: str) -> bool:
    hours = expression.split(" ")[1]
    return "*" not in hours and "/" not in hours


def next_fire(expression: str, zone: str, after: datetime) -> datetime:
    """The first tick of ``expression`` strictly after ``after``, read in ``zone``, in UTC."""
    tz = validate_timezone(zone)
    ticks = croniter(expression, after.astimezone(tz))
    while True:
        found = ticks.get_next(datetime)
        assert isinstance(found, datetime)
        local = found.astimezone(tz)
        # In the hour an autumn change repeats, a daily '30 2 * * *' would fire at both
        # 02:30s; the second is skipped. Hourly and minutely expressions keep both hours.
        repeated = local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()
        if repeated and _fixed_hours(expression):
            continue
        return found.astimezone(UTC)
