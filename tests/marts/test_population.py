"""Marts, analysis tables and the decision-support report, on inline fixtures with hand-computed answers."""
from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime

import pandas as pd
import pytest
import yaml

from govlake.analysis import findings, kpis, report
from govlake.analysis import tables as analysis
from govlake.core.catalog import TABLES_DIR
from govlake.marts import population as marts

D = date.fromisoformat
SNAP = D("2025-06-30")

PERSON_SCHEMA = "person_id string, sex_code string, birth_date date, district_code string, is_current boolean"
EVENT_SCHEMA = ("event_id string, channel string, reported_at timestamp, report_date date, district_code string, "
                "category_l1 string, status string")
EVENT_MART_SCHEMA = ("week_start date, district_code string, district_name string, category_l1 string, "
                     "channel string, events long, closed long")
POP_MART_SCHEMA = ("snapshot_date date, district_code string, district_name string, sex_code string, "
                   "age_group string, population long")


def _divisions(spark):
    return spark.createDataFrame(
        [("130102", "长安区"), ("130104", "桥西区"), ("130105", "新华区"), ("130108", "裕华区")],
        "district_code string, district_name string")


def _persons(spark):
    return spark.createDataFrame([
        ("p1", "1", D("2020-06-30"), "130102", True),   # 5th birthday on the snapshot → 05-09
        ("p2", "2", D("2020-07-01"), "130102", True),   # 5th birthday the day after → 00-04
        ("p3", "2", D("1940-06-30"), "130104", True),   # 85 on the snapshot → 85+
        ("p4", "1", D("1940-07-01"), "130104", True),   # still 84 → 80-84
        ("p5", "1", D("2020-06-15"), "130199", True),   # code not in divisions: kept, name NULL
        ("p6", "1", D("1990-01-01"), "130102", False),  # not current: neither counted nor excluded
        ("p7", "2", None, "130102", True),              # missing_birth_date
        ("p8", None, D("1990-01-01"), "130102", True),  # missing_sex_code
        ("p9", "1", D("1990-01-01"), " ", True),        # blank district → missing_district_code
        ("p10", "2", D("2025-07-01"), "130199", True),  # birth_after_snapshot
    ], PERSON_SCHEMA)


def _events(spark):
    return spark.createDataFrame([
        ("e1", "grid", None, D("2025-06-29"), "130102", "城乡建设", "已结案"),    # Sunday → week of 06-23
        ("e2", "grid", None, D("2025-06-23"), "130102", "城乡建设", "处理中"),    # Monday → 06-23
        ("e3", "grid", None, D("2025-06-30"), "130102", "城乡建设", "已结案"),    # Monday → 06-30
        ("e4", "hotline", None, D("2025-06-29"), "130102", "城乡建设", "已受理"),
        ("e5", "grid", None, D("2025-06-24"), None, "环境保护", "已结案"),        # unknown place kept
        ("e6", "hotline", None, D("2025-06-24"), "130104", None, "处理中"),       # uncategorised
        # no report_date: 2025-06-29 17:30 UTC = 2025-06-30 01:30 Asia/Shanghai → week of 06-30
        ("e7", "grid", datetime(2025, 6, 29, 17, 30, tzinfo=UTC), None, "130104", "交通运输", "已结案"),
    ], EVENT_SCHEMA)


def _event_mart(spark):
    return spark.createDataFrame([
        (D("2025-06-23"), "130102", "长安区", "环境保护", "grid", 5, 1),   # ties 城乡建设 (5); listed first
        (D("2025-06-16"), "130102", "长安区", "城乡建设", "grid", 3, 3),
        (D("2025-06-23"), "130102", "长安区", "城乡建设", "hotline", 2, 0),
        (D("2025-06-23"), "130102", "长安区", "交通运输", "grid", 2, 2),
        (D("2025-06-30"), "130102", "长安区", "交通运输", "grid", 9, 0),   # after the period
        (D("2025-06-09"), "130102", "长安区", "交通运输", "grid", 9, 9),   # before the period
        (D("2025-06-23"), "000000", "未知区县", "未分类", "hotline", 1, 0),
        (D("2025-06-16"), "130104", "桥西区", "教育文体", "grid", 4, 4),
    ], EVENT_MART_SCHEMA)


