"""Topic marts of the two themes of the seed — population (人口) and grid management (网格管理) — and
:func:`run_themes`, the entry point that builds every theme table for a logical date.

Transforms are pure (``DataFrame -> DataFrame``, SparkSession only where a frame must be created) and
read today's ``unified`` columns (see :mod:`govlake.unified.persons`); inputs that the unified layer does not
have yet (residence history, grid-worker workflow) are separate arguments so they can be passed in
when they exist. Contracts: ``tables/marts.<table>.yaml``; themes: ``schemas/themes/*.yaml``.

Population theme:
  :func:`population_structure` (district / street / community), :func:`education_marital_structure`
  (GB/T 4658 education 6+, GB/T 2261.2 marital status 15+), :func:`registration_structure` (户籍 vs 流动),
  :func:`district_areas_km2` + :func:`population_density`, :func:`household_structure` (household size,
  独居老人, 纯老户), :func:`household_generations` (一代户/二代户/三代及以上户 from GB/T 4761 relations, persons
  without registered relatives), :func:`relationship_summary` (relationship edges by type and source),
  :func:`migration_by_district` (origin–destination flows and in/out/net rates from residence history) and
  :func:`migration_in_period` (flows between districts within the theme period).
Grid-management theme:
  :func:`hot_fields`, :func:`grid_hotspots` (Getis–Ord Gi*), :func:`grid_workflow` +
  :func:`grid_worker_stats`, :func:`repeat_complaints`, :func:`event_keywords` + :func:`cross_cube`.
"""
from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from govlake.core import catalog
from govlake.core.config import Settings
from govlake.marts import population as first_cut
from govlake.marts.population import (
    CLOSED_STATUS,
    OLD_AGE_MIN,
    UNCATEGORISED,
    UNKNOWN_DISTRICT_CODE,
    WORKING_AGE_MIN,
    age_in_completed_years,
    counted_residents,
    per_100_working_age,
    sex_ratio,
    share,
)
from govlake.marts.theme_config import THEMES_DIR, ThemeConfig, ThemeParams

#: Area levels of the population structure: level → (source column, code length). Street (乡镇街道) is
#: the first 9 digits and community (村/居委会) all 12 digits of the statistical division code
#: (国家统计局 统计用区划代码); district is the 6-digit GB/T 2260 code.
LEVELS: dict[str, tuple[str, int]] = {"district": ("district_code", 6), "street": ("community_code", 9),
                                      "community": ("community_code", 12)}
#: Age from which a person is elderly (老年人) for household indicators: 60 周岁, 《中华人民共和国老年人
#: 权益保障法》 第二条. The ageing rate of the structure mart uses 65+ (UN convention), see govlake.marts.population.
ELDERLY_AGE = ThemeParams.elderly_age  # the default of the theme parameter (govlake.marts.theme_config)
#: Authalic (equal-area) radius of the GRS 80 / CGCS2000 ellipsoid in metres (Snyder 1987,
#: *Map Projections — A Working Manual*, USGS PP 1395, p. 16: R_q = 6 371 007.2 m).
AUTHALIC_RADIUS_M = 6_371_007.181
#: Two-sided normal critical values of Gi* z-scores → class (Getis & Ord 1992; ArcGIS Hot Spot Analysis).
HOTSPOT_CLASSES: tuple[tuple[float, str], ...] = ((2.576, "99%"), (1.960, "95%"), (1.645, "90%"))


def _blank(c: Column) -> Column:
    return c.isNull() | (F.trim(c) == "")


def _day(event: DataFrame) -> Column:
    """Business date of an event: report_date, else the date of reported_at (session zone Asia/Shanghai)."""
    return F.coalesce(F.col("report_date"), F.to_date(F.col("reported_at")))


def _district(c: str = "district_code") -> Column:
    return F.when(_blank(F.col(c)), F.lit(UNKNOWN_DISTRICT_CODE)).otherwise(F.trim(F.col(c)))


def _cat(c: str) -> Column:
    return F.when(_blank(F.col(c)), F.lit(UNCATEGORISED)).otherwise(F.trim(F.col(c)))


# ===================================================================================== population theme

def population_structure(person: DataFrame, snapshot_date: dt.date,
                         levels: Iterable[str] = ("district", "street", "community")) -> DataFrame:
    """Natural structure of the resident population per district, street (乡镇街道) and community (村居).

    → ``marts.population_natural_structure``. Counted persons are those of
    ``marts.population_by_district_sex_age`` (``is_current``, birth date present and not after the
    snapshot, sex and district codes present); age is 周岁 at ``snapshot_date``
    (:func:`govlake.marts.population.age_in_completed_years`). Street / community codes are the first 9 / 12 digits of
    ``community_code``; a person whose ``community_code`` is not 12 digits is counted under the code of
    zeros (``'000000000'`` / ``'000000000000'``, not a statistical division code) at those levels.

    KPIs (UN / 国家统计局 broad age groups): ``sex_ratio`` = male / female × 100 (GB/T 2261.1 '1'/'2');
    shares = group / population; ``child_dependency_ratio`` = (0–14)/(15–64) × 100,
    ``old_age_dependency_ratio`` = (65+)/(15–64) × 100, ``total_dependency_ratio`` their sum;
    ``ageing_rate_65`` = (65+)/population (classes 7 / 14 / 20 %: govlake.marts.population.ageing_class); ratios NULL
    when the denominator is 0.

    Args:
        person: ``unified.person`` (person_id, sex_code, birth_date, district_code, community_code,
            is_current).
        snapshot_date: reference date (the run's logical date).
        levels: any of :data:`LEVELS`.

    Returns:
        DataFrame ``snapshot_date`` DATE, ``area_level`` STRING, ``area_code`` STRING,
        ``district_code`` STRING, ``population`` LONG, ``male`` LONG, ``female`` LONG,
        ``age_0_14`` LONG, ``age_15_64`` LONG, ``age_65_plus`` LONG, ``sex_ratio`` DOUBLE,
        ``share_0_14`` DOUBLE, ``share_15_64`` DOUBLE, ``ageing_rate_65`` DOUBLE,
        ``child_dependency_ratio`` DOUBLE, ``old_age_dependency_ratio`` DOUBLE,
        ``total_dependency_ratio`` DOUBLE; key (snapshot_date, area_level, area_code).

    Raises:
        ValueError: unknown level.
    """
    rows = _area_rows(counted_residents(person, snapshot_date), levels, "sex_code", "age")
    age = F.col("age")

    def n(cond: Column) -> Column:
        return F.sum(F.when(cond, 1).otherwise(0)).cast("long")

    agg = rows.groupBy("area_level", "area_code").agg(
        F.min("district_code").alias("district_code"), F.count(F.lit(1)).cast("long").alias("population"),
        n(F.col("sex_code") == "1").alias("male"), n(F.col("sex_code") == "2").alias("female"),
        n(age < WORKING_AGE_MIN).alias("age_0_14"),
        n((age >= WORKING_AGE_MIN) & (age < OLD_AGE_MIN)).alias("age_15_64"),
        n(age >= OLD_AGE_MIN).alias("age_65_plus"))
    # one definition per KPI: govlake.marts.population (also used by analysis.age_structure_by_district)
    pop, young, work, old = F.col("population"), F.col("age_0_14"), F.col("age_15_64"), F.col("age_65_plus")
    return agg.select(
        F.lit(snapshot_date).cast("date").alias("snapshot_date"), "area_level", "area_code", "district_code",
        "population", "male", "female", "age_0_14", "age_15_64", "age_65_plus",
        sex_ratio(F.col("male"), F.col("female")).alias("sex_ratio"),
        share(young, pop).alias("share_0_14"), share(work, pop).alias("share_15_64"),
        share(old, pop).alias("ageing_rate_65"),
        per_100_working_age(young, work).alias("child_dependency_ratio"),
        per_100_working_age(old, work).alias("old_age_dependency_ratio"),
        per_100_working_age(young + old, work).alias("total_dependency_ratio"),
    )


def ring_area_m2(ring: list[list[float]], radius_m: float = AUTHALIC_RADIUS_M) -> float:
    """Area in m² of a closed (lng, lat) ring on a sphere of ``radius_m`` (absolute value).

    Formula: A = R²/2 · |Σ_i (λ_{i+1} − λ_{i−1}) · sin φ_i| (Chamberlain & Duquette 2007, *Some algorithms
    for polygons on a sphere*, JPL Publication 07-03, eq. for the area of a spherical polygon). On the
    authalic sphere of the ellipsoid it is an equal-area computation (Snyder 1987); for a lng/lat
    rectangle it equals R²·Δλ·(sin φ2 − sin φ1) exactly. A closing point equal to the first is ignored.
    """
    pts = ring[:-1] if len(ring) > 1 and list(ring[0]) == list(ring[-1]) else ring
    k = len(pts)
    if k < 3:
        return 0.0
    total = 0.0
    for i in range(k):
        lam_next = math.radians(pts[(i + 1) % k][0])
        lam_prev = math.radians(pts[i - 1][0])
        total += (lam_next - lam_prev) * math.sin(math.radians(pts[i][1]))
    return abs(total) * radius_m * radius_m / 2.0


def district_areas_km2(geojson: dict) -> list[tuple[str, str, float]]:
    """Land area of each district of a boundary FeatureCollection, in km², on the authalic sphere.

    Features carry ``properties.gb`` = '156' + GB/T 2260 code and ``properties.name`` (the layout of
    ``schemas/reference/boundaries/districts_130100.geojson``). Polygon and MultiPolygon geometries;
    each polygon's area is its outer ring minus its holes (:func:`ring_area_m2`). pyproj is not in the
    environment, so the spherical formula replaces an equal-area projection (error vs the ellipsoid
    < 0.5 % at 38° N).

    Returns:
        sorted list of (district_code, district_name, area_km2).

    Raises:
        ValueError: a geometry that is neither Polygon nor MultiPolygon.
    """
    out = []
    for feat in geojson.get("features", []):
        geom = feat["geometry"]
        if geom["type"] == "Polygon":
            polys = [geom["coordinates"]]
        elif geom["type"] == "MultiPolygon":
            polys = geom["coordinates"]
        else:
            raise ValueError(f"unsupported geometry {geom['type']} for {feat.get('properties')}")
        m2 = sum(ring_area_m2(p[0]) - sum(ring_area_m2(h) for h in p[1:]) for p in polys)
        gb = str(feat["properties"]["gb"])
        out.append((gb[3:] if gb.startswith("156") and len(gb) == 9 else gb, feat["properties"].get("name"), m2 / 1e6))
    return sorted(out)


