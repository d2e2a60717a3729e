"""/connections: CRUD, reset, and starting a sync."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response, status

from etlctl import launcher, registry, scheduler, views
from etlctl.models import Connection
from etlctl.store import Store, StoreView
from etlctl.web.deps import get_store, no_crontab
from etlctl.web.schemas import (
    ConnectionIn,
    ConnectionOut,
    ConnectionPatch,
    RunOut,
    SyncStartedOut,
)

router = APIRouter(prefix="/connections", tags=["connections"])


def connection_out(view: StoreView, connection: Connection, last: object = True) -> ConnectionOut:
    return ConnectionOut(**views.connection_view(view, connection, last))  # type: ignore[arg-type]


@router.get("", response_model=list[ConnectionOut], summary="List connections")
def list_(store: Store = Depends(get_store)) -> list[ConnectionOut]:
    view = store.read()
    last_runs = view.last_runs()
    return [
        connection_out(view, connection, last_runs.get(connection.name))
        for connection in view.connections()
    ]


@router.post(
    "",
    response_model=ConnectionOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create a connection",
)
def create(
    body: ConnectionIn,
    store: Store = Depends(get_store),
    skip_crontab: bool = Depends(no_crontab),
) -> ConnectionOut:
    connection = registry.new_connection(
        body.name,
        body.source,
        body.loader,
        body.mode,
        body.cursor_field,
        body.primary_key,
        body.schedule,
        body.on_error,
        transform=body.transform,
        allow_empty=body.allow_empty,
    )
    registry.add_connection(store, connection)
    scheduler.sync_after_change(store, connection.scheduled, skip_crontab)
    return connection_out(store.read(), connection)


@router.get("/{name}", response_model=ConnectionOut, summary="Show a connection")
def show(name: str, store: Store = Depends(get_store)) -> ConnectionOut:
    view = store.read()
    return connection_out(view, view.get("connection", name))


@router.patch("/{name}", response_model=ConnectionOut, summary="Change a connection")
def update(
    name: str,
    body: ConnectionPatch,
    store: Store = Depends(get_store),
    skip_crontab: bool = Depends(no_crontab),
) -> ConnectionOut:
    before = store.read().get("connection", name)
    connection = registry.update_connection(store, name, body.model_dump(exclude_unset=True))
    scheduler.sync_after_change(store, connection.schedule != before.schedule, skip_crontab)
    return connection_out(store.read(), connection)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT, summary="Remove a connection")
def remove(
    name: str, store: Store = Depends(get_store), skip_crontab: bool = Depends(no_crontab)
) -> Response:
    removed = registry.remove_connection(store, name)
    scheduler.sync_after_change(store, removed.scheduled, skip_crontab)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{name}/reset", response_model=ConnectionOut, summary="Forget the saved state")
def reset(name: str, store: Store = Depends(get_store)) -> ConnectionOut:
    registry.reset_connection(store, name)
    view = store.read()
    return connection_out(view, view.get("connection", name))


@router.post(
    "/{name}/sync",
    response_model=SyncStartedOut,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Start a sync in its own process",
    description="Runs `etlctl sync NAME` in a process of its own (same lock, run record and "
    "cleanup as from a shell); answers once the run is recorded, with its id. Errors found "
    "before the run starts (already syncing, broker down) come back as for the CLI.",
)
def sync(name: str, store: Store = Depends(get_store)) -> SyncStartedOut:
    started = launcher.start_sync_process(store, name, trigger="api")
    run = RunOut(**views.run_summary(started.run)) if started.run else None
    return SyncStartedOut(run_id=started.run_id, pid=started.pid, run=run)
