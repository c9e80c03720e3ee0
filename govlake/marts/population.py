"""Topic marts built from the unified layer: population structure and grid/hotline events.

Pure Spark transforms (``DataFrame -> DataFrame``, no I/O). Every output table has a contract in
``tables/marts.<table>.yaml`` (grain, keys, column types and units, expectations).

Inputs (unified layer):

* ``unified.person``: ``person_id`` STRING, ``sex_code`` STRING (GB/T 2261.1), ``birth_date`` DATE,
  ``district_code`` STRING (6-digit GB/T 2260), ``is_current`` BOOLEAN, … (other columns ignored).
* ``unified.event``: ``event_id`` STRING, ``channel`` STRING (``grid`` | ``hotline``),
  ``reported_at`` TIMESTAMP, ``report_date`` DATE (Asia/Shanghai), ``district_code`` STRING (nullable),
  ``category_l1`` STRING (nullable), ``status`` STRING (``已受理`` | ``处理中`` | ``已结案``), …
* divisions: ``district_code`` STRING, ``district_name`` STRING (county-level divisions of the city,
  from ``schemas/reference/divisions/areas.csv`` filtered on ``cityCode``).
"""
from __future__ import annotations

from datetime import date

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

#: Placeholder district code of events whose place is unknown. ``000000`` is not a GB/T 2260 code
#: (no province is coded 00), so it can never collide with a real division.
UNKNOWN_DISTRICT_CODE = "000000"
#: Name shown for :data:`UNKNOWN_DISTRICT_CODE`.
UNKNOWN_DISTRICT_NAME = "未知区县"
#: First-level category of events the department left uncategorised.
UNCATEGORISED = "未分类"
#: Event status meaning the case is closed (结案).
CLOSED_STATUS = "已结案"
#: The 18 five-year age groups of the national census tables (七普 长表 分年龄), open-ended at 85.
AGE_GROUPS: tuple[str, ...] = tuple(f"{a:02d}-{a + 4:02d}" for a in range(0, 85, 5)) + ("85+",)
#: Reasons a current resident is left out of the population mart, in the order they are tested
#: (a person is counted once, under the first reason that applies).
EXCLUSION_REASONS: tuple[str, ...] = (
    "missing_birth_date",
    "birth_after_snapshot",
    "missing_sex_code",
    "missing_district_code",
)


def _blank(col: Column) -> Column:
    """True when a string column is NULL or only whitespace."""
    return col.isNull() | (F.trim(col) == "")


def age_in_completed_years(birth_date: Column, on_date: Column) -> Column:
    """Age in completed years (周岁) on ``on_date`` of a person born on ``birth_date``.

    Rule: the age increments ON the birthday (on 2025-06-30 a person born 2020-06-30 is 5).
    A person born on 29 February has a birthday on 1 March in non-leap years (on 2025-02-28 a person
    born 2004-02-29 is 20, on 2025-03-01 21): the rule compares (month, day) pairs, so 28 Feb is
    before and 1 Mar after 29 Feb. This is the census convention of age in completed years at the
    reference date (国家统计局, 第七次全国人口普查 "年龄按周岁计算"); note that Chinese criminal law counts a
    周岁 from the day AFTER the birthday (最高人民法院 法释〔2006〕1号 第二条), which this rule does not do.

    Args:
        birth_date: DATE column.
        on_date: DATE column (use ``F.lit(date)`` for a constant).

    Returns:
        INT column; NULL when either date is NULL; negative when ``birth_date`` is after ``on_date``.
    """
    before_birthday = (F.month(on_date) < F.month(birth_date)) | (
        (F.month(on_date) == F.month(birth_date)) & (F.dayofmonth(on_date) < F.dayofmonth(birth_date))
    )
    return (F.year(on_date) - F.year(birth_date) - F.when(before_birthday, 1).otherwise(0)).cast("int")


def age_group(age: Column) -> Column:
    """Five-year age group label of an age in completed years: ``'00-04'`` … ``'80-84'``, ``'85+'``.

    Args:
        age: INT column, age in completed years (≥ 0).

    Returns:
        STRING column (one of :data:`AGE_GROUPS`); NULL when ``age`` is NULL or negative.
    """
    lower = (F.floor(age / 5) * 5).cast("int")
    label = F.concat(
        F.lpad(lower.cast("string"), 2, "0"), F.lit("-"), F.lpad((lower + 4).cast("string"), 2, "0")
    )
    return F.when(age.isNull() | (age < 0), F.lit(None).cast("string")).when(age >= 85, "85+").otherwise(label)


def _exclusion_reason(age: Column) -> Column:
    """First reason of :data:`EXCLUSION_REASONS` that applies to a person of age ``age``; NULL when counted."""
    return (
        F.when(F.col("birth_date").isNull(), "missing_birth_date")
        .when(age < 0, "birth_after_snapshot")
        .when(_blank(F.col("sex_code")), "missing_sex_code")
        .when(_blank(F.col("district_code")), "missing_district_code")
    )


