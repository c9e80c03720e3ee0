#!/usr/bin/env bash
# The platform a team runs day to day, on loopback, as background processes of this machine:
#   Airflow 3.3 (LocalExecutor): api-server  http://127.0.0.1:${GOVLAKE_AIRFLOW_PORT:-8080}
#                                scheduler, dag-processor, triggerer
#                                log servers 127.0.0.1:${GOVLAKE_WORKER_LOG_PORT:-8793} / ${GOVLAKE_TRIGGER_LOG_PORT:-8794}
#   reports over HTTP            http://127.0.0.1:${GOVLAKE_REPORTS_PORT:-8000}/   ($GOVLAKE_HOME/reports)
#   optional, when their module exists: SQL endpoint (govlake/serve/sql_endpoint.py; GOVLAKE_SQL_ENDPOINT=0 skips)
#                                       dashboard    (govlake/serve/dashboard.py;    GOVLAKE_DASHBOARD=0 skips)
# Airflow's metadata database is `airflow` in the PostgreSQL of docker/services.sh (started first).
# Pid files, logs, AIRFLOW_HOME, secrets and the admin password: $GOVLAKE_HOME/platform (GOVLAKE_PLATFORM_DIR).
# Usage: docker/platform.sh up|down|status|env
#   up is idempotent (a running service is reused); down stops what up started (the database servers only
#   when this platform started them).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV_BIN=$ROOT/.venv/bin
export GOVLAKE_HOME=${GOVLAKE_HOME:-$ROOT/var}
PLAT=${GOVLAKE_PLATFORM_DIR:-$GOVLAKE_HOME/platform}
export GOVLAKE_PLATFORM_DIR=$PLAT
AIRFLOW_PORT=${GOVLAKE_AIRFLOW_PORT:-8080}
REPORTS_PORT=${GOVLAKE_REPORTS_PORT:-8000}
WORKER_LOG_PORT=${GOVLAKE_WORKER_LOG_PORT:-8793}
TRIGGER_LOG_PORT=${GOVLAKE_TRIGGER_LOG_PORT:-8794}
PG_PORT=${GOVLAKE_PG_PORT:-55432}
AIRFLOW_URL=http://127.0.0.1:$AIRFLOW_PORT
REPORTS_URL=http://127.0.0.1:$REPORTS_PORT

# the Airflow processes, in start order (each its own session: down stops its process group)
AIRFLOW_SERVICES=(api-server scheduler dag-processor triggerer worker-logs trigger-logs)

secret() {  # a random secret kept in $PLAT/<name> (mode 600), made once
  local f=$PLAT/$1
  [[ -s $f ]] || (umask 077; "$VENV_BIN/python" -c 'import secrets; print(secrets.token_urlsafe(32))' >"$f")
  cat "$f"
}

