"""A throwaway PostgreSQL database per test module (skipped without a server, unless CI)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"
PG_PASSWORD = os.environ.get("ETLCTL_TEST_PG_PASSWORD", "postgres")


def _admin_connection() -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, password=PG_PASSWORD, dbname="postgres",
        autocommit=True, connect_timeout=3,
    )


def postgres_available() -> bool:
    try:
        _admin_connection().close()
    except psycopg.Error:
        return False
    return True


@dataclass
class PgDatabase:
    name: str

    def config(self, **extra: Any) -> dict[str, Any]:
        return {"host": PG_HOST, "port": PG_PORT, "dbname": self.name, "user": PG_USER,
                "password": PG_PASSWORD, "sslmode": "disable", **extra}

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, password=PG_PASSWORD,
                               dbname=self.name, autocommit=True)

    def execute(self, statement: str, params: Any = None) -> None:
        with self.connect() as connection:
            connection.execute(statement, params)

    def rows(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self.connect() as connection:
            return connection.execute(statement, params).fetchall()


@pytest.fixture(scope="module")
def pg_database() -> Iterator[PgDatabase]:
    if not postgres_available():
        message = f"PostgreSQL is not reachable on {PG_HOST}:{PG_PORT} as {PG_USER}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (run scripts/ensure-services.sh postgres)")
        pytest.skip(message)
    database = PgDatabase(f"etlctl_test_{uuid.uuid4().hex[:10]}")
    with _admin_connection() as admin:
        admin.execute(f'CREATE DATABASE "{database.name}"')
    try:
        yield database
    finally:
        with _admin_connection() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)')
