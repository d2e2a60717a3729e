"""Manifests: sources, loaders and connections declared in YAML and applied as one change.

The stages, each usable from Python (the CLI only parses options and renders):

``read_files(paths)``
    the bytes of every manifest file (a file, a directory's ``*.yaml``/``*.yml``, ``-``).
``parse(files)``
    envelope and spec checked, unknown keys refused, relative paths made absolute.
``reconcile(view, manifests)``
    validated against the store (connector specs, references, mode support) and carried out
    on that in-memory view; returns the :class:`Plan`. Every problem of the set is collected
    and raised together, so one CI run shows them all.
``apply(store, manifests)``
    ``reconcile`` inside one store transaction (all or nothing), or on a snapshot that is
    never written (dry run).
``export_documents(view)``
    the store's objects as manifests, with every plain secret replaced by a reference.

The format is documented in docs/manifests.md.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

import pydantic

from connectors import secrets
from etlctl import catalog, registry, scheduler, yamlio
from etlctl.errors import ValidationError
from etlctl.files import not_a_regular_file
from etlctl.locks import connection_lock
from etlctl.models import (
    Connection,
    ConnectorObject,
    OnError,
    StreamConfig,
    SyncMode,
    validate_name,
)
from etlctl.store import Store, StoreView

API_VERSION = "etlctl/v1"
MANAGED_BY = "manifest"  # models' managed_by value: what `apply --prune` may remove
STDIN = "-"
MANIFEST_SUFFIXES = (".yaml", ".yml")
MAX_PROBLEMS_SHOWN = 50

KIND_OF_TITLE = {"Source": "source", "Loader": "loader", "Connection": "connection"}
TITLE_OF_KIND = {kind: title for title, kind in KIND_OF_TITLE.items()}
ENVELOPE_KEYS = ("apiVersion", "kind", "metadata", "spec")
METADATA_KEYS = ("name",)



# --- the manifest format -----------------------------------------------------------------
@dataclass(frozen=True)
class SpecField:
    """One field of a manifest's spec: its name in YAML and the model attribute it sets."""

    name: str
    attribute: str
    types: tuple[type, ...]
    described: str
    required: bool = False
    choices: tuple[str, ...] = ()


CONNECTOR_FIELDS = (
    SpecField("type", "type", (str,), "a string", required=True),
    SpecField("image", "image", (str,), "a string"),
    SpecField("config", "config", (dict,), "a mapping"),
)
CONNECTION_FIELDS = (
    SpecField("source", "source", (str,), "a string", required=True),
    SpecField("loader", "loader", (str,), "a string", required=True),
    SpecField("mode", "mode", (str,), "a string", choices=tuple(SyncMode)),
    SpecField("cursorField", "cursor_field", (str,), "a string"),
    SpecField("primaryKey", "primary_key", (list,), "a list of column names"),
    SpecField("schedule", "schedule", (str,), "a string"),
    SpecField("onError", "on_error", (str,), "a string", choices=tuple(OnError)),
    SpecField("transform", "transform", (dict,), "a mapping"),
    SpecField("allowEmpty", "allow_empty", (bool,), "true or false"),
    SpecField("streams", "streams", (list,), "a list of streams"),
)
SPEC_FIELDS: dict[str, tuple[SpecField, ...]] = {
    "source": CONNECTOR_FIELDS,
    "loader": CONNECTOR_FIELDS,
    "connection": CONNECTION_FIELDS,
}

# A mapping entry of spec.streams: its keys and the StreamConfig fields they set.
STREAM_FIELDS = {
    "name": "name",
    "mode": "mode",
    "cursorField": "cursor_field",
    "primaryKey": "primary_key",
}

# Model validation messages speak the CLI's words; manifests use other names.
_MANIFEST_WORDS = (
    ("--cursor-field", "cursorField"),
    ("--primary-key", "primaryKey"),
    ("cursor_field", "cursorField"),
    ("primary_key", "primaryKey"),
    ("on_error", "onError"),
    ("--mode", "mode"),
)


def _in_manifest_words(message: str) -> str:
    for model_word, manifest_word in _MANIFEST_WORDS:
        message = message.replace(model_word, manifest_word)
    return message


@dataclass(frozen=True)
class Location:
    """Where a manifest (or one of its fields) was written."""

    source: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.source}:{self.line}" if self.line else self.source


