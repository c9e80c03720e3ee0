"""Distribution back to departments: a shared dataset into the subscriber's exchange schema (real PostgreSQL)."""
from __future__ import annotations

import datetime as dt

import pytest

from govlake.core.config import Settings
from govlake.exchange.distribution import cut_dataset, distribute
from govlake.extract.registry import SourceSpec, Subscription

DAY = dt.date(2025, 6, 30)
SUB = Subscription(name="population_by_district", dataset="marts.population_by_district_sex_age",
                   columns=("district_code", "sex_code", "population"), where="district_code LIKE '1301%'",
                   date_column="snapshot_date")
SCHEMA = "snapshot_date date, district_code string, sex_code string, population long, secret string"


def test_cut_dataset_keeps_the_run_and_what_the_subscriber_may_see(spark):
    df = spark.createDataFrame([(DAY, "130102", "1", 5, "x"), (DAY, "130104", "2", 7, "y"),
                                (DAY, "110101", "1", 9, "z"), (DAY - dt.timedelta(days=1), "130102", "1", 4, "w")],
                               SCHEMA)
    out = cut_dataset(df, SUB, DAY)
    assert out.columns == ["district_code", "sex_code", "population"]
    assert [tuple(r) for r in out.collect()] == [("130102", "1", 5), ("130104", "2", 7)]
    with pytest.raises(ValueError, match="subscription population_by_district: column\\(s\\) \\['sex_code'\\]"):
        cut_dataset(df.drop("sex_code"), SUB, DAY)


@pytest.mark.servers
def test_distribution_is_idempotent_per_run(spark, tmp_path, pg_engine, pg_url, monkeypatch):
    import sqlalchemy as sa

    with pg_engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA IF EXISTS exchange_testciv CASCADE"))
    monkeypatch.setenv("AIRFLOW_CONN_GOVLAKE_TESTCIV", pg_url.replace("postgresql+psycopg", "postgresql"))
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path)})
    path = settings.table_path("marts", "population_by_district_sex_age")
    rows = [(DAY, "130102", "1", 5, "x"), (DAY, "130104", "2", 7, "y"), (DAY, "110101", "1", 9, "z"),
            (DAY + dt.timedelta(days=1), "130102", "1", 6, "w")]
    spark.createDataFrame(rows, SCHEMA).write.format("delta").save(path)
    registry = {"testciv": SourceSpec(source="testciv", department="d", kind="sql", objects={},
                                      connection_id="govlake_testciv", subscriptions=(SUB,))}
    first = distribute(spark, settings, DAY, registry=registry)
    again = distribute(spark, settings, DAY, registry=registry)
    later = distribute(spark, settings, DAY + dt.timedelta(days=1), registry=registry)
    assert [(d.rows, d.target) for d in first] == [(2, "exchange_testciv.population_by_district")]
    assert first[0].checksum == again[0].checksum and later[0].rows == 1
    with pg_engine.connect() as conn:
        got = conn.execute(sa.text("SELECT _logical_date, district_code, sex_code, population, _batch_id "
                                   "FROM exchange_testciv.population_by_district ORDER BY 1, 2")).all()
        ledger = conn.execute(sa.text("SELECT delivery_id, rows FROM exchange_testciv._ledger ORDER BY 1")).all()
    assert [tuple(r) for r in got] == [
        (DAY, "130102", "1", 5, "testciv.population_by_district:2025-06-30"),
        (DAY, "130104", "2", 7, "testciv.population_by_district:2025-06-30"),
        (DAY + dt.timedelta(days=1), "130102", "1", 6, "testciv.population_by_district:2025-07-01")]
    assert [tuple(r) for r in ledger] == [("testciv.population_by_district:2025-06-30", 2),
                                          ("testciv.population_by_district:2025-07-01", 1)]
    central = spark.read.format("delta").load(settings.table_path("ops", "distribution_ledger"))
    assert sorted((r.delivery_id, r.rows) for r in central.collect()) == [
        ("testciv.population_by_district:2025-06-30", 2), ("testciv.population_by_district:2025-07-01", 1)]
