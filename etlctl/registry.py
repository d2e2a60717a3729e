"""The core API for sources, loaders and connections: what the CLI and manifests call.

Every change validates first and writes once, inside one store transaction, so a refused
change leaves the store exactly as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pydantic

from etlctl import catalog, scheduler
from etlctl.errors import ConflictError, NotFoundError, ValidationError
from etlctl.locks import connection_lock
from etlctl.models import (
    Connection,
    ConnectorObject,
    Loader,
    OnError,
    Source,
    StreamConfig,
    SyncMode,
    SyncState,
    new_id,
    utcnow,
    validate_name,
)
from etlctl.store import Store, StoreView

MODEL_OF_KIND: dict[str, type[ConnectorObject]] = {"source": Source, "loader": Loader}
ID_PREFIX = {"source": "src", "loader": "ldr", "connection": "con"}


def _pydantic_message(exc: pydantic.ValidationError) -> str:
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{field}: {message}" if field else message)
    return "; ".join(problems)


def build_model(model: type, **fields: Any) -> Any:
    try:
        return model(**fields)
    except pydantic.ValidationError as exc:
        raise ValidationError(_pydantic_message(exc)) from None


# --- sources and loaders -----------------------------------------------------------------
def validate_connector_config(
    kind: str, connector_type: str, config: dict[str, Any], image: str | None
) -> None:
    """Built-in types are checked against their spec; a custom image must name itself."""
    role = catalog.ROLE_OF_KIND[kind]
    info = catalog.find_connector(role, connector_type)
    if info is None:
        if image is None:
            catalog.connector(role, connector_type)  # raises the "unknown type" error
        return
    catalog.validate_config(info, config)


def new_connector_object(
    kind: str,
    name: str,
    connector_type: str,
    config: dict[str, Any],
    image: str | None = None,
    managed_by: str | None = None,
) -> ConnectorObject:
    validate_name(name, f"{kind} name")
    validate_connector_config(kind, connector_type, config, image)
    return build_model(
        MODEL_OF_KIND[kind],
        id=new_id(ID_PREFIX[kind]),
        name=name,
        type=connector_type,
        config=config,
        image=image,
        managed_by=managed_by,
    )


def add_connector_object(
    store: Store,
    kind: str,
    name: str,
    connector_type: str,
    config: dict[str, Any],
    image: str | None = None,
    managed_by: str | None = None,
) -> ConnectorObject:
    item = new_connector_object(kind, name, connector_type, config, image, managed_by)
    with store.transaction() as view:
        if view.find(kind, name) is not None:
            raise ConflictError(
                f"{kind} {name!r} exists already",
                hint=f"change it with: etlctl {kind} update {name} ...",
            )
        view.save(item)
    return item


@dataclass(frozen=True)
class ConnectorObjectChanges:
    """What `update` may change; None means 'leave as it is'."""

    config: dict[str, Any] | None = None  # merged into the current config
    replace_config: dict[str, Any] | None = None  # replaces it whole (--config-file --replace)
    unset: tuple[str, ...] = ()
    image: str | None = None
    clear_image: bool = False
    connector_type: str | None = None


def changed_connector_object(
    current: ConnectorObject, changes: ConnectorObjectChanges
) -> ConnectorObject:
    config = (
        dict(changes.replace_config)
        if changes.replace_config is not None
        else catalog.merge_config(current.config, changes.config or {})
    )
    for key in changes.unset:
        if key not in config:
            raise ValidationError(f"--unset {key!r}: the config has no such field")
        config.pop(key)
    image = None if changes.clear_image else (changes.image or current.image)
    connector_type = changes.connector_type or current.type
    validate_connector_config(current.kind, connector_type, config, image)
    return current.model_copy(
        update={"config": config, "image": image, "type": connector_type, "updated_at": utcnow()}
    )


def update_connector_object(
    store: Store, kind: str, name: str, changes: ConnectorObjectChanges
) -> ConnectorObject:
    with store.transaction() as view:
        current = view.get(kind, name)
        updated = changed_connector_object(current, changes)
        if updated.model_dump(exclude={"updated_at"}) != current.model_dump(exclude={"updated_at"}):
            view.save(updated)
        else:
            updated = current
    return updated


def connections_using(view: StoreView, kind: str, name: str) -> list[str]:
    return [conn.name for conn in view.connections() if getattr(conn, kind) == name]


def remove_connector_object(store: Store, kind: str, name: str) -> None:
    with store.transaction() as view:
        view.get(kind, name)
        users = connections_using(view, kind, name)
        if users:
            raise ConflictError(
                f"{kind} {name!r} is used by connection(s): {', '.join(users)}",
                hint="remove or change those connections first",
            )
        view.delete(kind, name)


# --- connections ---------------------------------------------------------------------------
def check_connection(view: StoreView, connection: Connection) -> None:
    """Cross-object rules: the source and loader exist and the loader supports the mode."""
    source = view.find("source", connection.source)
    loader = view.find("loader", connection.loader)
    missing = [
        (kind, name)
        for kind, name, found in (
            ("source", connection.source, source),
            ("loader", connection.loader, loader),
        )
        if found is None
    ]
    if missing:
        what = " and ".join(f"{kind} {name!r}" for kind, name in missing)
        guesses = [
            f"{kind} {guess!r}"
            for kind, name in missing
            if (guess := view.close_name(kind, name)) is not None
        ]
        create = "create " + ("it" if len(missing) == 1 else "them") + " first: "
        create += " / ".join(f"etlctl {kind} add" for kind, _ in missing)
        raise ValidationError(
            f"connection {connection.name!r} refers to {what}, which "
            f"{'does' if len(missing) == 1 else 'do'} not exist",
            hint=f"did you mean {' and '.join(guesses)}? or {create}" if guesses else create,
        )
    assert loader is not None and source is not None
    for obj in (source, loader):
        info = catalog.find_connector(obj.role, obj.type)
        if info is not None and info.modes and connection.mode.value not in info.modes:
            raise ValidationError(
                f"{obj.role} type {obj.type!r} does not support mode {connection.mode.value!r} "
                f"(it supports: {', '.join(info.modes)})",
                hint="pick another --mode, or another loader type",
            )
    scheduler.validate_schedule(connection.schedule)
    validate_transform(connection.transform)


def validate_transform(spec: dict[str, Any] | None) -> None:
    """The transform's shape; its columns are checked when the extractor knows them."""
    # Imported here: it loads the connector SDK, which no other command needs.
    from connectors.sdk.transform import Transform, TransformError

    try:
        Transform.parse(spec)
    except TransformError as exc:
        raise ValidationError(f"invalid transform: {exc}", hint="see docs/transform.md") from None