@dataclass(frozen=True)
class ManifestFile:
    name: str  # as messages show it: the path as given, or "<stdin>"
    data: bytes
    base_dir: Path  # relative config paths resolve against it


@dataclass(frozen=True)
class Manifest:
    """One validated manifest document: what the user declares for one object."""

    kind: str  # the store's kind: source, loader, connection
    name: str
    fields: dict[str, Any]  # model attribute -> value, only the fields written down
    location: Location
    lines: dict[str, int] = field(default_factory=dict)  # "spec.mode" -> its line

    @property
    def subject(self) -> str:
        return f'{TITLE_OF_KIND[self.kind]} "{self.name}"'

    def at(self, field_path: str) -> Location:
        return Location(self.location.source, self.lines.get(field_path, self.location.line))


class Problems:
    """Every problem found in a manifest set, raised together at the end of a stage."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(
        self, where: Location, subject: str | None, field_path: str | None, message: str
    ) -> None:
        parts = [str(where), *(part for part in (subject, field_path) if part), message]
        self.lines.append(": ".join(parts))

    def add_message(self, message: str) -> None:
        self.lines.append(message)

    def raise_if_any(self) -> None:
        if not self.lines:
            return
        shown = self.lines[:MAX_PROBLEMS_SHOWN]
        hidden = len(self.lines) - len(shown)
        listing = "\n  ".join(shown + ([f"... and {hidden} more"] if hidden else []))
        count = f"{len(self.lines)} problem{'s' if len(self.lines) > 1 else ''}"
        raise ValidationError(
            f"{count} in the manifests; nothing was changed:\n  {listing}",
            hint="see docs/manifests.md for the format",
        )


# --- reading files -----------------------------------------------------------------------
def _read_bounded(handle: IO[bytes], name: str) -> bytes:
    """Read at most the YAML size limit, so a huge file or stream is never held in memory."""
    data = handle.read(yamlio.MAX_YAML_BYTES + 1)
    if len(data) > yamlio.MAX_YAML_BYTES:
        raise ValidationError(
            f"{name}: larger than the {yamlio.MAX_YAML_BYTES} bytes a manifest file may have",
            hint="split it into several files in one directory",
        )
    return data


def _read_file(path: Path, name: str) -> ManifestFile:
    try:
        with path.open("rb") as handle:
            data = _read_bounded(handle, name)
    except OSError as exc:
        raise ValidationError(f"cannot read manifest {name}: {exc.strerror}") from exc
    return ManifestFile(name=name, data=data, base_dir=path.parent.absolute())


def _files_in(directory: Path, given: str) -> list[ManifestFile]:
    paths = sorted(
        child
        for child in directory.iterdir()
        if child.suffix in MANIFEST_SUFFIXES and child.is_file() and not child.name.startswith(".")
    )
    if not paths:
        raise ValidationError(
            f"no manifests in {given}: it has no *.yaml or *.yml files",
            hint="subdirectories are not read; name each directory with its own -f",
        )
    return [_read_file(path, os.path.join(given, path.name)) for path in paths]


def read_files(paths: Sequence[str], stdin: IO[bytes] | None = None) -> list[ManifestFile]:
    """The manifest files named by ``-f`` options: files, directories (not recursive), ``-``."""
    files: list[ManifestFile] = []
    for given in paths:
        if given == STDIN:
            if stdin is None:
                raise ValidationError("-f - reads manifests from stdin, which is not available")
            files.append(ManifestFile("<stdin>", _read_bounded(stdin, "<stdin>"), Path.cwd()))
            continue
        path = Path(given).expanduser()
        try:
            is_dir, exists = path.is_dir(), path.exists()
        except OSError as exc:  # a name too long, a loop of symlinks
            raise ValidationError(f"cannot read manifest {given}: {exc.strerror}") from None
        if is_dir:
            files.extend(_files_in(path, given))
        elif exists:
            kind = not_a_regular_file(path)
            if kind is not None:  # a FIFO would block; read a stream with -f -
                raise ValidationError(f"cannot read manifest {given}: it is {kind}",
                                      hint="to read from a pipe, use -f -")
            files.append(_read_file(path, given))
        else:
            raise ValidationError(f"manifest {given} does not exist")
    return files


# --- parsing -------------------------------------------------------------------------------
def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), f"a {type(value).__name__}"
    )


def _did_you_mean(key: Any, allowed: Iterable[str]) -> str:
    allowed = list(allowed)
    text = str(key)
    camel = re.sub(r"_([a-z])", lambda match: match.group(1).upper(), text)
    close = [camel] if camel in allowed else difflib.get_close_matches(text, allowed, n=1)
    expected = ", ".join(allowed)
    return f" (did you mean {close[0]!r}?)" if close else f" (expected: {expected})"


def _plain_json(value: Any, path: str) -> Any:
    """A copy with JSON types only; YAML dates and the like are refused, naming the field."""
    if isinstance(value, dict):
        copy: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{path}: key {key!r} must be a string (quote it)")
            copy[key] = _plain_json(item, f"{path}.{key}")
        return copy
    if isinstance(value, list):
        return [_plain_json(item, f"{path}[{index}]") for index, item in enumerate(value)]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise ValueError(
        f"{path}: YAML read {value!r} as {_type_name(value)}; quote it to keep it as text"
    )


def _record_lines(lines: dict[str, int], mapping: Any, prefix: str = "") -> None:
    """Remember the line of each key, by its dotted path, for error messages."""
    for key in mapping:
        line = yamlio.line_of(mapping, key)
        if line is not None:
            lines[f"{prefix}.{key}" if prefix else str(key)] = line


class _DocumentParser:
    """Checks one YAML document; every problem goes to ``problems``."""

    def __init__(self, document: Any, file: ManifestFile, problems: Problems) -> None:
        self.document = document
        self.file = file
        self.problems = problems
        self.location = Location(file.name, yamlio.line_of(document))
        self.lines: dict[str, int] = {}
        self.subject: str | None = None
        self.ok = True

    def at(self, field_path: str) -> Location:
        return Location(self.file.name, self.lines.get(field_path, self.location.line))

    def fail(self, field_path: str | None, message: str) -> None:
        self.ok = False
        where = self.at(field_path) if field_path else self.location
        self.problems.add(where, self.subject, field_path, message)

    def parse(self) -> Manifest | None:
        if not isinstance(self.document, dict):
            self.fail(
                None,
                f"a manifest is a mapping with {', '.join(ENVELOPE_KEYS)}, "
                f"not {_type_name(self.document)}",
            )
            return None
        _record_lines(self.lines, self.document)
        self._refuse_unknown(self.document, ENVELOPE_KEYS, "")
        kind = self._kind()
        name = self._name()
        if kind is None or name is None:
            return None
        self.subject = f'{TITLE_OF_KIND[kind]} "{name}"'
        spec = self.document.get("spec")
        if not isinstance(spec, dict):
            shown = "missing" if spec is None else f"must be a mapping, not {_type_name(spec)}"
            self.fail("spec", shown)
            return None
        _record_lines(self.lines, spec, "spec")
        fields = self._spec_fields(kind, spec)
        if not self.ok or fields is None:
            return None
        if "config" in fields:
            _record_lines(self.lines, spec["config"], "spec.config")
            fields["config"] = catalog.absolute_paths(
                kind, fields["type"], fields["config"], self.file.base_dir
            )
        return Manifest(kind, name, fields, self.location, dict(self.lines))

    def _refuse_unknown(self, mapping: dict[Any, Any], allowed: Sequence[str], prefix: str) -> None:
        for key in mapping:
            if key not in allowed:
                path = f"{prefix}{key}"
                self.fail(path, f"unknown field{_did_you_mean(key, allowed)}")

    def _kind(self) -> str | None:
        version = self.document.get("apiVersion")
        if version != API_VERSION:
            found = "missing" if version is None else f"got {version!r}"
            self.fail("apiVersion", f"must be {API_VERSION!r} ({found})")
        title = self.document.get("kind")
        if title not in KIND_OF_TITLE:
            found = "missing" if title is None else f"got {title!r}"
            self.fail("kind", f"must be one of {', '.join(KIND_OF_TITLE)} ({found})")
            return None
        return KIND_OF_TITLE[title]

    def _name(self) -> str | None:
        metadata = self.document.get("metadata")
        if not isinstance(metadata, dict):
            shown = (
                "missing" if metadata is None else f"must be a mapping, not {_type_name(metadata)}"
            )
            self.fail("metadata", shown)
            return None
        _record_lines(self.lines, metadata, "metadata")
        self._refuse_unknown(metadata, METADATA_KEYS, "metadata.")
        try:
            return validate_name(metadata.get("name"), "name")
        except ValidationError as exc:
            self.fail("metadata.name", exc.message)
            return None

    def _spec_fields(self, kind: str, spec: dict[Any, Any]) -> dict[str, Any] | None:
        known = SPEC_FIELDS[kind]
        self._refuse_unknown(spec, [spec_field.name for spec_field in known], "spec.")
        fields: dict[str, Any] = {}
        for spec_field in known:
            path = f"spec.{spec_field.name}"
            value = spec.get(spec_field.name)
            if value is None:  # absent or written as null: the default
                if spec_field.required:
                    self.fail(path, "missing (required)")
                continue
            if not isinstance(value, spec_field.types):
                self.fail(path, f"must be {spec_field.described}, not {_type_name(value)}")
                continue
            if spec_field.choices and value not in spec_field.choices:
                self.fail(path, f"must be one of {', '.join(spec_field.choices)}, got {value!r}")
                continue
            try:
                fields[spec_field.attribute] = _plain_json(value, path)
            except ValueError as exc:
                self.fail(path, str(exc).removeprefix(f"{path}: "))
        key = fields.get("primary_key")
        if key is not None and not all(isinstance(column, str) for column in key):
            self.fail("spec.primaryKey", "must be a list of column names (strings)")
        if "streams" in fields:
            fields["streams"] = self._streams(fields["streams"])
        return fields if self.ok else None

    def _streams(self, entries: list[Any]) -> list[StreamConfig]:
        """``streams:`` entries: "NAME[:MODE[:CURSOR[:KEY,KEY]]]" as --stream takes them, or
        mappings with name, mode, cursorField and primaryKey."""
        streams = []
        for index, entry in enumerate(entries):
            path = f"spec.streams[{index}]"
            try:
                if isinstance(entry, str):
                    streams.append(StreamConfig.parse(entry))
                    continue
                if not isinstance(entry, dict):
                    self.fail(path, f"must be a string or a mapping, not {_type_name(entry)}")
                    continue
                self._refuse_unknown(entry, list(STREAM_FIELDS), f"{path}.")
                streams.append(
                    StreamConfig(**{STREAM_FIELDS[k]: v for k, v in entry.items()
                                    if k in STREAM_FIELDS})
                )
            except (ValueError, pydantic.ValidationError) as exc:
                message = exc.errors()[0]["msg"] if isinstance(exc, pydantic.ValidationError) \
                    else str(exc)
                self.fail(path, _in_manifest_words(message))
        return streams


def parse(files: Sequence[ManifestFile]) -> list[Manifest]:
    """Every manifest of the files, checked on its own; raises with all problems found."""
    problems = Problems()
    manifests: list[Manifest] = []
    for file in files:
        try:
            documents = list(yamlio.load_all(file.data, file.name))
        except ValidationError as exc:
            problems.add_message(exc.message)
            continue
        for document in documents:
            manifest = _DocumentParser(document, file, problems).parse()
            if manifest is not None:
                manifests.append(manifest)
    _refuse_duplicates(manifests, problems)
    problems.raise_if_any()
    if not manifests:
        names = ", ".join(file.name for file in files)
        raise ValidationError(f"the manifests declare no objects ({names})")
    return manifests


def _refuse_duplicates(manifests: Sequence[Manifest], problems: Problems) -> None:
    first: dict[tuple[str, str], Manifest] = {}
    for manifest in manifests:
        key = (manifest.kind, manifest.name)
        if key in first:
            problems.add(
                manifest.location,
                manifest.subject,
                None,
                f"declared twice (first at {first[key].location})",
            )
        else:
            first[key] = manifest


def load(paths: Sequence[str], stdin: IO[bytes] | None = None) -> list[Manifest]:
    """read_files + parse: the validated manifests named by ``-f`` options."""
    return parse(read_files(paths, stdin))


# --- the plan ------------------------------------------------------------------------------
class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    PRUNE = "prune"


@dataclass(frozen=True)
class FieldDiff:
    """One changed field, as the manifest names it; secret values are already masked."""

    path: str
    before: Any
    after: Any

    def to_json(self) -> dict[str, Any]:
        return {"field": self.path, "before": self.before, "after": self.after}


@dataclass(frozen=True)
class Step:
    action: Action
    kind: str
    name: str
    location: Location | None = None
    diffs: tuple[FieldDiff, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action.value,
            "kind": TITLE_OF_KIND[self.kind],
            "name": self.name,
            "location": str(self.location) if self.location else None,
            "changes": [diff.to_json() for diff in self.diffs],
        }


@dataclass
class Plan:
    """What apply did (or, in a dry run, would do), in the order it happened."""

    dry_run: bool = False
    steps: list[Step] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    schedules_changed: bool = False

    @property
    def changed(self) -> bool:
        return any(step.action is not Action.UNCHANGED for step in self.steps)

    def counts(self) -> dict[str, int]:
        return {action.value: sum(s.action is action for s in self.steps) for action in Action}

    def to_json(self) -> dict[str, Any]:
        return {
            "dryRun": self.dry_run,
            "changed": self.changed,
            "counts": self.counts(),
            "steps": [step.to_json() for step in self.steps],
            "warnings": self.warnings,
            "schedulesChanged": self.schedules_changed,
        }


def _secret_paths(item: ConnectorObject) -> list[tuple[str, ...]]:
    """Where the item's config holds a plain secret (connectors/secrets.py: spec-marked
    fields and header values, URL passwords; for a custom type, secret-looking names)."""
    return secrets.secret_paths(item.config, catalog.spec_of(item))


def _flatten(value: Any, prefix: str, into: dict[str, Any]) -> dict[str, Any]:
    """Nested mappings become dotted paths so that a diff names the exact field.

    Every leaf is kept, empty ones and nulls too, so that comparing the flat forms is exact.
    """
    if isinstance(value, dict) and value and not catalog.is_secret_ref(value):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else key, into)
    else:
        into[prefix] = value
    return into


_ABSENT = object()


def _shown(path: str, flat: dict[str, Any], secret_paths: set[str]) -> Any:
    """A value as a plan shows it: absent as None, plain secrets masked."""
    value = flat.get(path)
    if path in secret_paths and value not in (None, "") and not catalog.is_secret_ref(value):
        return catalog.MASK
    return value


def _diffs(
    before: dict[str, Any], after: dict[str, Any], secret_paths: set[str]
) -> tuple[FieldDiff, ...]:
    """The changed fields by dotted path; empty when (and only when) nothing changed."""
    old, new = _flatten(before, "", {}), _flatten(after, "", {})
    paths = dict.fromkeys([*new, *old])
    return tuple(
        FieldDiff(path, _shown(path, old, secret_paths), _shown(path, new, secret_paths))
        for path in paths
        if old.get(path, _ABSENT) != new.get(path, _ABSENT)
    )


def connector_spec(item: ConnectorObject) -> dict[str, Any]:
    """A source's or loader's spec as a manifest writes it."""
    spec: dict[str, Any] = {"type": item.type}
    if item.image:
        spec["image"] = item.image
    spec["config"] = item.config
    return spec


def connection_spec(connection: Connection) -> dict[str, Any]:
    """A connection's spec as a manifest writes it (unset optional fields left out)."""
    spec: dict[str, Any] = {
        "source": connection.source,
        "loader": connection.loader,
        "mode": connection.mode.value,
        "cursorField": connection.cursor_field,
        "primaryKey": list(connection.primary_key),
        "schedule": connection.schedule,
        "onError": connection.on_error.value,
        "transform": connection.transform,
        "allowEmpty": connection.allow_empty or None,
        "streams": [_stream_spec(stream) for stream in connection.streams],
    }
    return {key: value for key, value in spec.items() if value not in (None, [])}


