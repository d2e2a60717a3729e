"""/metrics in Prometheus' text format, read from the store at each scrape.

The counters come from the store's run totals (kept apart from the trimmed run history, so
they never go down), and count every run of the store, whoever started it: a shell, cron or
this server. Labels are low-cardinality: connection and status.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from etlctl.models import RunStatus
from etlctl.store import Store

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class StoreCollector(Collector):
    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        view = self.store.read()
        totals = view.run_totals()
        names = sorted({connection.name for connection in view.connections()} | set(totals))
        runs = CounterMetricFamily(
            "etlctl_runs", "Runs that ended, by outcome.", labels=["connection", "status"]
        )
        records = CounterMetricFamily(
            "etlctl_records_loaded", "Records the loaders committed.", labels=["connection"]
        )
        moved = CounterMetricFamily(
            "etlctl_bytes", "Bytes of records the extractors sent.", labels=["connection"]
        )
        seconds = SummaryMetricFamily(
            "etlctl_run_duration_seconds",
            "Wall time of the runs that ended (skipped firings are not counted).",
            labels=["connection"],
        )
        last_success = GaugeMetricFamily(
            "etlctl_last_success_timestamp_seconds",
            "When the last successful run of a connection ended (Unix time).",
            labels=["connection"],
        )
        running = GaugeMetricFamily(
            "etlctl_runs_running", "Runs in progress now.", labels=["connection"]
        )
        in_progress: dict[str, int] = {}
        for run in view.list_runs(status=RunStatus.RUNNING):
            in_progress[run.connection] = in_progress.get(run.connection, 0) + 1
        for name in names:
            total = totals.get(name, {})
            by_status = total.get("runs", {})
            for status in RunStatus:
                if status is not RunStatus.RUNNING:
                    runs.add_metric([name, status.value], by_status.get(status.value, 0))
            records.add_metric([name], total.get("records_loaded", 0))
            moved.add_metric([name], total.get("bytes", 0))
            seconds.add_metric(
                [name],
                count_value=total.get("timed_runs", 0),
                sum_value=total.get("duration_seconds", 0.0),
            )
            running.add_metric([name], in_progress.get(name, 0))
            if total.get("last_success_at"):
                moment = datetime.fromisoformat(total["last_success_at"])
                last_success.add_metric([name], moment.timestamp())
        yield from (runs, records, moved, seconds, last_success, running)


def render(store: Store) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))
    return generate_latest(registry)
