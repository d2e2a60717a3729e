"""The web admin: server-rendered pages (Jinja2) over the same core calls as the API and the
CLI. Log-in exchanges the token for a signed session cookie; every form carries the
session's CSRF token; a refused change re-renders its form with the CLI's message and
changes nothing."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from etlctl import alerts, catalog, launcher, manifest, registry, scheduler, views
from etlctl.errors import EtlctlError, NotFoundError
from etlctl.live import live_run
from etlctl.models import OnError, SyncMode
from etlctl.store import Store
from etlctl.web import charts, forms
from etlctl.web.auth import csrf_ok, csrf_token, session_user, token_matches

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))


def _require_session(request: Request) -> None:
    """Every page but the log-in page: checked before the page looks anything up."""
    if not session_user(request):
        raise LoginRequired()


public = APIRouter(include_in_schema=False)
router = APIRouter(include_in_schema=False, dependencies=[Depends(_require_session)])
RECENT_RUNS = 20
KINDS = ("source", "loader")


class LoginRequired(Exception):
    pass


class CsrfRefused(Exception):
    pass


def _store(request: Request) -> Store:
    return request.app.state.store


def _page(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    if not session_user(request):
        raise LoginRequired()
    context.update(
        request=request, csrf=csrf_token(request), flash=request.session.pop("flash", None)
    )
    return templates.TemplateResponse(request, template, context, status_code=status_code)


async def _form(request: Request) -> dict[str, str]:
    """The posted form, after the session and CSRF checks."""
    if not session_user(request):
        raise LoginRequired()
    form = await request.form()
    values = {key: str(value) for key, value in form.items()}
    if not csrf_ok(request, values.get("csrf")):
        raise CsrfRefused()
    return values


def _back(request: Request, url: str, flash: str | None = None) -> RedirectResponse:
    if flash:
        request.session["flash"] = flash
    return RedirectResponse(url, status_code=303)


# --- log in and out ------------------------------------------------------------------------
@public.get("/login")
def login_page(request: Request, next: str = "/") -> Response:
    return templates.TemplateResponse(
        request, "login.html", {"request": request, "next": _safe_next(next), "error": None}
    )


@public.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    given, target = str(form.get("token", "")).strip(), _safe_next(str(form.get("next", "/")))
    if not token_matches(given, request.app.state.token):
        return templates.TemplateResponse(
            request,
            "login.html",
            {"request": request, "next": target, "error": "wrong token"},
            status_code=401,
        )
    request.session.clear()
    request.session["authenticated"] = True
    csrf_token(request)
    return RedirectResponse(target, status_code=303)


@router.post("/logout")
async def logout(request: Request) -> Response:
    await _form(request)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


def _safe_next(target: str) -> str:
    """Only a path of this site (no //host, no scheme): no open redirect."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


# --- connections ---------------------------------------------------------------------------
@router.get("/", response_class=HTMLResponse)
def overview(request: Request) -> Response:
    view = _store(request).read()
    recent = view.recent_runs(RECENT_RUNS)
    rows = []
    for connection in view.connections():
        runs = recent.get(connection.name, [])
        last = live_run(runs[0])[0] if runs else None
        rows.append(
            {
                "connection": connection,
                "last": last,
                "next": _next_firing(connection.schedule),
                "chart": charts.runs_chart(list(reversed(runs))),
            }
        )
    return _page(request, "overview.html", rows=rows)


def _next_firing(schedule: str) -> Any:
    if schedule == scheduler.MANUAL:
        return None
    try:
        return scheduler.next_runs(schedule, 1)[0]
    except (EtlctlError, IndexError):
        return None


def _connection_context(request: Request, name: str | None, **extra: Any) -> dict[str, Any]:
    view = _store(request).read()
    connection = view.get("connection", name) if name else None
    runs = view.list_runs(name)[:RECENT_RUNS] if name else []
    return {
        "connection": connection,
        "runs": runs,
        "sources": [item.name for item in view.sources()],
        "loaders": [item.name for item in view.loaders()],
        "modes": [mode.value for mode in SyncMode],
        "on_errors": [value.value for value in OnError],
        "chart": charts.runs_chart(list(reversed(runs))),
        "preview": _preview(connection.schedule) if connection else None,
        "alert": _own_alert(view, name) if name else None,
        **extra,
    }


def _own_alert(view: Any, name: str) -> dict[str, Any] | None:
    """The connection's own alert rule as shown (header values masked)."""
    own = next((rule for rule in alerts.rules(view) if rule.scope == name), None)
    return alerts.masked(own) if own else None


def _preview(schedule: str) -> dict[str, Any] | None:
    if schedule == scheduler.MANUAL:
        return None
    try:
        return {
            "description": scheduler.describe_schedule(schedule),
            "next_runs": scheduler.next_runs(schedule, 5),
        }
    except EtlctlError:
        return None


@router.get("/connections/new", response_class=HTMLResponse)
def new_connection_page(request: Request) -> Response:
    return _page(request, "connection.html", **_connection_context(request, None, error=None))


def _connection_fields(form: dict[str, str]) -> dict[str, Any]:
    key = [column.strip() for column in form.get("primary_key", "").split(",") if column.strip()]
    return {
        "source": form.get("source") or None,
        "loader": form.get("loader") or None,
        "mode": form.get("mode") or None,
        "cursor_field": form.get("cursor_field", "").strip() or None,
        "primary_key": key,
        "schedule": form.get("schedule", "").strip() or "manual",
        "on_error": form.get("on_error") or None,
    }


@router.post("/connections/new")
async def create_connection(request: Request) -> Response:
    form = await _form(request)
    store = _store(request)
    fields = _connection_fields(form)
    try:
        connection = registry.new_connection(
            form.get("name", "").strip(),
            fields["source"] or "",
            fields["loader"] or "",
            fields["mode"] or SyncMode.FULL_REFRESH,
            fields["cursor_field"],
            fields["primary_key"],
            fields["schedule"],
            fields["on_error"] or OnError.FAIL,
        )
        registry.add_connection(store, connection)
        scheduler.sync_after_change(store, connection.scheduled, request.app.state.no_crontab)
    except EtlctlError as exc:
        context = _connection_context(request, None, error=exc, form=form)
        return _page(request, "connection.html", status_code=422, **context)
    return _back(
        request, f"/connections/{connection.name}", f"connection {connection.name} created"
    )


@router.get("/connections/{name}", response_class=HTMLResponse)
def connection_page(request: Request, name: str) -> Response:
    return _page(request, "connection.html", **_connection_context(request, name, error=None))


@router.post("/connections/{name}")
async def update_connection(request: Request, name: str) -> Response:
    form = await _form(request)
    store = _store(request)
    try:
        before = store.read().get("connection", name)
        changes = _connection_fields(form)
        changes["cursor_field"] = changes["cursor_field"] or before.cursor_field
        connection = registry.update_connection(store, name, changes)
        scheduler.sync_after_change(
            store, connection.schedule != before.schedule, request.app.state.no_crontab
        )
    except EtlctlError as exc:
        context = _connection_context(request, name, error=exc, form=form)
        return _page(request, "connection.html", status_code=422, **context)
    return _back(request, f"/connections/{name}", f"connection {name} saved")


@router.post("/connections/{name}/alert")
async def set_connection_alert(request: Request, name: str) -> Response:
    """The connection's own alert: one webhook (with one optional secret header) and/or a
    command; an empty header value keeps the stored one; no webhook and no command removes
    the rule."""
    form = await _form(request)
    store = _store(request)
    webhook = form.get("webhook", "").strip() or None
    command = form.get("command", "").strip() or None
    try:
        if not webhook and not command:
            with contextlib.suppress(NotFoundError):
                alerts.remove_rule(store, name)
            return _back(request, f"/connections/{name}", f"alert of {name} removed")
        header = form.get("header_name", "").strip()
        value = form.get("header_value", "")
        stale = form.get("stale_after", "").strip()
        rule = alerts.build_rule(
            name,
            on=[event for event in ("failure", "success") if form.get(f"on_{event}") == "on"],
            webhook=webhook,
            headers={header: value or catalog.MASK} if header else {},
            command=command,
            stale_after_seconds=alerts.parse_duration(stale) if stale else None,
        )
        alerts.set_rule(store, rule)
    except EtlctlError as exc:
        return _back(request, f"/connections/{name}", f"error: {exc}")
    return _back(request, f"/connections/{name}", f"alert of {name} saved")


@router.post("/connections/{name}/delete")
async def delete_connection(request: Request, name: str) -> Response:
    await _form(request)
    store = _store(request)
    try:
        removed = registry.remove_connection(store, name)
        scheduler.sync_after_change(store, removed.scheduled, request.app.state.no_crontab)
    except EtlctlError as exc:
        return _back(request, f"/connections/{name}", f"error: {exc}")
    return _back(request, "/", f"connection {name} removed")


@router.post("/connections/{name}/sync")
async def start_sync(request: Request, name: str) -> Response:
    await _form(request)
    from starlette.concurrency import run_in_threadpool

    try:
        started = await run_in_threadpool(launcher.start_sync_process, _store(request), name, "api")
    except EtlctlError as exc:
        return _back(request, f"/connections/{name}", f"error: {exc}")
    return _back(request, f"/runs/{started.run_id}")


# --- runs ----------------------------------------------------------------------------------
@router.get("/runs", response_class=HTMLResponse)
def runs_page(request: Request, connection: str | None = None) -> Response:
    runs = _store(request).read().list_runs(connection or None)[:200]
    return _page(
        request, "runs.html", runs=[live_run(run)[0] for run in runs], connection=connection
    )


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: str) -> Response:
    run, progress = live_run(_store(request).read().get_run(run_id))
    return _page(
        request,
        "run.html",
        run=run,
        summary=views.run_summary(run),
        progress=(progress or {}).get("figures"),
        log_tail=views.log_tail(run.log_path, 40),
    )


