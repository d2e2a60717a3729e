"""/sources and /loaders: the same endpoints for both kinds, as the CLI has."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response, status

from etlctl import catalog, orchestrator, registry, settings, views
from etlctl.models import ConnectorObject
from etlctl.store import Store
from etlctl.web.deps import get_store
from etlctl.web.schemas import CheckOut, ConnectorObjectIn, ConnectorObjectOut, ConnectorObjectPatch


def object_out(item: ConnectorObject, connections: list[str] | None = None) -> ConnectorObjectOut:
    return ConnectorObjectOut(**views.masked_object(item), connections=connections or [])


def config_change(kind: str, connector_type: str, config: dict) -> dict:
    """A config as a client sent it: secrets it sent back masked stay as they are."""
    info = catalog.find_connector(catalog.ROLE_OF_KIND[kind], connector_type)
    return catalog.without_masked_secrets(config, info.spec if info else None)


def build_router(kind: str) -> APIRouter:
    plural = f"{kind}s"
    router = APIRouter(prefix=f"/{plural}", tags=[plural])

    @router.get("", response_model=list[ConnectorObjectOut], summary=f"List {plural}")
    def list_(store: Store = Depends(get_store)) -> list[ConnectorObjectOut]:
        view = store.read()
        used: dict[str, list[str]] = {}
        for connection in view.connections():
            used.setdefault(getattr(connection, kind), []).append(connection.name)
        return [object_out(item, used.get(item.name)) for item in view.list(kind)]

    @router.post(
        "",
        response_model=ConnectorObjectOut,
        status_code=status.HTTP_201_CREATED,
        summary=f"Create a {kind}",
    )
    def create(body: ConnectorObjectIn, store: Store = Depends(get_store)) -> ConnectorObjectOut:
        item = registry.add_connector_object(
            store, kind, body.name, body.type, body.config, body.image
        )
        return object_out(item)

    @router.get("/{name}", response_model=ConnectorObjectOut, summary=f"Show a {kind}")
    def show(name: str, store: Store = Depends(get_store)) -> ConnectorObjectOut:
        view = store.read()
        return object_out(view.get(kind, name), registry.connections_using(view, kind, name))

    @router.patch("/{name}", response_model=ConnectorObjectOut, summary=f"Change a {kind}")
    def update(
        name: str, body: ConnectorObjectPatch, store: Store = Depends(get_store)
    ) -> ConnectorObjectOut:
        current = store.read().get(kind, name)
        config = config_change(kind, body.type or current.type, body.config or {})
        changes = registry.ConnectorObjectChanges(
            config=None if body.replace_config else config,
            replace_config=config if body.replace_config else None,
            unset=tuple(body.unset),
            image=body.image,
            clear_image=body.default_image,
            connector_type=body.type,
        )
        item = registry.update_connector_object(store, kind, name, changes)
        view = store.read()
        return object_out(item, registry.connections_using(view, kind, name))

    @router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT, summary=f"Remove a {kind}")
    def remove(name: str, store: Store = Depends(get_store)) -> Response:
        registry.remove_connector_object(store, kind, name)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @router.post("/{name}/check", response_model=CheckOut, summary=f"Check a {kind}'s config")
    def check(name: str, store: Store = Depends(get_store)) -> CheckOut:
        stored = store.read().settings()
        result = orchestrator.check_connector(
            store,
            kind,
            name,
            runtime_name=settings.chosen(stored, "runtime", None),
            network=settings.chosen(stored, "network", None),
        )
        return CheckOut(name=name, ok=result.ok, message=result.message)

    return router