def _stream_spec(stream: StreamConfig) -> dict[str, Any]:
    spec = {
        "name": stream.name,
        "mode": stream.mode.value if stream.mode else None,
        "cursorField": stream.cursor_field,
        "primaryKey": stream.primary_key,
    }
    return {key: value for key, value in spec.items() if value is not None}


# --- reconciling a manifest set with the store --------------------------------------------
def export_ref_name(kind: str, name: str, config_field: str) -> str:
    """The environment variable an export names in place of a plain secret
    (``config_field`` is dotted for a header: ``headers.X-Api-Key``)."""
    return "ETLCTL_" + re.sub(r"[^A-Z0-9]", "_", f"{kind}_{name}_{config_field}".upper())


def _keep_exported_secrets(current: ConnectorObject, config: dict[str, Any]) -> dict[str, Any]:
    """An export stands in for a plain stored secret with a reference named by
    export_ref_name. Applying the export back keeps the stored value, so that applying an
    export to the store it came from changes nothing (docs/manifests.md, "Export")."""

    def stand_in(path: tuple[str, ...]) -> dict[str, str]:
        return {"fromEnv": export_ref_name(current.kind, current.name, ".".join(path))}

    kept_paths = []
    for path in _secret_paths(current):
        with contextlib.suppress(KeyError, IndexError, TypeError, ValueError):
            if secrets.get_path(config, path) == stand_in(path):
                kept_paths.append(path)
    return secrets.replace_paths(
        config, kept_paths, lambda path, _: secrets.get_path(current.config, path)
    )


