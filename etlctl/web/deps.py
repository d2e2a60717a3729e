"""Dependencies the routers share."""

from __future__ import annotations

from fastapi import Request

from etlctl.store import Store


def get_store(request: Request) -> Store:
    return request.app.state.store


def no_crontab(request: Request) -> bool:
    return request.app.state.no_crontab
