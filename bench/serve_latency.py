"""How fast `etlctl serve` answers over a large store: 100 connections, 50,000 runs.

Builds the store directly (one write), starts a real server on a free loopback port, and
times N sequential requests of the connection list (API) and the overview page. Prints
p50/p95 in milliseconds. A benchmark, not a test: numbers depend on the machine's load.

    .venv/bin/python bench/serve_latency.py [--connections 100] [--runs-per-connection 500]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from etlctl.models import Connection, Loader, Run, RunStatus, Source, utcnow  # noqa: E402
from etlctl.store import StoreView, _new_document, write_document_atomically  # noqa: E402
from serve_support import Server  # noqa: E402


def build_store(path: Path, connections: int, runs_per_connection: int) -> None:
    view = StoreView(_new_document())
    start = utcnow() - timedelta(days=30)
    runs = []
    for c in range(connections):
        name = f"conn-{c:03d}"
        view.save(Source(id=f"src_{c}", name=f"{name}-src", type="csv",
                         config={"path": f"/data/{name}.csv"}))  # fmt: skip
        view.save(Loader(id=f"ldr_{c}", name=f"{name}-dst", type="sqlite",
                         config={"path": "/data/wh.db", "table": name}))  # fmt: skip
        view.save(Connection(id=f"con_{c}", name=name, source=f"{name}-src",
                             loader=f"{name}-dst", schedule="*/15 * * * *"))  # fmt: skip
        for r in range(runs_per_connection):
            began = start + timedelta(minutes=15 * r, seconds=c)
            status = RunStatus.SUCCEEDED if r % 10 else RunStatus.FAILED
            run = Run(connection=name, status=status, started_at=began,
                      ended_at=began + timedelta(seconds=20), records_extracted=10_000,
                      records_loaded=10_000, trigger="schedule")  # fmt: skip
            runs.append(run.to_doc())
    document = view.document
    document["runs"] = {str(i + 1): doc for i, doc in enumerate(runs)}
    write_document_atomically(path, document)


def timed(client: httpx.Client, url: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        began = time.perf_counter()
        answer = client.get(url)
        times.append((time.perf_counter() - began) * 1000)
        assert answer.status_code == 200, answer.text[:300]
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--runs-per-connection", type=int, default=500)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store_path = Path(tmp) / "store.json"
        build_store(store_path, args.connections, args.runs_per_connection)
        size = store_path.stat().st_size / 1e6
        server = Server(store_path).start()
        try:
            headers = server.headers
            with httpx.Client(base_url=server.base_url, headers=headers, timeout=120) as client:
                client.post("/login", data={"token": server.token})
                for label, url in (("GET /api/v1/connections", "/api/v1/connections"),
                                   ("GET / (overview page)", "/")):  # fmt: skip
                    times = timed(client, url, args.requests)
                    p95 = statistics.quantiles(times, n=20)[18]
                    print(f"{label}: p50 {statistics.median(times):.0f} ms, p95 {p95:.0f} ms "
                          f"({args.requests} requests, store {size:.1f} MB)")  # fmt: skip
        finally:
            server.stop()


if __name__ == "__main__":
    main()
