# GovLake — the two Quick start commands and their parts. Every target installs what it needs first.
SHELL := /bin/bash
PY := .venv/bin/python
DATE ?= 2025-06-30
export PYTHONPATH := $(CURDIR)
export AIRFLOW_HOME := $(CURDIR)/var/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export GX_ANALYTICS_ENABLED := False

.PHONY: demo test test-fast lint setup setup-servers services-start services-stop dag-test sql up down status clean

## demo: the main job — the whole pipeline on the bundled sample municipality (embedded sources)
demo: setup
	$(PY) -m sample.embedded --date $(DATE)
	$(PY) -m govlake.pipeline run --date $(DATE)

## test: the whole test suite against real PostgreSQL and FerretDB (started here, stopped after)
test: setup-servers
	@bash docker/services.sh start
	@set -a; eval "$$(bash docker/services.sh env)"; set +a; \
	  $(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS); rc=$$?; \
	  [[ -n "$$GOVLAKE_KEEP_SERVICES" ]] || bash docker/services.sh stop; exit $$rc

## test-fast: skip the slow end-to-end tests
test-fast: PYTEST_ARGS = -m "not slow"
test-fast: test

## lint: ruff (style, imports, bug patterns) and mypy (types) over the package, the generator, DAGs, tests and benchmarks
lint: setup
	.venv/bin/ruff check .
	.venv/bin/mypy

setup:
	@bash docker/setup.sh

setup-servers:
	@bash docker/setup.sh --servers

services-start: setup-servers
	@bash docker/services.sh start

services-stop:
	@bash docker/services.sh stop

## dag-test: `airflow dags test` of the daily DAG against the real servers (sample loaded first)
dag-test: setup-servers
	@bash docker/services.sh start
	@set -a; eval "$$(bash docker/services.sh env)"; set +a; bash docker/dag_test.sh $(DATE)

## up / down / status: the day-to-day platform on loopback (Airflow UI, scheduler, reports server; docker/platform.sh)
up: setup-servers
	@bash docker/platform.sh up

down: setup-servers
	@bash docker/platform.sh down

status: setup-servers
	@bash docker/platform.sh status

## sql: make sql Q="SELECT * FROM marts.population_by_district_sex_age LIMIT 10"
sql: setup
	$(PY) -m govlake.pipeline sql "$(Q)"

clean:
	rm -rf var
