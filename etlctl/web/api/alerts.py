"""/alerts: the alert rules (header values masked) and the freshness check."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Response, status
from pydantic import BaseModel, ConfigDict, Field

from etlctl import alerts
from etlctl.store import Store
from etlctl.web.deps import get_store

router = APIRouter(prefix="/alerts", tags=["alerts"])


class AlertIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    on: list[Literal["failure", "success"]] = Field(default_factory=lambda: ["failure"])
    webhook: str | None = None
    headers: dict[str, Any] = Field(
        default_factory=dict,
        description='Secret values: masked in every answer; may be {"fromEnv": "VAR"} or '
        '{"fromFile": "/path"}.',
    )
    command: str | None = None
    stale_after: str | None = Field(None, description="For example 6h, 30m, 2d.")


def _scope(scope: str) -> str:
    """`default` (or `*`) is the rule of every connection without its own."""
    return alerts.DEFAULT_SCOPE if scope in ("default", alerts.DEFAULT_SCOPE) else scope


@router.get("", summary="Alert rules")
def list_alerts(store: Store = Depends(get_store)) -> list[dict[str, Any]]:
    return [alerts.masked(rule) for rule in alerts.rules(store.read())]


@router.put("/{scope}", summary="Set the alert of a connection (or `default`)")
def set_alert(scope: str, body: AlertIn, store: Store = Depends(get_store)) -> dict[str, Any]:
    rule = alerts.build_rule(
        _scope(scope),
        on=body.on,
        webhook=body.webhook,
        headers=body.headers,
        command=body.command,
        stale_after_seconds=alerts.parse_duration(body.stale_after) if body.stale_after else None,
    )
    return alerts.masked(alerts.set_rule(store, rule))


@router.delete("/{scope}", status_code=status.HTTP_204_NO_CONTENT, summary="Remove an alert")
def remove_alert(scope: str, store: Store = Depends(get_store)) -> Response:
    alerts.remove_rule(store, _scope(scope))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/check", summary="Alert for stale connections now")
def check_alerts(store: Store = Depends(get_store)) -> dict[str, list[str]]:
    return {"stale": alerts.check_freshness(store)}
