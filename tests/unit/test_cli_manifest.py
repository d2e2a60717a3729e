"""`etlctl apply / diff / export` through typer's CliRunner, with real files and the real store."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from etlctl import manifest, scheduler
from etlctl.errors import ServiceUnavailableError
from etlctl.store import Store

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "manifests"
SENTINEL = "s3cr3t-sentinel"

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
  name: warehouse
spec:
  type: sqlite
  config:
    path: out/warehouse.db
    table: users
"""
CONNECTION = """\
apiVersion: etlctl/v1
kind: Connection
metadata:
  name: users-to-warehouse
spec:
  source: users
  loader: warehouse
  mode: incremental
  cursorField: updated_at
"""


@pytest.fixture(autouse=True)
def crontab_syncs(monkeypatch) -> list[Store]:
    """No test touches the real crontab: sync_crontab records its calls instead."""
    calls: list[Store] = []

    def fake_sync_crontab(store: Store) -> scheduler.CrontabChange:
        calls.append(store)
        return scheduler.CrontabChange(added=["users-to-warehouse"], written=True)

    monkeypatch.setattr(scheduler, "sync_crontab", fake_sync_crontab)
    monkeypatch.delenv("ETLCTL_NO_CRONTAB", raising=False)  # the recorder stands in for the crontab
    return calls


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    directory = tmp_path / "manifests"
    directory.mkdir()
    (directory / "1-sources.yaml").write_text(SOURCE)
    (directory / "2-loaders.yml").write_text(LOADER)
    (directory / "3-connections.yaml").write_text(CONNECTION)
    (directory / "notes.txt").write_text("not a manifest: ignored")
    return directory


def _docs(store_path: Path) -> dict[str, dict]:
    view = Store(store_path).read()
    return {
        f"{item.kind}/{item.name}": item.to_doc()
        for kind in ("source", "loader", "connection")
        for item in view.list(kind)
    }


def _comparable(docs: dict[str, dict]) -> dict[str, dict]:
    """What two stores must share to hold the same objects (ids and times are their own)."""
    ignored = {"id", "created_at", "updated_at", "managed_by"}
    return {key: {k: v for k, v in doc.items() if k not in ignored} for key, doc in docs.items()}


# --- apply -----------------------------------------------------------------------------------
def test_apply_creates_every_object_marked_as_manifest_made(cli, manifests, store_path):
    result = cli("apply", "-f", str(manifests))
    assert "Applied: 3 created, 0 updated, 0 unchanged, 0 pruned." in result.stdout
    assert "1-sources.yaml:1" in result.stdout
    docs = _docs(store_path)
    assert set(docs) == {"source/users", "loader/warehouse", "connection/users-to-warehouse"}
    assert {doc["managed_by"] for doc in docs.values()} == {"manifest"}
    # Relative paths resolve against the manifest's directory; the store keeps them absolute.
    assert docs["source/users"]["config"]["path"] == str(manifests / "data" / "users.csv")
    assert docs["loader/warehouse"]["config"]["path"] == str(manifests / "out" / "warehouse.db")
    assert docs["connection/users-to-warehouse"]["cursor_field"] == "updated_at"


def test_reapply_changes_nothing(cli, manifests, store_path):
    cli("apply", "-f", str(manifests))
    before = store_path.read_bytes()
    result = cli("apply", "-f", str(manifests))
    assert "Applied: 0 created, 0 updated, 3 unchanged, 0 pruned." in result.stdout
    assert store_path.read_bytes() == before