def population_density(structure: DataFrame, areas: DataFrame) -> DataFrame:
    """Resident population and density per km² per district.

    → ``marts.population_density``. ``density_per_km2`` = population / area_km2 (residents counted as in
    :func:`population_structure`; area from :func:`district_areas_km2`). Districts with an area but no
    residents have population 0; districts with residents but no boundary have NULL area and density.

    Args:
        structure: :func:`population_structure` output (its ``district`` rows are used).
        areas: ``district_code`` STRING, ``district_name`` STRING, ``area_km2`` DOUBLE.

    Returns:
        DataFrame ``snapshot_date`` DATE, ``district_code`` STRING, ``district_name`` STRING,
        ``population`` LONG, ``area_km2`` DOUBLE, ``density_per_km2`` DOUBLE (persons per km²);
        key (snapshot_date, district_code).
    """
    d = structure.where(F.col("area_level") == "district").select("snapshot_date", F.col("area_code").alias(
        "district_code"), "population")
    snap = structure.agg(F.max("snapshot_date").alias("s"))
    a = areas.crossJoin(snap).select(F.col("s").alias("snapshot_date"), "district_code", "district_name", "area_km2")
    both = a.join(d, ["snapshot_date", "district_code"], "full")
    return both.select("snapshot_date", "district_code", "district_name",
                       F.coalesce("population", F.lit(0)).cast("long").alias("population"), "area_km2",
                       F.when(F.col("area_km2") > 0, F.coalesce("population", F.lit(0)) / F.col("area_km2"))
                       .alias("density_per_km2"))


def household_structure(person: DataFrame, snapshot_date: dt.date, elderly_age: int = ELDERLY_AGE) -> DataFrame:
    """Household size structure, elderly living alone (独居老人) and elderly-only households per district.

    → ``marts.population_households``. A household is a distinct non-blank ``household_no`` (户号) of
    current persons (``is_current``); its size is its number of current members; its district is the
    smallest ``district_code`` of its members (``'000000'`` when none has one). Elderly = age (周岁 at
    ``snapshot_date``) ≥ ``elderly_age`` (60, 老年人权益保障法). A one-person household of an elderly
    person is a 独居老人 household; a household of ≥ 2 members who are all elderly (birth dates all
    known) is an elderly-only household (纯老户). Persons without a household number are not counted.

    Returns:
        DataFrame ``snapshot_date`` DATE, ``district_code`` STRING, ``households`` LONG,
        ``persons`` LONG, ``mean_household_size`` DOUBLE (persons per household), ``size_1`` …
        ``size_4`` LONG, ``size_5_plus`` LONG (households by size), ``elderly_living_alone`` LONG
        (persons = households), ``elderly_only_households`` LONG, ``elderly_only_persons`` LONG,
        ``elderly_persons`` LONG (elderly members of counted households); key (snapshot_date, district_code).
    """
    age = age_in_completed_years(F.col("birth_date"), F.lit(snapshot_date).cast("date"))
    members = person.where(F.coalesce(F.col("is_current"), F.lit(False)) & ~_blank(F.col("household_no"))).select(
        F.trim("household_no").alias("household_no"),
        F.when(_blank(F.col("district_code")), None).otherwise(F.trim("district_code")).alias("district_code"),
        F.coalesce(age >= elderly_age, F.lit(False)).alias("elderly"))
    hh = members.groupBy("household_no").agg(
        F.coalesce(F.min("district_code"), F.lit(UNKNOWN_DISTRICT_CODE)).alias("district_code"),
        F.count(F.lit(1)).alias("size"), F.sum(F.col("elderly").cast("int")).alias("elderly_n"))

    def n(cond: Column) -> Column:
        return F.sum(F.when(cond, 1).otherwise(0)).cast("long")

    size, old = F.col("size"), F.col("elderly_n")
    agg = hh.groupBy("district_code").agg(
        F.count(F.lit(1)).cast("long").alias("households"), F.sum(size).cast("long").alias("persons"),
        *[n(size == k).alias(f"size_{k}") for k in range(1, 5)], n(size >= 5).alias("size_5_plus"),
        n((size == 1) & (old == 1)).alias("elderly_living_alone"),
        n((size >= 2) & (old == size)).alias("elderly_only_households"),
        F.sum(F.when((size >= 2) & (old == size), size).otherwise(0)).cast("long").alias("elderly_only_persons"),
        F.sum(old).cast("long").alias("elderly_persons"))
    return agg.select(F.lit(snapshot_date).cast("date").alias("snapshot_date"), "district_code", "households",
                      "persons", (F.col("persons") / F.col("households")).alias("mean_household_size"),
                      "size_1", "size_2", "size_3", "size_4", "size_5_plus", "elderly_living_alone",
                      "elderly_only_households", "elderly_only_persons", "elderly_persons")


#: Census age floors (第七次全国人口普查 长表): educational attainment of persons aged 6 and over (6岁及以上人口
#: 受教育程度), marital status of persons aged 15 and over (15岁及以上人口 婚姻状况).
EDUCATION_MIN_AGE = ThemeParams.education_min_age  # the default of the theme parameter (govlake.marts.theme_config)
MARITAL_MIN_AGE = ThemeParams.marital_min_age  # the default of the theme parameter (govlake.marts.theme_config)
#: Code of an eligible person whose education / marital status is unknown (NULL in unified.person).
UNKNOWN_CODE = "unknown"
UNKNOWN_CODE_NAME = "不详"


def _area_rows(res: DataFrame, levels: Iterable[str], *cols: str) -> DataFrame:
    """One row per (person, level): ``area_level``, ``area_code``, ``district_code`` and ``cols`` of the counted
    residents ``res``; street / community codes as in :func:`population_structure` (zeros when the community
    code is not 12 digits).

    Raises:
        ValueError: unknown level.
    """
    levels = list(levels)
    bad = [lv for lv in levels if lv not in LEVELS]
    if bad:
        raise ValueError(f"unknown levels {bad}; levels are {list(LEVELS)}")
    ok12 = F.coalesce(F.trim(F.col("community_code")), F.lit("")).rlike(r"^\d{12}$")
    frames = []
    for lv in levels:
        col, n = LEVELS[lv]
        code = (F.trim(F.col("district_code")) if lv == "district"
                else F.when(ok12, F.substring(F.trim(F.col(col)), 1, n)).otherwise(F.lit("0" * n)))
        frames.append(res.select(F.lit(lv).alias("area_level"), code.alias("area_code"),
                                 F.trim(F.col("district_code")).alias("district_code"), *cols))
    rows = frames[0]
    for f in frames[1:]:
        rows = rows.unionByName(f)
    return rows


def _code_names(name: str) -> Column:
    """``code → Chinese name`` of a national code list as a map Column (plus :data:`UNKNOWN_CODE`)."""
    from govlake.codes.code_lists import load_code_list

    pairs = {**load_code_list(name), UNKNOWN_CODE: UNKNOWN_CODE_NAME}
    return F.create_map(*[F.lit(x) for kv in sorted(pairs.items()) for x in kv])


def education_marital_structure(person: DataFrame, snapshot_date: dt.date,
                                levels: Iterable[str] = ("district", "street", "community"),
                                education_min_age: int = EDUCATION_MIN_AGE,
                                marital_min_age: int = MARITAL_MIN_AGE) -> DataFrame:
    """Educational attainment (GB/T 4658-2006) and marital status (GB/T 2261.2-2003) structure per district,
    street and community.

    → ``marts.population_education_marital``. Counted residents as in :func:`population_structure` (same rule
    as ``marts.population_by_district_sex_age``); age 周岁 at ``snapshot_date``. Census convention (第七次全国人口
    普查): education over persons aged ≥ ``education_min_age`` (6), marital status over persons aged
    ≥ ``marital_min_age`` (15); younger persons are not in this table.

    Codes are reported at the first level of each standard: education by its category (first digit + '0':
    '21' 大学本科毕业 → '20' 大学本科教育, '28' → '20', '14' → '10' 研究生教育 …; categories 10, 20, 30, 40, 60, 70,
    80, 90 其他), marital status '21'/'22'/'23' (初婚/再婚/复婚, subdivisions of 已婚) → '20'; other codes as they
    are (10 未婚, 30 丧偶, 40 离婚, 90 未说明). An eligible person without a code (NULL ``education_code`` /
    ``marital_status_code``) is counted under ``code`` :data:`UNKNOWN_CODE` 'unknown' (不详), so the codes of an
    area add up to its base population. Only codes with at least one person appear (no zero rows).

    KPIs: ``share`` = persons / base_population (fraction 0–1), numerator = counted residents of the area
    aged ≥ the floor with that code, denominator = counted residents of the area aged ≥ the floor (unknown
    included); period = snapshot at the logical date (is_current).

    Args:
        person: ``unified.person`` (sex_code, birth_date, district_code, community_code, is_current,
            education_code, marital_status_code).
        snapshot_date: reference date (the run's logical date).
        levels: any of :data:`LEVELS`.

    Returns:
        DataFrame ``snapshot_date`` DATE, ``area_level`` STRING, ``area_code`` STRING, ``district_code`` STRING,
        ``dimension`` STRING ('education' | 'marital_status'), ``code`` STRING, ``name_zh`` STRING,
        ``persons`` LONG, ``male`` LONG, ``female`` LONG, ``base_population`` LONG (persons of the area aged
        ≥ the dimension's floor), ``share`` DOUBLE (0–1); key (snapshot_date, area_level, area_code,
        dimension, code).

    Raises:
        ValueError: unknown level.
    """
    res = counted_residents(person, snapshot_date)
    edu = F.trim(F.col("education_code"))
    mar = F.trim(F.col("marital_status_code"))
    edu_cat = F.when(edu.rlike(r"^\d{2}$"), F.concat(F.substring(edu, 1, 1), F.lit("0")))
    mar_cat = F.when(mar.isin("21", "22", "23"), F.lit("20")).otherwise(mar)
    dims = res.select(
        "sex_code", "district_code", "community_code",
        F.explode(F.array(
            F.when(F.col("age") >= education_min_age, F.struct(
                F.lit("education").alias("dimension"), F.coalesce(edu_cat, F.lit(UNKNOWN_CODE)).alias("code"))),
            F.when(F.col("age") >= marital_min_age, F.struct(
                F.lit("marital_status").alias("dimension"), F.coalesce(mar_cat, F.lit(UNKNOWN_CODE)).alias("code"))),
        )).alias("d")).where(F.col("d").isNotNull()).select("sex_code", "district_code", "community_code", "d.*")
    rows = _area_rows(dims, levels, "sex_code", "dimension", "code")

    def n(cond: Column) -> Column:
        return F.sum(F.when(cond, 1).otherwise(0)).cast("long")

    agg = rows.groupBy("area_level", "area_code", "dimension", "code").agg(
        F.min("district_code").alias("district_code"), F.count(F.lit(1)).cast("long").alias("persons"),
        n(F.col("sex_code") == "1").alias("male"), n(F.col("sex_code") == "2").alias("female"))
    area = Window.partitionBy("area_level", "area_code")
    base = F.sum("persons").over(Window.partitionBy("area_level", "area_code", "dimension"))
    name = F.when(F.col("dimension") == "education", _code_names("education")[F.col("code")]) \
        .otherwise(_code_names("marital_status")[F.col("code")])
    return agg.select(
        F.lit(snapshot_date).cast("date").alias("snapshot_date"), "area_level", "area_code",
        F.min("district_code").over(area).alias("district_code"), "dimension", "code", name.alias("name_zh"),
        "persons", "male", "female", base.cast("long").alias("base_population"),
        (F.col("persons") / base).alias("share"))


