"""Sweeping run files of old versions never trips over a foreign file in $TMPDIR/etlctl-*."""

from __future__ import annotations

import tempfile

import pytest

from etlctl.leftovers import sweep_run_files
from etlctl.store import Store


@pytest.mark.parametrize("content", ["{}", '{"run": {}}', "[]", '"x"', "not json", '{"run": 1}'])
def test_a_json_file_that_is_no_run_file_is_left_alone(tmp_path, monkeypatch, content):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    foreign = tmp_path / "etlctl-someone-else"
    foreign.mkdir()
    (foreign / "settings.json").write_text(content)
    store = Store(tmp_path / "home" / "store.json")
    assert sweep_run_files(store) == []
    assert (foreign / "settings.json").read_text() == content
