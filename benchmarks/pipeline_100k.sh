#!/usr/bin/env bash
# The whole pipeline at N residents (default 100,000; embedded sources, Data Docs off), then the accuracy reports
# of issue #6: person linkage precision / recall per department (`python -m govlake.unified.linkage report`) and
# address-to-grid accuracy (`python -m govlake.unified.address report`), plus the quality gate's recall per fault kind
# (`python -m govlake.quality.audit recall`, issue #5).
# Writes benchmarks/results/pipeline_<N>.md: wall time, stage seconds, load average, the three reports.
# Usage: benchmarks/pipeline_100k.sh [residents]      (about 15 minutes at 100k on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
RESIDENTS=${1:-100000}
bash docker/setup.sh >/dev/null
export GOVLAKE_HOME=${GOVLAKE_BENCH_HOME:-/tmp/govlake-bench-$RESIDENTS} GOVLAKE_DATA_DOCS=0 PYTHONPATH=$PWD
REPORT=benchmarks/results/pipeline_${RESIDENTS}.md
rm -rf "$GOVLAKE_HOME"; mkdir -p "$GOVLAKE_HOME"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
START=$(date +%s)
.venv/bin/python -m govlake.pipeline run --date 2025-06-30 --residents "$RESIDENTS" > "$GOVLAKE_HOME/run.log" 2>&1
WALL=$(( $(date +%s) - START ))
.venv/bin/python -m govlake.unified.linkage report --date 2025-06-30 > "$GOVLAKE_HOME/linkage.log" 2>&1
.venv/bin/python -m govlake.unified.address report --sources "$GOVLAKE_HOME/sources" > "$GOVLAKE_HOME/address.json" 2>"$GOVLAKE_HOME/address.log"
.venv/bin/python -m govlake.quality.audit recall --date 2025-06-30 > "$GOVLAKE_HOME/recall.log" 2>&1
{
  echo "# benchmarks/pipeline_100k.sh — the whole pipeline at $RESIDENTS residents, then the accuracy reports"
  echo
  echo "- host: $(nproc) cores; load average before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- pipeline wall time (generation included): ${WALL} s"
  echo "- stage seconds: $(.venv/bin/python -c "import json,sys;print(json.load(open(sys.argv[1]))['stage_seconds'])" "$GOVLAKE_HOME/reports/summary-2025-06-30.json")"
  echo
  sed 's/^# /## /' "$GOVLAKE_HOME/reports/linkage/2025-06-30.md"
  echo
  echo "## Address-to-grid accuracy (python -m govlake.unified.address report)"
  echo
  echo '```json'
  cat "$GOVLAKE_HOME/address.json"
  echo '```'
  echo
  sed 's/^# /## /' "$GOVLAKE_HOME/reports/quality/recall_2025-06-30.md"
} > "$REPORT"
echo "wrote $REPORT"