def registration_structure(person: DataFrame, snapshot_date: dt.date,
                           levels: Iterable[str] = ("district", "street", "community")) -> DataFrame:
    """Registered (户籍) and floating (流动) resident population per district, street and community.

    → ``marts.population_registration``. Counted residents as in :func:`population_structure`; the
    registration type is ``unified.person.registration_type`` (household registry authority, see
    ``schemas/unified/survivorship.yaml``): '户籍' = registered in this place, '流动' = registered elsewhere
    (census 户口登记地在外乡镇街道). Residents without a registration type (known only to departments that do
    not record it, or whose registry record was quarantined) are ``registration_unknown``.

    KPIs: ``floating_share`` = floating / (registered + floating) (fraction 0–1; NULL when both are 0):
    numerator = counted residents with registration type 流动, denominator = counted residents with a known
    registration type (unknown excluded, so the share does not fall with the registry's coverage); period =
    snapshot at the logical date; ``registration_coverage`` = (registered + floating) / population.

    Args:
        person: ``unified.person`` (sex_code, birth_date, district_code, community_code, is_current,
            registration_type).
        snapshot_date: reference date (the run's logical date).
        levels: any of :data:`LEVELS`.

    Returns:
        DataFrame ``snapshot_date`` DATE, ``area_level`` STRING, ``area_code`` STRING, ``district_code`` STRING,
        ``population`` LONG (counted residents), ``registered`` LONG, ``registered_male`` LONG,
        ``registered_female`` LONG, ``floating`` LONG, ``floating_male`` LONG, ``floating_female`` LONG,
        ``registration_unknown`` LONG, ``floating_share`` DOUBLE, ``registration_coverage`` DOUBLE;
        key (snapshot_date, area_level, area_code).

    Raises:
        ValueError: unknown level.
    """
    from govlake.unified.persons import REGISTRATION_TYPES

    registered, floating = REGISTRATION_TYPES
    res = counted_residents(person, snapshot_date).withColumn("reg", F.trim(F.col("registration_type")))
    rows = _area_rows(res, levels, "sex_code", "reg")

    def n(cond: Column) -> Column:
        return F.sum(F.when(cond, 1).otherwise(0)).cast("long")

    male, female = F.col("sex_code") == "1", F.col("sex_code") == "2"
    is_reg, is_flo = F.col("reg") == registered, F.col("reg") == floating
    agg = rows.groupBy("area_level", "area_code").agg(
        F.min("district_code").alias("district_code"), F.count(F.lit(1)).cast("long").alias("population"),
        n(is_reg).alias("registered"), n(is_reg & male).alias("registered_male"),
        n(is_reg & female).alias("registered_female"), n(is_flo).alias("floating"),
        n(is_flo & male).alias("floating_male"), n(is_flo & female).alias("floating_female"))
    known = F.col("registered") + F.col("floating")
    return agg.select(
        F.lit(snapshot_date).cast("date").alias("snapshot_date"), "area_level", "area_code", "district_code",
        "population", "registered", "registered_male", "registered_female", "floating", "floating_male",
        "floating_female", (F.col("population") - known).alias("registration_unknown"),
        F.when(known > 0, F.col("floating") / known).alias("floating_share"),
        (known / F.col("population")).alias("registration_coverage"))


#: Generation of each GB/T 4761-2008 relation to the household head, relative to the head (0; +1 = the head's
#: parents' generation, −1 = the children's): 01/02 本人/户主 and 1x 配偶 0; 2x 子 and 3x 女 (incl. 28 女婿, 38 儿媳,
#: 27/37 养子女或继子女) −1; 40–46, 49 孙辈 (and their spouses) −2; 47/48 曾孙辈 −3; 5x 父母 (incl. 53–56 公婆/岳父母,
#: 57/58 继父母) +1; 60–65, 69 祖父母 +2; 66–68 曾祖父母 +3; 7x 兄弟姐妹 (and their spouses) 0; 81–90 伯叔舅姨姑
#: (and their spouses) +1; 91/92 堂/表兄弟姐妹 0; 93–96 侄/甥 −1. No generation (not counted): 80 其他, 97 其他亲属,
#: 99 非亲属 and codes outside the standard.
GENERATION_BY_RELATION: dict[str, int] = {
    **dict.fromkeys(("01", "02", "10", "11", "12"), 0),
    **{f"{d}{u}": -1 for d in "23" for u in "0123456789"},
    **{f"4{u}": -2 for u in "0123456789"}, "47": -3, "48": -3,
    **{f"5{u}": 1 for u in "0123456789"},
    **{f"6{u}": 2 for u in "0123456789"}, "66": 3, "67": 3, "68": 3,
    **{f"7{u}": 0 for u in "0123456789"},
    **{str(c): 1 for c in range(81, 91)}, "91": 0, "92": 0, **{str(c): -1 for c in range(93, 97)},
}


def _generation_col(relation: Column) -> Column:
    """Generation relative to the household head (INT, :data:`GENERATION_BY_RELATION`), NULL when the relation
    code has none; only codes of the GB/T 4761-2008 list are mapped (the list's '40' group etc. included)."""
    from govlake.codes.code_lists import load_code_list

    valid = set(load_code_list("relation"))
    pairs = sorted((c, g) for c, g in GENERATION_BY_RELATION.items() if c in valid)
    return F.create_map(*[F.lit(x) for kv in pairs for x in kv])[F.trim(relation)]


def _current_members(person: DataFrame) -> DataFrame:
    """Current persons with a non-blank household number: person_id, household_no (trimmed), district_code
    (NULL when blank), relation_code, and ``hh_district`` = the household's district (smallest district_code
    of its current members, '000000' when none has one; rule of :func:`household_structure`)."""
    m = person.where(F.coalesce(F.col("is_current"), F.lit(False)) & ~_blank(F.col("household_no"))).select(
        "person_id", F.trim("household_no").alias("household_no"),
        F.when(_blank(F.col("district_code")), None).otherwise(F.trim("district_code")).alias("district_code"),
        "relation_code")
    hh = Window.partitionBy("household_no")
    return m.withColumn("hh_district", F.coalesce(F.min("district_code").over(hh), F.lit(UNKNOWN_DISTRICT_CODE)))


def _alive_edges(person: DataFrame, edges: DataFrame) -> DataFrame:
    """Edges whose two persons are both current (``is_current``) in ``person``: person_id_1, person_id_2."""
    alive = person.where(F.coalesce(F.col("is_current"), F.lit(False))).select("person_id")
    return (edges.join(alive.withColumnRenamed("person_id", "person_id_1"), "person_id_1", "left_semi")
            .join(alive.withColumnRenamed("person_id", "person_id_2"), "person_id_2", "left_semi")
            .select("person_id_1", "person_id_2"))


def household_generations(person: DataFrame, edges: DataFrame, snapshot_date: dt.date) -> DataFrame:
    """Household generation structure (一代户 / 二代户 / 三代及以上户) and persons without registered relatives,
    per district.

    → ``marts.population_household_generations``. Households and their district as in
    :func:`household_structure` (distinct non-blank ``household_no`` of current persons; district = smallest
    ``district_code`` of the members, '000000' when none).

    * Generation rule: each current member's generation relative to the head comes from their GB/T 4761-2008
      relation code (:data:`GENERATION_BY_RELATION`: parents +1, children −1, grandchildren −2 …); a
      household's number of generations is the number of DISTINCT generations among its members with one
      (census 家庭户类别 counts the generations living together: 一代户 1, 二代户 2, 三代户 and more ≥ 3).
      Members coded 80 其他 / 97 其他亲属 / 99 非亲属 (or outside the standard, or NULL) carry no generation; a
      household where no member has one is ``generation_unknown``. A grandparents + grandchildren household
      (隔代户) is two-generation by this rule and is also counted in ``skip_generation`` (two generations
      present, two or more apart).
    * No registered relatives (无登记亲属): a current person with a household number who has no other current
      member in that household AND no edge in ``unified.person_relationship`` to another current person
      (edges to deceased persons do not count). Persons without a household number are not in the base
      (the registry does not know them).

    KPIs: ``three_plus_share`` = three_plus_generation / (households − generation_unknown); likewise
    ``one_generation_share``; ``share_without_relatives`` = persons_without_relatives / persons (current
    persons with a household number); period = snapshot at the logical date.

    Args:
        person: ``unified.person`` (person_id, household_no, relation_code, district_code, is_current).
        edges: ``unified.person_relationship`` (person_id_1, person_id_2, relationship).
        snapshot_date: reference date.

    Returns:
        DataFrame ``snapshot_date`` DATE, ``district_code`` STRING, ``households`` LONG, ``one_generation``
        LONG, ``two_generation`` LONG, ``three_plus_generation`` LONG, ``generation_unknown`` LONG,
        ``skip_generation`` LONG (households), ``one_generation_share`` DOUBLE, ``three_plus_share`` DOUBLE
        (0–1, NULL without a household of known generations), ``persons`` LONG, ``persons_without_relatives``
        LONG, ``share_without_relatives`` DOUBLE (0–1); key (snapshot_date, district_code).
    """
    members = _current_members(person).withColumn("gen", _generation_col(F.col("relation_code")))
    hh = members.groupBy("household_no").agg(
        F.min("hh_district").alias("district_code"), F.count(F.lit(1)).alias("size"),
        F.countDistinct("gen").alias("n_gen"), (F.max("gen") - F.min("gen")).alias("span"))
    alive = _alive_edges(person, edges)
    linked = alive.select(F.col("person_id_1").alias("person_id")).unionByName(
        alive.select(F.col("person_id_2").alias("person_id"))).distinct().withColumn("_edge", F.lit(True))
    sizes = hh.select("household_no", "size")
    per = members.join(sizes, "household_no").join(linked, "person_id", "left").select(
        F.col("hh_district").alias("district_code"),
        ((F.col("size") == 1) & F.col("_edge").isNull()).alias("alone"))
    persons = per.groupBy("district_code").agg(
        F.count(F.lit(1)).cast("long").alias("persons"),
        F.sum(F.col("alone").cast("int")).cast("long").alias("persons_without_relatives"))

    def n(cond: Column) -> Column:
        return F.sum(F.when(cond, 1).otherwise(0)).cast("long")

    g = F.col("n_gen")
    agg = hh.groupBy("district_code").agg(
        F.count(F.lit(1)).cast("long").alias("households"), n(g == 1).alias("one_generation"),
        n(g == 2).alias("two_generation"), n(g >= 3).alias("three_plus_generation"),
        n(g == 0).alias("generation_unknown"), n((g == 2) & (F.col("span") >= 2)).alias("skip_generation"))
    known = F.col("households") - F.col("generation_unknown")
    return agg.join(persons, "district_code").select(
        F.lit(snapshot_date).cast("date").alias("snapshot_date"), "district_code", "households", "one_generation",
        "two_generation", "three_plus_generation", "generation_unknown", "skip_generation",
        F.when(known > 0, F.col("one_generation") / known).alias("one_generation_share"),
        F.when(known > 0, F.col("three_plus_generation") / known).alias("three_plus_share"),
        "persons", "persons_without_relatives",
        (F.col("persons_without_relatives") / F.col("persons")).alias("share_without_relatives"))