@router.post("/runs/{run_id}/cancel")
async def cancel_run(request: Request, run_id: str) -> Response:
    await _form(request)
    try:
        launcher.cancel_run(_store(request), run_id)
    except EtlctlError as exc:
        return _back(request, f"/runs/{run_id}", f"error: {exc}")
    return _back(request, f"/runs/{run_id}", "cancel requested")


# --- manifests -----------------------------------------------------------------------------
@router.get("/manifests", response_class=HTMLResponse, name="manifests")
def manifests_page(request: Request) -> Response:
    return _page(request, "manifests.html", text="", plan=None, error=None)


@router.post("/manifests", response_class=HTMLResponse)
async def manifests_post(request: Request) -> Response:
    form = await _form(request)
    text = form.get("manifest", "")
    apply = form.get("action") == "apply"
    try:
        parsed = manifest.parse(
            [manifest.ManifestFile("form", text.encode()[: 4 * 1024 * 1024 + 1], Path.cwd())]
        )
        plan = manifest.apply(
            _store(request), parsed, prune=form.get("prune") == "on", dry_run=not apply
        )
        if apply:
            scheduler.sync_after_change(
                _store(request), plan.schedules_changed, request.app.state.no_crontab
            )
    except EtlctlError as exc:
        return _page(request, "manifests.html", status_code=422, text=text, plan=None, error=exc)
    return _page(request, "manifests.html", text=text, plan=plan, error=None)


