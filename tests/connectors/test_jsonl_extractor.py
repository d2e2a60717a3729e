"""The jsonl extractor: JSON Lines and streamed JSON arrays, nested values kept as JSON."""

from __future__ import annotations

import io
import json
import sqlite3
import time

import pytest
from connector_harness import events_of

from connectors.extractors.jsonl import JsonArrayReader
from connectors.sdk import ConnectorError

LINES = (
    '{"id": 1, "name": "Ada \\"the\\" Countess, of Lovelace", "tags": ["a", "b"], "n": 1}\n'
    "\n"
    '{"id": 2, "name": "Zoë — 東京", "address": {"city": "Zürich", "zip": null}, "n": 2.5}\r\n'
)
ARRAY = """[
  {"id": 3, "name": "line\\nbreak", "address": {"city": "Köln"}, "n": -3},
  {"id": 4, "name": "[not, an] {array}", "tags": [], "ok": true}
]
"""


def test_jsonl_and_json_array_files_from_a_glob(tmp_path, make_sync):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text("\ufeff" + LINES, encoding="utf-8")
    (tmp_path / "in" / "b.json").write_text(ARRAY, encoding="utf-8")
    db = tmp_path / "t.db"
    sync = make_sync("jsonl", {"path": str(tmp_path / "in" / "*.json*")}, "sqlite",
                     {"path": str(db), "table": "t"})
    extractor, loader, _ = sync.run()
    assert (extractor, loader) == (0, 0), sync.extractor_log + sync.loader_log
    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "SELECT id, name, tags, n, address, ok FROM t ORDER BY id").fetchall()
    connection.close()
    assert rows == [
        (1, 'Ada "the" Countess, of Lovelace', '["a","b"]', 1.0, None, None),
        (2, "Zoë — 東京", None, 2.5, '{"city":"Zürich","zip":null}', None),
        (3, "line\nbreak", None, -3.0, '{"city":"Köln"}', None),
        (4, "[not, an] {array}", "[]", None, None, 1),
    ]


@pytest.mark.parametrize("chunk", [1, 2, 7, 64])
def test_array_reader_streams_across_chunk_boundaries(chunk):
    text = '[ {"a": "x,]}"}, 12345, {"b": [1, 2, {"c": "ü"}]},\n\n"s" ,-0.5e3 ]  \n'
    reader = JsonArrayReader(io.StringIO(text), "f.json", chunk=chunk)
    elements = list(reader.elements())
    assert [e.value for e in elements] == [{"a": "x,]}"}, 12345, {"b": [1, 2, {"c": "ü"}]}, "s",
                                           -500.0]
    assert [e.line for e in elements] == [1, 1, 1, 3, 3]


@pytest.mark.parametrize(("text", "line"), [('[{"a": 1},\n{"a": }]', 2), ('[{"a": 1}\n{', 2),
                                            ('{"a": 1}', 1), ("[1] 2", 1)])
def test_array_reader_names_the_line_of_malformed_json(text, line):
    with pytest.raises(ConnectorError) as error:
        list(JsonArrayReader(io.StringIO(text), "f.json", chunk=3).elements())
    assert error.value.position == {"file": "f.json", "line": line}


def test_big_array_is_streamed(tmp_path, make_sync):
    source = tmp_path / "big.json"
    with open(source, "w") as out:
        out.write("[\n")
        out.write(",\n".join(json.dumps({"id": i, "v": {"k": "x" * 50}}) for i in range(50000)))
        out.write("\n]\n")
    target = tmp_path / "out.jsonl"
    sync = make_sync("jsonl", {"path": str(source)}, "jsonl", {"path": str(target)})
    started = time.monotonic()
    assert sync.run()[:2] == (0, 0), sync.extractor_log
    elapsed = time.monotonic() - started
    lines = target.read_text().splitlines()
    assert len(lines) == 50000 and json.loads(lines[-1]) == {"id": 49999, "v": {"k": "x" * 50}}
    print(f"\njson array -> jsonl: 50000 records in {elapsed:.1f}s")


def test_bad_lines_fail_with_position_or_are_skipped(tmp_path, make_sync):
    source = tmp_path / "a.jsonl"
    source.write_text('{"id": 1}\n{"id": 2,,}\n[3]\n{"id": 4}\n')
    out = tmp_path / "out.jsonl"
    sync = make_sync("jsonl", {"path": str(source)}, "jsonl", {"path": str(out)})
    loader = sync.start("loader")
    assert sync.start("extractor").wait(60) == 1
    loader.kill()
    loader.wait(10)
    error = events_of(sync.queues.drain_events(), "error", "extractor")[0]
    assert error["position"] == {"file": str(source), "line": 2}

    sync.queues.delete()
    sync.queues.declare()
    sync.start_new_run()
    sync.on_error = "skip"
    extractor, loader_code, events = sync.run()
    assert (extractor, loader_code) == (0, 0)
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == [1, 4]
    assert [e["position"]["line"] for e in events_of(events, "rejected")] == [2, 3]
