#!/usr/bin/env bash
# Starts / stops the real servers the tests use, on loopback only:
#   PostgreSQL (Debian's server)      127.0.0.1:${GOVLAKE_PG_PORT:-55432}   user govlake, database departments
#   FerretDB v1 (SQLite backend)      127.0.0.1:${GOVLAKE_MONGO_PORT:-27018}
# Usage: docker/services.sh start|stop|status|env|connections
# `start` is idempotent (a running server is reused); `env` prints the variables the tests read; `connections` the
# departments' Airflow connections on these servers as an `airflow connections import` file (JSON).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PG_PORT=${GOVLAKE_PG_PORT:-55432}
MONGO_PORT=${GOVLAKE_MONGO_PORT:-27018}
RUN=${GOVLAKE_RUN_DIR:-/tmp/govlake-services-$PG_PORT}   # PostgreSQL refuses to run as root: data dir owned by postgres
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
FERRETDB=$ROOT/.cache/bin/ferretdb

as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

pg_running() { [[ -n $PGBIN ]] && as_pg "$PGBIN/pg_ctl" -D "$RUN/pg" status >/dev/null 2>&1; }
ferret_running() { [[ -f $RUN/ferretdb.pid ]] && kill -0 "$(cat "$RUN/ferretdb.pid")" 2>/dev/null; }

start() {
  [[ -n $PGBIN ]] || { echo "services: PostgreSQL server not installed; run docker/setup.sh --servers" >&2; exit 1; }
  [[ -x $FERRETDB ]] || { echo "services: FerretDB not built; run docker/setup.sh --servers" >&2; exit 1; }
  mkdir -p "$RUN"; chmod 755 "$RUN"; [[ $(id -u) == 0 ]] && chown postgres:postgres "$RUN"
  if ! pg_running; then
    if [[ ! -f $RUN/pg/PG_VERSION ]]; then
      mkdir -p "$RUN/pg"; [[ $(id -u) == 0 ]] && chown postgres:postgres "$RUN/pg"
      as_pg "$PGBIN/initdb" -D "$RUN/pg" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
    fi
    as_pg "$PGBIN/pg_ctl" -D "$RUN/pg" -l "$RUN/pg.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $RUN/pg -c fsync=off -c full_page_writes=off" start >/dev/null
    "$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -qtA -v ON_ERROR_STOP=1 <<SQL >/dev/null
SELECT 'CREATE ROLE govlake LOGIN SUPERUSER' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname='govlake') \gexec
SELECT 'CREATE DATABASE departments OWNER govlake' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname='departments') \gexec
SQL
  fi
  if ! ferret_running; then
    mkdir -p "$RUN/ferretdb"
    nohup "$FERRETDB" --handler=sqlite --sqlite-url="file:$RUN/ferretdb/" --state-dir="$RUN/ferretdb" \
      --listen-addr="127.0.0.1:$MONGO_PORT" --debug-addr=- --telemetry=disable --log-level=WARN \
      >"$RUN/ferretdb.log" 2>&1 &
    echo $! > "$RUN/ferretdb.pid"
    for _ in $(seq 1 50); do
      (exec 3<>"/dev/tcp/127.0.0.1/$MONGO_PORT") 2>/dev/null && break; sleep 0.2
    done
    (exec 3<>"/dev/tcp/127.0.0.1/$MONGO_PORT") 2>/dev/null || { echo "services: FerretDB did not start; see $RUN/ferretdb.log" >&2; cat "$RUN/ferretdb.log" >&2; exit 1; }
  fi
  echo "services: PostgreSQL on 127.0.0.1:$PG_PORT, FerretDB on 127.0.0.1:$MONGO_PORT"
}

stop() {
  if ferret_running; then kill "$(cat "$RUN/ferretdb.pid")" && rm -f "$RUN/ferretdb.pid"; fi
  if pg_running; then as_pg "$PGBIN/pg_ctl" -D "$RUN/pg" -m fast -w stop >/dev/null; fi
  echo "services: stopped"
}

# the connection_id of each schemas/sources/*.yaml, by server
PG_CONNECTIONS=(govlake_hukou govlake_civil govlake_health govlake_hrss govlake_address)
MONGO_CONNECTIONS=(govlake_wangge govlake_zhengwu)

env_vars() {
  # Tests read GOVLAKE_*_URL; jobs in servers mode read each source's Airflow connection.
  echo "export GOVLAKE_PG_URL=postgresql+psycopg://govlake@127.0.0.1:$PG_PORT/departments"
  echo "export GOVLAKE_MONGO_URL=mongodb://127.0.0.1:$MONGO_PORT/"
  for conn in "${PG_CONNECTIONS[@]}"; do
    echo "export AIRFLOW_CONN_${conn^^}=postgresql://govlake@127.0.0.1:$PG_PORT/departments"
  done
  for conn in "${MONGO_CONNECTIONS[@]}"; do
    echo "export AIRFLOW_CONN_${conn^^}=mongodb://127.0.0.1:$MONGO_PORT/"
  done
}

connections_json() {  # the same connections in the format of `airflow connections import`
  local sep="" conn
  echo "{"
  for conn in "${PG_CONNECTIONS[@]}"; do
    printf '%s  "%s": {"conn_type": "postgres", "host": "127.0.0.1", "port": %s, "login": "govlake", "schema": "departments"}' \
      "$sep" "$conn" "$PG_PORT"; sep=$',\n'
  done
  for conn in "${MONGO_CONNECTIONS[@]}"; do
    printf '%s  "%s": {"conn_type": "mongo", "host": "127.0.0.1", "port": %s}' "$sep" "$conn" "$MONGO_PORT"
  done
  printf '\n}\n'
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) pg_running && echo "postgresql: running" || echo "postgresql: stopped"
          ferret_running && echo "ferretdb: running" || echo "ferretdb: stopped" ;;
  env) env_vars ;;
  connections) connections_json ;;
  *) echo "usage: $0 start|stop|status|env|connections" >&2; exit 2 ;;
esac