# --- sources and loaders -------------------------------------------------------------------
def _kind(kind: str) -> str:
    if kind not in ("sources", "loaders"):
        raise NotFoundError(f"no page /{kind}")
    return kind[:-1]


@router.get("/{plural}", response_class=HTMLResponse)
def objects_page(request: Request, plural: str) -> Response:
    kind = _kind(plural)
    view = _store(request).read()
    items = [
        {
            **views.masked_object(item),
            "connections": registry.connections_using(view, kind, item.name),
        }
        for item in view.list(kind)
    ]
    types = [info.type for info in catalog.connectors(catalog.ROLE_OF_KIND[kind])]
    return _page(request, "objects.html", kind=kind, plural=plural, items=items, types=types)


def _object_context(kind: str, connector_type: str, item: Any, form: dict | None, error: Any):
    info = catalog.connector(catalog.ROLE_OF_KIND[kind], connector_type)
    config = item.config if item is not None else {}
    fields = forms.fields_for(info.spec, config)
    if form:  # show what was posted back, except secrets
        fields = [
            field
            if field.input == "password"
            else forms.FormField(
                **{**field.__dict__, "value": form.get(forms.FIELD_PREFIX + field.name, "")}
            )
            for field in fields
        ]
    return {
        "kind": kind,
        "plural": f"{kind}s",
        "item": item,
        "type": connector_type,
        "info": info,
        "fields": fields,
        "form": form or {},
        "error": error,
        "prefix": forms.FIELD_PREFIX,
    }


