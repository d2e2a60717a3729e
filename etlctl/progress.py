"""Where a running sync stands: counts, percent and ETA, and its throughput over time.

The orchestrator feeds :class:`SyncProgress` from the connectors' events; every front (the
live display, plain lines for CI and cron logs, ``--json`` events, ``runs show``) reads the
same :class:`ProgressFigures`, so they never disagree.

The percentage comes from the extractor's ``estimate`` (docs/connector-protocol.md): bytes
read of the files' sizes, or rows read of a count the source gave cheaply. Without one the
total is unknown and the figures say so (``percent`` None) instead of guessing.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from etlctl.models import Run, RunTiming

# Throughput samples kept per run (in the store): when full, every other one goes and the
# sampling interval doubles, so a run of any length keeps its whole shape in a few lines.
TIMELINE_POINTS = 60
FIRST_SAMPLE_INTERVAL_SECONDS = 1.0


@dataclass(frozen=True)
class Estimate:
    """How far the extractor has read of all there is (from its progress events)."""

    unit: str  # "bytes" or "records"
    done: int
    total: int

    @classmethod
    def from_event(cls, raw: Any) -> Estimate | None:
        """The event's ``estimate``; None when absent or malformed (a connector's bug
        costs the percentage, never the sync)."""
        if not isinstance(raw, dict):
            return None
        try:
            unit, done, total = str(raw["unit"]), int(raw["done"]), int(raw["total"])
        except (KeyError, TypeError, ValueError):
            return None
        if unit not in ("bytes", "records") or total <= 0 or done < 0:
            return None
        return cls(unit=unit, done=min(done, total), total=total)


@dataclass(frozen=True)
class ProgressFigures:
    """What every progress display shows, computed once."""

    elapsed_seconds: float
    extracted: int
    loaded: int
    rows_per_second: float
    extractor_done: bool
    loader_done: bool
    unit: str | None = None  # what done/total count: "bytes" or "records"; None: unknown
    done: int | None = None
    total: int | None = None
    percent: float | None = None
    eta_seconds: float | None = None

    def to_doc(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["elapsed_seconds"] = round(self.elapsed_seconds, 1)
        doc["rows_per_second"] = round(self.rows_per_second)
        if self.percent is not None:
            doc["percent"] = round(self.percent, 1)
        if self.eta_seconds is not None:
            doc["eta_seconds"] = round(self.eta_seconds, 1)
        return doc


class Timeline:
    """(seconds since the start, extracted, loaded) samples, at most TIMELINE_POINTS."""

    def __init__(self) -> None:
        self.points: list[tuple[float, int, int]] = []
        self.interval = FIRST_SAMPLE_INTERVAL_SECONDS

    def add(self, seconds: float, extracted: int, loaded: int, force: bool = False) -> None:
        point = (round(seconds, 2), extracted, loaded)
        if self.points and not force and seconds - self.points[-1][0] < self.interval:
            return
        if self.points and self.points[-1][0] == point[0]:
            self.points[-1] = point
            return
        self.points.append(point)
        if len(self.points) > TIMELINE_POINTS:
            last = self.points[-1]
            self.points = [*self.points[:-1][::2], last]
            self.interval *= 2


@dataclass
class SyncProgress:
    """What a progress display shows; updated as events arrive."""

    run: Run
    extractor_done: bool = False
    loader_done: bool = False
    messages: list[str] = field(default_factory=list)
    estimate: Estimate | None = None
    started: float = field(default_factory=time.monotonic)
    timeline: Timeline = field(default_factory=Timeline)
    timing: dict[str, float | int] = field(default_factory=dict)

    def counts_changed(self, now: float | None = None, force: bool = False) -> None:
        """Record a throughput sample (at most one per interval unless forced)."""
        now = time.monotonic() if now is None else now
        run = self.run
        self.timeline.add(now - self.started, run.records_extracted, run.records_loaded, force)

    def figures(self, now: float | None = None) -> ProgressFigures:
        now = time.monotonic() if now is None else now
        elapsed = max(0.0, now - self.started)
        run = self.run
        # Nothing is loaded before it was extracted: events of the two sides arrive at their
        # own pace, so a loader's count can be newer than the extractor's.
        extracted = max(run.records_extracted, run.records_loaded)
        loaded = run.records_loaded
        figures: dict[str, Any] = {
            "elapsed_seconds": elapsed,
            "extracted": extracted,
            "loaded": loaded,
            "rows_per_second": loaded / elapsed if elapsed > 0 else 0.0,
            "extractor_done": self.extractor_done,
            "loader_done": self.loader_done,
        }
        estimate = self.estimate
        if estimate is not None:
            done = estimate.total if self.extractor_done else estimate.done
            percent = 100.0 * done / estimate.total
            if self.loader_done:
                percent = 100.0
            figures.update(unit=estimate.unit, done=done, total=estimate.total, percent=percent)
            if percent >= 100.0:
                figures["eta_seconds"] = 0.0
            elif percent > 0 and elapsed > 0:
                figures["eta_seconds"] = elapsed * (100.0 - percent) / percent
        return ProgressFigures(**figures)

    def run_timing(self) -> RunTiming:
        """What `runs show` tells about where the time went."""
        return RunTiming(**self.timing)

    def save_timeline(self) -> None:
        """The throughput samples, ending with the final counts, beside the run's log."""
        self.counts_changed(force=True)
        path = timeline_path(self.run)
        if path is None:
            return
        with contextlib.suppress(OSError):  # a lost chart must never fail a finished run
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump([list(point) for point in self.timeline.points], handle)


def timeline_path(run: Run) -> Path | None:
    if not run.log_path:
        return None
    return Path(run.log_path).with_suffix(".timeline.json")


def load_timeline(run: Run) -> list[list[float]]:
    """A run's throughput samples: [seconds since the start, extracted, loaded], oldest
    first; [] when there are none (a run that never started, logs deleted)."""
    path = timeline_path(run)
    try:
        points = json.loads(path.read_text()) if path else []
    except (OSError, ValueError):
        return []
    if not isinstance(points, list):
        return []
    return [p for p in points if isinstance(p, list) and len(p) == 3]


def throughput(points: list[list[float]] | list[tuple[float, int, int]]) -> list[float]:
    """Rows loaded per second between consecutive samples."""
    rates = []
    for (t0, _, loaded0), (t1, _, loaded1) in itertools.pairwise(points):
        span = t1 - t0
        if span > 0:
            rates.append(max(0.0, (loaded1 - loaded0) / span))
    return rates
