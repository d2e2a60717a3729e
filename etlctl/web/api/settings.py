"""/settings, /schedules and /connectors: defaults, cron entries and connector types."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from etlctl import catalog, scheduler, settings
from etlctl.errors import NotFoundError
from etlctl.store import Store
from etlctl.web.deps import get_store
from etlctl.web.schemas import SchedulePreviewOut, SettingIn

router = APIRouter()
SCHEDULE_PREVIEW_RUNS = 5


@router.get("/settings", tags=["settings"], summary="Settings in force (secrets masked)")
def show_settings(store: Store = Depends(get_store)) -> dict[str, Any]:
    return settings.effective(store.read().settings())


@router.put("/settings/{key}", tags=["settings"], summary="Set a default")
def set_setting(key: str, body: SettingIn, store: Store = Depends(get_store)) -> dict[str, Any]:
    settings.set_value(store, key, body.value)
    return settings.effective(store.read().settings())


@router.delete("/settings/{key}", tags=["settings"], summary="Go back to the built-in default")
def unset_setting(key: str, store: Store = Depends(get_store)) -> dict[str, Any]:
    settings.set_value(store, key, None)
    return settings.effective(store.read().settings())


@router.get("/schedules", tags=["schedules"], summary="Scheduled connections and crontab state")
def list_schedules(store: Store = Depends(get_store)) -> dict[str, Any]:
    infos, stale = scheduler.list_schedules(store)
    return {"schedules": [info.to_doc() for info in infos], "stale_crontab_entries": stale}


@router.post("/schedules/apply", tags=["schedules"], summary="Make the crontab match the store")
def apply_schedules(dry_run: bool = False, store: Store = Depends(get_store)) -> dict[str, Any]:
    change = scheduler.sync_crontab(store, dry_run=dry_run)
    return {**change.to_doc(), "dry_run": dry_run}


@router.get(
    "/schedules/preview",
    tags=["schedules"],
    response_model=SchedulePreviewOut,
    summary="What a schedule means and when it fires next",
)
def preview_schedule(schedule: str = Query(..., max_length=200)) -> SchedulePreviewOut:
    expression = scheduler.validate_schedule(scheduler.normalize_schedule(schedule))
    if expression == scheduler.MANUAL:
        return SchedulePreviewOut(
            schedule=expression, description="only when started by hand", next_runs=[]
        )
    return SchedulePreviewOut(
        schedule=expression,
        description=scheduler.describe_schedule(expression),
        next_runs=scheduler.next_runs(expression, SCHEDULE_PREVIEW_RUNS),
    )


@router.get("/connectors", tags=["connectors"], summary="Built-in connector types")
def list_connectors(role: str | None = None) -> list[dict[str, Any]]:
    return [
        {
            "type": info.type,
            "role": info.role,
            "image": info.image,
            "description": info.description,
            "modes": list(info.modes),
        }
        for info in catalog.connectors(role)
    ]


@router.get(
    "/connectors/{role}/{connector_type}",
    tags=["connectors"],
    summary="A connector type's config spec (JSON Schema, secret fields marked)",
)
def connector_spec(role: str, connector_type: str) -> dict[str, Any]:
    info = catalog.find_connector(role, connector_type)
    if info is None:
        raise NotFoundError(
            f"no built-in {role} type {connector_type!r}", hint="see: GET /api/v1/connectors"
        )
    return info.spec
