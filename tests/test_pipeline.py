"""End to end: the whole pipeline on a small sample municipality (run by Airflow against the real servers,
fixture ``dag_run``), its invariants, and a rerun of the same logical date that changes nothing."""
from __future__ import annotations

import csv
import datetime as dt

import pytest

from jobs import lake

DAY = dt.date(2025, 6, 30)


@pytest.fixture(scope="module")
def run(dag_run):
    """The whole pipeline once (the DAG run of tests/servers.py: 150 residents, servers mode); its settings."""
    settings, returncode, log = dag_run
    assert returncode == 0, log[-5000:]
    return settings


def _faults(settings, source, table):
    with open(settings.sources_dir / "truth" / "faults.csv", encoding="utf-8") as fh:
        return [r for r in csv.DictReader(fh) if (r["source"], r["table"]) == (source, table)]


@pytest.mark.slow
def test_extracted_equals_accepted_plus_quarantined_for_every_raw_table(spark, run):
    from jobs.pipeline import raw_tables

    settings = run
    ledger = {r.raw_table: r for r in spark.read.format("delta").load(settings.table_path("ops", "exchange_ledger")).collect()}
    assert sorted(ledger) == sorted(f"raw.{t}" for t in raw_tables())

    def rows(layer, table):
        return (spark.read.format("delta").load(settings.table_path(layer, table))
                .where(f"_logical_date = DATE'{DAY}'").count())

    counts = {}
    for raw_table, entry in ledger.items():
        table = raw_table.split(".", 1)[1]
        counts[table] = (rows("raw", table), rows("staging", table), rows("quarantine", table))
        assert entry.rows_read == entry.rows_written == counts[table][0] == counts[table][1] + counts[table][2], table
    assert counts["hukou_persons"][1] > 0 and counts["hukou_persons"][2] > 0


@pytest.mark.slow
def test_injected_faults_are_quarantined_with_their_rule(spark, run):
    settings = run
    quarantine = spark.read.format("delta").load(settings.table_path("quarantine", "hukou_persons")).collect()
    rules_by_key = {}
    for row in quarantine:
        rules_by_key.setdefault(row["_source_key"], set()).update(row["_rule_ids"])
    expected_rule = {"id_bad_checksum": "hukou_persons.id_no.gb11643",
                     "id_float_mangled": "hukou_persons.id_no.gb11643",
                     "id_null": "hukou_persons.id_no.not_null",
                     "birth_date_impossible": "hukou_persons.birth_date.yyyymmdd",
                     "duplicate_row": "hukou_persons.person_no.unique"}
    faults = [f for f in _faults(settings, "hukou", "persons") if f["fault_kind"] in expected_rule]
    assert {f["fault_kind"] for f in faults} == set(expected_rule)
    for fault in faults:
        assert expected_rule[fault["fault_kind"]] in rules_by_key.get(fault["row_key"], set()), fault
    # repairable faults are not quarantined for the repaired column, and land repaired in unified
    repaired = [f for f in _faults(settings, "hukou", "persons") if f["fault_kind"] in ("id_lowercase_x", "id_fullwidth")]
    assert repaired
    person_ids = {r.person_id for r in spark.read.format("delta").load(settings.table_path("unified", "person"))
                  .select("person_id").collect()}
    for fault in repaired:
        assert "hukou_persons.id_no.gb11643" not in rules_by_key.get(fault["row_key"], set())
        assert fault["original_value"] in person_ids


@pytest.mark.slow
def test_layers_are_filled_and_queryable_by_name(spark, run):
    from jobs.pipeline import findings

    settings = run
    names = lake.register_tables(spark, settings)
    for name in ("raw.hukou_persons", "unified.person", "unified.event", "marts.population_by_district_sex_age",
                 "marts.grid_events_by_district_category_week", "analysis.age_structure_by_district",
                 "analysis.top_event_categories_by_district", "ops.validation_results"):
        assert name in names
    pop = spark.sql("SELECT sum(population) FROM marts.population_by_district_sex_age").collect()[0][0]
    excluded = spark.sql("SELECT sum(persons) FROM marts.population_exclusions").collect()[0][0]
    current = spark.sql("SELECT count(*) FROM unified.person WHERE is_current").collect()[0][0]
    assert pop + excluded == current
    city = spark.sql("SELECT population FROM analysis.age_structure_by_district WHERE district_code = '130100'").collect()
    assert city[0][0] == pop
    assert len(findings(spark, settings, DAY)) >= 5
    assert (settings.reports_dir / "decision_support" / DAY.isoformat() / "index.html").is_file()


@pytest.mark.slow
def test_rerun_of_the_same_logical_date_changes_no_table(spark, run):
    from jobs.pipeline import run_all

    settings = run
    names = lake.register_tables(spark, settings)

    def snapshot():
        return {n: sorted(map(str, spark.table(n).collect())) for n in names}

    before = snapshot()
    versions = {n: spark.sql(f"DESCRIBE HISTORY {n}").agg({"version": "max"}).collect()[0][0]
                for n in names if n.startswith("raw.")}
    run_all(settings, DAY, generate_sample=False, spark=spark, data_docs=False)
    assert snapshot() == before
    assert {n: spark.sql(f"DESCRIBE HISTORY {n}").agg({"version": "max"}).collect()[0][0] for n in versions} == versions
