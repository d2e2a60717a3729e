"""The ASGI application: the API, the web pages, /metrics, and the one place where errors
become responses (as etlctl.cli.main is for the CLI)."""

from __future__ import annotations

import json
import logging
import traceback
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from etlctl.cli.main import etlctl_version
from etlctl.errors import EtlctlError
from etlctl.store import Store
from etlctl.web import metrics
from etlctl.web.api import API_PREFIX, build_router
from etlctl.web.auth import SESSION_COOKIE, SESSION_MAX_AGE_SECONDS, require_token, session_secret

log = logging.getLogger("etlctl.web")

# The CLI's exit codes (etlctl.errors) as HTTP statuses.
HTTP_STATUS_OF_EXIT_CODE = {
    1: 500,
    2: 422,  # invalid input: nothing was changed
    3: 404,
    4: 409,  # exists already, in use, locked, already syncing
    5: 503,  # the store cannot be trusted
    6: 503,  # Docker, RabbitMQ or crontab unavailable
    7: 504,
    130: 409,
}
ERROR_TYPE_OF_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    422: "invalid",
    500: "failed",
    503: "unavailable",
    504: "timeout",
}
EXIT_CODE_OF_STATUS = {404: 3, 409: 4, 422: 2, 400: 2, 405: 2, 401: 2, 403: 2}


class TextSafeJSONResponse(JSONResponse):
    """JSON whatever text it carries: a lone surrogate (from a YAML escape such as "\\ud800" or
    a file name that is not UTF-8) goes out as its JSON escape instead of failing the whole
    response with a UnicodeEncodeError. json.dumps has already escaped every backslash of the
    text, so the one backslashreplace adds always starts a well-formed escape."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return text.encode("utf-8", "backslashreplace")


def error_response(status: int, message: str, hint: str | None, exit_code: int) -> JSONResponse:
    body = {
        "error": {
            "type": ERROR_TYPE_OF_STATUS.get(status, "error"),
            "message": message,
            "hint": hint,
            "exit_code": exit_code,
        }
    }
    return TextSafeJSONResponse(body, status_code=status)


def _field_errors(exc: RequestValidationError) -> str:
    """Where and what, never the value: a rejected body may hold a secret."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()))
        problems.append(f"{where}: {error.get('msg', 'invalid')}" if where else error["msg"])
    return "; ".join(problems) or "invalid request"


def create_app(store: Store, token: str, *, no_crontab: bool = False, secure_cookies: bool = False):
    app = FastAPI(
        title="etlctl",
        version=etlctl_version(),
        description="The REST API of `etlctl serve`: the same operations as the etlctl CLI, "
        "on the same store. Every call needs `Authorization: Bearer TOKEN` "
        "(`etlctl serve --show-token`).",
        openapi_url="/api/openapi.json",
        default_response_class=TextSafeJSONResponse,
        docs_url=None,  # Swagger UI loads its files from a CDN; the OpenAPI document is enough
        redoc_url=None,
        responses={
            status: {"description": ERROR_TYPE_OF_STATUS[status], "model": _error_model()}
            for status in (401, 404, 409, 422, 503)
        },
    )
    app.state.store = store
    app.state.token = token
    app.state.no_crontab = no_crontab
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_secret(token),
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_MAX_AGE_SECONDS,
        same_site="strict",
        https_only=secure_cookies,
    )

    @app.exception_handler(EtlctlError)
    async def _etlctl_error(request: Request, exc: EtlctlError) -> Response:
        status = HTTP_STATUS_OF_EXIT_CODE.get(exc.exit_code, 500)
        if not request.url.path.startswith(("/api/", "/metrics")):
            return _error_page(status, exc)
        return error_response(status, exc.message, exc.hint, exc.exit_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> Response:
        return error_response(422, _field_errors(exc), "see /api/openapi.json", 2)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        response = error_response(
            exc.status_code, str(exc.detail), None, EXIT_CODE_OF_STATUS.get(exc.status_code, 1)
        )
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # The type and where, not the message: a library's message may quote a value.
        log.error(
            "internal error on %s %s: %s\n%s",
            request.method,
            request.url.path,
            type(exc).__name__,
            "".join(traceback.format_tb(exc.__traceback__)),
        )
        return error_response(500, "internal error (see the server's log)", None, 1)

    app.include_router(build_router())

    @app.get(
        "/metrics",
        dependencies=[Depends(require_token)],
        tags=["metrics"],
        summary="Prometheus metrics",
        response_class=Response,
    )
    def prometheus_metrics() -> Response:
        return Response(metrics.render(store), media_type=metrics.CONTENT_TYPE)

    from etlctl.web import ui  # the pages, after the API so /api paths win

    ui.install(app)
    return app


def _error_page(status: int, exc: EtlctlError) -> Response:
    from html import escape

    hint = f"<p>{escape(exc.hint)}</p>" if exc.hint else ""
    body = (
        f'<!doctype html><title>{status}</title><link rel="stylesheet" href="/static/style.css">'
        f'<main><p class="error">{escape(exc.message)}</p>{hint}<p><a href="/">back</a></p></main>'
    )
    return HTMLResponse(body, status_code=status)


def _error_model():
    from etlctl.web.schemas import ErrorOut

    return ErrorOut


__all__ = ["API_PREFIX", "create_app"]