def test_changing_one_field_updates_exactly_one_object(cli, manifests, store_path):
    cli("apply", "-f", str(manifests))
    before = _docs(store_path)
    (manifests / "2-loaders.yml").write_text(LOADER.replace("table: users", "table: customers"))
    result = cli("apply", "-f", str(manifests), "--json")
    plan = json.loads(result.stdout)
    assert plan["counts"] == {"create": 0, "update": 1, "unchanged": 2, "prune": 0}
    [update] = [step for step in plan["steps"] if step["action"] == "update"]
    assert update["kind"] == "Loader" and update["name"] == "warehouse"
    assert update["changes"] == [{"field": "config.table", "before": "users", "after": "customers"}]
    after = _docs(store_path)
    assert after["loader/warehouse"]["config"]["table"] == "customers"
    assert after["loader/warehouse"]["id"] == before["loader/warehouse"]["id"]
    for key in ("source/users", "connection/users-to-warehouse"):
        assert after[key] == before[key]


def test_a_removed_optional_field_goes_back_to_its_default(cli, manifests, store_path):
    (manifests / "3-connections.yaml").write_text(CONNECTION + '  schedule: "0 2 * * *"\n')
    cli("apply", "-f", str(manifests), "--no-crontab")
    (manifests / "3-connections.yaml").write_text(
        CONNECTION.replace("mode: incremental\n  cursorField: updated_at\n", "mode: full_refresh\n")
    )
    result = cli("apply", "-f", str(manifests), "--no-crontab")
    assert 'schedule: "0 2 * * *" -> "manual"' in result.stdout
    assert 'cursorField: "updated_at" -> (none)' in result.stdout
    doc = _docs(store_path)["connection/users-to-warehouse"]
    assert doc["schedule"] == "manual" and doc["cursor_field"] is None


def test_prune_removes_only_what_manifests_made(cli, manifests, store_path, tmp_path):
    cli("apply", "-f", str(manifests))
    cli("source", "add", "by-hand", "--type", "csv", "--config", f"path={tmp_path}/x.csv")
    (manifests / "3-connections.yaml").unlink()
    (manifests / "2-loaders.yml").unlink()

    plan = json.loads(cli("diff", "-f", str(manifests), "--prune", "--json").stdout)
    pruned = {(step["kind"], step["name"]) for step in plan["steps"] if step["action"] == "prune"}
    assert pruned == {("Connection", "users-to-warehouse"), ("Loader", "warehouse")}

    from etlctl.locks import connection_lock
    from etlctl.store import Store

    before = store_path.read_bytes()
    with connection_lock(Store(store_path), "users-to-warehouse"):  # a sync of it is running
        refused = cli("apply", "-f", str(manifests), "--prune", code=4)
    assert "cannot prune connection 'users-to-warehouse' while it is syncing" in refused.stderr
    assert store_path.read_bytes() == before

    result = cli("apply", "-f", str(manifests), "--prune")
    assert "Connection users-to-warehouse pruned" in result.stdout
    assert set(_docs(store_path)) == {"source/users", "source/by-hand"}


def test_prune_keeps_a_source_a_remaining_connection_uses(cli, manifests, store_path):
    cli("apply", "-f", str(manifests))
    cli("connection", "add", "hand-made", "--source", "users", "--loader", "warehouse")
    (manifests / "1-sources.yaml").unlink()
    (manifests / "2-loaders.yml").unlink()
    (manifests / "3-connections.yaml").write_text(
        CONNECTION.replace("name: users-to-warehouse", "name: other")
    )
    result = cli("apply", "-f", str(manifests), "--prune")
    assert "connection(s) hand-made, other use it: not pruned" in result.stderr
    assert set(_docs(store_path)) == {
        "source/users",
        "loader/warehouse",
        "connection/hand-made",
        "connection/other",
    }


def test_without_prune_undeclared_objects_stay(cli, manifests, store_path):
    cli("apply", "-f", str(manifests))
    (manifests / "3-connections.yaml").unlink()
    cli("apply", "-f", str(manifests))
    assert "connection/users-to-warehouse" in _docs(store_path)


# --- dry run, diff, exit codes --------------------------------------------------------------
def test_dry_run_changes_nothing(cli, manifests, store_path):
    result = cli("apply", "-f", str(manifests), "--dry-run")
    assert "Source users would be created" in result.stdout
    assert "Dry run, nothing changed" in result.stdout
    assert not store_path.exists()

    cli("apply", "-f", str(manifests))
    before = store_path.read_bytes()
    (manifests / "2-loaders.yml").write_text(LOADER.replace("table: users", "table: other"))
    result = cli("apply", "-f", str(manifests), "--dry-run", "--prune")
    assert "Loader warehouse would be updated" in result.stdout
    assert store_path.read_bytes() == before


