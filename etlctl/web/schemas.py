"""What the REST API takes and gives. Responses are built only from etlctl.views' documents
(secrets already masked there), so a secret cannot reach a response by construction."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from etlctl.models import OnError, RunStatus, SyncMode


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ErrorBody(_Out):
    type: str
    message: str
    hint: str | None = None
    exit_code: int = Field(description="What `etlctl` would exit with for the same error.")


class ErrorOut(_Out):
    error: ErrorBody


# --- sources and loaders -------------------------------------------------------------------
class ConnectorObjectIn(_In):
    name: str
    type: str
    config: dict[str, Any] = Field(
        default_factory=dict,
        description='Config fields; a secret may be a reference: {"fromEnv": "VAR"} or '
        '{"fromFile": "/path"}.',
    )
    image: str | None = None


class ConnectorObjectPatch(_In):
    config: dict[str, Any] | None = Field(
        None,
        description="Fields merged into the config (a secret sent back as ******** is kept "
        "as it is).",
    )
    replace_config: bool = Field(False, description="Replace the whole config with `config`.")
    unset: list[str] = Field(default_factory=list, description="Config fields to remove.")
    type: str | None = None
    image: str | None = None
    default_image: bool = Field(False, description="Go back to the built-in image.")


class ConnectorObjectOut(_Out):
    kind: Literal["source", "loader"]
    id: str
    name: str
    type: str
    image: str | None
    config: dict[str, Any] = Field(description="Secret fields masked as ********.")
    managed_by: str | None
    created_at: datetime
    updated_at: datetime
    connections: list[str] = Field(default_factory=list)


class CheckOut(_Out):
    name: str
    ok: bool
    message: str


# --- connections ---------------------------------------------------------------------------
class ConnectionIn(_In):
    name: str
    source: str
    loader: str
    mode: SyncMode = SyncMode.FULL_REFRESH
    cursor_field: str | None = None
    primary_key: list[str] = Field(default_factory=list)
    schedule: str = "manual"
    on_error: OnError = OnError.FAIL
    transform: dict[str, Any] | None = None
    allow_empty: bool = Field(
        False, description="May a full_refresh from a source with no records empty the target?"
    )


class ConnectionPatch(_In):
    source: str | None = None
    loader: str | None = None
    mode: SyncMode | None = None
    cursor_field: str | None = None
    primary_key: list[str] | None = None
    schedule: str | None = None
    on_error: OnError | None = None
    transform: dict[str, Any] | None = Field(None, description="{} removes the transform.")
    allow_empty: bool | None = None


class LastRunOut(_Out):
    id: str
    status: RunStatus
    started_at: datetime
    ended_at: datetime | None


class ConnectionOut(_Out):
    kind: Literal["connection"] = "connection"
    id: str
    name: str
    source: str
    loader: str
    mode: SyncMode
    cursor_field: str | None
    primary_key: list[str]
    schedule: str
    on_error: OnError
    transform: dict[str, Any] | None
    allow_empty: bool
    managed_by: str | None
    created_at: datetime
    updated_at: datetime
    state: dict[str, Any] | None
    last_run: LastRunOut | None


# --- runs ----------------------------------------------------------------------------------
class RunOut(_Out):
    id: str
    connection: str
    status: RunStatus
    trigger: str
    runtime: str
    started_at: datetime
    ended_at: datetime | None
    records_extracted: int
    records_loaded: int
    records_skipped: int
    bytes: int
    duration_seconds: float | None
    rows_per_second: float | None
    state_before: dict[str, Any] | None
    state_after: dict[str, Any] | None
    error: str | None
    log_path: str | None
    rejects_path: str | None
    pid: int | None
    host: str | None


class RunDetailOut(RunOut):
    log_tail: list[str] = Field(default_factory=list)
    progress: dict[str, Any] | None = Field(
        None,
        description="While running: elapsed_seconds, rows_per_second, extractor_done, "
        "loader_done, and percent / eta_seconds when the source can tell its size.",
    )


class SyncStartedOut(_Out):
    run_id: str
    pid: int
    run: RunOut | None = Field(
        description="The run as recorded, or null if the sync process had not recorded it "
        "yet when the server stopped waiting."
    )


# --- settings, schedules, manifests --------------------------------------------------------
class SettingIn(_In):
    value: str


class SchedulePreviewOut(_Out):
    schedule: str
    description: str
    next_runs: list[datetime]
