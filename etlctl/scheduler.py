"""Schedules: cron expressions validated with croniter.

The only module that imports croniter (and, with the schedules issue, python-crontab).
"""

from __future__ import annotations

from croniter import croniter

from etlctl.errors import ValidationError

MANUAL = "manual"
MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def normalize_schedule(expression: str) -> str:
    """Collapse whitespace, refuse control characters; 'manual' stays 'manual'."""
    if not isinstance(expression, str):
        raise ValidationError(f"schedule must be a string, got {expression!r}")
    if any(ch in expression for ch in "\r\n\x00") or not expression.isprintable():
        raise ValidationError(
            "schedule must be one line of printable text (no newlines or control characters)"
        )
    text = " ".join(expression.split())
    return MANUAL if text.lower() == MANUAL else text


def validate_schedule(expression: str) -> str:
    """'manual', a five-field cron expression or a macro such as @daily."""
    text = normalize_schedule(expression)
    if text == MANUAL:
        return text
    if text.startswith("@"):
        if text.lower() not in MACROS:
            raise ValidationError(
                f"invalid schedule {text!r}: unknown macro",
                hint=f"use one of {', '.join(MACROS)} or five cron fields",
            )
        return text
    fields = text.split()
    if len(fields) != 5 or not croniter.is_valid(text):
        raise ValidationError(
            f"invalid schedule {text!r}: expected five cron fields "
            "(minute hour day-of-month month day-of-week) or a macro like @daily",
            hint='for example: --schedule "*/15 * * * *" or --schedule manual',
        )
    return text
