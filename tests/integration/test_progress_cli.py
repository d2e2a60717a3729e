"""What `etlctl sync` tells while it runs, and what `runs show` tells afterwards: real syncs
through Docker and RabbitMQ, the CLI run as a user runs it (a subprocess; a pseudo-terminal
for the live display)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from tests_support import write_users_csv

pytestmark = pytest.mark.integration

ETLCTL = [sys.executable, "-m", "etlctl"]
ROWS = 200_000


@pytest.fixture
def connection(tmp_path, services):
    """A CSV -> SQLite connection of a store of this test; returns (store, source file)."""
    store = tmp_path / "store" / "store.json"
    source = tmp_path / "data" / "users.csv"
    source.parent.mkdir()
    write_users_csv(source, ROWS)

    def etl(*args: str) -> None:
        subprocess.run([*ETLCTL, "--store", str(store), *args], check=True, capture_output=True)

    etl("source", "add", "src", "--type", "csv", "--config", f"path={source}")
    etl("loader", "add", "dst", "--type", "sqlite",
        "--config", f"path={tmp_path / 'out' / 'wh.db'}", "--config", "table=users")
    etl("connection", "add", "prog", "--source", "src", "--loader", "dst")
    return store, source


def sync(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ETLCTL, "--store", str(store), "sync", "prog", "--batch-size", "500", *args],
        capture_output=True, text=True, timeout=300,
    )


def show(store: Path, run_id: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ETLCTL, "--store", str(store), "runs", "show", run_id, *args],
                          capture_output=True, text=True, check=True)


def test_json_progress_events_carry_percent_and_agree_with_the_run(connection):
    store, source = connection
    result = sync(store, "--json", "--progress-interval", "0.1")
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    for event in events:
        assert event["event"] == "progress" and event["run"] == run["id"]
        assert event["loaded"] <= event["extracted"]
    # Lines before the extractor's first batch cannot know the total yet; after it, all do.
    known = [index for index, event in enumerate(events) if event["unit"] is not None]
    assert known and known == list(range(known[0], len(events))), result.stderr
    for event in events[known[0]:]:
        assert event["unit"] == "bytes" and event["total"] == source.stat().st_size
        assert 0 <= event["percent"] <= 100 and event["eta_seconds"] >= 0
    assert [e["loaded"] for e in events] == sorted(e["loaded"] for e in events)
    assert run["records_extracted"] == run["records_loaded"] == ROWS
    # The run record keeps the throughput over time and where the time went.
    shown = json.loads(show(store, run["id"], "--json").stdout)
    timing = shown["timing"]
    assert shown["timeline"][-1][1:] == [ROWS, ROWS]  # kept beside the run's log
    assert timing["extractor_busy_seconds"] > 0 and timing["loader_busy_seconds"] > 0
    assert timing["queue_full"] >= 0
    text = show(store, run["id"]).stdout
    assert re.search(r"extractor:\s+busy [\d.]+s \(\d+%\), waiting [\d.]+s for the queue", text)
    assert re.search(r"loader:\s+busy [\d.]+s \(\d+%\), waiting [\d.]+s for data", text)
    assert re.search(r"queue full:\s+(never|[\d,]+ times)", text)


def test_plain_lines_for_ci_logs_and_silence_for_cron(connection):
    store, _ = connection
    result = sync(store, "--progress-interval", "0.1")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("[prog]")]
    assert lines, result.stderr
    shows_percent = [bool(re.search(r"\d+% \(.* of .*\): [\d,]+ extracted", x)) for x in lines]
    assert True in shows_percent and all(shows_percent[shows_percent.index(True):]), lines
    summary = result.stdout.splitlines()[0]
    assert re.fullmatch(rf"run \S+ succeeded in [\d.]+s: {ROWS:,} extracted, {ROWS:,} loaded, "
                        r"[\d,]+ rows/s", summary)
    # A cron firing: no progress lines at all, the summary line last but for state/log lines.
    cron = sync(store, "--trigger", "schedule", "--progress-interval", "0.1")
    assert cron.returncode == 0, cron.stderr
    assert cron.stderr == ""
    assert cron.stdout.splitlines()[0].startswith("run ") and "succeeded" in cron.stdout


def test_the_live_display_shows_a_bar_percent_and_eta(connection):
    store, _ = connection
    main, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "200"}
    process = subprocess.Popen(
        [*ETLCTL, "--store", str(store), "sync", "prog", "--batch-size", "500"],
        stdout=subprocess.PIPE, stderr=secondary, text=True, env=env,
    )
    os.close(secondary)
    screen = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the other side closed
            break
        if not chunk:
            break
        screen += chunk
    stdout, _ = process.communicate(timeout=300)
    os.close(main)
    assert process.returncode == 0, screen.decode(errors="replace")[-2000:]
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.decode(errors="replace"))
    assert "━" in text  # rich's bar
    assert re.search(r"\b\d{1,3}% \([\d.,]+ \w+ of [\d.,]+ \w+\)", text)
    # The last frame agrees with the summary line (and the run record behind it).
    assert f"{ROWS:,} extracted (done), {ROWS:,} loaded (done)" in text
    assert "100%" in text and "ETA 0:00" in text
    assert f"{ROWS:,} extracted, {ROWS:,} loaded" in stdout
