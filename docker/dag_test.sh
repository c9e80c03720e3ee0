#!/usr/bin/env bash
# `airflow dags test govlake_daily` against the real servers, for one logical date:
# loads the sample municipality into PostgreSQL (hukou, civil) and FerretDB (wangge) plus its
# file drop, then runs every task of the DAG in this process, in dependency order.
# Needs GOVLAKE_PG_URL, GOVLAKE_MONGO_URL and the AIRFLOW_CONN_GOVLAKE_* variables
# (`eval "$(docker/services.sh env)"`). Usage: docker/dag_test.sh [YYYY-MM-DD] [residents]
set -euo pipefail
cd "$(dirname "$0")/.."
DATE=${1:-2025-06-30}
RESIDENTS=${2:-300}
: "${GOVLAKE_PG_URL:?run: eval \"\$(docker/services.sh env)\"}" "${GOVLAKE_MONGO_URL:?}"
export GOVLAKE_HOME=${GOVLAKE_HOME:-$PWD/var/dagtest}
export GOVLAKE_SOURCES=servers
export AIRFLOW_HOME=${AIRFLOW_HOME_DAGTEST:-$GOVLAKE_HOME/airflow}
export AIRFLOW__CORE__DAGS_FOLDER=$PWD/dags
export AIRFLOW__CORE__PLUGINS_FOLDER=$PWD/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DEFAULT_TIMEZONE=Asia/Shanghai
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
.venv/bin/python -m sample.generate --residents "$RESIDENTS" --seed 20250630 --logical-date "$DATE" \
  --target servers --out "$GOVLAKE_HOME/sources" --pg-url "$GOVLAKE_PG_URL" --mongo-url "$GOVLAKE_MONGO_URL"
.venv/bin/airflow db migrate >/dev/null
# The run for business day D is the interval [D 00:00, D+1 00:00) Asia/Shanghai; like the
# scheduler, trigger it when the interval closes (D+1 00:00): Airflow infers that interval.
.venv/bin/airflow dags test govlake_daily "$(date -d "$DATE + 1 day" +%F)T00:00:00+08:00"
