"""Analysis tables for decision support, computed from the marts.

Pure Spark transforms (``DataFrame -> DataFrame``, no I/O). Contracts:
``tables/analysis.<table>.yaml``.
"""
from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from govlake.core.config import SAMPLE_CITY_CODE
from govlake.marts.population import (
    AGEING_CLASSES,
    NOT_AGEING,
    OLD_AGE_MIN,
    WORKING_AGE_MIN,
    ageing_class,
    per_100_working_age,
    sex_ratio,
    share,
)

__all__ = ["AGEING_CLASSES", "AGEING_FLAG_ZH", "NOT_AGEING", "SAMPLE_CITY_NAME", "age_structure_by_district",
           "event_period", "top_event_categories_by_district"]

#: Name of the sample municipality (GB/T 2260 130100).
SAMPLE_CITY_NAME = "石家庄市"

#: Chinese names of the flags (for reports).
AGEING_FLAG_ZH = {
    "super-aged": "超老龄化",
    "aged society": "深度老龄化",
    "ageing society": "老龄化社会",
    NOT_AGEING: "未老龄化",
}


def _age_group_lower_bound(age_group: Column) -> Column:
    """Lower bound in years of an age-group label (``'05-09'`` → 5, ``'85+'`` → 85)."""
    return F.when(age_group == "85+", 85).otherwise(F.substring(age_group, 1, 2).cast("int"))


def age_structure_by_district(pop_mart: DataFrame, city_code: str = SAMPLE_CITY_CODE,
                              city_name: str = SAMPLE_CITY_NAME) -> DataFrame:
    """Age structure, sex ratio, dependency ratios and ageing class per district and for the city.

    → ``analysis.age_structure_by_district``. One row per (snapshot_date, district_code) of the
    mart (``area_level`` ``'district'``) plus one row per snapshot_date for the whole city
    (``district_code`` = ``city_code``, ``area_level`` ``'city'``) that sums every row of the mart.

    Definitions (broad age groups of the UN / 国家统计局 statistical yearbooks):

    * ``sex_ratio`` = male / female × 100 (males per 100 females; sex codes GB/T 2261.1 '1'/'2';
      persons coded '0'/'9' count in ``population`` only); NULL when there are no females.
    * ``share_0_14``, ``share_15_64``, ``share_65_plus`` = group / population (fractions 0–1).
    * ``child_dependency_ratio`` = (0–14) / (15–64) × 100; ``old_age_dependency_ratio`` =
      (65+) / (15–64) × 100; ``total_dependency_ratio`` = their sum; NULL when nobody is 15–64.
    * ``ageing_flag`` from the 65+ share (:data:`AGEING_CLASSES`): ≥ 20 % ``'super-aged'``,
      ≥ 14 % ``'aged society'``, ≥ 7 % ``'ageing society'``, else ``'not ageing'``; compared in
      exact integer arithmetic (100 × old ≥ threshold × population).

    Args:
        pop_mart: ``marts.population_by_district_sex_age`` (snapshot_date DATE, district_code,
            district_name, sex_code, age_group STRING, population LONG).
        city_code: code of the city row (default the sample city ``'130100'``).
        city_name: name of the city row.

    Returns:
        DataFrame ``snapshot_date`` DATE, ``area_level`` STRING, ``district_code`` STRING,
        ``district_name`` STRING, ``population`` LONG, ``male`` LONG, ``female`` LONG,
        ``sex_ratio`` DOUBLE, ``share_0_14`` DOUBLE, ``share_15_64`` DOUBLE, ``share_65_plus`` DOUBLE,
        ``child_dependency_ratio`` DOUBLE, ``old_age_dependency_ratio`` DOUBLE,
        ``total_dependency_ratio`` DOUBLE, ``ageing_flag`` STRING; key (snapshot_date, district_code).
    """
    lower = _age_group_lower_bound(F.col("age_group"))
    pop = F.col("population")

    def sums(*keys) -> list[Column]:
        return [
            F.sum(pop).cast("long").alias("population"),
            F.sum(F.when(F.col("sex_code") == "1", pop).otherwise(0)).cast("long").alias("male"),
            F.sum(F.when(F.col("sex_code") == "2", pop).otherwise(0)).cast("long").alias("female"),
            F.sum(F.when(lower < WORKING_AGE_MIN, pop).otherwise(0)).cast("long").alias("_young"),
            F.sum(F.when((lower >= WORKING_AGE_MIN) & (lower < OLD_AGE_MIN), pop).otherwise(0)).cast("long")
            .alias("_working"),
            F.sum(F.when(lower >= OLD_AGE_MIN, pop).otherwise(0)).cast("long").alias("_old"),
        ]

    districts = pop_mart.groupBy("snapshot_date", "district_code").agg(
        F.max("district_name").alias("district_name"), *sums()
    ).withColumn("area_level", F.lit("district"))
    city = pop_mart.groupBy("snapshot_date").agg(*sums()).select(
        "snapshot_date",
        F.lit(city_code).alias("district_code"),
        F.lit(city_name).alias("district_name"),
        "population", "male", "female", "_young", "_working", "_old",
        F.lit("city").alias("area_level"),
    )
    both = districts.unionByName(city)

    young, working, old, total = F.col("_young"), F.col("_working"), F.col("_old"), F.col("population")

    # one definition per KPI: govlake.marts.population (also used by marts.population_natural_structure)
    return both.select(
        "snapshot_date",
        "area_level",
        "district_code",
        "district_name",
        "population",
        "male",
        "female",
        sex_ratio(F.col("male"), F.col("female")).alias("sex_ratio"),
        share(young, total).alias("share_0_14"),
        share(working, total).alias("share_15_64"),
        share(old, total).alias("share_65_plus"),
        per_100_working_age(young, working).alias("child_dependency_ratio"),
        per_100_working_age(old, working).alias("old_age_dependency_ratio"),
        per_100_working_age(young + old, working).alias("total_dependency_ratio"),
        ageing_class(old, total).alias("ageing_flag"),
    )