def _pop_mart(spark):
    s = SNAP
    return spark.createDataFrame([
        (s, "130102", "长安区", "1", "30-34", 45), (s, "130102", "长安区", "2", "30-34", 35),
        (s, "130102", "长安区", "1", "70-74", 10), (s, "130102", "长安区", "2", "05-09", 10),
        (s, "130104", "桥西区", "1", "40-44", 30), (s, "130104", "桥西区", "2", "40-44", 36),
        (s, "130104", "桥西区", "2", "85+", 14), (s, "130104", "桥西区", "1", "10-14", 20),
        (s, "130105", "新华区", "1", "60-64", 4), (s, "130105", "新华区", "1", "65-69", 1),
    ], POP_MART_SCHEMA)


def test_age_in_completed_years_birthday_and_29_february(spark):
    from pyspark.sql import functions as F

    pairs = [  # (birth, on, age, group)
        ("2004-02-29", "2025-02-28", 20, "20-24"),  # non-leap year: birthday is 1 March
        ("2004-02-29", "2025-03-01", 21, "20-24"),
        ("2004-02-29", "2024-02-28", 19, "15-19"),
        ("2004-02-29", "2024-02-29", 20, "20-24"),
        ("2020-06-30", "2025-06-30", 5, "05-09"),
        ("2020-06-30", "2025-06-29", 4, "00-04"),
        ("1940-06-30", "2025-06-30", 85, "85+"),
        ("1940-06-30", "2025-06-29", 84, "80-84"),
        ("2025-07-01", "2025-06-30", -1, None),
    ]
    df = spark.createDataFrame([(D(b), D(o)) for b, o, _, _ in pairs], "birth date, on date")
    age = marts.age_in_completed_years(F.col("birth"), F.col("on"))
    got = [(r.age, r.grp) for r in df.select(age.alias("age"), marts.age_group(age).alias("grp")).collect()]
    assert got == [(a, g) for _, _, a, g in pairs]


def test_population_mart_and_exclusions(spark):
    persons = _persons(spark)
    got = {tuple(r) for r in marts.population_by_district_sex_age(persons, _divisions(spark), SNAP).collect()}
    assert got == {
        (SNAP, "130102", "长安区", "1", "05-09", 1),
        (SNAP, "130102", "长安区", "2", "00-04", 1),
        (SNAP, "130104", "桥西区", "2", "85+", 1),
        (SNAP, "130104", "桥西区", "1", "80-84", 1),
        (SNAP, "130199", None, "1", "05-09", 1),
    }
    excl = marts.population_exclusions(persons, SNAP).collect()
    assert [(r.snapshot_date, r.reason, r.persons, r.residents) for r in excl] == [
        (SNAP, "missing_birth_date", 1, 9),
        (SNAP, "birth_after_snapshot", 1, 9),
        (SNAP, "missing_sex_code", 1, 9),
        (SNAP, "missing_district_code", 1, 9),
    ]


def test_event_mart_weeks_unknown_district_and_categories(spark):
    got = {tuple(r) for r in marts.grid_events_by_district_category_week(_events(spark), _divisions(spark)).collect()}
    assert got == {
        (D("2025-06-23"), "130102", "长安区", "城乡建设", "grid", 2, 1),
        (D("2025-06-30"), "130102", "长安区", "城乡建设", "grid", 1, 1),
        (D("2025-06-23"), "130102", "长安区", "城乡建设", "hotline", 1, 0),
        (D("2025-06-23"), "000000", "未知区县", "环境保护", "grid", 1, 1),
        (D("2025-06-23"), "130104", "桥西区", "未分类", "hotline", 1, 0),
        (D("2025-06-30"), "130104", "桥西区", "交通运输", "grid", 1, 1),
    }
    assert all(w.weekday() == 0 for w, *_ in got)


