"""Throughput of a CSV -> SQLite sync, against a plain single-process typed copy.

Generates a deterministic CSV (id, updated_at, name, email, amount, country, active), then
in one run times:

* `etlctl sync` with the Docker runtime (extractor and loader containers + RabbitMQ),
* the same with the local runtime (subprocesses),
* a plain Python copy that types values the same way (csv.reader -> int/float/bool ->
  sqlite3 executemany, one transaction),

and prints rows/s, each sync's ratio to the plain copy, the peak memory of each connector
container (its resident memory from the cgroup, sampled every 0.1 s while it runs) and the
wall time of a 10-row sync. A benchmark, not a test: it prints figures and never fails on them.

Usage: .venv/bin/python bench/sync_throughput.py [--rows 1000000] [--skip-local]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
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


class PeakMemorySampler:
    """Samples the cgroup peak memory of each connector container of a connection."""

    def __init__(self, connection: str) -> None:
        self.connection = connection
        self.peaks: dict[str, int] = {}
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
            out = subprocess.run(
                [
                    "docker",
                    "ps",
                    "--no-trunc",
                    "--filter",
                    f"label=io.etlctl.connection={self.connection}",
                    "--format",
                    "{{.ID}} {{.Names}}",
                ],
                capture_output=True,
                text=True,
            ).stdout
            for line in out.splitlines():
                container_id, _, name = line.partition(" ")
                role = name.rsplit("-", 1)[-1]  # names end in -extractor / -loader
                peak = _cgroup_peak(container_id)
                if peak:
                    self.peaks[role] = max(self.peaks.get(role, 0), peak)
            self._stop.wait(0.1)


def _cgroup_peak(container_id: str) -> int | None:
    """The container's resident (anonymous) memory now. Not memory.max_usage_in_bytes: that
    counts the page cache of the target file the loader writes, which the kernel can drop,
    and grows with the dataset without being the connector's memory."""
    for candidate, key in (
        (Path(f"/sys/fs/cgroup/memory/docker/{container_id}/memory.stat"), "total_rss"),
        (Path(f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/memory.stat"), "anon"),
    ):
        try:
            for line in candidate.read_text().splitlines():
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
        except (OSError, ValueError):
            continue
    return None


def etlctl(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ETLCTL, "--store", str(store), *args], capture_output=True, text=True)


def register(store: Path, name: str, source: Path, target: Path) -> None:
    for args in (
        ("source", "add", f"{name}-src", "--type", "csv", "--config", f"path={source}"),
        (
            "loader",
            "add",
            f"{name}-dst",
            "--type",
            "sqlite",
            "--config",
            f"path={target}",
            "--config",
            "table=users",
        ),
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
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="etlctl-bench-"))
    store = work / "store.json"
    source = work / "users.csv"
    print(f"generating {args.rows:,} rows in {source} ...", flush=True)
    generate_csv(source, args.rows)
    small = work / "small.csv"
    generate_csv(small, 10)

    plain_seconds = plain_copy(source, work / "plain.db")
    plain_rate = args.rows / plain_seconds
    print(f"plain typed copy:       {plain_rate:>10,.0f} rows/s  ({plain_seconds:.2f}s)")

    results = {}
    runtimes = ["docker"] + ([] if args.skip_local else ["local"])
    for runtime in runtimes:
        name = f"bench-{runtime}"
        register(store, name, source, work / f"{runtime}.db")
        seconds, run, peaks = timed_sync(store, name, runtime)
        loaded = run["records_loaded"]
        assert loaded == args.rows, f"{runtime}: loaded {loaded} of {args.rows}"
        rate = args.rows / seconds
        results[runtime] = rate
        memory = ", ".join(f"{role} {peak / 2**20:.0f} MiB" for role, peak in sorted(peaks.items()))
        in_run = args.rows / run["duration_seconds"]
        print(
            f"etlctl sync ({runtime:>6}): {rate:>10,.0f} rows/s  ({seconds:.2f}s wall, "
            f"{rate / plain_rate:.2f}x plain; {in_run:,.0f} rows/s between run start and end)"
            + (f"  peak memory: {memory}" if memory else "")
        )

    register(store, "bench-small", small, work / "small.db")
    seconds, _, _ = timed_sync(store, "bench-small", "docker")
    print(f"10-row sync (docker):   {seconds:.2f}s wall, including container start")
    print(f"(work files in {work})")


if __name__ == "__main__":
    main()
