"""Issue #6, "Done when": running day N+1 through the unified layer updates only what changed, and a person who
moved (the household registry's 户口迁移登记 of the generator's day N+1) has two residence rows — the day N one
closed on day N+1, the new one current from day N+1.

Day N is the suite's DAG run (``dag_run`` of tests/servers.py: ``airflow dags test`` on the 150-resident sample,
seed 20250630, servers mode), copied so that its own tests see it unchanged. Day N+1 is the same sample generated
one day further, loaded over the shared departments database and FerretDB (so this test is marked
``sample_servers`` and runs after the DAG run's tests), then extracted, validated and unified on the copy.
"""
from __future__ import annotations

import csv
import datetime as dt
import shutil
from pathlib import Path

import pytest

from govlake.core.config import Settings

DAY = dt.date(2025, 6, 30)
NEXT = DAY + dt.timedelta(days=1)


@pytest.mark.slow
@pytest.mark.sample_servers
def test_day_n_plus_1_moves_a_person_and_changes_only_the_persons_it_names(spark, dag_run, pg_url, mongo_url,
                                                                          tmp_path, monkeypatch):
    from pyspark.sql import functions as F

    from govlake.extract.stage import run_extract
    from govlake.quality.stage import run_validate
    from govlake.unified.stage import run_unify
    from sample.generate import generate
    from tests.servers import DagRun

    day_n, returncode, log = dag_run
    assert returncode == 0, log[-5000:]
    monkeypatch.setenv("GOVLAKE_DATA_DOCS", "0")
    monkeypatch.delenv("GOVLAKE_EXTRACT_MODE", raising=False)  # the daily windows, as the scheduler reads them
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path), "GOVLAKE_SOURCES": "servers"})
    shutil.copytree(Path(day_n.lakehouse.removeprefix("file:")), Path(settings.lakehouse.removeprefix("file:")),
                    dirs_exist_ok=True)

    def residence():
        return {tuple(r) for r in spark.read.format("delta").load(settings.table_path("unified", "person_residence"))
                .select("person_id", "community_code", "address", "valid_from", "valid_to", "is_current").collect()}

    before = residence()
    # the DAG run's sample one day further (its day N rows are identical), over the departments' servers
    generate(residents=int(DagRun.RESIDENTS), seed=20250630, logical_date=DAY, target="servers",
             out=settings.sources_dir, pg_url=pg_url, mongo_url=mongo_url, days=2)
    with open(settings.sources_dir / "truth" / "changes.csv", encoding="utf-8") as fh:
        changes = list(csv.DictReader(fh))
    run_extract(spark, settings, NEXT)
    run_validate(spark, settings, NEXT)
    second = run_unify(spark, settings, NEXT)
    after = residence()

    links = spark.read.format("delta").load(settings.table_path("unified", "person_link"))
    person_of = {r.record_key: r.person_id for r in links.collect()}
    movers = {person_of[f"hukou:persons:{c['person_key']}"] for c in changes
              if c["change_kind"] == "move" and c["table"] == "residence_changes"}
    assert movers, "the sample moves at least one household on day N+1"
    for pid in movers:
        rows = sorted((r for r in after if r[0] == pid), key=lambda r: r[3])
        assert len(rows) == 2, rows
        (old, new) = rows
        assert (old[3], old[4], old[5]) == (DAY, NEXT, False)   # closed on day N+1 (valid_to exclusive)
        assert (new[3], new[4], new[5]) == (NEXT, None, True)
        assert (old[1], old[2]) != (new[1], new[2])              # a different community or address
    # nothing else: every residence row that changed belongs to a person with a record delivered on day N+1
    changed = {r[0] for r in before ^ after}
    delivered = {r.person_id for r in links.where(F.col("batch_date") == F.lit(NEXT)).collect()}
    assert movers <= changed <= delivered
    assert len(delivered) < len(set(person_of.values()))  # day N+1 is not a full reload
    assert second["person_residence"]["inserted"] >= len(movers)

    # A rerun of day N after day N+1 reproduces day N (issue #18): raw N kept as delivered (the sources now hold
    # N+1's state), unify N keeps day N's publication, day N's marts are computed from it, not from N+1's state.
    from govlake.core import digest, lake
    from govlake.marts.stage import run_marts

    def partitions(layer, table, column, day):
        return spark.read.format("delta").load(settings.table_path(layer, table)).where(F.col(column) == F.lit(day))

    raw_n = {t: digest.table_digest(partitions("raw", t, "_logical_date", DAY), digest.VOLATILE_COLUMNS)
             for t in ("hukou_persons", "health_births", "wangge_events")}
    marts_n = {t: digest.table_digest(partitions("marts", t, "snapshot_date", DAY))
               for t in ("population_natural_structure", "population_households", "population_by_district_sex_age")}
    published_n = lake.published_versions(spark, settings, "unified", DAY)
    extracted = run_extract(spark, settings, DAY)
    assert {r["status"] for r in extracted} == {"kept"}
    run_validate(spark, settings, DAY)
    assert run_unify(spark, settings, DAY)["historical"] is True
    run_marts(spark, settings, DAY)
    assert lake.published_versions(spark, settings, "unified", DAY) == published_n
    assert {t: digest.table_digest(partitions("raw", t, "_logical_date", DAY), digest.VOLATILE_COLUMNS)
            for t in raw_n} == raw_n
    assert {t: digest.table_digest(partitions("marts", t, "snapshot_date", DAY)) for t in marts_n} == marts_n
