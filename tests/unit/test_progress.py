"""Progress figures (pure logic): what the displays show, whatever order events arrive in."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from etlctl.cli.runs import throughput_chart, time_went
from etlctl.cli.sync_cmd import describe
from etlctl.models import Run, RunTiming
from etlctl.orchestrator import SyncOptions, _SyncSession
from etlctl.progress import TIMELINE_POINTS, Estimate, SyncProgress, Timeline

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)


def session() -> _SyncSession:
    """Only the event handling is exercised: it needs no store, runtime or broker."""
    return _SyncSession(None, None, Run(connection="c"), None, None, None, SyncOptions(), None)  # type: ignore[arg-type]


counts = st.integers(min_value=0, max_value=10**9)
estimates = st.fixed_dictionaries(
    {"unit": st.sampled_from(["bytes", "records", "rows"]), "done": counts, "total": counts}
)
events = st.one_of(
    st.builds(
        lambda role, records, estimate: {
            "type": "progress", "role": role, "records": records, "bytes": records * 10,
            **({"estimate": estimate} if estimate is not None else {}),
        },
        st.sampled_from(["extractor", "loader"]), counts, st.none() | estimates | json_values,
    ),
    st.builds(
        lambda role, records, busy, wait: {
            "type": "done", "role": role, "records": records, "bytes": 0, "skipped": 0,
            "busy_seconds": busy, "wait_seconds": wait, "queue_full": 3,
        },
        st.sampled_from(["extractor", "loader"]), counts, json_values, json_values,
    ),
)


@given(st.lists(events, max_size=30), st.floats(min_value=0, max_value=1e6))
def test_loaded_is_never_shown_above_extracted(sequence: list[dict[str, Any]], after: float):
    sync = session()
    for event in sequence:
        sync.handle_event(event)
        figures = sync.progress.figures(sync.progress.started + after)
        assert figures.loaded <= figures.extracted
        if figures.percent is not None:
            assert 0 <= figures.percent <= 100
            assert figures.done is not None and figures.total is not None
            assert 0 <= figures.done <= figures.total
        if figures.eta_seconds is not None:
            assert figures.eta_seconds >= 0
        text = describe(figures)
        assert "%" not in text["percent"] or figures.percent is not None
    RunTiming.model_validate(sync.progress.run_timing().model_dump())  # what the store keeps


@given(json_values)
def test_a_malformed_estimate_costs_the_percentage_never_the_sync(raw: Any):
    estimate = Estimate.from_event(raw)
    assert estimate is None or 0 <= estimate.done <= estimate.total


def test_percent_and_eta_from_the_estimate():
    progress = SyncProgress(run=Run(connection="c", records_extracted=500, records_loaded=400))
    progress.estimate = Estimate(unit="bytes", done=250, total=1000)
    figures = progress.figures(progress.started + 10)
    assert figures.percent == 25.0 and figures.eta_seconds == 30.0
    assert figures.rows_per_second == 40.0
    assert describe(figures)["percent"] == "25% (250 B of 1,000 B)"
    assert describe(figures)["eta"] == "ETA 0:30"
    progress.loader_done = progress.extractor_done = True
    done = progress.figures(progress.started + 12)
    assert (done.percent, done.eta_seconds, done.done) == (100.0, 0.0, 1000)


def test_without_a_total_the_display_says_so():
    progress = SyncProgress(run=Run(connection="c", records_extracted=10, records_loaded=30))
    figures = progress.figures(progress.started + 1)
    assert figures.percent is None and figures.eta_seconds is None
    assert figures.extracted == 30  # a newer loader count raises the extracted shown
    assert describe(figures)["percent"] == "total unknown"
    progress.run.records_extracted = progress.run.records_loaded = 0
    assert describe(progress.figures())["percent"] == "starting"


@settings(max_examples=50)
@given(st.lists(st.floats(min_value=0.01, max_value=50), min_size=1, max_size=2000))
def test_the_timeline_stays_small_and_keeps_its_ends(steps: list[float]):
    timeline = Timeline()
    now = 0.0
    for index, step in enumerate(steps):
        now += step
        timeline.add(now, index, index)
    timeline.add(now + 0.001, len(steps), len(steps), force=True)
    points = timeline.points
    assert len(points) <= TIMELINE_POINTS
    assert points[-1][1:] == (len(steps), len(steps))
    assert [p[0] for p in points] == sorted(p[0] for p in points)


def test_runs_show_chart_and_where_the_time_went():
    timeline = [[0, 0, 0], [1, 100, 100], [2, 300, 300], [3, 300, 350]]
    timing = RunTiming(
        extractor_busy_seconds=1.5, extractor_wait_seconds=0.5,
        loader_busy_seconds=3.0, loader_wait_seconds=1.0, queue_full=12,
    )
    assert throughput_chart(timeline) == "▅█▃  (0 to 3.0s; peak 200 rows/s)"
    lines = dict(time_went(timing))
    assert lines["extractor"] == "busy 1.5s (75%), waiting 0.5s for the queue"
    assert lines["loader"] == "busy 3.0s (75%), waiting 1.0s for data"
    assert lines["queue full"] == "12 times (the loader was slower)"
    assert throughput_chart([]) is None and time_went(None) == []