def test_age_structure_ratios_and_ageing_flags(spark):
    from pyspark.sql import functions as F

    below_7 = spark.createDataFrame(  # 裕华区: 65+ = 1 of 15 (6.7 %) → 'not ageing'
        [(SNAP, "130108", "裕华区", "2", "20-24", 14), (SNAP, "130108", "裕华区", "1", "65-69", 1)], POP_MART_SCHEMA)
    both = analysis.age_structure_by_district(_pop_mart(spark)).withColumn("fixture", F.lit("main")).unionByName(
        analysis.age_structure_by_district(below_7).withColumn("fixture", F.lit("below_7")))
    collected = both.collect()  # one Spark action for both fixtures
    rows = {r.district_code: r.asDict() for r in collected if r.fixture == "main"}
    assert {(r.district_code, r.ageing_flag) for r in collected if r.fixture == "below_7"} == {
        ("130108", "not ageing"), ("130100", "not ageing")}
    assert set(rows) == {"130102", "130104", "130105", "130100"}
    # 长安区: male 55, female 45; 0-14 = 10, 15-64 = 80, 65+ = 10 of 100
    a = rows["130102"]
    assert (a["area_level"], a["population"], a["male"], a["female"], a["ageing_flag"]) == (
        "district", 100, 55, 45, "ageing society")
    assert a["sex_ratio"] == pytest.approx(55 / 45 * 100)
    assert (a["share_0_14"], a["share_15_64"], a["share_65_plus"]) == pytest.approx((0.10, 0.80, 0.10))
    assert (a["child_dependency_ratio"], a["old_age_dependency_ratio"], a["total_dependency_ratio"]) == \
        pytest.approx((12.5, 12.5, 25.0))
    # 桥西区: 65+ exactly 14 % → 'aged society' (threshold inclusive); 0-14 = 20, 15-64 = 66
    b = rows["130104"]
    assert (b["male"], b["female"], b["sex_ratio"], b["ageing_flag"]) == (50, 50, 100.0, "aged society")
    assert (b["child_dependency_ratio"], b["old_age_dependency_ratio"], b["total_dependency_ratio"]) == \
        pytest.approx((2000 / 66, 1400 / 66, 3400 / 66))
    # 新华区: no females → NULL sex ratio; 65+ exactly 20 % → 'super-aged'
    c = rows["130105"]
    assert (c["population"], c["sex_ratio"], c["ageing_flag"], c["old_age_dependency_ratio"]) == (
        5, None, "super-aged", 25.0)
    # city row = all rows: 205 persons, 0-14 = 30, 15-64 = 150, 65+ = 25 (12.2 %)
    t = rows["130100"]
    assert (t["area_level"], t["district_name"], t["population"], t["male"], t["female"], t["ageing_flag"]) == (
        "city", "石家庄市", 205, 110, 95, "ageing society")
    assert (t["sex_ratio"], t["share_65_plus"], t["total_dependency_ratio"]) == pytest.approx(
        (110 / 95 * 100, 25 / 205, 55 / 150 * 100))


def test_event_period_complete_weeks():
    assert analysis.event_period(D("2025-06-30"), 2) == (D("2025-06-16"), D("2025-06-29"))  # Monday: week open
    assert analysis.event_period(D("2025-06-29"), 1) == (D("2025-06-23"), D("2025-06-29"))  # Sunday: week complete
    assert analysis.event_period(D("2025-06-30"), 12) == (D("2025-04-07"), D("2025-06-29"))
    with pytest.raises(ValueError):
        analysis.event_period(SNAP, 0)


def test_top_categories_period_share_and_tie_break(spark):
    top = analysis.top_event_categories_by_district(_event_mart(spark), SNAP, weeks=2, top_n=2)
    got = sorted(tuple(r) for r in top.collect())
    p0, p1 = D("2025-06-16"), D("2025-06-29")
    # 长安区 in 06-16..06-29: 城乡建设 3+2 = 5, 环境保护 5, 交通运输 2 → 12; tie 5/5 broken by name
    # ('城' U+57CE < '环' U+73AF); 交通运输 is 3rd and cut by top_n = 2; weeks 06-09 and 06-30 are outside.
    assert got == sorted([
        (p0, p1, "130102", "长安区", 1, "城乡建设", 5, pytest.approx(5 / 12)),
        (p0, p1, "130102", "长安区", 2, "环境保护", 5, pytest.approx(5 / 12)),
        (p0, p1, "000000", "未知区县", 1, "未分类", 1, 1.0),
        (p0, p1, "130104", "桥西区", 1, "教育文体", 4, 1.0),
    ], key=lambda t: t[:5])
    with pytest.raises(ValueError):
        analysis.top_event_categories_by_district(_event_mart(spark), SNAP, top_n=0)