def relationship_summary(person: DataFrame, edges: DataFrame, snapshot_date: dt.date) -> DataFrame:
    """Registered family relationship edges (``unified.person_relationship``) by relationship type and stating
    departments per district.

    → ``marts.population_relationship_edges``. An edge's district is the district of its ``household_no``
    (smallest ``district_code`` of the household's current members, as :func:`household_structure`); an edge
    without such a household (stated only by a marriage registration or a birth certificate, or its household
    has no current member left) takes the smallest ``district_code`` of its two persons that are current; else
    '000000' (e.g. both persons deceased). ``sources`` is the edge's sorted departments joined by '+' (e.g.
    'civil+hukou': stated by the marriage registry and the household registry), so each edge is counted once and
    summing over ``sources`` gives the edges per type. Every edge of the table is counted in ``edges``;
    ``edges_between_current`` only those whose two persons are current (alive) in ``unified.person``.

    Args:
        person: ``unified.person`` (person_id, household_no, district_code, is_current).
        edges: ``unified.person_relationship`` (person_id_1, person_id_2, relationship ('spouse' |
            'parent_child'), household_no, sources ARRAY<STRING>).
        snapshot_date: reference date.

    Returns:
        DataFrame ``snapshot_date`` DATE, ``district_code`` STRING, ``relationship`` STRING, ``sources`` STRING,
        ``edges`` LONG, ``edges_between_current`` LONG, ``persons`` LONG (distinct persons on the edges),
        ``households`` LONG (distinct household numbers of the edges; NULL household numbers are not counted);
        key (snapshot_date, district_code, relationship, sources).
    """
    hh = _current_members(person).select("household_no", "hh_district").distinct()
    alive = _alive_edges(person, edges).distinct().withColumn("_alive", F.lit(True))
    current = person.where(F.coalesce(F.col("is_current"), F.lit(False)) & ~_blank(F.col("district_code"))) \
        .select("person_id", F.trim("district_code").alias("district_code"))
    d1 = current.select(F.col("person_id").alias("person_id_1"), F.col("district_code").alias("_d1"))
    d2 = current.select(F.col("person_id").alias("person_id_2"), F.col("district_code").alias("_d2"))
    e = edges.select("person_id_1", "person_id_2", "relationship", F.trim("household_no").alias("household_no"),
                     F.array_join(F.array_sort("sources"), "+").alias("sources")) \
        .join(hh, "household_no", "left").join(alive, ["person_id_1", "person_id_2"], "left") \
        .join(d1, "person_id_1", "left").join(d2, "person_id_2", "left") \
        .withColumn("district_code", F.coalesce("hh_district", F.least("_d1", "_d2"), F.lit(UNKNOWN_DISTRICT_CODE)))
    dims = ["district_code", "relationship", "sources"]
    ends = e.select(*dims, F.explode(F.array("person_id_1", "person_id_2")).alias("p"))
    people = ends.groupBy(*dims).agg(F.countDistinct("p").cast("long").alias("persons"))
    agg = e.groupBy(*dims).agg(
        F.count(F.lit(1)).cast("long").alias("edges"),
        F.sum(F.when(F.col("_alive"), 1).otherwise(0)).cast("long").alias("edges_between_current"),
        F.countDistinct("household_no").cast("long").alias("households"))
    return agg.join(people, dims).select(
        F.lit(snapshot_date).cast("date").alias("snapshot_date"), *dims, "edges", "edges_between_current", "persons",
        "households")


def district_moves(residence: DataFrame) -> DataFrame:
    """Moves between districts in residence history: a spell whose district differs from the person's previous
    spell (spells ordered by ``valid_from``, then district code); the first spell of a person is not a move
    (births, first registrations); spells with NULL ``district_code`` or ``valid_from`` are ignored.

    Args:
        residence: SCD2 residence history, ``person_id`` STRING, ``district_code`` STRING, ``valid_from`` DATE
            (``unified.person_residence``; other columns ignored).

    Returns:
        DataFrame ``person_id`` STRING, ``moved_on`` DATE (the new spell's ``valid_from``),
        ``origin_district_code`` STRING, ``destination_district_code`` STRING; one row per move.
    """
    spells = residence.where(F.col("district_code").isNotNull() & F.col("valid_from").isNotNull())
    w = Window.partitionBy("person_id").orderBy("valid_from", "district_code")
    return spells.select("person_id", "district_code", "valid_from",
                         F.lag("district_code").over(w).alias("origin")).where(
        F.col("origin").isNotNull() & (F.col("origin") != F.col("district_code"))).select(
        "person_id", F.col("valid_from").cast("date").alias("moved_on"),
        F.col("origin").alias("origin_district_code"), F.col("district_code").alias("destination_district_code"))


def migration_in_period(residence: DataFrame, period_start: dt.date, period_end: dt.date) -> DataFrame:
    """Moves between districts within one period (迁移流向), per origin and destination district.

    → ``marts.population_migration_period_flows``. A move (:func:`district_moves`) counts when it happened in
    [``period_start``, ``period_end``] (its new spell's ``valid_from``, a business date, both ends included).

    Args:
        residence: SCD2 residence history (``person_id``, ``district_code``, ``valid_from`` DATE).
        period_start: first day of the period.
        period_end: last day (the logical date).

    Returns:
        DataFrame ``period_start`` DATE, ``period_end`` DATE, ``origin_district_code`` STRING,
        ``destination_district_code`` STRING, ``moves`` LONG (moves), ``movers`` LONG (distinct persons);
        key (period_end, origin_district_code, destination_district_code); only pairs with a move.

    Raises:
        ValueError: ``period_start`` after ``period_end``.
    """
    if period_start > period_end:
        raise ValueError(f"period_start {period_start} is after period_end {period_end}")
    moves = district_moves(residence).where(
        F.col("moved_on").between(F.lit(period_start).cast("date"), F.lit(period_end).cast("date")))
    return moves.groupBy("origin_district_code", "destination_district_code").agg(
        F.count(F.lit(1)).cast("long").alias("moves"), F.countDistinct("person_id").cast("long").alias("movers"),
    ).select(F.lit(period_start).cast("date").alias("period_start"), F.lit(period_end).cast("date").alias("period_end"),
             "origin_district_code", "destination_district_code", "moves", "movers")


