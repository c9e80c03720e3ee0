"""The Airflow DAG: imports cleanly (DagBag), wires the stages, stays light at parse time."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from govlake.core.config import REPO_ROOT
from govlake.extract.registry import load_registry


def _airflow_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PYTHONPATH": str(REPO_ROOT)}


PARSE = r"""
import inspect, json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
dag = bag.dags.get("govlake_daily")
heavy = sorted(m for m in ("pyspark", "great_expectations", "pandas", "govlake.pipeline", "delta") if m in sys.modules)
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "tasks": sorted(dag.task_ids) if dag else None,
    "upstream": {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks} if dag else None,
    "retries": dag.default_args.get("retries") if dag else None,
    "trigger_rules": {t.task_id: getattr(t.trigger_rule, "value", t.trigger_rule) for t in dag.tasks} if dag else None,
    "timetable": type(dag.timetable).__name__ if dag else None,
    "heavy_imports": heavy,
    "params": {k: [dag.params.get_param(k).value, dag.params.get_param(k).schema.get("type")]
               for k in dag.params} if dag else None,
    "extract_args": sorted(inspect.signature(dag.get_task("extract_hukou").python_callable).parameters)
                    if dag else None,
}))
"""


@pytest.fixture(scope="module")
def parsed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dagbag")
    out = subprocess.run([sys.executable, "-c", PARSE, str(REPO_ROOT / "dags")], env=_airflow_env(tmp),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_dagbag_imports_without_errors(parsed):
    assert parsed["errors"] == {}
    assert parsed["retries"] == 2
    assert parsed["timetable"] == "CronDataIntervalTimetable"


def test_dag_has_one_extract_and_validate_task_per_registered_source(parsed):
    sources = sorted(load_registry())
    expected = sorted([f"extract_{s}" for s in sources] + [f"validate_{s}" for s in sources]
                      + ["data_docs", "unify", "marts", "analysis"])
    assert parsed["tasks"] == expected
    up = parsed["upstream"]
    assert all(up[f"validate_{s}"] == [f"extract_{s}"] for s in sources)
    assert up["unify"] == [f"validate_{s}" for s in sources]
    assert up["data_docs"] == [f"validate_{s}" for s in sources]  # the site once, after every validate task
    assert parsed["trigger_rules"]["data_docs"] == "all_done"  # also shows the tables of a failed validate task
    assert (up["marts"], up["analysis"]) == (["unify"], ["marts"])


def test_parsing_imports_no_spark_gx_or_jobs(parsed):
    assert parsed["heavy_imports"] == []


def test_backfill_and_redeliver_params_default_to_false_and_reach_run_extract(parsed):
    import inspect

    from govlake.extract.stage import run_extract
    from govlake.orchestration import extract_options

    assert parsed["params"] == {"backfill": [False, "boolean"], "redeliver": [False, "boolean"]}
    assert {"params", "dag_run"} <= set(parsed["extract_args"])  # the extract task reads both
    off = {"backfill": False, "redeliver": False}
    assert extract_options({"backfill": False, "redeliver": False}, None) == off  # a scheduled run
    assert extract_options({"backfill": True}, {}) == {**off, "backfill": True}  # the param checked in the form
    assert extract_options({"backfill": False}, {"backfill": True}) == {**off, "backfill": True}  # conf wins
    assert extract_options({"backfill": True}, {"backfill": "false"}) == off
    assert extract_options(None, {"redeliver": "TRUE"}) == {**off, "redeliver": True}
    with pytest.raises(ValueError, match="backfill must be true or false, not 'yes'"):
        extract_options({"backfill": False}, {"backfill": "yes"})
    with pytest.raises(ValueError, match="redeliver must be true or false, not 1"):
        extract_options(None, {"redeliver": 1})
    bound = inspect.signature(run_extract).bind(None, None, None, sources=["hukou"], data_interval=None,
                                                **extract_options(None, {"backfill": True, "redeliver": True}))
    assert bound.arguments["backfill"] is True and bound.arguments["redeliver"] is True


def test_business_date_is_the_shanghai_day_of_the_interval_start():
    import datetime as dt

    from govlake.orchestration import business_date

    start = dt.datetime(2025, 6, 29, 16, 0, tzinfo=dt.UTC)  # 2025-06-30 00:00 Asia/Shanghai
    day = business_date(start, start + dt.timedelta(days=1))
    assert day == dt.date(2025, 6, 30) and type(day) is dt.date
    assert business_date(None, None, dt.datetime(2025, 6, 30, 3, tzinfo=dt.UTC)) == dt.date(2025, 6, 30)
    with pytest.raises(ValueError):
        business_date()


@pytest.mark.slow
@pytest.mark.servers
def test_data_docs_task_builds_nothing_when_data_docs_are_off(monkeypatch, tmp_path):
    """With GOVLAKE_DATA_DOCS=0 the validate tasks run no checkpoint: the data_docs task has no site to build and
    returns no link (it raised FileNotFoundError before, and its retries held the DAG run)."""
    import datetime as dt

    from govlake.orchestration import data_docs

    monkeypatch.setenv("GOVLAKE_HOME", str(tmp_path))
    monkeypatch.setenv("GOVLAKE_DATA_DOCS", "0")
    assert data_docs(dt.date(2025, 6, 30)) == []
    monkeypatch.setenv("GOVLAKE_DATA_DOCS", "1")
    with pytest.raises(FileNotFoundError, match="no Great Expectations project"):
        data_docs(dt.date(2025, 6, 30))


def test_airflow_dags_test_runs_every_task_against_the_real_servers(dag_run, spark):
    """`airflow dags test` of govlake_daily in servers mode: PostgreSQL (JDBC) and FerretDB sources."""
    from govlake.extract.stage import raw_tables
    from govlake.unified.stage import UNIFIED_TABLES

    settings, returncode, log = dag_run
    assert returncode == 0, log[-5000:]
    assert "Traceback" not in log, log[log.index("Traceback") - 2000:][:6000]
    ledger = spark.read.format("delta").load(settings.table_path("ops", "exchange_ledger")).collect()
    assert sorted((r.raw_table, str(r.logical_date), r.status) for r in ledger) == sorted(
        (f"raw.{t}", "2025-06-30", "written") for t in raw_tables())
    assert len(ledger) == len(raw_tables()) == 15
    assert all(r.rows_read == r.rows_written for r in ledger)
    assert {r.raw_table: r.rows_written for r in ledger}["raw.hukou_persons"] > 0
    results = spark.read.format("delta").load(settings.table_path("ops", "validation_results"))
    assert results.where("table LIKE 'raw.%'").select("table").distinct().count() == 15
    # the unify task's audit: every suite, no fail rule failed
    unified_results = results.where("table LIKE 'unified.%'")
    assert sorted(r[0] for r in unified_results.select("table").distinct().collect()) == sorted(
        f"unified.{t}" for t in UNIFIED_TABLES)
    assert unified_results.where("action = 'fail' AND failed > 0").count() == 0
    persons = spark.read.format("delta").load(settings.table_path("unified", "person")).count()
    person_sources = [f"{name}_{obj.name}" for name, spec in load_registry().items() for obj in spec.objects.values()
                      if obj.unified is not None and obj.unified.entity == "person"]
    assert len(person_sources) == 9  # incl. civil marriages and health births (one record per role)
    staged = sum(spark.read.format("delta").load(settings.table_path("staging", t)).count() for t in person_sources)
    assert 0 < persons <= staged
    report = settings.reports_dir / "decision_support" / "2025-06-30" / "index.html"
    assert report.is_file()
    assert (settings.reports_dir / "baobiao" / "govlake_2025-06-30.xlsx").is_file()  # the analysis task's workbook