_SPARK_TYPES = {"DATE": "date", "STRING": "string", "LONG": "bigint", "INT": "int", "DOUBLE": "double",
                "BOOLEAN": "boolean"}


def test_contracts_match_output_schemas(spark):
    from pyspark.sql import functions as F

    outputs = {  # schemas only: no Spark action
        "marts.population_by_district_sex_age":
            marts.population_by_district_sex_age(_persons(spark), _divisions(spark), SNAP),
        "marts.population_exclusions": marts.population_exclusions(_persons(spark), SNAP),
        "marts.grid_events_by_district_category_week":
            marts.grid_events_by_district_category_week(_events(spark), _divisions(spark)),
        "analysis.age_structure_by_district": analysis.age_structure_by_district(_pop_mart(spark)),
        "analysis.top_event_categories_by_district":  # stored with the run's logical date, as the stage does
            analysis.top_event_categories_by_district(_event_mart(spark), SNAP)
            .withColumn("logical_date", F.lit(SNAP).cast("date")),
    }
    for name, df in outputs.items():
        contract = yaml.safe_load((TABLES_DIR / f"{name}.yaml").read_text(encoding="utf-8"))
        assert contract["name"] == name
        assert all(set(c) == {"name", "type", "unit", "nullable", "description"} for c in contract["columns"]), name
        declared = [(c["name"], _SPARK_TYPES[c["type"]]) for c in contract["columns"]]
        assert declared == [(f.name, f.dataType.simpleString()) for f in df.schema.fields], name
        assert set(contract["primary_key"]) <= {c["name"] for c in contract["columns"]}, name
        assert all({"name", "definition", "numerator", "denominator", "period", "exclusions"} <= set(k)
                   for k in contract["kpis"]), name


# ------------------------------------------------------------------------------------------ report

def _report_tables() -> dict[str, pd.DataFrame]:
    s = SNAP
    pop = pd.DataFrame([
        (s, "130102", "长安区", "1", "30-34", 40), (s, "130102", "长安区", "2", "30-34", 40),
        (s, "130102", "长安区", "1", "70-74", 10), (s, "130102", "长安区", "2", "05-09", 10),
        (s, "130104", "桥西区", "1", "40-44", 30), (s, "130104", "桥西区", "2", "40-44", 30),
        (s, "130104", "桥西区", "2", "85+", 20), (s, "130104", "桥西区", "1", "10-14", 20),
    ], columns=["snapshot_date", "district_code", "district_name", "sex_code", "age_group", "population"])
    cols = ["snapshot_date", "area_level", "district_code", "district_name", "population", "male", "female",
            "sex_ratio", "share_0_14", "share_15_64", "share_65_plus", "child_dependency_ratio",
            "old_age_dependency_ratio", "total_dependency_ratio", "ageing_flag"]
    age = pd.DataFrame([
        (s, "district", "130102", "长安区", 100, 50, 50, 100.0, .1, .8, .1, 12.5, 12.5, 25.0, "ageing society"),
        (s, "district", "130104", "桥西区", 100, 50, 50, 100.0, .2, .6, .2, 100 / 3, 100 / 3, 200 / 3, "super-aged"),
        (s, "city", "130100", "石家庄市", 200, 100, 100, 100.0, .15, .7, .15, 300 / 14, 300 / 14, 600 / 14,
         "aged society"),
    ], columns=cols)
    events = pd.DataFrame([
        (D("2025-06-16"), "130102", "长安区", "城乡建设", "grid", 6, 6),
        (D("2025-06-23"), "130102", "长安区", "环境保护", "hotline", 2, 1),
        (D("2025-06-23"), "130104", "桥西区", "城乡建设", "grid", 3, 1),
        (D("2025-06-23"), "000000", "未知区县", "未分类", "hotline", 1, 0),
        (D("2025-06-30"), "130104", "桥西区", "交通运输", "grid", 50, 0),  # after the period
    ], columns=["week_start", "district_code", "district_name", "category_l1", "channel", "events", "closed"])
    p0, p1 = D("2025-06-16"), D("2025-06-29")
    top = pd.DataFrame([
        (p0, p1, "130102", "长安区", 1, "城乡建设", 6, .75), (p0, p1, "130102", "长安区", 2, "环境保护", 2, .25),
        (p0, p1, "130104", "桥西区", 1, "城乡建设", 3, 1.0), (p0, p1, "000000", "未知区县", 1, "未分类", 1, 1.0),
    ], columns=["period_start", "period_end", "district_code", "district_name", "rank", "category_l1", "events",
                "share"])
    excl = pd.DataFrame([(s, "missing_birth_date", 2, 202), (s, "missing_sex_code", 0, 202)],
                        columns=["snapshot_date", "reason", "persons", "residents"])
    return {kpis.POPULATION: pop, kpis.AGE_STRUCTURE: age, kpis.EVENTS: events,
            kpis.TOP_CATEGORIES: top, kpis.EXCLUSIONS: excl}


