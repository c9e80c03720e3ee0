#!/usr/bin/env bash
# Scale benchmark of the sample-municipality generator (issue #3): N residents (default 1,000,000) generated and
# loaded into PostgreSQL (COPY) and MongoDB/FerretDB (insert_many, unordered batches) on this machine.
# Budget: ≤ 10 minutes wall time, peak RSS ≤ 4 GiB.
# Starts its own servers (PostgreSQL 55441, FerretDB 27041, run dir /tmp/gl-bench-gen), stops them at the end.
# Writes benchmarks/results/generate_1m.txt: wall time, peak RSS, row counts per table (as delivered and as
# counted on the servers).
# Usage: benchmarks/generate_1m.sh [residents]
set -euo pipefail
cd "$(dirname "$0")/.."
RESIDENTS=${1:-1000000}
export GOVLAKE_PG_PORT=55441 GOVLAKE_MONGO_PORT=27041 GOVLAKE_RUN_DIR=/tmp/gl-bench-gen
OUT=$GOVLAKE_RUN_DIR/out
REPORT=benchmarks/results/generate_1m.txt
docker/services.sh start
trap 'docker/services.sh stop >/dev/null || true' EXIT
eval "$(docker/services.sh env)"
rm -rf "$OUT"; mkdir -p "$OUT"

/usr/bin/time -v -o "$GOVLAKE_RUN_DIR/time.txt" .venv/bin/python -m sample.generate \
  --residents "$RESIDENTS" --target servers --pg-url "$GOVLAKE_PG_URL" --mongo-url "$GOVLAKE_MONGO_URL" \
  --out "$OUT" > "$GOVLAKE_RUN_DIR/counts.json" 2> "$GOVLAKE_RUN_DIR/phases.log"

WALL=$(grep 'Elapsed (wall clock)' "$GOVLAKE_RUN_DIR/time.txt" | sed 's/.*: //')
RSS_KB=$(grep 'Maximum resident set size' "$GOVLAKE_RUN_DIR/time.txt" | sed 's/.*: //')
{
  echo "# benchmarks/generate_1m.sh — sample municipality generated and loaded into PostgreSQL + FerretDB"
  echo "residents: $RESIDENTS"
  echo "host: $(nproc) cores, load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "wall time (h:mm:ss): $WALL   (budget 10:00)"
  echo "peak RSS: $RSS_KB kB = $((RSS_KB / 1024)) MiB   (budget 4096 MiB)"
  grep -E 'User time|System time|Percent of CPU' "$GOVLAKE_RUN_DIR/time.txt" | sed 's/^\s*//'
  echo
  echo "seconds per phase (generation + fault injection + load of that phase's tables):"
  sed 's/^sample.generate: /  /' "$GOVLAKE_RUN_DIR/phases.log"
  echo
  echo "rows per table (delivered, from the generator's counts):"
  .venv/bin/python -c 'import json,sys; [print(f"  {k:32s} {v:>10,}") for k, v in json.load(open(sys.argv[1])).items()]' \
    "$GOVLAKE_RUN_DIR/counts.json"
  echo
  echo "rows per table on the servers:"
  .venv/bin/python - <<'PY'
import os
import psycopg
from pymongo import MongoClient
url = os.environ["GOVLAKE_PG_URL"].replace("postgresql+psycopg://", "postgresql://")
with psycopg.connect(url) as con:
    for schema, table in con.execute("SELECT table_schema, table_name FROM information_schema.tables WHERE "
                                     "table_schema IN ('hukou','civil','health','hrss','address') ORDER BY 1, 2"):
        n = con.execute(f"SELECT count(*) FROM {schema}.{table}").fetchone()[0]
        print(f"  postgresql {schema}.{table:25s} {n:>10,}")
client = MongoClient(os.environ["GOVLAKE_MONGO_URL"])
for db, coll in (("wangge", "events"), ("zhengwu", "applications")):
    print(f"  mongodb    {db}.{coll:25s} {client[db][coll].count_documents({}):>10,}")
client.close()
PY
} > "$REPORT"
cat "$REPORT"
