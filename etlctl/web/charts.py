"""The small charts of the pages, as plain SVG coordinates (no JavaScript library)."""

from __future__ import annotations

from typing import Any

from etlctl.models import Run

WIDTH, HEIGHT = 160, 36


def runs_chart(runs: list[Run]) -> dict[str, Any] | None:
    """Rows loaded (bars) and duration (a line) of runs, oldest first; None for no runs."""
    finished = [run for run in runs if run.duration_seconds is not None]
    if not finished:
        return None
    step = WIDTH / len(finished)
    most_rows = max(run.records_loaded for run in finished) or 1
    longest = max(run.duration_seconds or 0.0 for run in finished) or 1.0
    bars, points = [], []
    for index, run in enumerate(finished):
        height = max(1.0, (HEIGHT - 2) * run.records_loaded / most_rows)
        bars.append(
            {
                "x": round(index * step + 1, 1),
                "y": round(HEIGHT - height, 1),
                "width": round(max(step - 2, 1), 1),
                "height": round(height, 1),
                "status": run.status.value,
                "title": f"{run.id}: {run.status.value}, {run.records_loaded:,} rows, "
                f"{run.duration_seconds:.1f}s",
            }
        )
        y = HEIGHT - 1 - (HEIGHT - 2) * (run.duration_seconds or 0.0) / longest
        points.append(f"{round(index * step + step / 2, 1)},{round(y, 1)}")
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "bars": bars,
        "line": " ".join(points),
        "most_rows": most_rows,
        "longest": longest,
    }