platform_env() {
  # Everything the Airflow processes and their task subprocesses read.
  mkdir -p "$PLAT/logs" "$PLAT/airflow"; chmod 700 "$PLAT"
  # GOVLAKE_PG_URL, GOVLAKE_MONGO_URL; the departments' connections are not variables here but Airflow connections
  # in its metadata database (imported by `up`, editable in the UI; an exported AIRFLOW_CONN_* would shadow them)
  eval "$(bash docker/services.sh env | grep -v AIRFLOW_CONN_)"
  export GOVLAKE_PG_URL GOVLAKE_MONGO_URL
  export PATH=$VENV_BIN:$PATH                      # task subprocesses (Spark's python workers, spark-submit) find the venv
  export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
  export GOVLAKE_SOURCES=${GOVLAKE_SOURCES:-servers}
  export GX_ANALYTICS_ENABLED=False
  export GOVLAKE_DATA_DOCS_BASE_URL=${GOVLAKE_DATA_DOCS_BASE_URL:-$REPORTS_URL}
  # the persistent catalog the tasks register their tables in and the SQL endpoint serves (database created on use)
  export GOVLAKE_METASTORE_URL=${GOVLAKE_METASTORE_URL:-postgresql://govlake@127.0.0.1:$PG_PORT/metastore}
  export AIRFLOW_HOME=$PLAT/airflow
  export AIRFLOW__CORE__DAGS_FOLDER=$ROOT/dags
  export AIRFLOW__CORE__PLUGINS_FOLDER=$ROOT/plugins
  export AIRFLOW__CORE__LOAD_EXAMPLES=False
  export AIRFLOW__CORE__EXECUTOR=LocalExecutor
  # Each task is a Spark driver (4 GB): two at a time by default
  export AIRFLOW__CORE__PARALLELISM=${GOVLAKE_AIRFLOW_PARALLELISM:-2}
  # a queued task waits for one of those two slots, behind Spark stages that can take long: Airflow's default
  # (600 s queued, then failed) failed a quiet day's extract on a loaded machine
  export AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT=${GOVLAKE_TASK_QUEUED_TIMEOUT_S:-7200}
  export AIRFLOW__CORE__DEFAULT_TIMEZONE=Asia/Shanghai
  export AIRFLOW__CORE__HOSTNAME_CALLABLE=govlake.serve.airflow_logs.hostname
  export AIRFLOW__CORE__EXECUTION_API_SERVER_URL=$AIRFLOW_URL/execution/
  export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=admin:admin
  export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=$PLAT/admin_password.json
  export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=postgresql+psycopg://govlake@127.0.0.1:$PG_PORT/airflow
  # psycopg 3 also drives the async engine (Airflow would otherwise pick asyncpg, which is not installed)
  export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC=$AIRFLOW__DATABASE__SQL_ALCHEMY_CONN
  export AIRFLOW__API__HOST=127.0.0.1
  export AIRFLOW__API__PORT=$AIRFLOW_PORT
  export AIRFLOW__API__BASE_URL=$AIRFLOW_URL
  AIRFLOW__API__SECRET_KEY=$(secret api_secret_key); export AIRFLOW__API__SECRET_KEY
  AIRFLOW__API_AUTH__JWT_SECRET=$(secret jwt_secret); export AIRFLOW__API_AUTH__JWT_SECRET
  # A task's execution-API token must outlive a long Spark stage: 12 h ([execution_api] default 600 s);
  # UI/REST tokens the same ([api_auth] default 24 h)
  export AIRFLOW__EXECUTION_API__JWT_EXPIRATION_TIME=${GOVLAKE_TASK_TOKEN_S:-43200}
  export AIRFLOW__API_AUTH__JWT_EXPIRATION_TIME=43200
  export AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=$WORKER_LOG_PORT
  export AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=$TRIGGER_LOG_PORT
  export AIRFLOW__LOGGING__BASE_LOG_FOLDER=$PLAT/airflow/logs
}

pid_of() { local f=$PLAT/$1.pid; [[ -f $f ]] && kill -0 "$(cat "$f")" 2>/dev/null && cat "$f"; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

refuse_taken() {  # refuse a port another program owns
  if port_open "$2"; then
    echo "platform: 127.0.0.1:$2 (for $1) is owned by another program; free it or set the port's GOVLAKE_*_PORT" >&2
    exit 1
  fi
}

launch() {  # launch NAME PORT|- CMD...: background process in its own session, pid file + log
  local name=$1 port=$2; shift 2
  if pid=$(pid_of "$name"); then echo "platform: $name running (pid $pid)"; return; fi
  [[ $port == - ]] || refuse_taken "$name" "$port"
  setsid nohup "$@" >>"$PLAT/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$PLAT/$name.pid"
  echo "platform: $name started (pid $!, log $PLAT/logs/$name.log)"
}

wait_port() {  # wait_port NAME PORT SECONDS
  for _ in $(seq 1 "$(($3 * 2))"); do
    port_open "$2" && return 0
    pid_of "$1" >/dev/null || break
    sleep 0.5
  done
  echo "platform: $1 did not come up on 127.0.0.1:$2; last lines of $PLAT/logs/$1.log:" >&2
  tail -30 "$PLAT/logs/$1.log" >&2 || true
  exit 1
}

optional() {  # optional MODULE FLAG_VAR: a govlake.serve module started/stopped when present and not disabled
  [[ -f $ROOT/govlake/serve/$1.py ]] && [[ ${!2:-1} != 0 ]]
}

up() {
  mkdir -p "$PLAT"
  # status captured first: `status | grep -q` under pipefail fails by SIGPIPE when the server runs (then down would
  # stop a PostgreSQL that others were using)
  services_status=$(bash docker/services.sh status)
  if [[ $services_status != *"postgresql: running"* ]]; then
    bash docker/services.sh start
    touch "$PLAT/started_services"                 # down stops them only then
  fi
  platform_env
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  "$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U govlake -d departments -qtA -v ON_ERROR_STOP=1 >/dev/null <<SQL
SELECT 'CREATE DATABASE airflow OWNER govlake' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname='airflow') \gexec
SQL
  if [[ ! -s $AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE ]]; then  # the admin password, made once
    (umask 077; "$VENV_BIN/python" -c 'import json, secrets; print(json.dumps({"admin": secrets.token_urlsafe(12)}))' \
      >"$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE")
    rm -f "$PLAT/password_shown"
  fi
  if [[ -z $(pid_of scheduler || true) ]]; then
    echo "platform: airflow db migrate"
    "$VENV_BIN/airflow" db migrate >>"$PLAT/logs/db-migrate.log" 2>&1 \
      || { tail -30 "$PLAT/logs/db-migrate.log" >&2; exit 1; }
    # the departments' connections, added when missing (one edited in the UI is kept)
    bash docker/services.sh connections >"$PLAT/connections.json"
    "$VENV_BIN/airflow" connections import "$PLAT/connections.json" >>"$PLAT/logs/db-migrate.log" 2>&1 \
      || { tail -30 "$PLAT/logs/db-migrate.log" >&2; exit 1; }
  fi
  launch worker-logs "$WORKER_LOG_PORT" "$VENV_BIN/python" -m govlake.serve.airflow_logs --port "$WORKER_LOG_PORT"
  launch trigger-logs "$TRIGGER_LOG_PORT" "$VENV_BIN/python" -m govlake.serve.airflow_logs --port "$TRIGGER_LOG_PORT"
  launch api-server "$AIRFLOW_PORT" "$VENV_BIN/airflow" api-server --host 127.0.0.1 --port "$AIRFLOW_PORT" --workers 1
  launch scheduler - "$VENV_BIN/airflow" scheduler --skip-serve-logs
  launch dag-processor - "$VENV_BIN/airflow" dag-processor
  launch triggerer - "$VENV_BIN/airflow" triggerer --skip-serve-logs
  "$VENV_BIN/python" -m govlake.serve.reports_http start --port "$REPORTS_PORT" --dir "$GOVLAKE_HOME/reports"
  if optional sql_endpoint GOVLAKE_SQL_ENDPOINT; then "$VENV_BIN/python" -m govlake.serve.sql_endpoint start; fi
  if optional dashboard GOVLAKE_DASHBOARD; then "$VENV_BIN/python" -m govlake.serve.dashboard start; fi
  wait_port worker-logs "$WORKER_LOG_PORT" 30
  wait_port trigger-logs "$TRIGGER_LOG_PORT" 30
  wait_port api-server "$AIRFLOW_PORT" 180
  echo
  echo "GovLake platform is up:"
  echo "  Airflow UI      $AIRFLOW_URL/   (user admin)"
  echo "  reports         $REPORTS_URL/   (Data Docs: $REPORTS_URL/gx/uncommitted/data_docs/local_site/index.html)"
  if optional sql_endpoint GOVLAKE_SQL_ENDPOINT; then
    echo "  SQL endpoint    jdbc:hive2://127.0.0.1:${GOVLAKE_SQL_PORT:-10000}/"; fi
  if optional dashboard GOVLAKE_DASHBOARD; then
    echo "  dashboard       http://127.0.0.1:${GOVLAKE_DASHBOARD_PORT:-8501}/"; fi
  if [[ ! -f $PLAT/password_shown ]]; then      # printed by the first successful up only
    echo "  admin password  $("$VENV_BIN/python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["admin"])' \
      "$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE")   (shown once; kept in $AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE)"
    touch "$PLAT/password_shown"
  else
    echo "  admin password  in $AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"
  fi
}