def test_diff_exit_code_says_whether_anything_would_change(cli, manifests, store_path):
    cli("diff", "-f", str(manifests), "--exit-code", code=1)
    assert not store_path.exists()
    cli("apply", "-f", str(manifests))
    cli("diff", "-f", str(manifests), "--exit-code", code=0)
    cli("diff", "-f", str(manifests), code=0)
    (manifests / "2-loaders.yml").write_text(LOADER.replace("table: users", "table: other"))
    result = cli("diff", "-f", str(manifests), "--exit-code", code=1)
    assert 'config.table: "users" -> "other"' in result.stdout
    (manifests / "2-loaders.yml").write_text("kind: Nope\n")
    cli("diff", "-f", str(manifests), "--exit-code", code=2)


def test_manifests_from_stdin(cli, store_path):
    result = cli("apply", "-f", "-", stdin=SOURCE + "---\n" + LOADER)
    assert "2 created" in result.stdout
    assert _docs(store_path)["source/users"]["config"]["path"] == str(
        Path.cwd() / "data" / "users.csv"
    )


# --- validation: all or nothing ---------------------------------------------------------------
def test_an_invalid_set_changes_nothing(cli, manifests, store_path):
    cli("apply", "-f", str(manifests))
    before = store_path.read_bytes()
    (manifests / "2-loaders.yml").write_text(LOADER.replace("table: users", "table: customers"))
    bad = SOURCE.replace("name: users", "name: broken").replace("path: data/users.csv", "colour: 1")
    (manifests / "4-broken.yaml").write_text(bad)
    result = cli("apply", "-f", str(manifests), code=2)
    assert "nothing was changed" in result.stderr
    assert '4-broken.yaml:7: Source "broken": spec.config: invalid config' in result.stderr
    assert "missing required config field 'path'" in result.stderr
    assert store_path.read_bytes() == before


def test_an_invalid_first_apply_creates_no_store(cli, manifests, store_path):
    (manifests / "3-connections.yaml").write_text(
        CONNECTION.replace("mode: incremental", "mode: x")
    )
    result = cli("apply", "-f", str(manifests), code=2)
    assert '3-connections.yaml:8: Connection "users-to-warehouse": spec.mode: must be one of' in (
        result.stderr
    )
    assert not store_path.exists()


def test_a_missing_reference_names_the_connection_file_and_line(cli, manifests, store_path):
    (manifests / "1-sources.yaml").unlink()
    result = cli("apply", "-f", str(manifests), code=2)
    where = f"{manifests / '3-connections.yaml'}:6"
    assert f'{where}: Connection "users-to-warehouse": spec.source: refers to source' in (
        result.stderr
    )
    assert "'users'" in result.stderr
    assert not store_path.exists()


def test_a_reference_to_an_object_in_the_store_is_fine(cli, manifests, store_path, tmp_path):
    cli("source", "add", "users", "--type", "csv", "--config", f"path={tmp_path}/u.csv")
    (manifests / "1-sources.yaml").unlink()
    cli("apply", "-f", str(manifests))
    assert _docs(store_path)["source/users"]["managed_by"] is None


def test_unknown_keys_are_refused_with_a_suggestion(cli, manifests):
    (manifests / "3-connections.yaml").write_text(
        CONNECTION.replace("cursorField", "cursor_field") + "  retries: 3\n"
    )
    result = cli("apply", "-f", str(manifests), code=2)
    assert "spec.cursor_field: unknown field (did you mean 'cursorField'?)" in result.stderr
    assert "3-connections.yaml:10" in result.stderr and "spec.retries: unknown field" in (
        result.stderr
    )


