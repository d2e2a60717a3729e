"""Throughput of a CSV -> SQLite (or PostgreSQL) sync, against a plain one-process copy.

Generates a deterministic CSV (id, updated_at, name, email, amount, country, active), then
in one run times:

* `etlctl sync` with the Docker runtime (extractor and loader containers + RabbitMQ),
* the same with the local runtime (subprocesses),
* a plain Python copy that types values the same way (csv.reader -> int/float/bool ->
  sqlite3 executemany, one transaction),

With ``--loader postgres`` the target is a table of a PostgreSQL database (``--pg-*``
options; the database is created when missing) and the reference is ``psql \\copy`` of the
same file into a table of the same column types.

It prints rows/s, each sync's ratio to the reference copy, the peak memory of each connector
container (its resident memory from the cgroup, sampled every 0.1 s while it runs) and the
wall time of a 10-row sync. Each figure is the median of ``--repeat`` rounds. A benchmark,
not a test: it prints figures and never fails on them.

Usage: .venv/bin/python bench/sync_throughput.py [--rows 1000000] [--skip-local] [--repeat 3]
           [--loader sqlite|postgres] [--pg-host 127.0.0.1] [--pg-password postgres] ...
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ETLCTL = [sys.executable, "-m", "etlctl"]
COUNTRIES = ["GB", "US", "FR", "DE", "NL", "JP", "BR", "IN", "ES", "IT"]


def generate_csv(path: Path, rows: int) -> None:
    rng = random.Random(42)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "updated_at", "name", "email", "amount", "country", "active"])
        for i in range(1, rows + 1):
            writer.writerow(
                [
                    i,
                    f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00",
                    f"user {i}",
                    f"user{i}@example.com",
                    f"{rng.uniform(0, 10_000):.2f}",
                    COUNTRIES[i % len(COUNTRIES)],
                    "true" if rng.random() < 0.5 else "false",
                ]
            )


def plain_copy(source: Path, target: Path) -> float:
    """The reference: one process, typed values, one transaction."""
    target.unlink(missing_ok=True)
    started = time.perf_counter()
    db = sqlite3.connect(target)
    db.execute(
        "CREATE TABLE users (id INTEGER, updated_at TEXT, name TEXT, email TEXT, "
        "amount REAL, country TEXT, active INTEGER)"
    )
    with source.open(newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        batch = []
        for row in reader:
            batch.append(
                (int(row[0]), row[1], row[2], row[3], float(row[4]), row[5], row[6] == "true")
            )
            if len(batch) == 2000:
                db.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?)", batch)
                batch.clear()
        db.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?)", batch)
    db.commit()
    db.close()
    return time.perf_counter() - started


PG_COLUMNS = (
    "id bigint, updated_at timestamptz, name text, email text, amount double precision, "
    "country text, active boolean"
)


@dataclass(frozen=True)
class PgTarget:
    host: str
    port: int
    user: str
    password: str
    dbname: str

    def loader_config(self) -> list[str]:
        return [
            f"host={self.host}", f"port={self.port}", f"user={self.user}",
            f"password={self.password}", f"dbname={self.dbname}", "sslmode=disable",
        ]

    def psql(self, *commands: str, dbname: str | None = None) -> None:
        arguments = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.host,
                     "-p", str(self.port), "-U", self.user, "-d", dbname or self.dbname]
        for command in commands:
            arguments += ["-c", command]
        subprocess.run(arguments, check=True, capture_output=True,
                       env={**os.environ, "PGPASSWORD": self.password})

    def ensure_database(self) -> None:
        try:
            self.psql(f'CREATE DATABASE "{self.dbname}"', dbname="postgres")
        except subprocess.CalledProcessError as exc:
            if b"already exists" not in exc.stderr:
                raise


def psql_copy(source: Path, target: PgTarget) -> float:
    """The PostgreSQL reference: `psql \\copy` of the file into a fresh typed table."""
    target.psql("DROP TABLE IF EXISTS psql_copy", f"CREATE TABLE psql_copy ({PG_COLUMNS})")
    started = time.perf_counter()
    target.psql(f"\\copy psql_copy FROM '{source}' WITH (FORMAT csv, HEADER true)")
    return time.perf_counter() - started


CGROUP_MEMORY_STATS = (
    # cgroup v1, v2: where a container's memory.stat is, and its resident-memory key
    ("/sys/fs/cgroup/memory/docker/*/memory.stat", "total_rss"),
    ("/sys/fs/cgroup/system.slice/docker-*.scope/memory.stat", "anon"),
)


class PeakMemorySampler:
    """Samples the resident memory of each connector container of a connection.

    It reads the containers' cgroup files, and asks Docker only once per new container for
    its name: running `docker ps` ten times a second would take CPU from the sync measured.
    """

    def __init__(self, connection: str) -> None:
        self.prefix = f"/etlctl-{connection}-"
        self.peaks: dict[str, int] = {}
        self._roles: dict[str, str | None] = {}  # cgroup file -> role, None: not ours
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakMemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            for pattern, key in CGROUP_MEMORY_STATS:
                for stat_file in glob.glob(pattern):
                    role = self._role_of(stat_file, pattern)
                    resident = _memory_stat(stat_file, key) if role else None
                    if role and resident:
                        self.peaks[role] = max(self.peaks.get(role, 0), resident)
            self._stop.wait(0.1)

    def _role_of(self, stat_file: str, pattern: str) -> str | None:
        if stat_file not in self._roles:
            before, after = pattern.split("*")
            container_id = stat_file[len(before) : -len(after)]
            name = subprocess.run(
                ["docker", "inspect", "--format", "{{.Name}}", container_id],
                capture_output=True, text=True,
            ).stdout.strip()
            # names end in -extractor / -loader
            self._roles[stat_file] = (
                name.rsplit("-", 1)[-1] if name.startswith(self.prefix) else None
            )
        return self._roles[stat_file]


def _memory_stat(path: str, key: str) -> int | None:
    """A container's resident (anonymous) memory now. Not memory.max_usage_in_bytes: that
    counts the page cache of the target file the loader writes, which the kernel can drop,
    and grows with the dataset without being the connector's memory."""
    try:
        for line in Path(path).read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):  # the container ended between the listing and the read
        return None
    return None