def migration_by_district(residence: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Monthly origin–destination flows and in/out/net migration per district, from residence history.

    Input is SCD2 residence history (one row per person and residence spell; ``valid_to`` exclusive,
    NULL while current). A move is a spell whose district differs from the person's previous spell
    (ordered by ``valid_from``); it happens in the month of the new spell's ``valid_from``. The first
    spell of a person is not a move (births / first registration are not migration). Spells with NULL
    ``district_code`` or ``valid_from`` are ignored.

    Rates (per 1,000, 国家统计局 迁移率 convention): ``in_rate`` = 1000 × in_moves / population at the
    start of the month, ``out_rate`` and ``net_rate`` likewise; population at the month start = persons
    with a spell in the district where valid_from ≤ month start < valid_to (or valid_to NULL); NULL when 0.
    Months are every month from the first to the last move; districts are every district in the history.

    Args:
        residence: ``person_id`` STRING, ``district_code`` STRING, ``valid_from`` DATE, ``valid_to`` DATE.

    Returns:
        (flows, rates):
        flows → ``marts.population_migration_flows``: ``month`` DATE (first day), ``origin_district_code``
        STRING, ``destination_district_code`` STRING, ``moves`` LONG, ``movers`` LONG (distinct persons);
        key (month, origin_district_code, destination_district_code).
        rates → ``marts.population_migration_rates``: ``month`` DATE, ``district_code`` STRING,
        ``population_start`` LONG, ``in_moves`` LONG, ``out_moves`` LONG, ``net_moves`` LONG,
        ``in_rate`` / ``out_rate`` / ``net_rate`` DOUBLE (per 1,000 persons per month);
        key (month, district_code).
    """
    spells = residence.where(F.col("district_code").isNotNull() & F.col("valid_from").isNotNull())
    moves = district_moves(residence).select(
        "person_id", F.trunc("moved_on", "month").alias("month"), "origin_district_code", "destination_district_code")
    flows = moves.groupBy("month", "origin_district_code", "destination_district_code").agg(
        F.count(F.lit(1)).cast("long").alias("moves"), F.countDistinct("person_id").cast("long").alias("movers"))
    span = moves.agg(F.min("month").alias("lo"), F.max("month").alias("hi")).where(F.col("lo").isNotNull())
    months = span.select(F.explode(F.sequence("lo", "hi", F.expr("INTERVAL 1 MONTH"))).alias("month"))
    grid = spells.select("district_code").distinct().crossJoin(months)
    pop = grid.join(spells.select(F.col("district_code").alias("d"), "valid_from", "valid_to"),
                    (F.col("d") == F.col("district_code")) & (F.col("valid_from") <= F.col("month"))
                    & (F.col("valid_to").isNull() | (F.col("valid_to") > F.col("month"))), "left").groupBy(
        "month", "district_code").agg(F.count("d").cast("long").alias("population_start"))
    ins = moves.groupBy("month", F.col("destination_district_code").alias("district_code")).agg(
        F.count(F.lit(1)).cast("long").alias("in_moves"))
    outs = moves.groupBy("month", F.col("origin_district_code").alias("district_code")).agg(
        F.count(F.lit(1)).cast("long").alias("out_moves"))
    r = pop.join(ins, ["month", "district_code"], "left").join(outs, ["month", "district_code"], "left")
    i, o, p = F.coalesce("in_moves", F.lit(0)).cast("long"), F.coalesce("out_moves", F.lit(0)).cast("long"), \
        F.col("population_start")
    rates = r.select("month", "district_code", "population_start", i.alias("in_moves"), o.alias("out_moves"),
                     (i - o).alias("net_moves"), F.when(p > 0, i * 1000.0 / p).alias("in_rate"),
                     F.when(p > 0, o * 1000.0 / p).alias("out_rate"),
                     F.when(p > 0, (i - o) * 1000.0 / p).alias("net_rate"))
    return flows, rates


# ============================================================================ grid-management theme

def period_bounds(period_end: dt.date, days: int) -> tuple[dt.date, dt.date, dt.date, dt.date]:
    """(start, end, previous start, previous end) of the ``days``-day period ending on ``period_end``
    and of the equally long period just before it.

    Raises:
        ValueError: ``days`` < 1.
    """
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    start = period_end - dt.timedelta(days=days - 1)
    prev_end = start - dt.timedelta(days=1)
    return start, period_end, prev_end - dt.timedelta(days=days - 1), prev_end


def hot_fields(event: DataFrame, period_end: dt.date, days: int = 28, top_n: int = 10,
               city_code: str = "130100") -> DataFrame:
    """Hot fields (热点领域): events by 3-level category in the period, growth vs the previous period, top-N.

    → ``marts.grid_hot_fields``. Period = the ``days`` days ending on ``period_end`` (business dates,
    :func:`period_bounds`); previous period = the ``days`` days before. Both channels. Rows for every
    district (unknown place ``'000000'``) and for the city (``area_level`` 'city', ``district_code`` =
    ``city_code``). Categories: NULL/blank levels → '未分类'. ``change`` = events − prev_events;
    ``growth`` = change / prev_events (NULL when prev_events = 0); ``share`` = events / all events of the
    area in the period. ``rank`` = row_number by events DESC, prev_events ASC, l1, l2, l3 ASC; only
    categories with events > 0 in the period and rank ≤ ``top_n`` are kept.

    Returns:
        DataFrame ``period_start`` DATE, ``period_end`` DATE, ``area_level`` STRING, ``district_code``
        STRING, ``rank`` INT, ``category_l1`` / ``_l2`` / ``_l3`` STRING, ``events`` LONG,
        ``prev_events`` LONG, ``change`` LONG, ``growth`` DOUBLE (fraction), ``share`` DOUBLE (0–1);
        key (period_end, district_code, rank).

    Raises:
        ValueError: ``days`` or ``top_n`` < 1.
    """
    if top_n < 1:
        raise ValueError(f"top_n must be >= 1, got {top_n}")
    start, end, pstart, pend = period_bounds(period_end, days)
    d = _day(event)
    cur = d.between(F.lit(start), F.lit(end))
    prev = d.between(F.lit(pstart), F.lit(pend))
    base = event.where(cur | prev).select(
        _district().alias("district_code"), _cat("category_l1").alias("category_l1"),
        _cat("category_l2").alias("category_l2"), _cat("category_l3").alias("category_l3"),
        cur.cast("int").alias("c"), prev.cast("int").alias("p"))
    keys = ["category_l1", "category_l2", "category_l3"]
    dist = base.groupBy("district_code", *keys).agg(F.sum("c").cast("long").alias("events"),
                                                   F.sum("p").cast("long").alias("prev_events")) \
        .withColumn("area_level", F.lit("district"))
    city = base.groupBy(*keys).agg(F.sum("c").cast("long").alias("events"),
                                   F.sum("p").cast("long").alias("prev_events")) \
        .withColumn("district_code", F.lit(city_code)).withColumn("area_level", F.lit("city"))
    both = dist.unionByName(city).where(F.col("events") > 0)
    area = Window.partitionBy("district_code")
    ranked = both.select("*", F.sum("events").over(area).alias("_total"), F.row_number().over(
        area.orderBy(F.col("events").desc(), F.col("prev_events"), *keys)).alias("rank")).where(
        F.col("rank") <= top_n)
    return ranked.select(
        F.lit(start).cast("date").alias("period_start"), F.lit(end).cast("date").alias("period_end"),
        "area_level", "district_code", F.col("rank").cast("int").alias("rank"), *keys, "events", "prev_events",
        (F.col("events") - F.col("prev_events")).alias("change"),
        F.when(F.col("prev_events") > 0, (F.col("events") - F.col("prev_events")) / F.col("prev_events"))
        .alias("growth"), (F.col("events") / F.col("_total")).alias("share"))


def normal_two_sided_p(z: Column) -> Column:
    """Two-sided p-value of a standard normal z, 2·(1 − Φ(|z|)) = erfc(|z|/√2), native Spark.

    erfc by the Chebyshev fit of Press et al., *Numerical Recipes* (2nd ed., §6.2, ``erfcc``),
    fractional error < 1.2e-7 everywhere. NULL when ``z`` is NULL.
    """
    x = F.abs(z) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.5 * x)
    coeffs = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398,
              1.48851587, -0.82215223, 0.17087277)
    poly = F.lit(coeffs[-1])
    for c in reversed(coeffs[:-1]):
        poly = F.lit(c) + t * poly
    return F.least(F.lit(1.0), t * F.exp(-x * x + poly))


def grid_hotspots(event: DataFrame, period_start: dt.date, period_end: dt.date, cell_col: str = "grid_code",
                  parent_len: int = 12, residents: DataFrame | None = None, cell_level: str = "grid") -> DataFrame:
    """Events per cell and per 1,000 residents, with Getis–Ord Gi* hotspot z-scores and p-values.

    → ``marts.grid_hotspots`` (one run per ``cell_level``: grid cells 网格 and communities).

    * Cells = every distinct non-blank ``cell_col`` in ``event`` (any date) or in ``residents``; ``events``
      = events whose business date is in [period_start, period_end] (0 for a cell without any).
    * Neighbours (binary weights, self included, w_ii = 1): cells with the same parent code — the first
      ``parent_len`` characters of the cell code. :func:`build_theme_tables` uses the street (乡镇街道,
      first 9 digits) for both grid cells (15-digit codes) and communities (12 digits): cells in the
      same street are neighbours. Stated choice: administrative contiguity, as the data has no cell
      polygons (a grid's own community usually holds a single grid, too few neighbours).
    * Gi* (Getis & Ord 1992, Geographical Analysis 24(3); Ord & Getis 1995, eq. 14), over all n cells,
      x̄ = Σx/n, S = sqrt(Σx²/n − x̄²), k_i = neighbours of i:
      z_i = (Σ_{j∈N(i)} x_j − x̄·k_i) / (S·sqrt((n·k_i − k_i²)/(n − 1))); NULL when S = 0, n < 2 or k_i = n.
    * ``p_value`` two-sided normal (:func:`normal_two_sided_p`); ``hotspot`` = 'hot 99%' / 'hot 95%' /
      'hot 90%' when z ≥ 2.576 / 1.960 / 1.645, 'cold …' symmetric, else 'not significant'.
    * ``events_per_1000_residents`` = 1000 × events / residents (NULL when residents unknown or 0).

    Args:
        event: ``unified.event`` (report_date, reported_at, ``cell_col``, district_code).
        residents: optional ``cell_code`` STRING, ``residents`` LONG (unified.person has no grid code
            yet: pass person counts by community for community cells).

    Returns:
        DataFrame ``period_start`` DATE, ``period_end`` DATE, ``cell_level`` STRING, ``cell_code`` STRING,
        ``parent_code`` STRING, ``district_code`` STRING, ``events`` LONG, ``residents`` LONG,
        ``events_per_1000_residents`` DOUBLE, ``neighbours`` LONG, ``gi_star_z`` DOUBLE, ``p_value``
        DOUBLE, ``hotspot`` STRING; key (period_end, cell_level, cell_code).
    """
    code = F.trim(F.col(cell_col))
    in_period = _day(event).between(F.lit(period_start), F.lit(period_end))
    ev = event.where(~_blank(F.col(cell_col))).select(code.alias("cell_code"), in_period.cast("int").alias("hit"),
                                                      _district().alias("d"))
    cells = ev.groupBy("cell_code").agg(F.coalesce(F.sum("hit"), F.lit(0)).cast("long").alias("events"),
                                        F.min("d").alias("district_code"))
    if residents is not None:
        r = residents.select(F.trim("cell_code").alias("cell_code"), F.col("residents").cast("long"))
        cells = cells.join(r, "cell_code", "full").select(
            "cell_code", F.coalesce("events", F.lit(0)).cast("long").alias("events"),
            F.coalesce("district_code", F.substring("cell_code", 1, 6)).alias("district_code"), "residents")
    else:
        cells = cells.withColumn("residents", F.lit(None).cast("long"))
    cells = cells.withColumn("parent_code", F.substring("cell_code", 1, parent_len))
    x = F.col("events").cast("double")
    allw = Window.partitionBy()
    parent = Window.partitionBy("parent_code")
    s = cells.select("*", F.count(F.lit(1)).over(allw).alias("_n"), F.sum(x).over(allw).alias("_sx"),
                     F.sum(x * x).over(allw).alias("_sxx"), F.count(F.lit(1)).over(parent).alias("neighbours"),
                     F.sum(x).over(parent).alias("_local"))
    n, k = F.col("_n").cast("double"), F.col("neighbours").cast("double")
    mean = F.col("_sx") / n
    sd = F.sqrt(F.greatest(F.col("_sxx") / n - mean * mean, F.lit(0.0)))
    denom = sd * F.sqrt((n * k - k * k) / (n - 1))
    z = F.when((F.col("_n") > 1) & (denom > 1e-12), (F.col("_local") - mean * k) / denom)
    cls = F.lit("not significant")
    for crit, label in reversed(HOTSPOT_CLASSES):
        cls = F.when(F.col("gi_star_z") >= crit, F.lit(f"hot {label}")).when(
            F.col("gi_star_z") <= -crit, F.lit(f"cold {label}")).otherwise(cls)
    out = s.withColumn("gi_star_z", z)
    return out.select(
        F.lit(period_start).cast("date").alias("period_start"), F.lit(period_end).cast("date").alias("period_end"),
        F.lit(cell_level).alias("cell_level"), "cell_code", "parent_code", "district_code", "events", "residents",
        F.when(F.col("residents") > 0, F.col("events") * 1000.0 / F.col("residents")).alias(
            "events_per_1000_residents"),
        F.col("neighbours").cast("long").alias("neighbours"), "gi_star_z",
        normal_two_sided_p(F.col("gi_star_z")).alias("p_value"),
        F.when(F.col("gi_star_z").isNull(), F.lit("not significant")).otherwise(cls).alias("hotspot"))


_DATE_IN_JSON = r'"\$date"\s*:\s*"([^"]+)"'


def _json_instant(c: Column) -> Column:
    """Instant of a relaxed Extended JSON date object (``{"$date": "…Z"}``) or ISO text; NULL if blank."""
    text = F.when(F.trim(c).startswith("{"), F.regexp_extract(c, _DATE_IN_JSON, 1)).otherwise(F.trim(c))
    return F.to_timestamp(F.when(F.length(text) > 0, text))


def grid_workflow(staging_events: DataFrame) -> DataFrame:
    """Workflow of every grid event — reporting worker and the times of each status — from the documents.

    Derives what ``unified.event`` does not carry yet. Input: ``staging.wangge_events`` (all logical
    dates: a document is re-extracted whenever it changes); the latest version of each ``event_no`` is
    kept (max ``updated_at``, then max ``_logical_date`` if present, then ``_id``). Times come from
    ``status_history`` in the ``document`` column (relaxed Extended JSON): first time of 已受理 (accepted),
    处理中 (processing) and 已结案 (closed; ``closed_at`` of the document when the history lacks it).

    Args:
        staging_events: STRING columns ``event_no``, ``worker_id``, ``grid_code``, ``reported_at``,
            ``closed_at``, ``updated_at``, ``document`` (+ optional ``_id``, ``_logical_date``).

    Returns:
        DataFrame ``event_id`` STRING ('grid:<event_no>', the unified key), ``grid_code`` STRING,
        ``reported_at`` TIMESTAMP, ``worker_id`` STRING, ``accepted_at`` TIMESTAMP,
        ``processing_at`` TIMESTAMP, ``closed_at`` TIMESTAMP; key (event_id).
    """
    order = [F.col("_updated").desc_nulls_last()]
    if "_logical_date" in staging_events.columns:
        order.append(F.col("_logical_date").desc())
    if "_id" in staging_events.columns:
        order.append(F.col("_id").desc())
    latest = staging_events.withColumn("_updated", _json_instant(F.col("updated_at"))).withColumn(
        "_r", F.row_number().over(Window.partitionBy("event_no").orderBy(*order))).where("_r = 1")
    return latest.select(
        F.concat(F.lit("grid:"), F.col("event_no")).alias("event_id"),
        F.regexp_replace(F.col("grid_code"), r'^"|"$', "").alias("grid_code"),
        _json_instant(F.col("reported_at")).alias("reported_at"),
        *workflow_columns(),
        F.coalesce(_status_time(CLOSED_STATUS), _json_instant(F.col("closed_at"))).alias("closed_at"))


def _status_time(status: str, document: str = "document") -> Column:
    """First time of ``status`` in the document's ``status_history`` (NULL when absent)."""
    hist = F.coalesce(F.from_json(F.get_json_object(F.col(document), "$.status_history"),
                                  "array<struct<status:string,at:string>>"), F.array())
    return F.array_min(F.transform(F.filter(hist, lambda s: s["status"] == status), lambda s: _json_instant(s["at"])))


def workflow_columns(document: str = "document", worker_id: str = "worker_id") -> list[Column]:
    """Columns ``worker_id`` STRING, ``accepted_at`` TIMESTAMP, ``processing_at`` TIMESTAMP of a
    ``staging.wangge_events`` row (first 已受理 / 处理中 times of ``status_history`` in ``document``).

    For wiring into ``govlake.unified.persons.grid_events``: append ``*themes.workflow_columns()`` to its select
    (and the same names, NULL, to ``hotline_events``); ``unified.event`` then carries what
    :func:`grid_worker_stats` reads, and ``grid_worker_stats(event.where("channel = 'grid'"), …)`` replaces
    ``grid_workflow(staging)``.
    """
    return [F.trim(F.col(worker_id)).alias("worker_id"), _status_time("已受理", document).alias("accepted_at"),
            _status_time("处理中", document).alias("processing_at")]


#: Handling deadline (处置时限) in hours from acceptance, used for 按期结案率. The documents carry no
#: deadline; 120 h (5 days) is a configurable GovLake assumption (cities set their own limits per
#: category under GB/T 30428 数字化城市管理信息系统), not a national figure.
DEFAULT_DEADLINE_HOURS = ThemeParams.deadline_hours  # the default of the theme parameter (govlake.marts.theme_config)


def grid_worker_stats(workflow: DataFrame, period_start: dt.date, period_end: dt.date,
                      deadline_hours: float = DEFAULT_DEADLINE_HOURS) -> DataFrame:
    """Per grid worker (网格员): reported, accepted, closed, 结案率, 按期结案率, handling hours, workload.

    → ``marts.grid_worker_stats``. Events = the worker's events reported (business date, session zone
    Asia/Shanghai) in [period_start, period_end]; ``as_of`` = the end of ``period_end`` (next midnight).
    Only history up to ``as_of`` counts (a later status is ignored, so a rerun for a past date is stable).

    * ``reported`` events; ``accepted`` with accepted_at ≤ as_of; ``closed`` with closed_at ≤ as_of;
    * ``closure_rate`` (结案率) = closed / reported;
    * deadline = accepted_at (else reported_at) + ``deadline_hours``; ``due`` = events whose deadline ≤
      as_of or that are closed (应结案数); ``closed_on_time`` = closed with closed_at ≤ deadline;
      ``on_time_closure_rate`` (按期结案率) = closed_on_time / due (NULL when due = 0);
    * handling hours = (closed_at − accepted_at (else reported_at)) / 3600 of closed events:
      ``mean_handling_hours``, ``median_handling_hours`` (exact median, Spark ``median``);
    * workload: ``events_per_week`` = reported / (period days / 7); ``open_at_end`` = reported events
      not closed by as_of (backlog).

    Args:
        workflow: :func:`grid_workflow` output (event_id, worker_id, grid_code, reported_at,
            accepted_at, closed_at).

    Returns:
        DataFrame ``period_start`` DATE, ``period_end`` DATE, ``worker_id`` STRING, ``grid_code`` STRING,
        ``reported`` LONG, ``accepted`` LONG, ``closed`` LONG, ``closure_rate`` DOUBLE, ``due`` LONG,
        ``closed_on_time`` LONG, ``on_time_closure_rate`` DOUBLE, ``mean_handling_hours`` DOUBLE,
        ``median_handling_hours`` DOUBLE, ``open_at_end`` LONG, ``events_per_week`` DOUBLE;
        key (period_end, worker_id). Workers NULL/blank are grouped under 'unknown'.
    """
    as_of = F.to_timestamp(F.lit((period_end + dt.timedelta(days=1)).isoformat()))
    start_clock = F.coalesce(F.col("accepted_at"), F.col("reported_at"))
    closed_at = F.when(F.col("closed_at") < as_of, F.col("closed_at"))
    deadline = F.timestamp_micros(F.unix_micros(start_clock) + F.lit(int(round(deadline_hours * 3_600_000_000))))
    ev = workflow.where(F.to_date("reported_at").between(F.lit(period_start), F.lit(period_end))).select(
        F.when(_blank(F.col("worker_id")), F.lit("unknown")).otherwise(F.trim("worker_id")).alias("worker_id"),
        "grid_code", (F.col("accepted_at") < as_of).alias("acc"), closed_at.alias("closed_at"),
        deadline.alias("deadline"),
        ((F.unix_micros(closed_at) - F.unix_micros(start_clock)) / 3.6e9).alias("hours"))

    def n(cond: Column) -> Column:
        return F.sum(F.when(cond, 1).otherwise(0)).cast("long")

    closed = F.col("closed_at").isNotNull()
    days = (period_end - period_start).days + 1
    agg = ev.groupBy("worker_id").agg(
        F.min("grid_code").alias("grid_code"), F.count(F.lit(1)).cast("long").alias("reported"),
        n(F.coalesce("acc", F.lit(False))).alias("accepted"), n(closed).alias("closed"),
        n(closed | (F.col("deadline") < as_of)).alias("due"),
        n(closed & (F.col("closed_at") <= F.col("deadline"))).alias("closed_on_time"),
        F.round(F.avg(F.when(closed, F.col("hours"))), 6).alias("mean_handling_hours"),
        F.median(F.when(closed, F.col("hours"))).alias("median_handling_hours"))
    return agg.select(
        F.lit(period_start).cast("date").alias("period_start"), F.lit(period_end).cast("date").alias("period_end"),
        "worker_id", "grid_code", "reported", "accepted", "closed",
        (F.col("closed") / F.col("reported")).alias("closure_rate"), "due", "closed_on_time",
        F.when(F.col("due") > 0, F.col("closed_on_time") / F.col("due")).alias("on_time_closure_rate"),
        "mean_handling_hours", F.col("median_handling_hours").cast("double").alias("median_handling_hours"),
        (F.col("reported") - F.col("closed")).alias("open_at_end"),
        (F.col("reported") * 7.0 / days).alias("events_per_week"))


#: Repeat-complaint window in days (重复投诉: same place and category within N days).
REPEAT_WINDOW_DAYS = ThemeParams.repeat_window_days  # the default of the theme parameter (govlake.marts.theme_config)


def repeat_complaints(event: DataFrame, window_days: int = REPEAT_WINDOW_DAYS) -> DataFrame:
    """Flag repeat complaints: an event at the same place and of the same category as an earlier event
    at most ``window_days`` days before it.

    → ``marts.grid_repeat_complaints``. Rule (stated): place = ``grid_code`` (网格), else
    ``community_code``; category = the full 3-level path l1/l2/l3 (NULL levels '未分类'); events are
    ordered by ``reported_at`` then ``event_id``; an event is a repeat when the previous event of the same
    (place, category) was reported ≤ ``window_days`` × 24 h before it. Events without a place (hotline
    messages: places masked) or without ``reported_at`` are not assessed and not output.

    Returns:
        DataFrame ``event_id`` STRING, ``report_date`` DATE, ``district_code`` STRING, ``place_code``
        STRING, ``category_l1`` / ``_l2`` / ``_l3`` STRING, ``previous_event_id`` STRING,
        ``days_since_previous`` DOUBLE (days), ``is_repeat`` BOOLEAN, ``chain_position`` INT (1 = first
        event of the place-category); key (event_id).
    """
    place = F.when(~_blank(F.col("grid_code")), F.trim("grid_code")).when(
        ~_blank(F.col("community_code")), F.trim("community_code"))
    base = event.where(F.col("reported_at").isNotNull()).select(
        "event_id", _day(event).alias("report_date"), _district().alias("district_code"), place.alias("place_code"),
        _cat("category_l1").alias("category_l1"), _cat("category_l2").alias("category_l2"),
        _cat("category_l3").alias("category_l3"), "reported_at").where(F.col("place_code").isNotNull())
    w = Window.partitionBy("place_code", "category_l1", "category_l2", "category_l3").orderBy("reported_at", "event_id")
    gap = (F.unix_micros("reported_at") - F.lag(F.unix_micros("reported_at")).over(w)) / 8.64e10
    out = base.select("*", F.lag("event_id").over(w).alias("previous_event_id"), gap.alias("days_since_previous"),
                      F.row_number().over(w).cast("int").alias("chain_position"))
    return out.select("event_id", "report_date", "district_code", "place_code", "category_l1", "category_l2",
                      "category_l3", "previous_event_id", "days_since_previous",
                      F.coalesce(F.col("days_since_previous") <= window_days, F.lit(False)).alias("is_repeat"),
                      "chain_position")


def repeat_complaint_summary(repeats: DataFrame, period_start: dt.date, period_end: dt.date) -> DataFrame:
    """Repeat complaints counted per district over [period_start, period_end] (report_date).

    → ``marts.grid_repeat_summary``. ``repeat_rate`` = repeat events / assessed events of the period;
    ``places`` = distinct (place, category) with at least one repeat in the period.

    Returns:
        DataFrame ``period_start`` DATE, ``period_end`` DATE, ``district_code`` STRING, ``events`` LONG,
        ``repeat_events`` LONG, ``repeat_rate`` DOUBLE (0–1), ``places`` LONG; key (period_end, district_code).
    """
    p = repeats.where(F.col("report_date").between(F.lit(period_start), F.lit(period_end)))
    key = F.concat_ws("|", "place_code", "category_l1", "category_l2", "category_l3")
    agg = p.groupBy("district_code").agg(
        F.count(F.lit(1)).cast("long").alias("events"),
        F.sum(F.col("is_repeat").cast("int")).cast("long").alias("repeat_events"),
        F.countDistinct(F.when(F.col("is_repeat"), key)).cast("long").alias("places"))
    return agg.select(F.lit(period_start).cast("date").alias("period_start"),
                      F.lit(period_end).cast("date").alias("period_end"), "district_code", "events", "repeat_events",
                      (F.col("repeat_events") / F.col("events")).alias("repeat_rate"), "places")


#: Keywords per event text (jieba TF-IDF, ``jieba.analyse.extract_tags``).
KEYWORDS_PER_EVENT = 3
#: Tokens never used as keywords (placeholders of masked places in the hotline texts, greetings).
KEYWORD_STOPWORDS = frozenset({"你好", "您好", "领导", "谢谢", "请问", "问题", "我们", "现在", "希望", "没有", "这个",
                               "情况", "相关", "部门", "A市", "A1区", "A2区", "A3区", "A4区", "A5区", "A6区", "A7区"})


def extract_keywords(text: str | None, top_k: int = KEYWORDS_PER_EVENT) -> list[str]:
    """Content keywords of one text: jieba TF-IDF top-``top_k`` (``jieba.analyse.extract_tags`` with its
    bundled IDF table, jieba==0.42.1), minus :data:`KEYWORD_STOPWORDS` and pure digits/Latin tokens.

    Deterministic (jieba's dictionary and IDF are fixed; ties keep first-occurrence order).
    Returns ``[]`` for NULL/blank text.
    """
    if not text or not text.strip():
        return []
    import jieba.analyse

    out = []
    for w in jieba.analyse.extract_tags(text, topK=top_k + len(KEYWORD_STOPWORDS)):
        if w in KEYWORD_STOPWORDS or w.isascii() or len(w) < 2:
            continue
        out.append(w)
        if len(out) == top_k:
            break
    return out


def event_keywords(event: DataFrame, top_k: int = KEYWORDS_PER_EVENT) -> DataFrame:
    """One row per (event, keyword) of the event texts (:func:`extract_keywords`).

    Runs jieba in ``mapInPandas`` (vectorised per partition; segmentation has no native Spark form).

    Returns:
        DataFrame ``event_id`` STRING, ``keyword`` STRING, ``position`` INT (1 = highest TF-IDF);
        key (event_id, keyword).
    """
    def tag(batches):
        import pandas as pd

        for pdf in batches:
            rows = [(eid, kw, i + 1) for eid, text in zip(pdf["event_id"], pdf["text"], strict=False)
                    for i, kw in enumerate(extract_keywords(text, top_k))]
            yield pd.DataFrame(rows, columns=["event_id", "keyword", "position"])

    return event.select("event_id", "text").mapInPandas(tag, "event_id string, keyword string, position int")


#: Keyword label of an event whose text gave no keyword, and of keywords outside the top list.
NO_KEYWORD = "(无)"
OTHER_KEYWORD = "(其他)"


def cross_cube(event: DataFrame, keywords: DataFrame, period_start: dt.date, period_end: dt.date,
               max_keywords: int = 30) -> DataFrame:
    """Cross-analysis cube time × place × type × content (CUBE over week, district, category, keyword).

    → ``marts.grid_cross_cube``. Events of [period_start, period_end] (business date; both channels);
    ``week_start`` ISO week Monday; ``district_code`` ('000000' unknown); ``category_l1`` ('未分类');
    ``keyword`` from ``keywords``: the ``max_keywords`` most frequent keywords of the period (ties by
    code point) are kept, others become '(其他)', events without keyword '(无)'. ``events`` = DISTINCT
    events in the cell, so an event with several keywords counts once on every total that does not
    split by keyword. A NULL dimension means "all" (SQL CUBE); ``grouping_id`` = Spark grouping_id()
    (bit 3 week … bit 0 keyword set when that dimension is rolled up; 0 = finest cell, 15 = grand total).

    Returns:
        DataFrame ``period_start`` DATE, ``period_end`` DATE, ``grouping_id`` INT, ``week_start`` DATE,
        ``district_code`` STRING, ``category_l1`` STRING, ``keyword`` STRING, ``events`` LONG;
        key (period_end, grouping_id, week_start, district_code, category_l1, keyword) null-safe.
    """
    d = _day(event)
    ev = event.where(d.between(F.lit(period_start), F.lit(period_end))).select(
        "event_id", F.trunc(d, "week").alias("week_start"), _district().alias("district_code"),
        _cat("category_l1").alias("category_l1"))
    kw = keywords.join(ev.select("event_id"), "event_id", "left_semi").select("event_id", "keyword").distinct()
    top = kw.groupBy("keyword").agg(F.count(F.lit(1)).alias("c")).select(
        "keyword", F.row_number().over(Window.orderBy(F.col("c").desc(), "keyword")).alias("r")).where(
        F.col("r") <= max_keywords).select("keyword", F.lit(True).alias("_top"))
    kw = kw.join(F.broadcast(top), "keyword", "left").select(
        "event_id", F.when(F.col("_top"), F.col("keyword")).otherwise(F.lit(OTHER_KEYWORD)).alias("keyword"))
    rows = ev.join(kw, "event_id", "left").withColumn("keyword", F.coalesce("keyword", F.lit(NO_KEYWORD)))
    cube = rows.cube("week_start", "district_code", "category_l1", "keyword").agg(
        F.grouping_id().cast("int").alias("grouping_id"), F.countDistinct("event_id").cast("long").alias("events"))
    return cube.select(F.lit(period_start).cast("date").alias("period_start"),
                       F.lit(period_end).cast("date").alias("period_end"), "grouping_id", "week_start",
                       "district_code", "category_l1", "keyword", "events")


# ======================================================================================== entry point

@dataclass(frozen=True)
class MartContext:
    """What a mart builder gets: the inputs of the logical date and its theme's typed parameters."""

    spark: SparkSession
    #: ``unified.person``, ``unified.event``, ``reference.divisions`` (required) and the optional inputs of
    #: :func:`build_theme_tables`.
    inputs: Mapping[str, DataFrame]
    logical_date: dt.date
    params: ThemeParams
    #: District boundaries (enables ``marts.population_density``).
    geojson: dict | None = None

    @property
    def person(self) -> DataFrame:
        return self.inputs["unified.person"]

    @property
    def event(self) -> DataFrame:
        return self.inputs["unified.event"]

    @property
    def period(self) -> tuple[dt.date, dt.date]:
        """(start, end) of the ``params.period_days``-day period ending on the logical date."""
        start, end, _, _ = period_bounds(self.logical_date, self.params.period_days)
        return start, end


MartBuilder = Callable[[MartContext], dict[str, DataFrame]]
#: Mart name (the ``marts`` entries of ``schemas/themes/*.yaml``) → builder returning ``layer.table`` → frame.
#: The only dispatch of mart tables: the first-cut marts (govlake.marts.population) are entries too.
MART_BUILDERS: dict[str, MartBuilder] = {}


def _mart(name: str) -> Callable[[MartBuilder], MartBuilder]:
    def register(fn: MartBuilder) -> MartBuilder:
        MART_BUILDERS[name] = fn
        return fn
    return register


def _divisions(ctx: MartContext) -> DataFrame:
    try:
        return ctx.inputs["reference.divisions"]
    except KeyError:
        raise KeyError("input reference.divisions (district_code, district_name) is required: "
                       "see govlake.marts.reference.divisions_frame") from None


@_mart("population_by_district_sex_age")
def _population_by_district_sex_age(ctx: MartContext) -> dict[str, DataFrame]:
    return {"marts.population_by_district_sex_age":
            first_cut.population_by_district_sex_age(ctx.person, _divisions(ctx), ctx.logical_date)}


@_mart("population_exclusions")
def _population_exclusions(ctx: MartContext) -> dict[str, DataFrame]:
    return {"marts.population_exclusions": first_cut.population_exclusions(ctx.person, ctx.logical_date)}


@_mart("grid_events_by_district_category_week")
def _grid_events_by_district_category_week(ctx: MartContext) -> dict[str, DataFrame]:
    return {"marts.grid_events_by_district_category_week":
            first_cut.grid_events_by_district_category_week(ctx.event, _divisions(ctx))}


@_mart("population_natural_structure")
def _population_natural_structure(ctx: MartContext) -> dict[str, DataFrame]:
    return {"marts.population_natural_structure": population_structure(ctx.person, ctx.logical_date)}


@_mart("population_education_marital")
def _population_education_marital(ctx: MartContext) -> dict[str, DataFrame]:
    return {"marts.population_education_marital": education_marital_structure(
        ctx.person, ctx.logical_date, education_min_age=ctx.params.education_min_age,
        marital_min_age=ctx.params.marital_min_age)}


@_mart("population_registration")
def _population_registration(ctx: MartContext) -> dict[str, DataFrame]:
    return {"marts.population_registration": registration_structure(ctx.person, ctx.logical_date)}


@_mart("population_household_relations")
def _population_household_relations(ctx: MartContext) -> dict[str, DataFrame]:
    if "unified.person_relationship" not in ctx.inputs:
        return {}
    edges = ctx.inputs["unified.person_relationship"]
    return {"marts.population_household_generations": household_generations(ctx.person, edges, ctx.logical_date),
            "marts.population_relationship_edges": relationship_summary(ctx.person, edges, ctx.logical_date)}


@_mart("population_density")
def _population_density(ctx: MartContext) -> dict[str, DataFrame]:
    if ctx.geojson is None:
        return {}
    areas = ctx.spark.createDataFrame(district_areas_km2(ctx.geojson),
                                      "district_code string, district_name string, area_km2 double")
    return {"marts.population_density": population_density(
        population_structure(ctx.person, ctx.logical_date, ("district",)), areas)}


@_mart("population_households")
def _population_households(ctx: MartContext) -> dict[str, DataFrame]:
    return {"marts.population_households": household_structure(ctx.person, ctx.logical_date,
                                                               ctx.params.elderly_age)}


@_mart("population_migration")
def _population_migration(ctx: MartContext) -> dict[str, DataFrame]:
    if "unified.residence_history" not in ctx.inputs:
        return {}
    flows, rates = migration_by_district(ctx.inputs["unified.residence_history"])
    return {"marts.population_migration_flows": flows, "marts.population_migration_rates": rates}


@_mart("population_migration_period")
def _population_migration_period(ctx: MartContext) -> dict[str, DataFrame]:
    if "unified.residence_history" not in ctx.inputs:
        return {}
    start, end = ctx.period
    return {"marts.population_migration_period_flows":
            migration_in_period(ctx.inputs["unified.residence_history"], start, end)}


@_mart("grid_hot_fields")
def _grid_hot_fields(ctx: MartContext) -> dict[str, DataFrame]:
    p = ctx.params
    return {"marts.grid_hot_fields": hot_fields(ctx.event, ctx.logical_date, p.period_days, p.top_n, p.city_code)}


@_mart("grid_hotspots")
def _grid_hotspots(ctx: MartContext) -> dict[str, DataFrame]:
    start, end = ctx.period
    res = counted_residents(ctx.person, ctx.logical_date).where(
        F.trim("community_code").rlike(r"^\d{12}$")).groupBy(
        F.trim("community_code").alias("cell_code")).agg(F.count(F.lit(1)).alias("residents"))
    grid_ev = ctx.event.where(F.col("channel") == "grid")
    return {"marts.grid_hotspots": grid_hotspots(grid_ev, start, end, "grid_code", 9, None, "grid")
            .unionByName(grid_hotspots(grid_ev, start, end, "community_code", 9, res, "community"))}


@_mart("grid_worker_stats")
def _grid_worker_stats(ctx: MartContext) -> dict[str, DataFrame]:
    if "staging.wangge_events" not in ctx.inputs:
        return {}
    start, end = ctx.period
    return {"marts.grid_worker_stats": grid_worker_stats(grid_workflow(ctx.inputs["staging.wangge_events"]),
                                                         start, end, ctx.params.deadline_hours)}


@_mart("grid_repeat_complaints")
def _grid_repeat_complaints(ctx: MartContext) -> dict[str, DataFrame]:
    start, end = ctx.period
    rep = repeat_complaints(ctx.event, ctx.params.repeat_window_days)
    return {"marts.grid_repeat_complaints": rep,
            "marts.grid_repeat_summary": repeat_complaint_summary(rep, start, end)}


@_mart("grid_cross_cube")
def _grid_cross_cube(ctx: MartContext) -> dict[str, DataFrame]:
    start, end = ctx.period
    ev = ctx.event.where(_day(ctx.event).between(F.lit(start), F.lit(end)))
    return {"marts.grid_cross_cube": cross_cube(ev, event_keywords(ev), start, end, ctx.params.max_keywords)}


def load_theme(name: str, themes_dir: Path = THEMES_DIR) -> ThemeConfig:
    """The theme ``<themes_dir>/<name>.yaml``, checked against the marts of :data:`MART_BUILDERS` and the services
    of :mod:`govlake.analysis.services` (:func:`govlake.marts.theme_config.load_theme`).

    Raises:
        FileNotFoundError: no such theme.
        ThemeConfigError: the file is not a valid theme (the message names the file and the field).
    """
    from govlake.analysis.services import SERVICES
    from govlake.marts import theme_config

    return theme_config.load_theme(name, themes_dir, known_marts=tuple(MART_BUILDERS), known_services=SERVICES)


def list_themes(themes_dir: Path = THEMES_DIR) -> list[str]:
    """Names of the configured themes (sorted file stems of ``schemas/themes/*.yaml``)."""
    from govlake.marts import theme_config

    return theme_config.list_themes(themes_dir)


def load_themes(names: Iterable[str] | None = None, themes_dir: Path = THEMES_DIR) -> list[ThemeConfig]:
    """The themes ``names`` (default every configured theme), parsed (:func:`load_theme`)."""
    return [load_theme(n, themes_dir) for n in (list_themes(themes_dir) if names is None else names)]


def build_theme_tables(spark: SparkSession, inputs: Mapping[str, DataFrame], logical_date: dt.date,
                       themes: Iterable[ThemeConfig], geojson: dict | None = None) -> dict[str, DataFrame]:
    """Every table of the ``themes`` for ``logical_date`` as lazy frames (no writes, no file read): theme marts
    (:data:`MART_BUILDERS`) + service outputs (:func:`govlake.analysis.services.run_services`).

    Args:
        inputs: ``unified.person``, ``unified.event`` (required); ``reference.divisions`` (district_code,
            district_name; required by the first-cut marts population_by_district_sex_age and
            grid_events_by_district_category_week); optional ``staging.wangge_events``
            (all dates; enables ``marts.grid_worker_stats``) and ``unified.residence_history`` (read from
            ``unified.person_residence``)
            (person_id, district_code, valid_from, valid_to; enables the migration marts) and
            ``unified.person_relationship`` (enables the generation and relationship-edge marts).
        themes: parsed theme configurations (:func:`load_themes`); each one's ``marts`` selects the marts built
            and ``params`` their settings.
        geojson: district boundaries (enables ``marts.population_density``).

    Returns:
        ``layer.table`` → DataFrame, theme by theme in configuration order.

    Raises:
        KeyError: a required input is missing or a theme names an unknown mart.
    """
    from govlake.analysis.services import run_services

    out: dict[str, DataFrame] = {}
    for required in ("unified.person", "unified.event"):
        if required not in inputs:
            raise KeyError(f"input {required} is required")
    for cfg in themes:
        ctx = MartContext(spark, inputs, logical_date, cfg.params, geojson)
        for m in cfg.marts:
            if m not in MART_BUILDERS:
                raise KeyError(f"theme {cfg.name} ({cfg.source}): unknown mart {m!r}")
            out.update(MART_BUILDERS[m](ctx))
        out.update(run_services(cfg, inputs))
    return out


#: Tables holding one snapshot / period per logical date → their date column (the Delta partition column, equal to
#: the logical date on every row), from the table catalog. The other tables are rewritten whole (when changed).
PARTITIONED_TABLES = {**catalog.partitioned_tables("marts"), **catalog.partitioned_tables("analysis")}
#: The first-cut marts are written first, in this order (the order the marts stage always wrote them in); the other
#: tables follow sorted by name.
FIRST_TABLES = ("marts.population_by_district_sex_age", "marts.population_exclusions",
                "marts.grid_events_by_district_category_week")


def write_order(names: Iterable[str]) -> list[str]:
    """``names`` in the order :func:`run_themes` writes them: :data:`FIRST_TABLES` first, then by name."""
    return sorted(names, key=lambda n: (FIRST_TABLES.index(n) if n in FIRST_TABLES else len(FIRST_TABLES), n))


def run_themes(spark: SparkSession, settings: Settings, logical_date: dt.date, themes: Iterable[str] | None = None,
               historical: bool = False) -> dict[str, bool]:
    """Build and write every theme table for ``logical_date``, then register all tables for Spark SQL.

    Reads the theme files (:func:`load_themes`), ``unified.person``, ``unified.event`` and, when present,
    ``staging.wangge_events`` (all logical dates up to ``logical_date``), ``unified.person_residence`` (SCD2
    residence, the migration input) and ``unified.person_relationship`` (the relationship marts); the divisions
    of the city (:func:`govlake.marts.reference.divisions_frame`) and the boundaries
    ``schemas/reference/boundaries/districts_130100.geojson``. Idempotent: snapshot / period tables
    (:data:`PARTITIONED_TABLES`) replace their ``snapshot_date`` / ``period_end`` partition of the logical
    date only when its content differs (other dates are kept); the others use
    :func:`govlake.core.lake.overwrite_if_changed` — a rerun of a day writes nothing. The unified tables are read as
    published for ``logical_date`` (:func:`govlake.core.lake.read_published`). ``historical`` (a rerun of a past day):
    only the snapshot / period tables are written; the whole tables hold the latest state and are left as they are.
    Tables are written in :func:`write_order`, each followed by the failpoint ``marts.after_table``.

    Returns:
        ``layer.table`` → True when the table was (re)written (whole tables skipped on a historical date are absent).

    Raises:
        RuntimeError: the unified layer was never published on or before ``logical_date``.
        ThemeConfigError: a theme file is not valid.
    """
    import json

    from govlake.core import lake
    from govlake.core.config import REFERENCE_DIR
    from govlake.core.failpoints import failpoint
    from govlake.marts.reference import divisions_frame

    configs = load_themes(themes)

    def load(layer: str, name: str):
        return lake.read_published(spark, settings, layer, name, logical_date)

    person, event = load("unified", "person"), load("unified", "event")
    if person is None or event is None:
        raise RuntimeError(f"marts {logical_date}: the unified layer has no publication on or before that date "
                           "(unify has not completed for it): run unify first")
    inputs = {"unified.person": person, "unified.event": event, "reference.divisions": divisions_frame(spark)}
    # staging has no publications: its rows are per logical date, so the dates up to this one are this day's view
    wangge_path = settings.table_path("staging", "wangge_events")
    wangge = spark.read.format("delta").load(wangge_path) if lake.exists(spark, wangge_path) else None
    if wangge is not None:
        inputs["staging.wangge_events"] = wangge.where(F.col("_logical_date") <= F.lit(logical_date))
    history = load("unified", "person_residence")
    if history is not None:
        inputs["unified.residence_history"] = history
    edges = load("unified", "person_relationship")
    if edges is not None:
        inputs["unified.person_relationship"] = edges
    geojson = json.loads((REFERENCE_DIR / "boundaries" / "districts_130100.geojson").read_text(encoding="utf-8"))
    tables = build_theme_tables(spark, inputs, logical_date, configs, geojson)
    written = {}
    for name in write_order(tables):
        df = tables[name]
        layer, table = name.split(".", 1)
        path = settings.table_path(layer, table)
        if name in PARTITIONED_TABLES:
            # a table written before a column existed (e.g. sources): add it, keep its order
            if lake.exists(spark, path):
                lake.add_missing_columns(spark, path, [(f.name, f.dataType.simpleString()) for f in df.schema.fields])
                have = spark.read.format("delta").load(path).columns
                if set(have) == set(df.columns):
                    df = df.select(*have)
            written[name] = lake.replace_partition_if_changed(spark, df, path, PARTITIONED_TABLES[name], logical_date)
        elif historical:
            continue
        else:
            written[name] = lake.overwrite_if_changed(spark, df, path, _order_by(name, df))
        failpoint("marts.after_table")
    lake.register_tables(spark, settings)
    return written


def _order_by(name: str, df: DataFrame) -> list[str]:
    """Row order of a whole-table write: the contract's primary key, else every column."""
    try:
        key = list(catalog.table(name).primary_key)
    except KeyError:
        key = []
    return key or list(df.columns)
