"""The sweep of pre-0.2 run files reads whatever lies in $TMPDIR/etlctl-*: a file that is
not a run file (another tool's, another test's) must be left alone, never crash a sync."""

from __future__ import annotations

import json
import tempfile

from hypothesis import given, settings
from hypothesis import strategies as st

from etlctl.leftovers import sweep_run_files
from etlctl.store import Store

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)


@settings(max_examples=40, deadline=None)
@given(document=json_values)
def test_foreign_json_files_in_tmp_never_break_the_sweep(document):
    with tempfile.TemporaryDirectory() as root:
        original = tempfile.tempdir
        tempfile.tempdir = root
        try:
            foreign = tempfile.mkdtemp(prefix="etlctl-fuzz-config-", dir=root)
            with open(f"{foreign}/config.json", "w") as handle:
                json.dump(document, handle)
            store = Store(f"{root}/home/store.json")
            assert sweep_run_files(store) == []
        finally:
            tempfile.tempdir = original