def etlctl(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ETLCTL, "--store", str(store), *args], capture_output=True, text=True)


def register(
    store: Path, name: str, source: Path, target: Path, postgres: PgTarget | None = None
) -> None:
    if postgres is None:
        loader = ["--type", "sqlite", "--config", f"path={target}", "--config", "table=users"]
    else:
        loader = ["--type", "postgres", "--config", f"table={name.replace('-', '_')}"]
        for setting in postgres.loader_config():
            loader += ["--config", setting]
    for args in (
        ("source", "add", f"{name}-src", "--type", "csv", "--config", f"path={source}"),
        ("loader", "add", f"{name}-dst", *loader),
        ("connection", "add", name, "--source", f"{name}-src", "--loader", f"{name}-dst"),
    ):
        result = etlctl(store, *args)
        if result.returncode != 0:
            raise SystemExit(f"setup failed: {' '.join(args)}: {result.stderr}")


def timed_sync(store: Path, name: str, runtime: str) -> tuple[float, dict, dict[str, int]]:
    with PeakMemorySampler(name) as sampler:
        started = time.perf_counter()
        result = etlctl(store, "sync", name, "--runtime", runtime, "--json")
        elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"sync {name} failed: {result.stderr}")
    return elapsed, json.loads(result.stdout), sampler.peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--skip-local", action="store_true")
    parser.add_argument(
        "--repeat", type=int, default=3,
        help="rounds (plain copy, then each sync); medians are reported (default: 3)",
    )
    parser.add_argument("--loader", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--pg-host", default="127.0.0.1")
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--pg-user", default="postgres")
    parser.add_argument("--pg-password", default=os.environ.get("PGPASSWORD", "postgres"))
    parser.add_argument("--pg-dbname", default="etlctl_bench")
    args = parser.parse_args()
    postgres = None
    if args.loader == "postgres":
        postgres = PgTarget(args.pg_host, args.pg_port, args.pg_user, args.pg_password,
                            args.pg_dbname)
        postgres.ensure_database()

    def reference_copy() -> float:
        if postgres is not None:
            return psql_copy(source, postgres)
        return plain_copy(source, work / "plain.db")

    reference = "psql \\copy" if postgres else "plain typed copy"

    work = Path(tempfile.mkdtemp(prefix="etlctl-bench-"))
    store = work / "store.json"
    source = work / "users.csv"
    print(f"generating {args.rows:,} rows in {source} ...", flush=True)
    generate_csv(source, args.rows)
    small = work / "small.csv"
    generate_csv(small, 10)

    runtimes = ["docker"] + ([] if args.skip_local else ["local"])
    for runtime in runtimes:
        register(store, f"bench-{runtime}", source, work / f"{runtime}.db", postgres)
    register(store, "bench-small", small, work / "small.db", postgres)

    # Rounds interleave the plain copy and the syncs, so that a machine busy for a while
    # slows them alike; the medians keep one unlucky round from deciding the figures.
    plain: list[float] = []
    walls: dict[str, list[float]] = {runtime: [] for runtime in runtimes}
    in_run: dict[str, list[float]] = {runtime: [] for runtime in runtimes}
    peaks: dict[str, dict[str, int]] = {runtime: {} for runtime in runtimes}
    for round_number in range(1, args.repeat + 1):
        plain.append(reference_copy())
        line = [f"round {round_number}: {reference} {plain[-1]:.2f}s"]
        for runtime in runtimes:
            seconds, run, round_peaks = timed_sync(store, f"bench-{runtime}", runtime)
            loaded = run["records_loaded"]
            assert loaded == args.rows, f"{runtime}: loaded {loaded} of {args.rows}"
            walls[runtime].append(seconds)
            in_run[runtime].append(run["duration_seconds"])
            for role, peak in round_peaks.items():
                peaks[runtime][role] = max(peaks[runtime].get(role, 0), peak)
            line.append(f"{runtime} {seconds:.2f}s")
        print(", ".join(line), flush=True)

    plain_rate = args.rows / statistics.median(plain)
    print(
        f"{reference + ':':<23} {plain_rate:>10,.0f} rows/s  "
        f"({statistics.median(plain):.2f}s, median of {args.repeat})"
    )
    for runtime in runtimes:
        seconds = statistics.median(walls[runtime])
        rate = args.rows / seconds
        run_rate = args.rows / statistics.median(in_run[runtime])
        memory = ", ".join(
            f"{role} {peak / 2**20:.0f} MiB" for role, peak in sorted(peaks[runtime].items())
        )
        print(
            f"etlctl sync ({runtime:>6}): {rate:>10,.0f} rows/s  ({seconds:.2f}s wall, "
            f"{rate / plain_rate:.2f}x {reference}; {run_rate:,.0f} rows/s between run start and "
            f"end, {run_rate / plain_rate:.2f}x)"
            + (f"  peak memory: {memory}" if memory else "")
        )

    small_walls = [timed_sync(store, "bench-small", "docker")[0] for _ in range(args.repeat)]
    print(
        f"10-row sync (docker):   {statistics.median(small_walls):.2f}s wall, "
        "including container start"
    )
    print(f"(work files in {work})")


if __name__ == "__main__":
    main()