def new_connection(
    name: str,
    source: str,
    loader: str,
    mode: SyncMode | str = SyncMode.FULL_REFRESH,
    cursor_field: str | None = None,
    primary_key: list[str] | None = None,
    schedule: str = "manual",
    on_error: OnError | str = OnError.FAIL,
    transform: dict[str, Any] | None = None,
    managed_by: str | None = None,
    allow_empty: bool = False,
    streams: list[StreamConfig] | None = None,
) -> Connection:
    validate_name(name, "connection name")
    return build_model(
        Connection,
        id=new_id(ID_PREFIX["connection"]),
        name=name,
        source=source,
        loader=loader,
        mode=mode,
        cursor_field=cursor_field,
        primary_key=primary_key or [],
        schedule=scheduler.normalize_schedule(schedule),
        on_error=on_error,
        transform=transform,
        allow_empty=allow_empty,
        managed_by=managed_by,
        streams=streams or [],
    )


def parse_streams(values: list[str] | None) -> list[StreamConfig] | None:
    """``--stream NAME[:MODE[:CURSOR[:KEY,KEY]]]`` options; None when none was given."""
    if not values:
        return None
    try:
        return [StreamConfig.parse(value) for value in values]
    except ValueError as exc:
        raise ValidationError(
            str(exc), hint="for example: --stream users --stream orders:incremental:updated_at"
        ) from None


def add_connection(store: Store, connection: Connection) -> Connection:
    with store.transaction() as view:
        if view.find("connection", connection.name) is not None:
            raise ConflictError(
                f"connection {connection.name!r} exists already",
                hint=f"change it with: etlctl connection update {connection.name} ...",
            )
        check_connection(view, connection)
        view.save(connection)
    return connection


def changed_connection(current: Connection, changes: dict[str, Any]) -> Connection:
    """A validated copy of a connection with some fields changed (None: unchanged)."""
    fields = current.model_dump()
    fields.update({key: value for key, value in changes.items() if value is not None})
    if "schedule" in changes and changes["schedule"] is not None:
        fields["schedule"] = scheduler.normalize_schedule(changes["schedule"])
    fields["updated_at"] = utcnow()
    return build_model(Connection, **fields)


def update_connection(store: Store, name: str, changes: dict[str, Any]) -> Connection:
    with store.transaction() as view:
        current = view.get("connection", name)
        updated = changed_connection(current, changes)
        check_connection(view, updated)
        if updated.model_dump(exclude={"updated_at"}) == current.model_dump(exclude={"updated_at"}):
            return current
        view.save(updated)
    return updated


def remove_connection(store: Store, name: str) -> Connection:
    """Remove a connection and its state; refused (exit 4) while it syncs."""
    store.read().get("connection", name)  # not found before "syncing"
    with connection_lock(store, name, refusing="remove"), store.transaction() as view:
        connection = view.get("connection", name)
        view.delete("connection", name)
        view.clear_state(name)
    return connection


def reset_connection(store: Store, name: str, stream: str | None = None) -> SyncState | None:
    """Forget the saved state (of one stream, with ``stream``): the next sync starts over
    (that stream starts over). Returns what was cleared.

    Refused (exit 4) while the connection syncs: the sync would save its cursor over the
    reset. The reset is remembered (``reset_at``), so that a checkpoint a target committed
    before it is never taken back as the connection's state.
    """
    store.read().get("connection", name)
    with connection_lock(store, name, refusing="reset"), store.transaction() as view:
        connection = view.get("connection", name)
        previous = view.get_state(name)
        now = utcnow()
        if stream is not None:
            if previous is None or stream not in previous.streams:
                known = ", ".join(sorted(previous.streams)) if previous else ""
                raise NotFoundError(
                    f"connection {name!r} has no saved state for stream {stream!r}",
                    hint=f"streams with a state: {known}" if known else "it has no state at all",
                )
            view.save_state(previous.without_stream(stream))
            return previous.model_copy(update={"streams": {stream: previous.streams[stream]}})
        view.save_state(
            SyncState(connection=name, connection_id=connection.id, updated_at=now, reset_at=now)
        )
    return previous
