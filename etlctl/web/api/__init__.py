"""/api/v1: one router per resource, all behind the bearer token."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from etlctl.web.api import alerts, connections, manifests, objects, runs, settings
from etlctl.web.auth import require_token

API_PREFIX = "/api/v1"


def build_router() -> APIRouter:
    router = APIRouter(prefix=API_PREFIX, dependencies=[Depends(require_token)])
    router.include_router(objects.build_router("source"))
    router.include_router(objects.build_router("loader"))
    router.include_router(connections.router)
    router.include_router(runs.router)
    router.include_router(manifests.router)
    router.include_router(settings.router)
    router.include_router(alerts.router)
    return router