def counted_residents(person: DataFrame, snapshot_date: date) -> DataFrame:
    """The residents counted by every population mart, with their ``age`` (INT, :func:`age_in_completed_years`).

    The one resident-counting rule of the population theme: ``is_current`` TRUE (NULL counts as FALSE) and no
    exclusion reason (:data:`EXCLUSION_REASONS`: birth date present and not after ``snapshot_date``, sex and
    district codes present). Every column of ``person`` is kept as it is (not trimmed).
    """
    age = age_in_completed_years(F.col("birth_date"), F.lit(snapshot_date).cast("date"))
    return person.where(F.coalesce(F.col("is_current"), F.lit(False)) & _exclusion_reason(age).isNull()) \
        .withColumn("age", age)


def _residents_with_reason(person: DataFrame, snapshot_date: date) -> DataFrame:
    """Current residents with their age and the first exclusion reason (NULL when included)."""
    snap = F.lit(snapshot_date).cast("date")
    age = age_in_completed_years(F.col("birth_date"), snap)
    return (
        person.where(F.coalesce(F.col("is_current"), F.lit(False)))
        .select(
            F.trim("district_code").alias("district_code"),
            F.trim("sex_code").alias("sex_code"),
            age.alias("age"),
            _exclusion_reason(age).alias("exclusion_reason"),
        )
    )


# ------------------------------------------------------------------ population structure KPIs (one definition)
# The KPIs of analysis.age_structure_by_district and marts.population_natural_structure, from counts of persons.

#: Population-ageing classes by the share of persons aged 65+, highest first, as
#: (minimum share in percent, flag). 7 %: United Nations (1956), *The Aging of Populations and Its
#: Economic and Social Implications*, Population Studies No. 26; 14 % ("aged") and 20 %
#: ("super-aged"): the widely used extension of that convention (WHO usage), also used by China's
#: National Health Commission (国家卫生健康委员会), which described China as entering 深度老龄化 when the
#: 65+ share passed 14 % in 2021 (老龄化社会 / 深度老龄化社会 / 超老龄化社会).
AGEING_CLASSES: tuple[tuple[int, str], ...] = (
    (20, "super-aged"),
    (14, "aged society"),
    (7, "ageing society"),
)
#: Flag of a population below the 7 % threshold.
NOT_AGEING = "not ageing"
#: Broad age groups (UN / 国家统计局): children 0–14, working age 15–64, old 65+ (age in completed years).
WORKING_AGE_MIN, OLD_AGE_MIN = 15, 65


def sex_ratio(male: Column, female: Column) -> Column:
    """Males per 100 females (GB/T 2261.1 '1' / '2'); NULL when there are no females."""
    return F.when(female > 0, male * 100.0 / female)


def share(part: Column, total: Column) -> Column:
    """``part`` / ``total`` (fraction 0–1, e.g. the ageing rate 65+ / population); NULL when ``total`` is 0."""
    return F.when(total > 0, part / total)


def per_100_working_age(part: Column, working: Column) -> Column:
    """Dependency ratio: ``part`` per 100 persons aged 15–64; NULL when nobody is 15–64."""
    return F.when(working > 0, part * 100.0 / working)


def ageing_class(old: Column, total: Column) -> Column:
    """Ageing class (:data:`AGEING_CLASSES`) of a population of ``total`` persons of whom ``old`` are 65+:
    compared in exact integer arithmetic (100 × old ≥ threshold × total); :data:`NOT_AGEING` below 7 %."""
    flag = F.lit(NOT_AGEING)
    for threshold, name in reversed(AGEING_CLASSES):  # lowest first, so the highest class wins
        flag = F.when((total > 0) & (old * 100 >= total * threshold), F.lit(name)).otherwise(flag)
    return flag


def _division_names(divisions: DataFrame) -> DataFrame:
    """One row per district code (the smallest name if a code is listed twice), broadcast-hinted."""
    return F.broadcast(
        divisions.groupBy(F.trim("district_code").alias("district_code"))
        .agg(F.min("district_name").alias("district_name"))
    )


def population_by_district_sex_age(person: DataFrame, divisions: DataFrame, snapshot_date: date) -> DataFrame:
    """Resident population by district, sex and five-year age group on ``snapshot_date``.

    → ``marts.population_by_district_sex_age`` (contract
    ``tables/marts.population_by_district_sex_age.yaml``).

    Counted: persons with ``is_current`` TRUE (NULL counts as FALSE) whose ``birth_date``, ``sex_code``
    and ``district_code`` are present and whose birth date is not after the snapshot. The others are
    counted by :func:`population_exclusions`. Age is :func:`age_in_completed_years` at
    ``snapshot_date``; age groups are :data:`AGE_GROUPS`. A district code missing from ``divisions``
    is kept, with a NULL ``district_name``. Only non-empty cells are output (no zero rows).

    Args:
        person: ``unified.person`` (uses ``sex_code``, ``birth_date``, ``district_code``, ``is_current``).
        divisions: ``district_code`` STRING, ``district_name`` STRING.
        snapshot_date: the reference date of the count (the run's logical date).

    Returns:
        DataFrame ``snapshot_date`` DATE, ``district_code`` STRING, ``district_name`` STRING,
        ``sex_code`` STRING (GB/T 2261.1 as given: '1' male, '2' female, '0'/'9' unknown/unstated),
        ``age_group`` STRING, ``population`` LONG (persons); key (snapshot_date, district_code,
        sex_code, age_group).
    """
    counted = (
        _residents_with_reason(person, snapshot_date)
        .where(F.col("exclusion_reason").isNull())
        .groupBy("district_code", "sex_code", age_group(F.col("age")).alias("age_group"))
        .agg(F.count(F.lit(1)).cast("long").alias("population"))
    )
    return counted.join(_division_names(divisions), "district_code", "left").select(
        F.lit(snapshot_date).cast("date").alias("snapshot_date"),
        "district_code",
        "district_name",
        "sex_code",
        "age_group",
        "population",
    )