descendants() {  # every process below pid $1 (a running task's supervisor and Spark driver leave the group)
  local child
  for child in $(pgrep -P "$1" || true); do echo "$child"; descendants "$child"; done
}

any_alive() { local p; for p in "$@"; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }

stop_pid() {  # stop_pid NAME: SIGTERM to its process group and every descendant, SIGKILL after 30 s
  local name=$1 pid tree
  pid=$(pid_of "$name") || { rm -f "$PLAT/$name.pid"; return 0; }
  tree=$(descendants "$pid")
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  # shellcheck disable=SC2086
  [[ -n $tree ]] && kill -TERM $tree 2>/dev/null || true
  for _ in $(seq 1 60); do
    kill -0 -- "-$pid" 2>/dev/null || any_alive $tree || break   # shellcheck disable=SC2086
    sleep 0.5
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
  # shellcheck disable=SC2086
  [[ -n $tree ]] && kill -KILL $tree 2>/dev/null || true
  rm -f "$PLAT/$name.pid"
  echo "platform: $name stopped"
}

down() {
  # optional services: stopped whenever their module exists (they may have been started without the skip flag)
  if [[ -f govlake/serve/dashboard.py ]]; then "$VENV_BIN/python" -m govlake.serve.dashboard stop || true; fi
  if [[ -f govlake/serve/sql_endpoint.py ]]; then "$VENV_BIN/python" -m govlake.serve.sql_endpoint stop || true; fi
  "$VENV_BIN/python" -m govlake.serve.reports_http stop
  for ((i = ${#AIRFLOW_SERVICES[@]} - 1; i >= 0; i--)); do stop_pid "${AIRFLOW_SERVICES[$i]}"; done
  if [[ -f $PLAT/started_services ]]; then
    bash docker/services.sh stop
    rm -f "$PLAT/started_services"
  fi
}

status() {
  local name pid
  for name in "${AIRFLOW_SERVICES[@]}"; do
    if pid=$(pid_of "$name"); then echo "$name: running (pid $pid)"; else echo "$name: stopped"; fi
  done
  echo "  Airflow UI $AIRFLOW_URL/"
  PYTHONPATH=$ROOT "$VENV_BIN/python" -m govlake.serve.reports_http status --port "$REPORTS_PORT" || true
  if optional sql_endpoint GOVLAKE_SQL_ENDPOINT; then PYTHONPATH=$ROOT "$VENV_BIN/python" -m govlake.serve.sql_endpoint status || true; fi
  if optional dashboard GOVLAKE_DASHBOARD; then PYTHONPATH=$ROOT "$VENV_BIN/python" -m govlake.serve.dashboard status || true; fi
  bash docker/services.sh status
}

case "${1:-}" in
  up) up ;;
  down) export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}; down ;;
  status) status ;;
  env) platform_env; compgen -e | grep -E '^(AIRFLOW_|AIRFLOW__|GOVLAKE_|PYTHONPATH$|PATH$)' \
         | grep -v -E 'SECRET|JWT_SECRET' | while read -r v; do printf 'export %s=%q\n' "$v" "${!v}"; done ;;
  *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