def event_period(period_end: date, weeks: int = 12) -> tuple[date, date]:
    """The ``weeks`` complete ISO weeks (Monday–Sunday) ending on or before ``period_end``.

    Only complete weeks are used so that a result depends on events up to ``period_end`` alone
    (a re-run for an earlier logical date gives the same answer). Example: ``period_end``
    2025-06-30 (a Monday), ``weeks`` 2 → (2025-06-16, 2025-06-29).

    Returns:
        (period_start, last_day): the Monday of the first week and the Sunday of the last week.

    Raises:
        ValueError: ``weeks`` < 1.
    """
    if weeks < 1:
        raise ValueError(f"weeks must be >= 1, got {weeks}")
    next_day = period_end + timedelta(days=1)
    last_monday = next_day - timedelta(days=next_day.weekday()) - timedelta(days=7)
    return last_monday - timedelta(days=7 * (weeks - 1)), last_monday + timedelta(days=6)


def top_event_categories_by_district(event_mart: DataFrame, period_end: date, weeks: int = 12,
                                     top_n: int = 5) -> DataFrame:
    """The ``top_n`` first-level event categories of every district over the last ``weeks`` weeks.

    → ``analysis.top_event_categories_by_district``. The period is :func:`event_period`
    (complete ISO weeks ending on or before ``period_end``; the output's ``period_end`` is the
    Sunday of the last complete week). Both channels (grid and hotline) are summed. Districts
    include the unknown place ``'000000'``; a district without events in the period has no rows.

    Ranking: ``rank`` = row_number over the district ordered by ``events`` descending, then
    ``category_l1`` ascending (Spark's binary UTF-8 order = Unicode code-point order), so ties get
    distinct, deterministic ranks 1..top_n. ``share`` = category events / all events of the
    district in the period (all categories, not only the top ``top_n``).

    Args:
        event_mart: ``marts.grid_events_by_district_category_week``.
        period_end: last day to consider (the run's logical date).
        weeks: number of complete ISO weeks (≥ 1).
        top_n: number of categories per district (≥ 1).

    Returns:
        DataFrame ``period_start`` DATE, ``period_end`` DATE, ``district_code`` STRING,
        ``district_name`` STRING, ``rank`` INT, ``category_l1`` STRING, ``events`` LONG,
        ``share`` DOUBLE (0–1); key (period_start, period_end, district_code, rank).

    Raises:
        ValueError: ``weeks`` < 1 or ``top_n`` < 1.
    """
    if top_n < 1:
        raise ValueError(f"top_n must be >= 1, got {top_n}")
    start, end = event_period(period_end, weeks)
    per_category = (
        event_mart.where(F.col("week_start").between(F.lit(start).cast("date"), F.lit(end).cast("date")))
        .groupBy("district_code", "category_l1")
        .agg(F.max("district_name").alias("district_name"), F.sum("events").cast("long").alias("events"))
    )
    district = Window.partitionBy("district_code")
    ranked = per_category.select(
        "*",
        F.row_number().over(district.orderBy(F.col("events").desc(), F.col("category_l1").asc())).alias("rank"),
        F.sum("events").over(district).alias("_district_events"),
    )
    return ranked.where(F.col("rank") <= top_n).select(
        F.lit(start).cast("date").alias("period_start"),
        F.lit(end).cast("date").alias("period_end"),
        "district_code",
        "district_name",
        F.col("rank").cast("int").alias("rank"),
        "category_l1",
        "events",
        (F.col("events") / F.col("_district_events")).cast("double").alias("share"),
    )
