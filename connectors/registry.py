"""Every built-in connector type: its role, config spec, supported modes and implementation.

The specs are plain data so that etlctl can validate configs, mask secrets and decide what to
mount without importing the implementations (and pika, orjson or psycopg with them): an
implementation is named as ``"module:Class"`` and imported only by :meth:`ConnectorInfo.load`.

Spec conventions (draft 2020-12 JSON Schema plus two annotation keywords):
``"secret": true`` marks a value that must be masked in every output (on a field, or on a
map's ``additionalProperties``: each value of the map); connectors/secrets.py says which
values are secret, URL passwords included;
``"x-path": "read" | "write"`` marks a file path the connector reads or writes, so that the
runtime knows which directories to mount.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from connectors import image_tag

ROLES = ("extractor", "loader")
ALL_MODES = ("full_refresh", "incremental", "dedup")
COLUMN_TYPES = (
    "integer", "number", "decimal", "boolean", "string", "date", "timestamp", "json"
)
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


@dataclass(frozen=True)
class ConnectorInfo:
    type: str
    role: str
    description: str
    spec: dict[str, Any] = field(hash=False, compare=False)
    modes: tuple[str, ...] = ALL_MODES
    implementation: str = ""  # "module:Class", imported lazily by load()

    @property
    def image(self) -> str:
        return f"etlctl/{self.role}-{self.type}:{image_tag()}"

    def load(self) -> type:
        """Import the class that implements this connector (and its libraries)."""
        module_name, _, class_name = self.implementation.partition(":")
        return getattr(importlib.import_module(module_name), class_name)


# --- small builders that keep the specs below readable ------------------------------------
def _prop(kind: str | list[str], description: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "description": description, **extra}


def _path(description: str, access: str) -> dict[str, Any]:
    return _prop("string", description, minLength=1, **{"x-path": access})


def _secret(description: str) -> dict[str, Any]:
    return _prop("string", description, secret=True)


def _strings(description: str, **extra: Any) -> dict[str, Any]:
    return _prop("array", description, items={"type": "string"}, **extra)


def _secret_map(description: str) -> dict[str, Any]:
    """A map whose values are secret (masked, exported as references, never logged)."""
    return _prop("object", description, additionalProperties={"type": "string", "secret": True})


def _spec(
    title: str,
    properties: dict[str, dict[str, Any]],
    required: tuple[str, ...] = (),
    **extra: Any,
) -> dict[str, Any]:
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": title,
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
        **extra,
    }


_TABLE_OR_QUERY = {
    "oneOf": [{"required": ["table"]}, {"required": ["query"]}, {"required": ["tables"]}]
}


def _tables(where: str) -> dict[str, Any]:
    return _strings(
        f"several tables, one stream each (named after the table); [\"*\"]: every table {where}",
        minItems=1,
        uniqueItems=True,
    )


def _postgres_connection(defaults_schema: str) -> dict[str, dict[str, Any]]:
    return {
        "host": _prop("string", "server host name or address", default="127.0.0.1"),
        "port": _prop("integer", "server port", default=5432, minimum=1, maximum=65535),
        "dbname": _prop("string", "database name", minLength=1),
        "user": _prop("string", "user name", minLength=1),
        "password": _secret("the user's password"),
        "schema": _prop("string", "schema of the table", default=defaults_schema),
        "sslmode": _prop(
            "string",
            "libpq sslmode",
            enum=["disable", "allow", "prefer", "require", "verify-ca", "verify-full"],
            default="prefer",
        ),
        "connect_timeout": _prop("integer", "seconds to wait for a connection", default=10),
    }


# --- extractors ------------------------------------------------------------------------------
CSV_EXTRACTOR_SPEC = _spec(
    "csv extractor",
    {
        "path": _path("a CSV file, or a glob of files read in sorted order", "read"),
        "delimiter": _prop("string", "field separator", minLength=1, maxLength=1, default=","),
        "quotechar": _prop("string", "quote character", minLength=1, maxLength=1, default='"'),
        "header": _prop("boolean", "the first line of each file names the columns", default=True),
        "column_names": _strings(
            "column names, in order (required when header is false; overrides the header)",
            minItems=1,
        ),
        "encoding": _prop(
            "string", "text encoding; the default reads UTF-8 with or without BOM",
            default="utf-8-sig",
        ),
        "column_types": _prop(
            "object",
            "declared type per column; columns not named here are inferred or kept as strings",
            additionalProperties={"enum": list(COLUMN_TYPES)},
        ),
        "infer_types": _prop(
            "boolean",
            "infer the type of undeclared columns from the first sample_rows rows",
            default=True,
        ),
        "sample_rows": _prop("integer", "rows read to infer types", default=1000, minimum=1),
        "null_values": _strings('field values that mean NULL', default=[""]),
    },
    required=("path",),
)

JSONL_EXTRACTOR_SPEC = _spec(
    "jsonl extractor",
    {
        "path": _path("a JSON Lines or JSON file, or a glob of files", "read"),
        "format": _prop(
            "string",
            "jsonl: one object per line; json_array: one array of objects; "
            "auto: json_array for *.json files, jsonl otherwise",
            enum=["auto", "jsonl", "json_array"],
            default="auto",
        ),
        "encoding": _prop("string", "text encoding", default="utf-8-sig"),
    },
    required=("path",),
)

HTTP_PAGINATION = _prop(
    "object",
    "how to reach the next page",
    properties={
        "type": _prop(
            "string",
            "pagination style",
            enum=[
                "none", "next_link_body", "link_header", "page_number", "offset_limit",
                "cursor_token",
            ],
            default="none",
        ),
        "next_link_path": _prop(
            "string", "next_link_body: dotted path of the next page's URL in the body",
            default="next",
        ),
        "page_param": _prop("string", "page_number: query parameter of the page", default="page"),
        "start_page": _prop("integer", "page_number: number of the first page", default=1),
        "page_size_param": _prop(
            "string", "page_number: query parameter of the page size (optional)"
        ),
        "page_size": _prop("integer", "page_number/offset_limit: records per page", default=100,
                           minimum=1),
        "offset_param": _prop("string", "offset_limit: offset parameter", default="offset"),
        "limit_param": _prop("string", "offset_limit: limit parameter", default="limit"),
        "token_path": _prop(
            "string", "cursor_token: dotted path of the next token in the body",
            default="next_cursor",
        ),
        "token_param": _prop("string", "cursor_token: query parameter of the token",
                             default="cursor"),
        "max_pages": _prop(
            "integer",
            "at most this many pages: an API with more fails the sync rather than being read "
            "in part (default 100000)",
            minimum=1,
        ),
    },
    required=["type"],
    additionalProperties=False,
)

HTTP_EXTRACTOR_SPEC = _spec(
    "http extractor",
    {
        "url": _prop("string", "URL of the first page (http or https); a user:password in it "
                     "is secret and sent to its origin only", format="uri",
                     pattern="^[Hh][Tt][Tt][Pp][Ss]?://"),
        "params": _prop("object", "query parameters",
                        additionalProperties={"type": ["string", "number", "boolean"]}),
        "headers": _secret_map(
            "request headers, sent to the url's origin only; their values are secret"
        ),
        "bearer_token": _secret("sent as 'Authorization: Bearer <token>'"),
        "records_path": _prop(
            "string", "dotted path of the records array in the body; empty: the body is the array",
            default="",
        ),
        "pagination": HTTP_PAGINATION,
        "total_path": _prop(
            "string",
            "dotted path of the total record count in the first page's body (for the "
            "progress percentage; default: the X-Total-Count header, when the API sends it)",
        ),
        "cursor_param": _prop(
            "string", "incremental: query parameter that receives the saved cursor"
        ),
        "timeout": _prop("number", "seconds per request", default=30, exclusiveMinimum=0),
        "max_retries": _prop(
            "integer", "retries on 429, 5xx and network errors (Retry-After honoured)",
            default=5, minimum=0,
        ),
    },
    required=("url",),
)

SQLITE_EXTRACTOR_SPEC = _spec(
    "sqlite extractor",
    {
        "path": _path("the SQLite database file", "read"),
        "table": _prop("string", "table to read", minLength=1),
        "tables": _tables("of the file"),
        "query": _prop("string", "a SELECT to read instead of a table", minLength=1),
    },
    required=("path",),
    **_TABLE_OR_QUERY,
)

POSTGRES_EXTRACTOR_SPEC = _spec(
    "postgres extractor",
    {
        **_postgres_connection("public"),
        "table": _prop("string", "table to read", minLength=1),
        "tables": _tables("of the schema"),
        "query": _prop("string", "a SELECT to read instead of a table", minLength=1),
        "fetch_size": _prop("integer", "rows fetched per round trip", default=5000, minimum=1),
    },
    required=("dbname", "user"),
    **_TABLE_OR_QUERY,
)

# --- loaders -----------------------------------------------------------------------------------
TABLE_RULE = (
    "target table (created when missing); {stream} in it is the stream's name, one table per "
    "stream (e.g. {stream} or raw_{stream}): needed to load a connection of several streams"
)
JSONL_LOADER_SPEC = _spec(
    "jsonl loader",
    {"path": _path("the JSON Lines file to write", "write")},
    required=("path",),
)

CSV_LOADER_SPEC = _spec(
    "csv loader",
    {
        "path": _path("the CSV file to write", "write"),
        "delimiter": _prop("string", "field separator", minLength=1, maxLength=1, default=","),
    },
    required=("path",),
)

SQLITE_LOADER_SPEC = _spec(
    "sqlite loader",
    {
        "path": _path("the SQLite database file (created when missing)", "write"),
        "table": _prop("string", TABLE_RULE, minLength=1),
    },
    required=("path", "table"),
)

POSTGRES_LOADER_SPEC = _spec(
    "postgres loader",
    {**_postgres_connection("public"), "table": _prop("string", TABLE_RULE, minLength=1)},
    required=("dbname", "user", "table"),
)

AMQP_LOADER_SPEC = _spec(
    "amqp loader",
    {
        "url": _secret("amqp://user:password@host:port/vhost (instead of host, port, ...)"),
        "host": _prop("string", "broker host", default="127.0.0.1"),
        "port": _prop("integer", "broker port", default=5672, minimum=1, maximum=65535),
        "user": _prop("string", "user name", default="guest"),
        "password": _secret("the user's password"),
        "vhost": _prop("string", "virtual host", default="/"),
        "exchange": _prop("string", "exchange to publish to ('' is the default exchange)",
                          default=""),
        "routing_key": _prop("string", "routing key of every message", minLength=1),
    },
    required=("routing_key",),
)


_CONNECTORS: tuple[ConnectorInfo, ...] = (
    ConnectorInfo(
        "csv", "extractor", "CSV files (one file or a glob), typed by declaration or inference",
        CSV_EXTRACTOR_SPEC, ALL_MODES, "connectors.extractors.csv:CsvExtractor",
    ),
    ConnectorInfo(
        "jsonl", "extractor", "JSON Lines or JSON array files; nested values kept as JSON",
        JSONL_EXTRACTOR_SPEC, ALL_MODES, "connectors.extractors.jsonl:JsonlExtractor",
    ),
    ConnectorInfo(
        "http", "extractor", "a paginated JSON API over HTTP(S), with retries and backoff",
        HTTP_EXTRACTOR_SPEC, ALL_MODES, "connectors.extractors.http:HttpExtractor",
    ),
    ConnectorInfo(
        "sqlite", "extractor", "a SQLite table or query",
        SQLITE_EXTRACTOR_SPEC, ALL_MODES, "connectors.extractors.sqlite:SqliteExtractor",
    ),
    ConnectorInfo(
        "postgres", "extractor", "a PostgreSQL table or query, streamed with a server-side cursor",
        POSTGRES_EXTRACTOR_SPEC, ALL_MODES, "connectors.extractors.postgres:PostgresExtractor",
    ),
    ConnectorInfo(
        "jsonl", "loader", "a JSON Lines file, replaced atomically on full refresh",
        JSONL_LOADER_SPEC, ALL_MODES, "connectors.loaders.jsonl:JsonlLoader",
    ),
    ConnectorInfo(
        "csv", "loader", "a CSV file with a header, replaced atomically on full refresh",
        CSV_LOADER_SPEC, ("full_refresh", "incremental"), "connectors.loaders.csv:CsvLoader",
    ),
    ConnectorInfo(
        "sqlite", "loader", "a SQLite table, exactly-once, with schema evolution",
        SQLITE_LOADER_SPEC, ALL_MODES, "connectors.loaders.sqlite:SqliteLoader",
    ),
    ConnectorInfo(
        "postgres", "loader", "a PostgreSQL table loaded with COPY, exactly-once",
        POSTGRES_LOADER_SPEC, ALL_MODES, "connectors.loaders.postgres:PostgresLoader",
    ),
    # A message stream cannot be replaced or deduplicated: full_refresh publishes the whole
    # snapshot again, dedup is refused.
    ConnectorInfo(
        "amqp", "loader", "publishes each record as a message to a RabbitMQ exchange",
        AMQP_LOADER_SPEC, ("full_refresh", "incremental"), "connectors.loaders.amqp:AmqpLoader",
    ),
)


def all_connectors() -> list[ConnectorInfo]:
    return list(_CONNECTORS)


def get_connector(role: str, type: str) -> ConnectorInfo:
    for info in _CONNECTORS:
        if info.role == role and info.type == type:
            return info
    raise KeyError(f"no built-in {role} of type {type!r}")


def path_fields(spec: dict[str, Any]) -> dict[str, str]:
    """Top-level property name -> ``"read"`` or ``"write"`` for file path fields."""
    return {
        name: prop["x-path"]
        for name, prop in spec.get("properties", {}).items()
        if isinstance(prop, dict) and prop.get("x-path") in ("read", "write")
    }
