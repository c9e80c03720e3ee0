"""The validate stage over several raw tables (jobs.pipeline.run_validate): tables validated in parallel threads
give each table's own exact counts, in the order asked, and a table stopped by a fail rule publishes nothing while
the others are published."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from jobs import lake
from jobs.config import Settings
from jobs.pipeline import run_validate, validate_threads
from jobs.quality import FailRuleViolated

D = dt.date(2025, 6, 30)
RAW_SCHEMA = ("k string, id_no string, _row_number long, _source string, _source_table string, _batch_id string,"
              " _logical_date date")
GOOD = "11010519491231002X"


def _suite(table: str, not_null_action: str) -> dict:
    return {"name": f"raw.{table}", "meta": {"table": f"raw.{table}", "key_columns": ["k"]}, "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "k"},
         "meta": {"rule_id": f"{table}.k.not_null", "action": not_null_action}},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "k"},
         "meta": {"rule_id": f"{table}.k.unique", "action": "quarantine"}},
        {"type": "expect_column_values_to_be_valid_gb11643_id", "kwargs": {"column": "id_no"},
         "meta": {"rule_id": f"{table}.id.gb11643", "action": "quarantine"}},
    ]}


#: table → (suite's action for a NULL key, rows (k, id_no))
TABLES = {
    "t_a": ("quarantine", [("A1", GOOD), ("A2", "11010519491231007X"), ("A1", GOOD), (None, GOOD)]),
    "t_b": ("fail", [("B1", GOOD), (None, GOOD), ("B3", GOOD)]),
    "t_c": ("quarantine", [("C1", GOOD), ("C2", GOOD), ("C3", "123")]),
}


@pytest.fixture()
def home(spark, tmp_path):
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path)})
    suites = tmp_path / "suites"
    suites.mkdir()
    for table, (action, rows) in TABLES.items():
        (suites / f"raw.{table}.json").write_text(json.dumps(_suite(table, action)), encoding="utf-8")
        raw = spark.createDataFrame([(*r, i + 1, "t", table, f"t.{table}:2025-06-30", D) for i, r in enumerate(rows)],
                                    RAW_SCHEMA)
        lake.replace_partition(raw, settings.table_path("raw", table), "_logical_date", D)
    return settings, suites


def _published(spark, settings, layer: str, table: str) -> list[str] | None:
    path = settings.table_path(layer, table)
    if not lake.exists(spark, path):
        return None
    key = "k" if layer == "staging" else "_source_key"
    return sorted(str(r[key]) for r in spark.read.format("delta").load(path).collect())


def _results(spark, settings) -> list[tuple]:
    rows = spark.read.format("delta").load(settings.table_path("ops", "validation_results")).collect()
    return sorted((r["table"], r["rule_id"], r["evaluated"], r["failed"]) for r in rows)


def test_parallel_tables_give_the_expected_results_and_a_fail_rule_stops_only_its_table(spark, home):
    settings, suites = home
    # three tables two at a time, t_b stopped by its fail rule in the middle
    with pytest.raises(FailRuleViolated, match=r"t_b\.k\.not_null failed for 1 of 3 rows"):
        run_validate(spark, settings, D, tables=["t_a", "t_b", "t_c"], data_docs=False, threads=2,
                     suites_dir=suites)
    # t_b published nothing; t_a and t_c were validated and published although t_b stopped, each with exactly
    # the counts of validating it alone
    assert _published(spark, settings, "staging", "t_b") is None
    assert _published(spark, settings, "quarantine", "t_b") is None
    assert _results(spark, settings) == [
        ("raw.t_a", "t_a.id.gb11643", 4, 1), ("raw.t_a", "t_a.k.not_null", 4, 1), ("raw.t_a", "t_a.k.unique", 3, 1),
        ("raw.t_c", "t_c.id.gb11643", 3, 1), ("raw.t_c", "t_c.k.not_null", 3, 0), ("raw.t_c", "t_c.k.unique", 3, 0)]
    assert _published(spark, settings, "staging", "t_a") == ["A1"]
    assert _published(spark, settings, "quarantine", "t_a") == ["A1", "A2", "∅"]
    assert _published(spark, settings, "staging", "t_c") == ["C1", "C2"]
    assert _published(spark, settings, "quarantine", "t_c") == ["C3"]
    # the results come back in the order asked, whichever table finished first
    two = run_validate(spark, settings, D, tables=["t_c", "t_a"], data_docs=False, threads=2, suites_dir=suites)
    assert [(r["table"], r["raw"], r["accepted"], r["quarantined"]) for r in two] == [
        ("raw.t_c", 3, 2, 1), ("raw.t_a", 4, 1, 3)]


def test_validate_threads_from_the_environment():
    assert validate_threads({}) == 2
    assert validate_threads({"GOVLAKE_VALIDATE_THREADS": "1"}) == 1
    for bad in ("0", "two", "-1", ""):
        with pytest.raises(ValueError, match="GOVLAKE_VALIDATE_THREADS must be a positive integer"):
            validate_threads({"GOVLAKE_VALIDATE_THREADS": bad})
