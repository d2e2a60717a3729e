"""The postgres loader's batch formatter (pg_copy_text) against a real server: whatever a
batch holds, the server reads back exactly the values formatted, or the formatter declines
(and the loader falls back to psycopg's row-by-row adaptation)."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pg_support import pg_database  # noqa: F401  (a fixture)

from connectors.loaders.pg_copy_text import format_batch

texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
rows = st.lists(
    st.tuples(
        st.none() | st.integers(-(2**63), 2**63 - 1),
        st.none() | st.floats(allow_nan=False, allow_infinity=False) | st.integers(-99, 99),
        st.none() | texts,
        st.none() | st.booleans(),
    ).map(list),
    min_size=1, max_size=30,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=rows)
def test_the_server_reads_back_every_value_formatted(pg_database, batch):  # noqa: F811
    data = format_batch(batch, 4)
    if any(row[2] is not None and "\x00" in row[2] for row in batch):
        assert data is None  # PostgreSQL text cannot hold NUL: psycopg names the row
        return
    assert data is not None
    with pg_database.connect() as db:
        db.execute("CREATE TEMP TABLE t (n bigint, f double precision, s text, b boolean, "
                   "ord bigint GENERATED ALWAYS AS IDENTITY)")
        with db.cursor().copy("COPY t (n, f, s, b) FROM STDIN") as copy:
            copy.write(data)
        back = db.execute("SELECT n, f, s, b FROM t ORDER BY ord").fetchall()
    assert back == [tuple(row) for row in batch]
    for (_, sent, _, _), (_, read, _, _) in zip(batch, back, strict=True):
        if isinstance(sent, float):
            assert math.copysign(1, sent) == math.copysign(1, read)  # -0.0 stays -0.0