def test_a_mode_the_loader_does_not_support_is_refused(cli, manifests):
    (manifests / "2-loaders.yml").write_text(
        LOADER.replace("type: sqlite", "type: csv").replace("    table: users\n", "")
    )
    (manifests / "3-connections.yaml").write_text(
        CONNECTION.replace("mode: incremental", "mode: dedup") + "  primaryKey: [id]\n"
    )
    result = cli("apply", "-f", str(manifests), code=2)
    assert "spec.mode: loader type 'csv' does not support mode 'dedup'" in result.stderr


# --- secrets ------------------------------------------------------------------------------------
PG_LOADER = """\
apiVersion: etlctl/v1
kind: Loader
metadata:
  name: pg
spec:
  type: postgres
  config:
    host: db.internal
    dbname: wh
    user: etl
    password: {password}
    table: users
"""


def test_a_secret_reference_is_kept_and_never_shown(cli, tmp_path, store_path, monkeypatch):
    monkeypatch.delenv("PG_PASSWORD", raising=False)
    path = tmp_path / "pg.yaml"
    path.write_text(PG_LOADER.format(password="{fromEnv: PG_PASSWORD}"))
    result = cli("apply", "-f", str(path))
    assert "environment variable PG_PASSWORD is not set" in result.stderr
    assert _docs(store_path)["loader/pg"]["config"]["password"] == {"fromEnv": "PG_PASSWORD"}

    monkeypatch.setenv("PG_PASSWORD", SENTINEL)
    result = cli("apply", "-f", str(path))
    assert "not set" not in result.stderr
    shown = cli("loader", "show", "pg").stdout + cli("loader", "show", "pg", "--json").stdout
    assert "PG_PASSWORD" in shown and SENTINEL not in shown
    assert SENTINEL not in store_path.read_text()


def test_a_relative_secret_file_reference_becomes_absolute(cli, tmp_path, store_path):
    path = tmp_path / "pg.yaml"
    path.write_text(PG_LOADER.format(password="{fromFile: secrets/pg}"))
    cli("apply", "-f", str(path))
    stored = _docs(store_path)["loader/pg"]["config"]["password"]
    assert stored == {"fromFile": str(tmp_path / "secrets" / "pg")}


def test_a_plain_secret_is_masked_in_the_plan(cli, tmp_path):
    path = tmp_path / "pg.yaml"
    path.write_text(PG_LOADER.format(password=SENTINEL))
    cli("apply", "-f", str(path))
    path.write_text(PG_LOADER.format(password=SENTINEL + "-rotated"))
    result = cli("diff", "-f", str(path))
    assert 'config.password: "********" -> "********" (secret changed)' in result.stdout
    for args in (("diff", "--json"), ("apply", "--json")):
        result = cli(*args, "-f", str(path))
        assert SENTINEL not in result.stdout + result.stderr
        assert json.loads(result.stdout)["steps"][0]["changes"] == [
            {"field": "config.password", "before": "********", "after": "********"}
        ]


# --- export -------------------------------------------------------------------------------------
def _hand_made_store(cli, tmp_path: Path) -> None:
    cli("source", "add", "users", "--type", "csv", "--config", f"path={tmp_path}/users.csv")
    cli(
        "loader", "add", "wh", "--type", "postgres",
        "--config", "host=127.0.0.1", "--config", "dbname=wh", "--config", "user=etl",
        "--config", f"password={SENTINEL}", "--config", "table=users",
    )  # fmt: skip
    cli(
        "connection", "add", "users-to-wh", "--source", "users", "--loader", "wh",
        "--mode", "dedup", "--primary-key", "id", "--schedule", "0 3 * * *",
    )  # fmt: skip


def test_export_never_writes_a_plain_secret(cli, tmp_path, store_path):
    _hand_made_store(cli, tmp_path)
    result = cli("export")
    assert SENTINEL not in result.stdout
    assert "password:\n      fromEnv: ETLCTL_LOADER_WH_PASSWORD" in result.stdout
    assert "ETLCTL_LOADER_WH_PASSWORD" in result.stderr  # the warning says what to set
    assert SENTINEL not in cli("export", "--json").stdout