def population_exclusions(person: DataFrame, snapshot_date: date) -> DataFrame:
    """Current residents left out of :func:`population_by_district_sex_age`, counted by reason.

    → ``marts.population_exclusions``. One row for every reason of :data:`EXCLUSION_REASONS`
    (``persons`` = 0 when none), so the monitoring series has no gaps. A person is counted under the
    first reason that applies, so ``residents - sum(persons)`` equals the population of the mart.

    Args:
        person: ``unified.person`` (uses ``sex_code``, ``birth_date``, ``district_code``, ``is_current``).
        snapshot_date: the reference date (as for the mart).

    Returns:
        DataFrame ``snapshot_date`` DATE, ``reason`` STRING, ``persons`` LONG (excluded persons),
        ``residents`` LONG (all current persons, the same on every row); key (snapshot_date, reason).
    """
    reason = F.col("exclusion_reason")
    counts = _residents_with_reason(person, snapshot_date).agg(
        F.count(F.lit(1)).alias("_residents"),
        *[F.sum(F.when(reason == r, 1).otherwise(0)).alias(r) for r in EXCLUSION_REASONS],
    )
    rows = F.array(*[
        F.struct(F.lit(r).alias("reason"), F.coalesce(F.col(r), F.lit(0)).cast("long").alias("persons"))
        for r in EXCLUSION_REASONS
    ])
    return counts.select(F.col("_residents").cast("long").alias("residents"), F.explode(rows).alias("r")).select(
        F.lit(snapshot_date).cast("date").alias("snapshot_date"),
        F.col("r.reason").alias("reason"),
        F.col("r.persons").alias("persons"),
        "residents",
    )


def grid_events_by_district_category_week(event: DataFrame, divisions: DataFrame) -> DataFrame:
    """Events reported per ISO week, district, first-level category and channel.

    → ``marts.grid_events_by_district_category_week``.

    * ``week_start``: Monday of the ISO 8601 week of ``report_date`` (Asia/Shanghai business date);
      when ``report_date`` is NULL, the date of ``reported_at`` in the session time zone (GovLake
      pins it to Asia/Shanghai in ``govlake.core.spark``).
    * Events with an unknown place (NULL/blank ``district_code``) are kept under
      :data:`UNKNOWN_DISTRICT_CODE` ``'000000'`` named :data:`UNKNOWN_DISTRICT_NAME`; a code missing
      from ``divisions`` is kept with a NULL ``district_name``. No event is dropped.
    * NULL/blank ``category_l1`` becomes :data:`UNCATEGORISED` ``'未分类'``; NULL ``channel`` becomes
      ``'unknown'``.
    * ``closed`` counts events whose current ``status`` is ``'已结案'`` (status at extraction time,
      not at week end).

    Args:
        event: ``unified.event``.
        divisions: ``district_code`` STRING, ``district_name`` STRING.

    Returns:
        DataFrame ``week_start`` DATE, ``district_code`` STRING, ``district_name`` STRING,
        ``category_l1`` STRING, ``channel`` STRING, ``events`` LONG, ``closed`` LONG;
        key (week_start, district_code, category_l1, channel).
    """
    day = F.coalesce(F.col("report_date"), F.to_date(F.col("reported_at")))
    per_event = event.select(
        F.trunc(day, "week").alias("week_start"),
        F.when(_blank(F.col("district_code")), F.lit(UNKNOWN_DISTRICT_CODE))
        .otherwise(F.trim("district_code")).alias("district_code"),
        F.when(_blank(F.col("category_l1")), F.lit(UNCATEGORISED))
        .otherwise(F.trim("category_l1")).alias("category_l1"),
        F.coalesce(F.col("channel"), F.lit("unknown")).alias("channel"),
        F.when(F.col("status") == CLOSED_STATUS, 1).otherwise(0).alias("is_closed"),
    )
    weekly = per_event.groupBy("week_start", "district_code", "category_l1", "channel").agg(
        F.count(F.lit(1)).cast("long").alias("events"),
        F.sum("is_closed").cast("long").alias("closed"),
    )
    return weekly.join(_division_names(divisions), "district_code", "left").select(
        "week_start",
        "district_code",
        F.when(F.col("district_code") == UNKNOWN_DISTRICT_CODE, F.lit(UNKNOWN_DISTRICT_NAME))
        .otherwise(F.col("district_name")).alias("district_name"),
        "category_l1",
        "channel",
        "events",
        "closed",
    )