def _connector_error_field(manifest: Manifest) -> str:
    fields = manifest.fields
    role = catalog.ROLE_OF_KIND[manifest.kind]
    unknown_type = catalog.find_connector(role, fields["type"]) is None and not fields.get("image")
    return "spec.type" if unknown_type else "spec.config"


class _Reconciler:
    """Carries a manifest set out on a store view, collecting every problem on the way."""

    def __init__(self, view: StoreView, manifests: Sequence[Manifest], plan: Plan) -> None:
        self.view = view
        self.manifests = manifests
        self.plan = plan
        self.problems = Problems()
        self.declared = {(m.kind, m.name): m for m in manifests}
        self.invalid: set[tuple[str, str]] = set()
        self.changed_objects: set[tuple[str, str]] = set()

    def run(self, prune: bool) -> None:
        # Sources and loaders first: connections are checked against the result.
        for kind in ("source", "loader", "connection"):
            for manifest in (m for m in self.manifests if m.kind == kind):
                if kind == "connection":
                    self._connection(manifest)
                else:
                    self._connector_object(manifest)
        if prune:
            self._prune()
        self._check_connections()
        self.problems.raise_if_any()
        self._warn_unset_env()

    def _record(self, step: Step) -> None:
        self.plan.steps.append(step)

    # --- sources and loaders ---------------------------------------------------------
    def _connector_object(self, manifest: Manifest) -> None:
        current: ConnectorObject | None = self.view.find(manifest.kind, manifest.name)
        try:
            target = self._target_connector_object(manifest, current)
        except ValidationError as exc:
            self.invalid.add((manifest.kind, manifest.name))
            field_path = _connector_error_field(manifest)
            self.problems.add(manifest.at(field_path), manifest.subject, field_path, exc.message)
            return
        if current is None:
            self.view.save(target)
            self.changed_objects.add((manifest.kind, manifest.name))
            self._record(Step(Action.CREATE, manifest.kind, manifest.name, manifest.location))
            return
        secret_paths = {
            ".".join(("config", *path)) for path in _secret_paths(current) + _secret_paths(target)
        }
        diffs = _diffs(connector_spec(current), connector_spec(target), secret_paths)
        if not diffs:
            self._record(Step(Action.UNCHANGED, manifest.kind, manifest.name, manifest.location))
            return
        self.view.save(target.model_copy(update={"managed_by": MANAGED_BY}))
        self.changed_objects.add((manifest.kind, manifest.name))
        self._record(Step(Action.UPDATE, manifest.kind, manifest.name, manifest.location, diffs))

    @staticmethod
    def _target_connector_object(
        manifest: Manifest, current: ConnectorObject | None
    ) -> ConnectorObject:
        fields = manifest.fields
        config = fields.get("config", {})
        image = fields.get("image")
        if current is None:
            return registry.new_connector_object(
                manifest.kind, manifest.name, fields["type"], config, image, managed_by=MANAGED_BY
            )
        # A manifest declares the whole object: its config replaces the stored one.
        changes = registry.ConnectorObjectChanges(
            replace_config=_keep_exported_secrets(current, config),
            image=image,
            clear_image=image is None,
            connector_type=fields["type"],
        )
        return registry.changed_connector_object(current, changes)

    # --- connections ---------------------------------------------------------------------
    def _connection(self, manifest: Manifest) -> None:
        target = self._target_connection(manifest)
        if target is None:
            return
        current: Connection | None = self.view.find("connection", manifest.name)
        if current is None:
            self.view.save(target)
            self.plan.schedules_changed |= target.scheduled
            self._record(Step(Action.CREATE, "connection", manifest.name, manifest.location))
            return
        diffs = _diffs(connection_spec(current), connection_spec(target), set())
        if not diffs:
            self._record(Step(Action.UNCHANGED, "connection", manifest.name, manifest.location))
            return
        self.view.save(
            target.model_copy(update={"id": current.id, "created_at": current.created_at})
        )
        self.plan.schedules_changed |= current.schedule != target.schedule
        self._record(Step(Action.UPDATE, "connection", manifest.name, manifest.location, diffs))

    def _target_connection(self, manifest: Manifest) -> Connection | None:
        fields = manifest.fields
        checks = (
            (
                "spec.schedule",
                lambda: scheduler.validate_schedule(fields.get("schedule", "manual")),
            ),
            ("spec.transform", lambda: registry.validate_transform(fields.get("transform"))),
            (
                "spec",
                lambda: registry.new_connection(
                    manifest.name,
                    fields["source"],
                    fields["loader"],
                    mode=fields.get("mode", SyncMode.FULL_REFRESH),
                    cursor_field=fields.get("cursor_field"),
                    primary_key=fields.get("primary_key"),
                    schedule=fields.get("schedule", "manual"),
                    on_error=fields.get("on_error", OnError.FAIL),
                    transform=fields.get("transform"),
                    allow_empty=fields.get("allow_empty", False),
                    managed_by=MANAGED_BY,
                    streams=fields.get("streams"),
                ),
            ),
        )
        result: Any = None
        for field_path, check in checks:
            try:
                result = check()
            except ValidationError as exc:
                self.invalid.add(("connection", manifest.name))
                message = _in_manifest_words(exc.message)
                self.problems.add(manifest.at(field_path), manifest.subject, field_path, message)
                return None
        return result

    def _check_connections(self) -> None:
        """References and mode support, on the state the apply leaves behind."""
        for connection in self.view.connections():
            manifest = self.declared.get(("connection", connection.name))
            uses_changed = {("source", connection.source), ("loader", connection.loader)}
            if manifest is None and not uses_changed & self.changed_objects:
                continue  # neither declared nor affected: not this apply's business
            if ("connection", connection.name) in self.invalid:
                continue
            if self._references_ok(connection, manifest):
                self._check_modes(connection, manifest)

    def _references_ok(self, connection: Connection, manifest: Manifest | None) -> bool:
        ok = True
        for kind in ("source", "loader"):
            name = getattr(connection, kind)
            if (kind, name) in self.invalid:
                ok = False  # its own problem is reported already
            elif self.view.find(kind, name) is None:
                ok = False
                where = manifest.at(f"spec.{kind}") if manifest else Location("<store>")
                self.problems.add(
                    where,
                    f'Connection "{connection.name}"',
                    f"spec.{kind}",
                    f"refers to {kind} {name!r}, which neither the manifests nor the store have",
                )
        return ok

    def _check_modes(self, connection: Connection, manifest: Manifest | None) -> None:
        try:
            registry.check_connection(self.view, connection)
        except ValidationError as exc:
            if manifest is not None:
                where, subject = manifest.at("spec.mode"), manifest.subject
            else:  # a hand-made connection broken by a source or loader this set changes
                changed = next(
                    self.declared[key]
                    for key in (("loader", connection.loader), ("source", connection.source))
                    if key in self.changed_objects
                )
                where = changed.at("spec.type")
                subject = f'Connection "{connection.name}" (in the store, using {changed.subject})'
            self.problems.add(where, subject, "spec.mode", exc.message)

    # --- prune ---------------------------------------------------------------------------
    def _prune(self) -> None:
        """Remove what an earlier apply created and the set no longer declares.

        Connections go first, so that the sources and loaders only they used can go too.
        Objects made by hand (managed_by unset) are never touched.
        """
        for connection in self.view.connections():
            if self._prunable(connection):
                self.view.delete("connection", connection.name)
                self.view.clear_state(connection.name)
                self.plan.schedules_changed |= connection.scheduled
                self._record(Step(Action.PRUNE, "connection", connection.name))
        for kind in ("source", "loader"):
            for item in self.view.list(kind):
                if not self._prunable(item):
                    continue
                users = registry.connections_using(self.view, kind, item.name)
                if users:
                    self.plan.warnings.append(
                        f'{kind} "{item.name}" is no longer declared but connection(s) '
                        f"{', '.join(users)} use it: not pruned"
                    )
                    continue
                self.view.delete(kind, item.name)
                self._record(Step(Action.PRUNE, kind, item.name))

    def _prunable(self, item: ConnectorObject | Connection) -> bool:
        return item.managed_by == MANAGED_BY and (item.kind, item.name) not in self.declared

    # --- warnings ------------------------------------------------------------------------
    def _warn_unset_env(self) -> None:
        for manifest in self.manifests:
            if manifest.kind == "connection":
                continue
            stored = self.view.find(manifest.kind, manifest.name)
            for variable in catalog.unresolved_env_refs(stored.config if stored else {}):
                self.plan.warnings.append(
                    f"{manifest.subject}: environment variable {variable} is not set here; "
                    "a sync fails until it is"
                )