def _square(gb: str, lon: float) -> dict:
    ring = [[lon, 38.0], [lon + 0.1, 38.0], [lon + 0.1, 38.1], [lon, 38.1], [lon, 38.0]]
    return {"type": "Feature", "properties": {"gb": gb}, "geometry": {"type": "MultiPolygon", "coordinates": [[ring]]}}


TOY_GEOJSON = {"type": "FeatureCollection", "features": [_square("156130102", 114.5), _square("156130104", 114.4)]}
EXPECTED_FINDINGS = [
    "老龄化程度最高的区县是桥西区：65岁及以上人口占比 20.0%（超老龄化），全市为 15.0%。",
    "2025-06-16至2025-06-29事件最多的区县是长安区：8 件，每千名居民 80.0 件；全市共 12 件，结案率 66.7%。",
    "同期全市第一大事件类别是“城乡建设”：9 件，占全部事件的 75.0%。",
]


def test_headline_findings_and_kpis():
    tables = _report_tables()
    assert findings.headline_findings(tables) == EXPECTED_FINDINGS
    bare = {key.split(".", 1)[1]: df for key, df in tables.items()}  # keys as the pipeline passes them
    assert findings.headline_findings(bare) == EXPECTED_FINDINGS
    kpi = kpis.headline_kpis(tables)
    assert (kpi["residents"], kpi["ageing_rate"], kpi["events"], kpi["closed"]) == (200, 0.15, 12, 8)
    assert kpi["closure_rate"] == pytest.approx(8 / 12)
    with pytest.raises(KeyError):
        findings.headline_findings({kpis.POPULATION: tables[kpis.POPULATION]})


def test_build_report_self_contained_and_deterministic(tmp_path):
    tables = _report_tables()
    path = report.build_report(tables, TOY_GEOJSON, tmp_path / "a", SNAP)
    assert path == tmp_path / "a" / "index.html" and path.is_file()
    text = path.read_text(encoding="utf-8")
    assert "plotly.js v" in text and "Plotly.newPlot" in text          # plotly.js inline
    assert not re.search(r"<script[^>]*\bsrc\s*=\s*[\"']?(https?:)?//", text, re.I)
    assert not re.search(r"<link[^>]*href\s*=\s*[\"']?(https?:)?//", text, re.I)
    # the district map: GeoJSON polygons on a hidden base map, fitted to them (no tiles, no topojson download)
    assert '"type":"choropleth"' in text and '"fitbounds":"locations"' in text
    assert "properties.gb" in text and "156130104" in text
    for name in ("长安区", "桥西区", "石家庄市"):
        assert name in text
    for finding in EXPECTED_FINDINGS:
        assert f"<li>{finding}</li>" in text
    assert "缺出生日期 2 人" in text and "期内地点不明的事件 1 件（8.3%）" in text
    again = report.build_report(tables, json.loads(json.dumps(TOY_GEOJSON)), tmp_path / "b", "2025-06-30")
    assert again.read_bytes() == path.read_bytes()
