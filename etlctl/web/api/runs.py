"""/runs: history, one run, cancel, logs (tail and follow) and live events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from fastapi import APIRouter, Depends, Query
from fastapi.responses import PlainTextResponse, StreamingResponse

from etlctl import launcher, views
from etlctl.errors import NotFoundError
from etlctl.live import live_run
from etlctl.models import Run, RunStatus
from etlctl.store import Store
from etlctl.web.deps import get_store
from etlctl.web.schemas import RunDetailOut, RunOut

router = APIRouter(prefix="/runs", tags=["runs"])

LOG_TAIL_LINES = 20
MAX_LIMIT = 1000


def run_out(run: Run) -> RunOut:
    return RunOut(**views.run_summary(run))


def run_detail(run: Run) -> RunDetailOut:
    shown, progress = live_run(run)
    return RunDetailOut(
        **views.run_summary(shown),
        log_tail=views.log_tail(run.log_path, LOG_TAIL_LINES),
        progress=progress.get("figures") if progress else None,
    )


@router.get("", response_model=list[RunOut], summary="List runs, newest first")
def list_(
    connection: str | None = None,
    status: RunStatus | None = None,
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    store: Store = Depends(get_store),
) -> list[RunOut]:
    runs = store.read().list_runs(connection, status)[:limit]
    return [run_out(live_run(run)[0]) for run in runs]


@router.get("/{run_id}", response_model=RunDetailOut, summary="Show a run")
def show(run_id: str, store: Store = Depends(get_store)) -> RunDetailOut:
    return run_detail(store.read().get_run(run_id))


@router.post("/{run_id}/cancel", response_model=RunOut, status_code=202, summary="Cancel a run")
def cancel(run_id: str, store: Store = Depends(get_store)) -> RunOut:
    return run_out(launcher.cancel_run(store, run_id))


@router.get(
    "/{run_id}/logs",
    response_class=PlainTextResponse,
    summary="A run's log",
    description="The log is written when the run ends. With follow=true the response streams "
    "the progress of a running run, one line per change, then the log.",
)
def logs(
    run_id: str,
    tail: int | None = Query(None, ge=1, le=100_000),
    follow: bool = False,
    store: Store = Depends(get_store),
):
    run = store.read().get_run(run_id)
    if not follow:
        _require_log(run)
        return PlainTextResponse("".join(_log_lines(run, tail)))
    return StreamingResponse(_follow(store, run_id, tail), media_type="text/plain")


def _require_log(run: Run) -> None:
    if not run.log_path or not Path(run.log_path).exists():
        raise NotFoundError(
            f"run {run.id} has no log",
            hint="the log is written when a run ends; runs that never started have none",
        )


def _log_lines(run: Run, tail: int | None) -> Iterator[str]:
    if tail:
        yield from (line + "\n" for line in views.log_tail(run.log_path, tail))
        return
    with open(run.log_path or "", encoding="utf-8", errors="replace") as handle:
        yield from handle


def _follow(store: Store, run_id: str, tail: int | None) -> Iterator[str]:
    last = None
    for last in launcher.watch_run(store, run_id):
        if not last.status.finished:
            yield views.progress_line(last) + "\n"
    if last is not None and last.log_path and Path(last.log_path).exists():
        yield from _log_lines(last, tail)


@router.get(
    "/{run_id}/events",
    summary="Server-sent events of a run",
    description="`event: run` with the run (as GET /runs/{id}) each time it changes; "
    "`event: end` once it has ended.",
    response_class=StreamingResponse,
)
def events(run_id: str, store: Store = Depends(get_store)) -> StreamingResponse:
    store.read().get_run(run_id)  # 404 before the stream starts
    return StreamingResponse(
        _events(store, run_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _events(store: Store, run_id: str) -> Iterator[str]:
    last = None
    for last in launcher.watch_run(store, run_id):
        yield _sse("run", run_detail(last).model_dump_json())
    if last is not None:
        yield _sse("end", json.dumps({"status": last.status.value}))


def _sse(event: str, data: str) -> str:
    return f"event: {event}\ndata: {data}\n\n"
