#!/usr/bin/env bash
# Installs everything GovLake needs on a fresh machine, idempotently (a second run downloads nothing).
#   docker/setup.sh            Python env (.venv) and the Spark jars (.cache/jars): enough for the main job
#   docker/setup.sh --servers  also PostgreSQL (Debian package) and FerretDB v1.24.2 (go install): for the tests
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=$ROOT/.cache
mkdir -p "$CACHE"
log() { printf '[setup] %s\n' "$*"; }

# --- Python environment -----------------------------------------------------------------------
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
stamp=$(sha256sum requirements.txt | cut -c1-16)
if [[ ! -x .venv/bin/python || "$(cat .venv/.req-stamp 2>/dev/null)" != "$stamp" ]]; then
  log "Python env .venv from requirements.txt"
  [[ -x .venv/bin/python ]] || "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check uv==0.13.8
  .venv/bin/uv pip install -q --python .venv/bin/python -r requirements.txt
  .venv/bin/uv pip install -q --python .venv/bin/python --no-deps -e .
  echo "$stamp" > .venv/.req-stamp
fi

# --- Spark jars: Delta Lake and the PostgreSQL JDBC driver, cached for offline runs -------------
JARS=$CACHE/jars
if [[ ! -f $JARS/.complete ]]; then
  log "Delta Lake and JDBC jars from Maven Central into $JARS"
  rm -rf "$JARS" "$JARS.tmp"; mkdir -p "$JARS.tmp"
  mvn -q -B -f docker/pom.xml dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$JARS.tmp"
  # Keep only what PySpark does not already ship: a second copy of Scala, Hadoop, Jackson or
  # Parquet at another version on the classpath breaks Spark.
  shipped=$(.venv/bin/python -c 'import pyspark, os; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')
  for jar in "$JARS.tmp"/*.jar; do
    artifact=$(basename "$jar" | sed -E 's/-[0-9][0-9A-Za-z.+-]*\.jar$//')
    if compgen -G "$shipped/$artifact-[0-9]*.jar" >/dev/null; then rm "$jar"; fi
  done
  mv "$JARS.tmp" "$JARS"; touch "$JARS/.complete"
fi

[[ "${1:-}" == "--servers" ]] || exit 0

# --- PostgreSQL server (Debian package) ---------------------------------------------------------
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  log "PostgreSQL server from Debian packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
fi

# --- FerretDB v1 (MongoDB wire protocol, SQLite backend) -------------------------------------------
if [[ ! -x $CACHE/bin/ferretdb ]]; then
  log "FerretDB v1.24.2 (go install)"
  command -v go >/dev/null || { echo "setup: Go toolchain not found; FerretDB is built with go install" >&2; exit 1; }
  GOBIN=$CACHE/bin GOFLAGS=-mod=mod go install github.com/FerretDB/FerretDB/cmd/ferretdb@v1.24.2
fi
log "ready"
