"""Issue #6, "Done when": running day N+1 through the unified layer updates only what changed, and a person who
moved (the household registry's 户口迁移登记 of the generator's day N+1) has two residence rows — the day N one
closed on day N+1, the new one current from day N+1. Embedded sources (SQLite / JSON lines), 40 residents."""
from __future__ import annotations

import csv
import datetime as dt

import pytest

from jobs.config import Settings

DAY = dt.date(2025, 6, 30)
NEXT = DAY + dt.timedelta(days=1)
RESIDENTS = 40
SEED = 20250630


@pytest.mark.slow
def test_day_n_plus_1_moves_a_person_and_changes_only_the_persons_it_names(spark, tmp_path, monkeypatch):
    from pyspark.sql import functions as F

    from jobs.pipeline import run_extract, run_unify, run_validate
    from jobs.sample.generate import generate

    monkeypatch.setenv("GOVLAKE_DATA_DOCS", "0")
    settings = Settings.from_env({"GOVLAKE_HOME": str(tmp_path), "GOVLAKE_SOURCES": "embedded"})
    sample = dict(residents=RESIDENTS, seed=SEED, logical_date=DAY, target="embedded", out=settings.sources_dir)

    def run_day(day):
        run_extract(spark, settings, day)
        run_validate(spark, settings, day)
        return run_unify(spark, settings, day)

    def residence():
        return {tuple(r) for r in spark.read.format("delta").load(settings.table_path("unified", "person_residence"))
                .select("person_id", "community_code", "address", "valid_from", "valid_to", "is_current").collect()}

    generate(**sample)
    run_day(DAY)
    before = residence()
    generate(**sample, days=2)  # the same sample one day further: its day N rows are identical
    with open(settings.sources_dir / "truth" / "changes.csv", encoding="utf-8") as fh:
        changes = list(csv.DictReader(fh))
    second = run_day(NEXT)
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