def reconcile(
    view: StoreView, manifests: Sequence[Manifest], *, prune: bool = False, dry_run: bool = False
) -> Plan:
    """Validate the whole set against ``view`` and carry it out on ``view`` (in memory).

    Raises ValidationError listing every problem; the caller decides whether the view is
    written (``apply``) or thrown away (dry run).
    """
    plan = Plan(dry_run=dry_run)
    _Reconciler(view, manifests, plan).run(prune)
    return plan


def apply(
    store: Store, manifests: Sequence[Manifest], *, prune: bool = False, dry_run: bool = False
) -> Plan:
    """The whole set in one store transaction: every change is written, or none is.

    A dry run reconciles a snapshot that is never written (and takes no lock).
    """
    if dry_run:
        return reconcile(store.read(), manifests, prune=prune, dry_run=True)
    with contextlib.ExitStack() as locks, store.transaction() as view:
        plan = reconcile(view, manifests, prune=prune)
        for step in plan.steps:
            if step.action is Action.PRUNE and step.kind == "connection":
                # Held until the change is written: a sync must not save state for it after.
                locks.enter_context(connection_lock(store, step.name, refusing="prune"))
        return plan


# --- export --------------------------------------------------------------------------------
def _document(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": TITLE_OF_KIND[kind],
        "metadata": {"name": name},
        "spec": spec,
    }