@router.get("/{plural}/new", response_class=HTMLResponse)
def new_object_page(request: Request, plural: str, type: str = "") -> Response:
    kind = _kind(plural)
    connector_type = type or catalog.connectors(catalog.ROLE_OF_KIND[kind])[0].type
    return _page(request, "object.html", **_object_context(kind, connector_type, None, None, None))


@router.post("/{plural}/new")
async def create_object(request: Request, plural: str) -> Response:
    kind = _kind(plural)
    form = await _form(request)
    connector_type = form.get("type", "")
    name = form.get("name", "").strip()
    try:
        config = forms.config_from_form(kind, connector_type, form)
        registry.add_connector_object(_store(request), kind, name, connector_type, config)
    except EtlctlError as exc:
        context = _object_context(kind, connector_type, None, form, exc)
        return _page(request, "object.html", status_code=422, **context)
    return _back(request, f"/{plural}", f"{kind} {name} created")


@router.get("/{plural}/{name}", response_class=HTMLResponse)
def object_page(request: Request, plural: str, name: str) -> Response:
    kind = _kind(plural)
    item = _store(request).read().get(kind, name)
    return _page(request, "object.html", **_object_context(kind, item.type, item, None, None))


@router.post("/{plural}/{name}")
async def update_object(request: Request, plural: str, name: str) -> Response:
    kind = _kind(plural)
    form = await _form(request)
    store = _store(request)
    item = store.read().get(kind, name)
    try:
        config = forms.config_from_form(kind, item.type, form, item.config)
        changes = registry.ConnectorObjectChanges(replace_config=config)
        registry.update_connector_object(store, kind, name, changes)
    except EtlctlError as exc:
        context = _object_context(kind, item.type, item, form, exc)
        return _page(request, "object.html", status_code=422, **context)
    return _back(request, f"/{plural}/{name}", f"{kind} {name} saved")


@router.post("/{plural}/{name}/delete")
async def delete_object(request: Request, plural: str, name: str) -> Response:
    kind = _kind(plural)
    await _form(request)
    try:
        registry.remove_connector_object(_store(request), kind, name)
    except EtlctlError as exc:
        return _back(request, f"/{plural}/{name}", f"error: {exc}")
    return _back(request, f"/{plural}", f"{kind} {name} removed")


def install(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse("/login?next=" + quote(request.url.path), status_code=303)

    @app.exception_handler(CsrfRefused)
    async def _csrf(request: Request, exc: CsrfRefused) -> Response:
        return HTMLResponse(
            "<h1>403</h1><p>The form's CSRF token is missing or stale: reload the page and try "
            "again.</p>",
            status_code=403,
        )

    app.include_router(public)
    app.include_router(router)
