"""Schedules: cron expressions, and the crontab entries that run scheduled connections.

The only module that imports croniter, cron-descriptor and python-crontab.

How the crontab is kept (docs/schedules.md explains it for users):

* Each scheduled connection gets one line in the crontab of the user running etlctl, tagged
  ``# etlctl:<store-id>:<connection>``; the store id is a short hash of the store's real path,
  so several stores on one machine (or one user) never touch each other's lines.
* ``sync_crontab`` reads the crontab as text, replaces, removes or appends only lines that
  carry this store's tag, and writes it back only when something changed. Every other line
  stays byte for byte. python-crontab renders our lines and checks expressions, but is not
  used to read and rewrite the whole table: it re-renders foreign lines (whitespace, comments
  before a job, ``%``), which would change other people's entries.
* Read-modify-write of a crontab happens under a per-user file lock, because ``crontab FILE``
  replaces the whole table and two writers at once would lose each other's changes.
* Nothing from outside reaches a line unquoted: connection names are validated, every
  argument is shell-quoted, and text with a newline, ``%`` (cron turns it into a newline) or
  a control character is refused.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from shutil import which

import filelock

# croniter, cron-descriptor and python-crontab (which pulls in asyncio) are imported in the
# functions that use them: together they cost ~40 ms at start-up, and `etlctl sync` (what
# cron runs) needs none of them.
from etlctl.errors import (
    ConflictError,
    EtlctlError,
    ServiceUnavailableError,
    ValidationError,
)
from etlctl.models import NAME_PATTERN, Connection
from etlctl.paths import locks_dir, logs_dir
from etlctl.store import STORE_ID_LENGTH, Store

MANUAL = "manual"
MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
MACRO_FIELDS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# What every cron understands: numbers, ranges, lists, steps and month/day names. croniter
# also takes L, W, # and ?, which cron does not (and '#' would start a comment in the line).
CRON_FIELD = re.compile(r"^[0-9A-Za-z*,/-]+$")
CRON_NAME = re.compile(r"[A-Za-z]+")
FIELD_LABELS = ("minute", "hour", "day-of-month", "month", "day-of-week")
FIELD_RANGES = ("0-59", "0-23", "1-31", "1-12 or jan-dec", "0-7 or sun-sat")
FIELD_NAMES = {
    3: {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"},
    4: {"sun", "mon", "tue", "wed", "thu", "fri", "sat"},
}

TAG_PREFIX = "etlctl"
# Our tag ends a line: "... # etlctl:<store-id>:<connection>". Anchored at the end so that a
# '#' inside a quoted store path cannot be mistaken for it.
TAG_PATTERN = re.compile(
    rf"\s#\s*{TAG_PREFIX}:(?P<store_id>[0-9a-f]{{{STORE_ID_LENGTH}}}):"
    rf"(?P<name>{NAME_PATTERN.pattern.strip('^$')})\s*$"
)
CRON_LOG_NAME = "cron.log"
# Docker's tag grammar; also keeps the forwarded value crontab-safe.
IMAGE_TAG_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# Where to look for `crontab` when it is not on PATH (etlctl itself may run from cron).
CRONTAB_CANDIDATES = ("/usr/bin/crontab", "/bin/crontab")
CRONTAB_LOCK_TIMEOUT_SECONDS = 30.0
CRONTAB_TIMEOUT_SECONDS = 30.0
# PATH for the job: this installation's bin directory first (cron's own PATH is /usr/bin:/bin).
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LOCALE = "C.UTF-8"


# --- expressions ------------------------------------------------------------------------------
def normalize_schedule(expression: str) -> str:
    """Collapse whitespace, refuse control characters; 'manual' stays 'manual'."""
    if not isinstance(expression, str):
        raise ValidationError(f"schedule must be a string, got {expression!r}")
    if any(ch in expression for ch in "\r\n\x00") or not expression.isprintable():
        raise ValidationError(
            "schedule must be one line of printable text (no newlines or control characters)"
        )
    text = " ".join(expression.split())
    return MANUAL if text.lower() == MANUAL else text


def _invalid_fields(text: str, reason: str) -> ValidationError:
    return ValidationError(
        f"invalid schedule {text!r}: {reason}; expected five cron fields "
        "(minute hour day-of-month month day-of-week) or a macro like @daily",
        hint='for example: --schedule "*/15 * * * *" or --schedule manual',
    )


def _check_field_syntax(text: str, fields: list[str]) -> None:
    for index, value in enumerate(fields):
        label = f"the {FIELD_LABELS[index]} field {value!r}"
        if not CRON_FIELD.fullmatch(value):
            raise _invalid_fields(text, f"{label} has characters cron does not understand")
        for word in CRON_NAME.findall(value):
            if word.lower() not in FIELD_NAMES.get(index, set()):
                raise _invalid_fields(text, f"cron does not understand {word!r} in {label}")


def _cron_accepts(text: str) -> bool:
    """python-crontab follows what cron itself takes (e.g. it refuses '5/10', a step
    without a range, which croniter allows)."""
    from crontab import CronItem

    try:
        CronItem(command="true").setall(text)
    except (ValueError, KeyError):
        return False
    return True


def validate_schedule(expression: str) -> str:
    """'manual', a five-field cron expression or a macro such as @daily."""
    text = normalize_schedule(expression)
    if text == MANUAL:
        return text
    if text.startswith("@"):
        if text.lower() not in MACROS:
            raise ValidationError(
                f"invalid schedule {text!r}: unknown macro",
                hint=f"use one of {', '.join(MACROS)} or five cron fields",
            )
        return text
    fields = text.split()
    if len(fields) != 5:
        raise _invalid_fields(text, f"it has {len(fields)} field(s)")
    _check_field_syntax(text, fields)
    from croniter import croniter

    if not croniter.is_valid(text) or not _cron_accepts(text):
        raise _invalid_fields(text, _out_of_range(fields))
    if not _fires(text):
        raise ValidationError(
            f"invalid schedule {text!r}: it never fires (that day of the month does not "
            "exist in those months)",
            hint='check the day-of-month and month fields, e.g. "0 0 28 2 *" for February',
        )
    return text


def _out_of_range(fields: list[str]) -> str:
    """Which field cron refuses, and the values it takes."""
    from croniter import croniter

    for index, value in enumerate(fields):
        alone = " ".join(value if i == index else "*" for i in range(len(fields)))
        if not croniter.is_valid(alone) or not _cron_accepts(alone):
            return (
                f"the {FIELD_LABELS[index]} field {value!r} is out of range or malformed "
                f"(it takes {FIELD_RANGES[index]}, with , - and /)"
            )
    return "a value is out of range or malformed"


def _fires(text: str) -> bool:
    """False for expressions that match no date at all, such as February 30th."""
    from croniter import CroniterBadDateError, croniter

    try:
        croniter(text, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterBadDateError:
        return False
    return True


def five_fields(expression: str) -> str:
    """A macro as the five fields it stands for; other expressions as they are."""
    return MACRO_FIELDS.get(expression.lower(), expression)


def describe_schedule(expression: str) -> str:
    """Plain English, e.g. 'At 02:00, Monday through Friday'."""
    if expression == MANUAL:
        return "only when run by hand"
    from cron_descriptor import (
        ExpressionDescriptor,
        FormatException,
        MissingFieldException,
        WrongArgumentException,
    )

    try:
        return ExpressionDescriptor(
            five_fields(expression), use_24hour_time_format=True
        ).get_description()
    except (FormatException, MissingFieldException, WrongArgumentException):
        return expression  # valid for cron, but not something it can put in words


def next_runs(expression: str, count: int = 3, now: datetime | None = None) -> list[datetime]:
    """The next firings in local time (cron fires in the machine's local time zone)."""
    if expression == MANUAL:
        return []
    # An aware `now` keeps its zone (tests, other machines); a naive one is local time.
    start = now or datetime.now()
    start = start if start.tzinfo is not None else start.astimezone()
    from croniter import CroniterBadDateError, croniter

    iterator = croniter(five_fields(expression), start)
    try:
        return [iterator.get_next(datetime) for _ in range(count)]
    except CroniterBadDateError:  # stored before validate_schedule refused such dates
        return []


# --- the crontab line --------------------------------------------------------------------------
def store_id(store_path: Path) -> str:
    """A short, stable id of a store: the tag that keeps several stores apart."""
    return Store(store_path).id


def entry_tag(store_hash: str, connection: str) -> str:
    return f"{TAG_PREFIX}:{store_hash}:{connection}"


def crontab_safe(value: str, what: str) -> str:
    """Refuse text that could end a crontab line or that cron would rewrite ('%')."""
    if "%" in value or not value.isprintable():
        raise ValidationError(
            f"the {what} {value!r} cannot go into a crontab line: it holds '%', a newline "
            "or another control character (cron turns '%' into a newline)",
            hint="move the store to a path without such characters, or use --no-crontab",
        )
    return value


def _first_existing(*candidates: str) -> str:
    return next((path for path in candidates if os.path.exists(path)), candidates[0])


def installation_command() -> list[str]:
    """How cron calls this very installation of etlctl, by absolute path.

    The `etlctl` script beside this Python (a virtualenv's bin/) when there is one: its path
    does not depend on whether `python` or `python3` started us, so the line stays the same
    whoever runs `schedule apply`. Otherwise ``<this python> -m etlctl``. Paths are not
    resolved: a virtualenv's python only finds its packages when called by its own path.
    """
    if not sys.executable or not os.path.isabs(sys.executable):
        raise ServiceUnavailableError(
            "cannot tell the absolute path of this Python, which the crontab entry must call",
            hint="run etlctl from an installed Python or virtualenv",
        )
    script = os.path.join(os.path.dirname(sys.executable), "etlctl")
    if os.path.isfile(script) and os.access(script, os.X_OK):
        return [script]
    return [sys.executable, "-m", "etlctl"]


@dataclass(frozen=True)
class JobEnvironment:
    """Where the job runs: this installation of etlctl and the crontab owner's home."""

    program: tuple[str, ...]
    home: str
    env_tool: str = field(default_factory=lambda: _first_existing("/usr/bin/env", "/bin/env"))
    mkdir_tool: str = field(default_factory=lambda: _first_existing("/bin/mkdir", "/usr/bin/mkdir"))

    @classmethod
    def current(cls, user: str | None = None) -> JobEnvironment:
        try:
            owner = pwd.getpwnam(user) if user else pwd.getpwuid(os.getuid())
        except KeyError:
            raise ValidationError(f"no such user {user!r}") from None
        return cls(program=tuple(installation_command()), home=owner.pw_dir)

    @property
    def path(self) -> str:
        """This installation's bin directory first: connectors run by the local runtime and
        tools next to etlctl are found as in the shell that installed the entry."""
        return f"{os.path.dirname(self.program[0])}:{SYSTEM_PATH}"


def cron_log_path(store_path: Path, connection: str) -> Path:
    return logs_dir(Path(os.path.realpath(store_path))) / connection / CRON_LOG_NAME


def build_command(store_path: Path, connection: str, job: JobEnvironment) -> str:
    """The shell command of a connection's entry; every argument quoted.

    No `flock` here on purpose: `etlctl sync` takes the connection's own lock, and a firing
    that finds it taken records a `skipped` run, so an overlapping firing leaves a trace.
    """
    if not NAME_PATTERN.fullmatch(connection):
        raise ValidationError(f"invalid connection name {connection!r}")
    real_store = crontab_safe(os.path.realpath(store_path), "store path")
    log_file = cron_log_path(store_path, connection)
    program = [crontab_safe(arg, "etlctl path") for arg in job.program]
    parts = {
        "home": crontab_safe(job.home, "home directory"),
        "log": crontab_safe(str(log_file), "log path"),
    }
    q = shlex.quote
    environment = " ".join(
        q(f"{name}={value}")
        for name, value in (
            ("PATH", crontab_safe(job.path, "PATH")),
            ("HOME", parts["home"]),
            ("LANG", LOCALE),
            ("LC_ALL", LOCALE),
            *_forwarded_image_tag(),
        )
    )
    sync = " ".join(
        q(arg)
        for arg in (
            *program, "--store", real_store,
            "sync", connection, "--trigger", "schedule",
        )
    )  # fmt: skip
    # umask: the log may name hosts and paths; it is for the store's owner only.
    return (
        f"umask 077 && {q(job.mkdir_tool)} -p {q(str(log_file.parent))} && "
        f"{q(job.env_tool)} {environment} {sync} >> {q(parts['log'])} 2>&1"
    )


def _forwarded_image_tag() -> list[tuple[str, str]]:
    """The image tag of the installing environment, when it is not the default: a firing must
    run the images the user built, not another checkout's."""
    from connectors import IMAGE_TAG_ENV

    tag = os.environ.get(IMAGE_TAG_ENV)
    if not tag:
        return []
    if not IMAGE_TAG_PATTERN.fullmatch(tag):
        raise ValidationError(
            f"invalid {IMAGE_TAG_ENV} {tag!r}: a Docker tag is letters, digits, '_', '.' and '-'"
        )
    return [(IMAGE_TAG_ENV, tag)]


def render_entry(schedule: str, command: str, tag: str) -> str:
    """One crontab line: schedule, command, tag comment. Never more than one line."""
    from crontab import CronItem

    item = CronItem(command=command, comment=tag)
    item.setall(schedule)
    line = item.render().strip()
    if any(ch in line for ch in "\r\n\x00"):  # defence in depth: the parts were checked
        raise ValidationError(f"refusing a crontab entry that is not one line: {line!r}")
    return line


def entry_for(store_path: Path, connection: Connection, job: JobEnvironment) -> str:
    try:
        schedule = validate_schedule(connection.schedule)
    except ValidationError as exc:  # a store written by an older etlctl that took it
        raise ValidationError(
            f"connection {connection.name!r}: {exc.message}",
            hint=f'fix it with: etlctl connection update {connection.name} --schedule "..."'
            " (or --schedule manual)",
        ) from None
    command = build_command(store_path, connection.name, job)
    return render_entry(schedule, command, entry_tag(store_id(store_path), connection.name))


def desired_entries(store: Store, job: JobEnvironment) -> dict[str, str]:
    """connection name -> its crontab line, for every scheduled connection of the store."""
    return {
        conn.name: entry_for(store.path, conn, job)
        for conn in store.read().connections()
        if conn.scheduled
    }


# --- reconciling the crontab text (pure) ----------------------------------------------------
@dataclass(frozen=True)
class TaggedLine:
    store_id: str
    name: str


def parse_tag(line: str) -> TaggedLine | None:
    """The etlctl tag of an active (not commented-out) line, if it has one."""
    if line.lstrip().startswith("#"):
        return None
    match = TAG_PATTERN.search(line.rstrip("\n"))
    return TaggedLine(match["store_id"], match["name"]) if match else None


@dataclass
class CrontabChange:
    """What a crontab sync did (or, with dry_run, would do), by connection name."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    written: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    def summary(self) -> str:
        parts = [
            f"{label} {', '.join(names)}"
            for label, names in (
                ("added", self.added),
                ("updated", self.updated),
                ("removed", self.removed),
            )
            if names
        ]
        return "; ".join(parts) if parts else "already up to date"

    def to_doc(self) -> dict[str, object]:
        return {
            "added": self.added,
            "updated": self.updated,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "written": self.written,
        }


def reconcile(
    text: str, manages: Callable[[TaggedLine], bool], desired: dict[str, str]
) -> tuple[str, CrontabChange]:
    """The crontab text with managed lines made to match ``desired``; all else byte for byte.

    A managed line of a desired connection is replaced in place (its first occurrence;
    duplicates go); managed lines of other connections are removed; desired entries not
    present yet are appended in name order.
    """
    change = CrontabChange()
    kept: list[str] = []
    placed: set[str] = set()
    duplicates: set[str] = set()
    for line in text.splitlines(keepends=True):
        tag = parse_tag(line)
        if tag is None or not manages(tag):
            kept.append(line)
            continue
        wanted = desired.get(tag.name)
        if wanted is None:
            change.removed.append(tag.name)
            continue
        if tag.name in placed:  # a duplicate (copied by hand): the first one stays
            duplicates.add(tag.name)
            continue
        placed.add(tag.name)
        current = line.rstrip("\r\n")
        (change.unchanged if current == wanted else change.updated).append(tag.name)
        kept.append(wanted + "\n")
    new_entries = [name for name in sorted(desired) if name not in placed]
    if new_entries and kept and not kept[-1].endswith("\n"):
        kept[-1] += "\n"  # cron ignores a last line without a newline
    kept.extend(desired[name] + "\n" for name in new_entries)
    change.added.extend(new_entries)
    change.removed = sorted(set(change.removed))
    change.updated = sorted(set(change.updated) | duplicates)
    change.unchanged = sorted(set(change.unchanged) - duplicates)
    return "".join(kept), change


def installed_entries(text: str, store_hash: str) -> dict[str, str]:
    """connection name -> its active line, for one store's entries in a crontab text."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        tag = parse_tag(line)
        if tag is not None and tag.store_id == store_hash:
            found.setdefault(tag.name, line)
    return found


# --- the crontab command -------------------------------------------------------------------
def crontab_program() -> str:
    program = which("crontab") or next(
        (path for path in CRONTAB_CANDIDATES if os.path.exists(path)), None
    )
    if program is None:
        raise ServiceUnavailableError(
            "the `crontab` command is not installed, so schedules cannot be installed",
            hint="install cron (Debian/Ubuntu: apt-get install cron), or pass --no-crontab "
            "and run `etlctl sync` from your own scheduler",
        )
    return program


def _user_args(user: str | None) -> list[str]:
    if user is None or user == pwd.getpwuid(os.getuid()).pw_name:
        return []
    return ["-u", user]


def _run_crontab(args: list[str], user: str | None, stdin: str | None = None):
    command = [crontab_program(), *_user_args(user), *args]
    try:
        return subprocess.run(
            command,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=CRONTAB_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceUnavailableError(f"cannot run {' '.join(command)}: {exc}") from exc


def _crontab_refused(action: str, user: str | None, detail: str) -> ServiceUnavailableError:
    who = user or pwd.getpwuid(os.getuid()).pw_name
    first_line = detail.strip().splitlines()[0] if detail.strip() else "no reason given"
    not_allowed = "not allowed" in detail or "cannot use" in detail
    hint = (
        f"allow {who} in /etc/cron.allow (or remove it from /etc/cron.deny), "
        "or pass --no-crontab and manage the crontab yourself"
        if not_allowed
        else "check that cron is installed and working: crontab -l"
    )
    return ServiceUnavailableError(
        f"cannot {action} the crontab of user {who}"
        + (" (this user may not use crontab)" if not_allowed else "")
        + f": {first_line}",
        hint=hint,
    )


def read_crontab(user: str | None = None) -> str:
    """The crontab as text, exactly as installed; '' when the user has none."""
    result = _run_crontab(["-l"], user)
    if result.returncode == 0:
        return result.stdout
    if "no crontab for" in result.stderr:
        return ""
    raise _crontab_refused("read", user, result.stderr)


def write_crontab(text: str, user: str | None = None) -> None:
    result = _run_crontab(["-"], user, stdin=text)
    if result.returncode != 0:
        raise _crontab_refused("write", user, result.stderr)


def crontab_lock_path(store: Store, user: str | None = None) -> Path:
    """One lock per crontab (per user), shared by every store that writes to it.

    It lives in the user's cache directory, not beside the store, because two stores of one
    user edit the same crontab. A user without a writable home (a service account) falls
    back to the store's locks directory, which still serialises writers of that store.
    """
    me = pwd.getpwuid(os.getuid())
    who = user or me.pw_name
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path(me.pw_dir) / ".cache") / "etlctl"
    try:
        cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError:
        cache = locks_dir(Path(os.path.realpath(store.path)))
        cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    return cache / f"crontab-{who}.lock"


@contextlib.contextmanager
def crontab_lock(store: Store, user: str | None = None) -> Iterator[None]:
    path = crontab_lock_path(store, user)
    lock = filelock.FileLock(str(path), timeout=CRONTAB_LOCK_TIMEOUT_SECONDS, mode=0o600)
    try:
        lock.acquire()
    except filelock.Timeout as exc:
        raise ConflictError(
            f"another etlctl process is changing the crontab (lock {path})",
            hint=f"try again; if no etlctl runs, remove {path}",
        ) from exc
    try:
        yield
    finally:
        lock.release()


def _edit_crontab(
    store: Store,
    manages: Callable[[TaggedLine], bool],
    desired: Callable[[], dict[str, str]],
    user: str | None,
    dry_run: bool,
) -> CrontabChange:
    """Read, reconcile and write back (only if it changed), all under the crontab lock."""
    with crontab_lock(store, user):
        # The store is read inside the lock: the last writer always installs the newest state.
        wanted = desired()
        current = read_crontab(user)
        new_text, change = reconcile(current, manages, wanted)
        if new_text != current and not dry_run:
            write_crontab(new_text, user)
            change.written = True
    return change


def _ensure_log_dirs(store: Store, names: Iterable[str]) -> None:
    """Create the log directories now, owned by the right user (the line does so too)."""
    for name in names:
        with contextlib.suppress(OSError):
            cron_log_path(store.path, name).parent.mkdir(parents=True, exist_ok=True, mode=0o700)


# --- the public operations ----------------------------------------------------------------
def sync_crontab(store: Store, *, user: str | None = None, dry_run: bool = False) -> CrontabChange:
    """Make the crontab match the store: one entry per scheduled connection, no others.

    Touches only this store's tagged lines; idempotent (writes nothing when up to date).
    ``user`` (root only) manages another user's crontab, as ``crontab -u`` does.
    """
    job = JobEnvironment.current(user)
    this_store = store_id(store.path)
    change = _edit_crontab(
        store,
        lambda tag: tag.store_id == this_store,
        lambda: desired_entries(store, job),
        user,
        dry_run,
    )
    if not dry_run:
        _ensure_log_dirs(store, change.added + change.updated)
    return change


def sync_after_change(
    store: Store, schedule_changed: bool, no_crontab: bool = False
) -> CrontabChange | None:
    """After a change that touched a schedule: bring the crontab in line (every front calls
    this after such a change; None when there was nothing to do).

    The store change has happened already; a crontab failure says that plainly, so the
    user knows a retry of `etlctl schedule apply` is all that is missing.
    """
    if not schedule_changed or no_crontab:
        return None
    try:
        return sync_crontab(store)
    except EtlctlError as exc:
        exc.message = f"the store was changed, but the crontab was not updated: {exc.message}"
        exc.hint = exc.hint or "fix the cause, then run: etlctl schedule apply"
        raise


def remove_crontab_entries(
    store: Store,
    names: Iterable[str] | None = None,
    *,
    all_stores: bool = False,
    user: str | None = None,
    dry_run: bool = False,
) -> CrontabChange:
    """Remove etlctl entries: of the given connections, of every connection of this store
    (names=None), or of every store (all_stores). Other lines stay as they are."""
    this_store = store_id(store.path)
    wanted = set(names) if names is not None else None

    def manages(tag: TaggedLine) -> bool:
        if all_stores:
            return True
        return tag.store_id == this_store and (wanted is None or tag.name in wanted)

    return _edit_crontab(store, manages, dict, user, dry_run)


@dataclass(frozen=True)
class ScheduleInfo:
    """One scheduled connection as `etlctl schedule list` shows it."""

    connection: str
    schedule: str
    description: str
    next_runs: list[datetime]
    last_run_status: str | None
    last_run_at: datetime | None
    entry: str  # the crontab line it should have
    installed: str | None  # "yes", "outdated", "missing"; None when the crontab is unreadable

    def to_doc(self) -> dict[str, object]:
        return {
            "connection": self.connection,
            "schedule": self.schedule,
            "description": self.description,
            "next_runs": [moment.isoformat() for moment in self.next_runs],
            "last_run": (
                {"status": self.last_run_status, "started_at": self.last_run_at.isoformat()}
                if self.last_run_at is not None
                else None
            ),
            "crontab": self.installed,
            "crontab_entry": self.entry,
        }


def _installed_state(entry: str, installed: dict[str, str] | None, name: str) -> str | None:
    if installed is None:
        return None
    if name not in installed:
        return "missing"
    return "yes" if installed[name] == entry else "outdated"


def list_schedules(
    store: Store, *, user: str | None = None, now: datetime | None = None
) -> tuple[list[ScheduleInfo], list[str]]:
    """Scheduled connections with meaning, next runs, last run and crontab state; and the
    names of this store's crontab entries that no scheduled connection wants (stale)."""
    view = store.read()
    job = JobEnvironment.current(user)
    try:
        installed: dict[str, str] | None = installed_entries(
            read_crontab(user), store_id(store.path)
        )
    except ServiceUnavailableError:
        installed = None  # listing still works without cron; the column says "unknown"
    infos = []
    for conn in view.connections():
        if not conn.scheduled:
            continue
        runs = view.list_runs(conn.name)
        entry = entry_for(store.path, conn, job)
        infos.append(
            ScheduleInfo(
                connection=conn.name,
                schedule=conn.schedule,
                description=describe_schedule(conn.schedule),
                next_runs=next_runs(conn.schedule, 3, now),
                last_run_status=runs[0].status.value if runs else None,
                last_run_at=runs[0].started_at if runs else None,
                entry=entry,
                installed=_installed_state(entry, installed, conn.name),
            )
        )
    wanted = {info.connection for info in infos}
    stale = sorted(set(installed or {}) - wanted)
    return infos, stale


def cron_daemon_running() -> bool | None:
    """Whether a cron daemon process exists (Linux /proc); None when it cannot be told."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    for comm in proc.glob("[0-9]*/comm"):
        with contextlib.suppress(OSError):
            if comm.read_text().strip() in {"cron", "crond", "cronie", "busybox-crond"}:
                return True
    return False


CRON_ALLOW = Path("/etc/cron.allow")
CRON_DENY = Path("/etc/cron.deny")


def crontab_refusal(user: str | None = None) -> str | None:
    """Why cron.allow / cron.deny keep the user from installing a crontab, or None."""
    who = user or pwd.getpwuid(os.getuid()).pw_name

    def names(path: Path) -> set[str]:
        try:
            return {line.strip() for line in path.read_text().splitlines() if line.strip()}
        except OSError:
            return set()

    if CRON_ALLOW.exists():
        return None if who in names(CRON_ALLOW) else f"{who} is not listed in {CRON_ALLOW}"
    if CRON_DENY.exists() and who in names(CRON_DENY):
        return f"{who} is listed in {CRON_DENY}"
    return None
