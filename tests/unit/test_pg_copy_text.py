"""Which batches the postgres loader's fast COPY formatter takes, and which it leaves to
psycopg's row-by-row adaptation (the server round trip is tests/connectors)."""

from __future__ import annotations

import pytest

from connectors.loaders.pg_copy_text import format_batch


def test_plain_values_become_copy_text_with_escapes_and_nulls():
    batch = [[1, 2.5, "a\tb\\c\nd", True], [None, None, None, False], [-3, 7, "é", None]]
    assert format_batch(batch, 4) == (
        "1\t2.5\ta\\tb\\\\c\\nd\tt\n\\N\t\\N\t\\N\tf\n-3\t7\té\t\\N\n".encode()
    )


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), -float("inf"), 2**64, {"a": 1}, [1], b"x", "a\x00b", "\ud800"],
    ids=repr,
)
def test_values_needing_adaptation_leave_the_batch_to_psycopg(value):
    assert format_batch([["ok"], [value]], 1) is None


def test_a_column_mixing_booleans_and_numbers_is_left_to_psycopg():
    assert format_batch([[1], [True]], 1) is None


def test_rows_of_the_wrong_width_are_left_to_psycopg():
    assert format_batch([[1, 2], [3]], 2) is None
