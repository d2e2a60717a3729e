#!/usr/bin/env bash
# The main job, end to end: register the example source, loader and connection in a demo
# store, run a real sync (Docker containers + RabbitMQ) and show the result.
# Run it through `make demo`, which first makes sure Docker, RabbitMQ and the images exist.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
etlctl="$root/.venv/bin/etlctl"
export ETLCTL_STORE="${ETLCTL_STORE:-$root/.demo/store.json}"
mkdir -p "$root/.demo"

# The example objects are declared in examples/manifests/: applying them is idempotent.
"$etlctl" apply -f "$root/examples/manifests/"
echo
"$etlctl" sync users-to-warehouse
echo
"$etlctl" runs list users-to-warehouse --limit 3
echo
echo "A few rows of the target ($root/.demo/warehouse.db, table users):"
python3 - "$root/.demo/warehouse.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
cursor = db.execute("SELECT id, name, amount, active, updated_at FROM users ORDER BY id LIMIT 5")
print(" | ".join(d[0] for d in cursor.description))
for row in cursor:
    print(" | ".join(repr(v) for v in row))
print(f"({db.execute('SELECT count(*) FROM users').fetchone()[0]} rows in all)")
PY