def test_export_applied_to_the_same_store_changes_nothing(cli, tmp_path, store_path):
    _hand_made_store(cli, tmp_path)
    exported = tmp_path / "export" / "all.yaml"
    exported.parent.mkdir()
    cli("export", "-o", str(exported))
    before = store_path.read_bytes()
    cli("diff", "-f", str(exported), "--exit-code")
    result = cli("apply", "-f", str(exported), "--prune")
    assert "Applied: 0 created, 0 updated, 3 unchanged, 0 pruned." in result.stdout
    assert store_path.read_bytes() == before


def test_export_applied_to_an_empty_store_reproduces_it(cli, tmp_path, store_path, monkeypatch):
    _hand_made_store(cli, tmp_path)
    exported = tmp_path / "all.yaml"
    cli("export", "-o", str(exported))
    other = tmp_path / "other" / "store.json"
    monkeypatch.setenv("ETLCTL_LOADER_WH_PASSWORD", SENTINEL)
    result = cli("apply", "-f", str(exported), "--no-crontab", store=other)
    assert "3 created" in result.stdout and "not set" not in result.stderr
    original, reproduced = _comparable(_docs(store_path)), _comparable(_docs(other))
    # The one difference: the new store holds the reference, not the plain secret.
    assert reproduced["loader/wh"]["config"].pop("password") == {
        "fromEnv": "ETLCTL_LOADER_WH_PASSWORD"
    }
    assert original["loader/wh"]["config"].pop("password") == SENTINEL
    assert reproduced == original


def test_export_of_an_empty_store(cli):
    assert cli("export").stdout.startswith("# etlctl export: 0 object(s)")


# --- hostile YAML -------------------------------------------------------------------------------
BILLION_LAUGHS = textwrap.dedent(
    """\
    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    """
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('!!python/object/apply:os.system ["touch PWNED"]\n', "could not determine a constructor"),
        (BILLION_LAUGHS, "anchors and aliases are not allowed"),
        (SOURCE + "kind: Loader\n", "duplicate key 'kind'"),
        ("a: " + "x" * (5 * 1024 * 1024) + "\n", "larger than the"),
        ("[" * 10000 + "]" * 10000, "nested deeper than"),
    ],
    ids=["python-tag", "billion-laughs", "duplicate-key", "5-MB", "deep-nesting"],
)
def test_hostile_yaml_is_refused_naming_the_file(cli, manifests, store_path, text, expected):
    cli("apply", "-f", str(manifests))
    before = store_path.read_bytes()
    hostile = manifests / "0-hostile.yaml"
    hostile.write_text(text)
    result = cli("apply", "-f", str(manifests), code=2)
    assert expected in result.stderr
    assert str(hostile) in result.stderr
    assert store_path.read_bytes() == before
    assert not (Path.cwd() / "PWNED").exists()


# --- schedules and the crontab ------------------------------------------------------------------
def test_crontab_is_synced_only_when_a_schedule_changes(cli, manifests, crontab_syncs):
    calls = crontab_syncs
    cli("apply", "-f", str(manifests))
    assert calls == []  # manual schedules only

    (manifests / "3-connections.yaml").write_text(CONNECTION + '  schedule: "*/15 * * * *"\n')
    cli("apply", "-f", str(manifests), "--dry-run")
    assert calls == []
    result = cli("apply", "-f", str(manifests))
    assert len(calls) == 1 and "crontab: added users-to-warehouse" in result.stderr
    cli("apply", "-f", str(manifests))
    assert len(calls) == 1  # unchanged

    (manifests / "3-connections.yaml").write_text(CONNECTION + '  schedule: "@daily"\n')
    cli("apply", "-f", str(manifests), "--no-crontab")
    assert len(calls) == 1


