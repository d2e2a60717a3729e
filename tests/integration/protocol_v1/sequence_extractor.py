"""A custom etlctl extractor written from docs/connector-protocol.md alone.

It imports nothing from etlctl or connectors/: only pika and the standard library, to show
that the protocol is the whole contract (the same could be done in Go, Rust or Node).
It emits `count` records {n, square, parity} and, in incremental mode, starts at the saved
cursor (n >= state.cursor).
"""

import json
import os
import sys
import time

import pika
import pika.exceptions

SPEC = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "sequence",
    "type": "object",
    "properties": {"count": {"type": "integer", "minimum": 0, "description": "records to emit"}},
    "required": ["count"],
    "additionalProperties": False,
}
COLUMNS = [
    {"name": "n", "type": "integer"},
    {"name": "square", "type": "integer"},
    {"name": "parity", "type": "string"},
]


def read_run_file():
    with open(os.environ["ETLCTL_RUN_FILE"], encoding="utf-8") as handle:
        return json.load(handle)


class Publisher:
    def __init__(self, run):
        self.run = run
        broker = run["broker"]
        self.connection = pika.BlockingConnection(pika.URLParameters(broker["url"]))
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()
        self.data_queue = broker["data_queue"]
        self.events_queue = broker["events_queue"]
        self.seq = 0

    def data(self, kind, body):
        self.seq += 1
        properties = pika.BasicProperties(
            type=kind,
            delivery_mode=2,
            content_type="application/json",
            headers={"run_id": self.run["run"]["id"], "seq": self.seq},
        )
        payload = json.dumps(body).encode()
        wait = 0.05
        while True:  # a nack means the bounded queue is full: wait, then send it again
            try:
                self.channel.basic_publish("", self.data_queue, payload, properties, mandatory=True)
                return
            except pika.exceptions.NackError:
                time.sleep(wait)
                wait = min(wait * 2, 1.0)

    def event(self, kind, **fields):
        body = {"type": kind, "role": "extractor", "run_id": self.run["run"]["id"], **fields}
        self.channel.basic_publish("", self.events_queue, json.dumps(body).encode())


def run():
    run_file = read_run_file()
    count = int(run_file["config"]["count"])
    sync = run_file["sync"]
    start = 1
    if sync["mode"] != "full_refresh" and run_file.get("state"):
        start = int(run_file["state"].get("cursor", 1))
    publisher = Publisher(run_file)
    try:
        publisher.data(
            "SCHEMA", {"stream": "sequence", "columns": COLUMNS, "key_properties": ["n"]}
        )
        sent = 0
        batch = []
        for n in range(start, count + 1):
            batch.append([n, n * n, "even" if n % 2 == 0 else "odd"])
            if len(batch) == 500:
                publisher.data("RECORDS", {"columns": ["n", "square", "parity"], "rows": batch})
                sent += len(batch)
                publisher.data("CHECKPOINT", {"state": {"cursor": n}, "records": sent})
                publisher.event("progress", records=sent, bytes=0)
                batch = []
        if batch:
            publisher.data("RECORDS", {"columns": ["n", "square", "parity"], "rows": batch})
            sent += len(batch)
        final = {"cursor": count} if count >= start else run_file.get("state")
        publisher.data("END", {"records": sent, "state": final})
        publisher.event("done", records=sent, bytes=0, skipped=0)
    except Exception as exc:  # report, then fail: the orchestrator shows the message
        publisher.event("error", message=str(exc))
        raise
    finally:
        publisher.connection.close()


def main():
    command = sys.argv[1] if len(sys.argv) > 1 else "run"
    if command == "spec":
        print(json.dumps(SPEC))
    elif command == "check":
        count = read_run_file()["config"].get("count")
        ok = str(count).isdigit()
        print(
            json.dumps(
                {"status": "ok"}
                if ok
                else {"status": "failed", "message": "count must be a non-negative integer"}
            )
        )
        sys.exit(0 if ok else 1)
    elif command == "run":
        try:
            run()
        except Exception as exc:
            print(f"sequence extractor failed: {exc}", file=sys.stderr)
            sys.exit(1)
    else:
        print(f"unknown command {command!r}: expected spec, check or run", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
