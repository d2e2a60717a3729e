"""The manifest core API: reading, parsing, reconciling and exporting, without the CLI."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from etlctl import manifest, registry, yamlio
from etlctl.errors import ValidationError
from etlctl.manifest import Action, ManifestFile
from etlctl.models import SyncState
from etlctl.store import Store

SOURCE = """\
apiVersion: etlctl/v1
kind: Source
metadata:
  name: users
spec:
  type: csv
  config:
    path: data/users.csv
"""
LOADER = """\
apiVersion: etlctl/v1
kind: Loader
metadata:
  name: wh
spec:
  type: sqlite
  config: {path: /srv/wh.db, table: users}
"""
CONNECTION = """\
apiVersion: etlctl/v1
kind: Connection
metadata:
  name: users-to-wh
spec:
  source: users
  loader: wh
"""


def _file(text: str, name: str = "m.yaml", base: Path = Path("/manifests")) -> ManifestFile:
    return ManifestFile(name=name, data=text.encode(), base_dir=base)


def _parse(text: str) -> list[manifest.Manifest]:
    return manifest.parse([_file(text)])


def _problems(text: str) -> str:
    with pytest.raises(ValidationError) as caught:
        _parse(text)
    return caught.value.message


# --- reading -------------------------------------------------------------------------------
def test_a_directory_is_read_sorted_and_not_recursively(tmp_path):
    (tmp_path / "b.yml").write_text(LOADER)
    (tmp_path / "a.yaml").write_text(SOURCE)
    (tmp_path / ".hidden.yaml").write_text("garbage: [")
    (tmp_path / "README.md").write_text("# not a manifest")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yaml").write_text("garbage: [")
    files = manifest.read_files([str(tmp_path)])
    assert [Path(file.name).name for file in files] == ["a.yaml", "b.yml"]
    assert all(file.base_dir == tmp_path for file in files)


def test_a_directory_without_manifests_is_an_error(tmp_path):
    # Applying "nothing" with --prune would remove everything: refuse it instead.
    with pytest.raises(ValidationError, match="no manifests in"):
        manifest.read_files([str(tmp_path)])


def test_a_missing_path_is_an_error(tmp_path):
    with pytest.raises(ValidationError, match="does not exist"):
        manifest.read_files([str(tmp_path / "nope.yaml")])


def test_stdin_is_read_with_the_size_limit():
    [file] = manifest.read_files(["-"], stdin=io.BytesIO(SOURCE.encode()))
    assert file.name == "<stdin>" and file.base_dir == Path.cwd()
    huge = io.BytesIO(b"#" * (yamlio.MAX_YAML_BYTES + 10))
    with pytest.raises(ValidationError, match="<stdin>: larger than"):
        manifest.read_files(["-"], stdin=huge)


def test_a_set_without_objects_is_refused():
    with pytest.raises(ValidationError, match="declare no objects"):
        _parse("# only a comment\n---\n")


# --- parsing -------------------------------------------------------------------------------
def test_several_documents_per_file_with_their_lines():
    manifests = _parse(SOURCE + "---\n" + LOADER + "---\n" + CONNECTION)
    assert [(m.kind, m.name, m.location.line) for m in manifests] == [
        ("source", "users", 1),
        ("loader", "wh", 10),
        ("connection", "users-to-wh", 18),
    ]
    assert manifests[2].fields == {"source": "users", "loader": "wh"}


def test_relative_paths_resolve_against_the_manifest_directory():
    [source] = manifest.parse([_file(SOURCE, base=Path("/repo/manifests"))])
    assert source.fields["config"]["path"] == "/repo/manifests/data/users.csv"
    parent = SOURCE.replace("path: data/users.csv", "path: ../data/*.csv")
    [source] = manifest.parse([_file(parent, base=Path("/repo/manifests"))])
    assert source.fields["config"]["path"] == "/repo/data/*.csv"
    absolute = SOURCE.replace("path: data/users.csv", "path: /data/users.csv")
    assert _parse(absolute)[0].fields["config"]["path"] == "/data/users.csv"


def test_fields_that_are_not_paths_are_left_alone():
    [loader] = _parse(LOADER.replace("table: users", "table: ../users"))
    assert loader.fields["config"]["table"] == "../users"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a\n- b\n", "m.yaml: a manifest is a mapping with apiVersion, kind"),
        (SOURCE.replace("etlctl/v1", "etlctl/v2"), "m.yaml:1: apiVersion: must be 'etlctl/v1'"),
        (SOURCE.replace("kind: Source", "kind: source"), "m.yaml:2: kind: must be one of"),
        (SOURCE.replace("name: users", "name: Users!"), "m.yaml:4: metadata.name: invalid name"),
        (SOURCE + "status: {}\n", "m.yaml:9: status: unknown field"),
        (
            SOURCE.replace("metadata:\n", "metadata:\n  labels: {}\n"),
            "metadata.labels: unknown field",
        ),
        (SOURCE.replace("  type: csv\n", ""), 'Source "users": spec.type: missing (required)'),
        (SOURCE.replace("type: csv", "type: [csv]"), "spec.type: must be a string, not a list"),
        (CONNECTION + "  primaryKey: id\n", "spec.primaryKey: must be a list of column names"),
        (CONNECTION + "  onError: ignore\n", 'm.yaml:8: Connection "users-to-wh": spec.onError'),
        (CONNECTION + "  cursor_field: x\n", "(did you mean 'cursorField'?)"),
        (
            SOURCE + "    since: 2024-01-01\n",
            "spec.config.since: YAML read datetime.date(2024, 1, 1) as a date; quote it",
        ),
        (SOURCE + "    1: x\n", "key 1 must be a string"),
        (
            SOURCE + "---\n" + SOURCE,
            'm.yaml:10: Source "users": declared twice (first at m.yaml:1)',
        ),
        ("? [a, b]\n: 1\n", "m.yaml:1: a key must be a plain value"),
    ],
)
def test_format_problems_name_the_line_the_object_and_the_field(text, expected):
    assert expected in _problems(text)


def test_every_problem_of_a_set_is_reported_at_once():
    message = _problems(
        SOURCE.replace("kind: Source", "kind: Sauce") + "---\n" + CONNECTION + "  x: 1\n"
    )
    assert message.startswith("2 problems in the manifests; nothing was changed")


# --- reconciling -------------------------------------------------------------------------------
def test_reconcile_on_a_snapshot_then_apply(tmp_path):
    store = Store(tmp_path / "store.json")
    manifests = _parse(SOURCE + "---\n" + LOADER + "---\n" + CONNECTION)
    plan = manifest.apply(store, manifests, dry_run=True)
    assert [step.action for step in plan.steps] == [Action.CREATE] * 3 and plan.dry_run
    assert not store.exists()
    plan = manifest.apply(store, manifests)
    assert plan.changed and not plan.schedules_changed
    assert not manifest.apply(store, manifests).changed


def test_an_update_adopts_a_hand_made_object_and_an_unchanged_one_stays_hand_made(tmp_path):
    store = Store(tmp_path / "store.json")
    registry.add_connector_object(
        store, "loader", "wh", "sqlite", {"path": "/srv/wh.db", "table": "users"}
    )
    registry.add_connector_object(store, "source", "users", "csv", {"path": "/x.csv"})
    manifest.apply(store, _parse(SOURCE + "---\n" + LOADER))
    view = store.read()
    assert view.get("loader", "wh").managed_by is None  # matched: left as it was
    assert view.get("source", "users").managed_by == "manifest"  # changed: now managed


def test_pruning_a_connection_forgets_its_state(tmp_path):
    store = Store(tmp_path / "store.json")
    manifest.apply(store, _parse(SOURCE + "---\n" + LOADER + "---\n" + CONNECTION))
    with store.transaction() as view:
        view.save_state(SyncState(connection="users-to-wh", state={"cursor": 3}))
    plan = manifest.apply(store, _parse(SOURCE + "---\n" + LOADER), prune=True)
    assert [(s.action, s.name) for s in plan.steps][-1] == (Action.PRUNE, "users-to-wh")
    assert store.read().get_state("users-to-wh") is None


def test_a_changed_loader_type_is_checked_against_hand_made_connections(tmp_path):
    store = Store(tmp_path / "store.json")
    manifest.apply(store, _parse(SOURCE + "---\n" + LOADER))
    registry.add_connection(
        store, registry.new_connection("by-hand", "users", "wh", "dedup", primary_key=["id"])
    )
    csv_loader = LOADER.replace("type: sqlite", "type: csv").replace(", table: users", "")
    with pytest.raises(ValidationError) as caught:
        manifest.apply(store, _parse(csv_loader))
    assert 'Connection "by-hand" (in the store, using Loader "wh")' in caught.value.message
    assert "does not support mode 'dedup'" in caught.value.message
    assert store.read().get("loader", "wh").type == "sqlite"


# --- export --------------------------------------------------------------------------------------
def test_export_ref_names_are_environment_variable_names():
    assert (
        manifest.export_ref_name("loader", "pg-main", "password")
        == "ETLCTL_LOADER_PG_MAIN_PASSWORD"
    )


def test_export_masks_likely_secrets_of_custom_types(tmp_path):
    store = Store(tmp_path / "store.json")
    registry.add_connector_object(
        store, "source", "custom", "mytype", {"api_key": "k-123", "region": "eu"}, image="x/y:1"
    )
    documents, warnings = manifest.export_documents(store.read())
    config = documents[0]["spec"]["config"]
    assert config == {"api_key": {"fromEnv": "ETLCTL_SOURCE_CUSTOM_API_KEY"}, "region": "eu"}
    assert documents[0]["spec"]["image"] == "x/y:1"
    assert len(warnings) == 1


def test_export_text_is_strict_yaml_that_parses_back(tmp_path):
    store = Store(tmp_path / "store.json")
    manifest.apply(store, _parse(SOURCE + "---\n" + LOADER + "---\n" + CONNECTION))
    documents, _ = manifest.export_documents(store.read())
    text = manifest.export_text(documents)
    reparsed = _parse(text)
    assert [(m.kind, m.name) for m in reparsed] == [
        ("source", "users"),
        ("loader", "wh"),
        ("connection", "users-to-wh"),
    ]


def test_removing_an_empty_config_value_is_a_change(tmp_path):
    store = Store(tmp_path / "store.json")
    with_empty = SOURCE + "    null_values: []\n"
    manifest.apply(store, _parse(with_empty))
    plan = manifest.apply(store, _parse(SOURCE))
    [step] = plan.steps
    assert step.action is Action.UPDATE
    assert [(d.path, d.before, d.after) for d in step.diffs] == [("config.null_values", [], None)]
    assert "null_values" not in store.read().get("source", "users").config