def _config_for_export(item: ConnectorObject, warnings: list[str]) -> dict[str, Any]:
    """The config with every plain secret replaced by an environment reference (a URL with
    a password becomes one reference as a whole)."""
    paths = sorted(_secret_paths(item))
    for path in paths:
        field_name = ".".join(path)
        variable = export_ref_name(item.kind, item.name, field_name)
        warnings.append(
            f'{item.kind} "{item.name}": config field {field_name!r} holds a plain secret, '
            f"exported as {{fromEnv: {variable}}}; set {variable} where this export is applied"
        )
    return secrets.replace_paths(
        item.config,
        paths,
        lambda path, _: {"fromEnv": export_ref_name(item.kind, item.name, ".".join(path))},
    )


def export_documents(view: StoreView) -> tuple[list[dict[str, Any]], list[str]]:
    """Every source, loader and connection as a manifest document, plus warnings."""
    documents: list[dict[str, Any]] = []
    warnings: list[str] = []
    for kind in ("source", "loader"):
        for item in view.list(kind):
            spec = connector_spec(item)
            spec["config"] = _config_for_export(item, warnings)
            documents.append(_document(kind, item.name, spec))
    for connection in view.connections():
        documents.append(_document("connection", connection.name, connection_spec(connection)))
    return documents, warnings


def export_text(documents: Sequence[dict[str, Any]]) -> str:
    """The export as one YAML stream, with a header saying how to use it."""
    header = (
        f"# etlctl export: {len(documents)} object(s). Apply with: etlctl apply -f FILE\n"
        "# Plain secrets are replaced by {fromEnv: VARIABLE} references.\n"
    )
    return header + (yamlio.dump_all(list(documents)) if documents else "")