def test_a_crontab_failure_says_the_store_was_applied(cli, manifests, store_path, monkeypatch):
    def unavailable(store: Store) -> None:
        raise ServiceUnavailableError("crontab: command not found")

    monkeypatch.setattr(scheduler, "sync_crontab", unavailable)
    monkeypatch.delenv("ETLCTL_NO_CRONTAB", raising=False)
    (manifests / "3-connections.yaml").write_text(CONNECTION + '  schedule: "@hourly"\n')
    result = cli("apply", "-f", str(manifests), code=ServiceUnavailableError.exit_code)
    assert "the store was changed, but the crontab was not updated" in result.stderr
    assert _docs(store_path)["connection/users-to-warehouse"]["schedule"] == "@hourly"


def test_the_example_manifests_apply_as_they_are(cli, store_path):
    result = cli("apply", "-f", str(EXAMPLES), "--no-crontab")
    assert "0 unchanged" in result.stdout
    users = _docs(store_path)["source/users"]["config"]["path"]
    assert Path(users) == EXAMPLES.parent / "data" / "users.csv" and Path(users).is_file()
    cli("diff", "-f", str(EXAMPLES), "--exit-code")


@pytest.mark.parametrize("command", ["apply", "diff", "export"])
def test_every_help_has_a_purpose_and_examples(cli, command):
    text = cli(command, "--help").stdout
    assert "Examples:" in text and f"etlctl {command}" in text


def test_core_api_is_usable_without_the_cli(manifests, store_path):
    plan = manifest.apply(Store(store_path), manifest.load([str(manifests)]))
    assert plan.counts()["create"] == 3


def test_the_docs_example_applies_as_written(cli, tmp_path, store_path):
    docs = (EXAMPLES.parents[1] / "docs" / "manifests.md").read_text()
    example = re.search(r"```yaml\n(# manifests/warehouse\.yaml\n.*?)```", docs, re.DOTALL)
    assert example is not None
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "warehouse.yaml").write_text(example.group(1))
    result = cli("apply", "-f", str(tmp_path / "manifests"))
    assert "warehouse.yaml:25" in result.stdout and "3 created" in result.stdout
    assert _docs(store_path)["loader/warehouse"]["config"]["password"] == {
        "fromFile": "/run/secrets/pg_password"
    }


# --- allowEmpty (docs/connectors.md, "Empty sources") ------------------------------------------
def test_allow_empty_is_applied_diffed_exported_and_must_be_a_boolean(cli, manifests, store_path):
    cli("apply", "-f", str(manifests))
    assert _docs(store_path)["connection/users-to-warehouse"]["allow_empty"] is False
    (manifests / "3-connections.yaml").write_text(CONNECTION + "  allowEmpty: true\n")
    result = cli("diff", "-f", str(manifests), "--exit-code", code=1)
    assert "allowEmpty: (none) -> true" in result.stdout
    cli("apply", "-f", str(manifests))
    assert _docs(store_path)["connection/users-to-warehouse"]["allow_empty"] is True
    exported = cli("export").stdout
    assert "allowEmpty: true" in exported
    before = store_path.read_bytes()
    (manifests / "3-connections.yaml").write_text(CONNECTION + "  allowEmpty: 'yes'\n")
    result = cli("apply", "-f", str(manifests), code=2)
    assert "spec.allowEmpty: must be true or false, not a string" in result.stderr
    assert store_path.read_bytes() == before


def test_a_filter_that_cannot_work_is_refused_by_apply_and_diff(cli, manifests, store_path):
    cli("apply", "-f", str(manifests))
    before = store_path.read_bytes()
    (manifests / "3-connections.yaml").write_text(
        CONNECTION + "  transform:\n    filter:\n      - 'amount >= 10 and amount <= 20'\n"
    )
    for command in ("apply", "diff"):
        result = cli(command, "-f", str(manifests), code=2)
        assert "spec.transform: invalid transform: filter 'amount >= 10 and amount <= 20': " \
               "'10 and amount <= 20' is not a value" in result.stderr
        assert store_path.read_bytes() == before
