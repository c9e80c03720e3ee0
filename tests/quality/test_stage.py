"""The validate stage over several raw tables (govlake.quality.stage.run_validate): tables validated in parallel threads
give each table's own exact counts, in the order asked, and a table stopped by a fail rule publishes nothing while
the others are published."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from govlake.core import lake
from govlake.core.config import Settings
from govlake.quality.rules import FailRuleViolated
from govlake.quality.stage import run_validate, validate_threads

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


def test_two_versions_of_a_record_in_one_batch_the_newest_reaches_staging_and_unified_person(spark, tmp_path):
    """A department delivers two versions of one person in one batch (same person_no, different updated_at), the
    newer one second in content order: the validate stage keeps the newer in staging (the watermark of
    schemas/sources/hukou.yaml orders the copies), quarantines the older as the duplicate, and the golden record
    carries the newer name."""
    from govlake.extract.registry import load_registry
    from govlake.quality.stage import validate_table
    from govlake.unified import persons as unified

    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path)})
    obj = load_registry()["hukou"].objects["persons"]
    base = {"person_no": "HK1", "id_no": "130102199001011237", "name": "张三", "sex_code": "1",
            "birth_date": "19900101",
            "ethnic_code": "01", "household_no": "H1", "relation_code": "02", "community_code": "130102001001",
            "address": "长安区1号", "phone": "13800000000", "updated_at": "2025-06-29 08:00:00", "education": "80",
            "marital_status": "20", "registration_type": "户籍"}
    rows = [base, {**base, "name": "张珊", "updated_at": "2025-06-30 09:00:00"}]  # 张三 sorts before 张珊
    schema = (", ".join(f"{c} string" for c in obj.columns) + ", _row_number long, _source string, "
              "_source_table string, _batch_id string, _logical_date date")
    raw = spark.createDataFrame([(*(r[c] for c in obj.columns), i + 1, "hukou", "persons", "hukou.persons:2025-06-30",
                                  D) for i, r in enumerate(rows)], schema)
    lake.replace_partition(raw, settings.table_path("raw", "hukou_persons"), "_logical_date", D)

    out = validate_table(spark, settings, "hukou_persons", D, data_docs=False)
    assert (out["raw"], out["accepted"], out["quarantined"]) == (2, 1, 1)
    staged = spark.read.format("delta").load(settings.table_path("staging", "hukou_persons"))
    assert [(r.person_no, r.name, r.updated_at) for r in staged.collect()] == [("HK1", "张珊", "2025-06-30 09:00:00")]
    (held,) = spark.read.format("delta").load(settings.table_path("quarantine", "hukou_persons")).collect()
    assert (held._source_key, list(held._rule_ids), json.loads(held._row)["name"]) == (
        "HK1", ["hukou_persons.person_no.unique"], "张三")

    assert obj.unified is not None
    (person,) = unified.resolve_persons(unified.person_candidates(staged, "hukou", obj.unified), D,
                                        unified.load_survivorship()).collect()
    assert (person.person_id, person.name) == ("130102199001011237", "张珊")
