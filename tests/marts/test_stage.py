"""The marts stage writes every mart through the theme registry: the first-cut marts first, one failpoint per
written table, and a rerun of a past date writes no whole table."""
from __future__ import annotations

from datetime import date

from govlake.core import failpoints, lake
from govlake.core.config import Settings
from govlake.marts import population, themes
from govlake.marts.reference import divisions_frame
from govlake.marts.stage import run_marts
from tests.marts.test_themes import SNAP, _events, _persons

EARLIER = date(2025, 6, 23)


def test_run_marts_writes_the_first_cut_marts_through_the_themes_and_skips_whole_tables_on_a_past_date(
        spark, settings, tmp_path):
    own = Settings(**{**settings.__dict__, "lakehouse": str(tmp_path / "lake")})
    person, event = _persons(spark), _events(spark)
    person.write.format("delta").save(own.table_path("unified", "person"))
    event.write.format("delta").save(own.table_path("unified", "event"))
    for day in (EARLIER, SNAP):
        lake.record_publication(spark, own, "unified", day, ["person", "event"])

    reached = failpoints.reached.get("marts.after_table", 0)
    out = run_marts(spark, own, SNAP)
    written = out["theme_tables_rewritten"]
    assert out["historical"] is False and out["event_mart_rewritten"] is True
    assert list(written)[:3] == list(themes.FIRST_TABLES)  # the order the stage always wrote them in
    assert failpoints.reached["marts.after_table"] - reached == len(written)  # one failpoint per written table
    divisions = divisions_frame(spark)
    for name, expected in [
        ("population_by_district_sex_age", population.population_by_district_sex_age(person, divisions, SNAP)),
        ("population_exclusions", population.population_exclusions(person, SNAP)),
        ("grid_events_by_district_category_week", population.grid_events_by_district_category_week(event, divisions)),
    ]:
        got = spark.read.format("delta").load(own.table_path("marts", name))
        assert got.columns == expected.columns and lake.same_content(got, expected), name
    assert out["population_rows"] == population.population_by_district_sex_age(person, divisions, SNAP).count()

    event_mart = own.table_path("marts", "grid_events_by_district_category_week")
    version = lake.table_version(spark, event_mart)
    reached = failpoints.reached["marts.after_table"]
    past = run_marts(spark, own, EARLIER)
    assert past["historical"] is True and past["event_mart_rewritten"] is False
    assert all(n in themes.PARTITIONED_TABLES for n in past["theme_tables_rewritten"])  # no whole table
    assert list(past["theme_tables_rewritten"])[:2] == list(themes.FIRST_TABLES[:2])
    assert failpoints.reached["marts.after_table"] - reached == len(past["theme_tables_rewritten"])
    assert lake.table_version(spark, event_mart) == version
    pop = spark.read.format("delta").load(own.table_path("marts", "population_by_district_sex_age"))
    assert {r.snapshot_date for r in pop.select("snapshot_date").distinct().collect()} == {EARLIER, SNAP}
