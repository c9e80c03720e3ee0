"""Population and grid-management theme marts (govlake.marts.themes) on inline fixtures. Every figure is compared with
an independent pandas / plain-Python computation on the same rows: exact for counts, approx (1e-6 rel) for ratios."""
from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from itertools import product

import pandas as pd
import pytest
import yaml
from pyspark.sql import functions as F
from scipy.stats import norm

from govlake.analysis import findings, services
from govlake.core import lake
from govlake.core.catalog import TABLES_DIR
from govlake.core.config import REFERENCE_DIR, Settings
from govlake.marts import themes

D = date.fromisoformat
SNAP = D("2025-06-30")
PERSON_SCHEMA = ("person_id string, sex_code string, birth_date date, household_no string, community_code string, "
                 "district_code string, is_current boolean, ethnic_code string, first_seen_date date, "
                 "relation_code string, education_code string, marital_status_code string, registration_type string")
PERSONS = [  # relation (GB/T 4761), education (GB/T 4658), marital status (GB/T 2261.2), registration type
    ("p1", "1", D("1950-01-01"), "h1", "130102001001", "130102", True, "01", SNAP, "02", "21", "22", "户籍"),
    # 70
    ("p2", "2", D("1955-06-30"), "h1", "130102001001", "130102", True, "01", SNAP, "10", "80", "20", "户籍"),
    # 独居老人
    ("p3", "2", D("1940-03-03"), "h2", "130102001002", "130102", True, "03", SNAP, "02", "90", "30", "流动"),
    ("p4", "1", D("1990-05-05"), "h3", "130102002001", "130102", True, "01", SNAP, "02", "14", "10", "流动"),
    ("p5", "2", D("2015-07-01"), "h3", "130102002001", "130102", True, "01", SNAP, "30", "80", None, "流动"),  # 9
    ("p6", "1", D("2020-06-30"), "h3", "130102002001", "130102", True, "01", SNAP, "20", "80", None, "流动"),  # 5
    # 59: alone, not elderly
    ("p7", "2", D("1965-07-01"), "h4", "130104001001", "130104", True, "01", SNAP, "02", None, "40", None),
    ("p8", "1", D("1960-06-30"), "h5", "130104001001", "130104", True, "01", SNAP, "02", "70", "90", "户籍"),  # 65
    ("p9", "2", None, "h5", "130104001001", "130104", True, "01", SNAP, "61", "80", "30", "户籍"),  # age unknown
    # not current
    ("p10", "1", D("1980-01-01"), "h6", "130104001001", "130104", False, "01", SNAP, "02", "20", "20", "户籍"),
    # no household, bad community
    ("p11", "2", D("2000-01-01"), None, "bad", "130104", True, "02", SNAP, None, "31", "10", "户籍"),
    # 纯老户 with p13
    ("p12", "1", D("1958-01-01"), "h7", "130104001002", "130104", True, "01", SNAP, "02", "60", "20", "户籍"),
    ("p13", "2", D("1960-01-01"), "h7", "130104001002", "130104", True, "01", SNAP, "10", "61", "21", "户籍"),
]
#: More households for the generation / relationship marts: h8 three generations, h9 one non-relative (99).
MORE_PERSONS = [
    ("p14", "1", D("1945-01-01"), "h8", "130104001002", "130104", True, "01", SNAP, "02", "80", "30", "户籍"),
    ("p15", "1", D("1975-01-01"), "h8", "130104001002", "130104", True, "01", SNAP, "20", "70", "20", "户籍"),
    ("p16", "2", D("2005-01-01"), "h8", "130104001002", "130104", True, "01", SNAP, "40", "60", "10", "户籍"),
    ("p17", "2", D("1980-01-01"), "h9", "130104001002", "130104", True, "01", SNAP, "99", "47", "20", "流动"),
]
EDGE_SCHEMA = "person_id_1 string, person_id_2 string, relationship string, household_no string, sources array<string>"
HK = ["hukou"]
EDGES = [("p1", "p2", "spouse", "h1", ["civil", "hukou"]), ("p4", "p5", "parent_child", "h3", HK),
         ("p4", "p6", "parent_child", "h3", ["health", "hukou"]),
         ("p12", "p13", "spouse", "h7", HK), ("p14", "p15", "parent_child", "h8", HK),
         ("p3", "p10", "parent_child", "h6", HK),   # to a person who is not current: p3 keeps no registered relative
         ("p7", "p8", "parent_child", "h5", HK)]    # p7 lives alone but has a current relative
EVENT_SCHEMA = ("event_id string, channel string, reported_at timestamp, report_date date, district_code string, "
                "community_code string, grid_code string, category_l1 string, category_l2 string, "
                "category_l3 string, text string, status string")
G1, G2, G3, G4 = "130102001001001", "130102001002001", "130102002001001", "130104001001001"
EVENTS = [  # reported_at is a local (Asia/Shanghai) wall time
    ("e1", "grid", datetime(2025, 6, 24, 9), D("2025-06-24"), "130102", G1[:12], G1, "A", "a1", "x", "t", "已结案"),
    ("e2", "grid", datetime(2025, 6, 25, 10), D("2025-06-25"), "130102", G1[:12], G1, "A", "a1", "x", "t", "处理中"),
    ("e3", "grid", datetime(2025, 6, 18, 9), D("2025-06-18"), "130102", G1[:12], G1, "A", "a1", "x", "t", "已结案"),
    ("e4", "grid", datetime(2025, 6, 26, 9), D("2025-06-26"), "130102", G2[:12], G2, "B", "b1", "y", "t", "已受理"),
    ("e5", "grid", datetime(2025, 6, 20, 9), D("2025-06-20"), "130104", G4[:12], G4, "B", "b1", "y", "t", "已结案"),
    ("e6", "grid", datetime(2025, 6, 27, 10), D("2025-06-27"), "130104", G4[:12], G4, "B", "b1", "y", "t", "已受理"),
    ("e7", "hotline", datetime(2025, 6, 28, 9), D("2025-06-28"), None, None, None, None, None, None, "t", None),
    ("e8", "grid", datetime(2025, 5, 1, 9), D("2025-05-01"), "130102", G3[:12], G3, "A", "a2", "z", "t", "已结案"),
    ("e9", "grid", datetime(2025, 6, 29, 9), D("2025-06-29"), "130102", G3[:12], G3, "A", "a1", "x", "t", "已受理"),
]


def _age(b: date | None, on: date = SNAP) -> int | None:
    return None if b is None else on.year - b.year - ((on.month, on.day) < (b.month, b.day))


def _persons(spark):
    return spark.createDataFrame(PERSONS, PERSON_SCHEMA)


def _events(spark):
    return spark.createDataFrame(EVENTS, EVENT_SCHEMA)


def _ppdf() -> pd.DataFrame:
    return pd.DataFrame(PERSONS, columns=[c.split()[0] for c in PERSON_SCHEMA.split(", ")])


def _epdf() -> pd.DataFrame:
    df = pd.DataFrame(EVENTS, columns=[c.split()[0] for c in EVENT_SCHEMA.split(", ")])
    return df.assign(district=df["district_code"].fillna("000000"),
                     **{f"category_l{i}": df[f"category_l{i}"].fillna("未分类") for i in (1, 2, 3)})


# ------------------------------------------------------------------------------------- population theme

def test_population_structure_all_levels(spark):
    got = {(r.area_level, r.area_code): r.asDict()
           for r in themes.population_structure(_persons(spark), SNAP).collect()}
    p = _ppdf()
    p["age"] = [_age(b) for b in p["birth_date"]]
    p = p[p["is_current"] & p["age"].notna()].copy()
    p["district"], p["street"] = p["district_code"], [c[:9] if c.isdigit() and len(c) == 12 else "0" * 9
                                                      for c in p["community_code"]]
    p["community"] = [c if c.isdigit() and len(c) == 12 else "0" * 12 for c in p["community_code"]]
    exp = {}
    for level in ("district", "street", "community"):
        for code, g in p.groupby(level):
            young, work, old = (g["age"] < 15).sum(), ((g["age"] >= 15) & (g["age"] < 65)).sum(), (g["age"] >= 65).sum()
            male, female = (g["sex_code"] == "1").sum(), (g["sex_code"] == "2").sum()
            exp[(level, code)] = dict(population=len(g), male=male, female=female, age_0_14=young, age_15_64=work,
                                      age_65_plus=old, sex_ratio=male * 100 / female if female else None,
                                      ageing_rate_65=old / len(g),
                                      old_age_dependency_ratio=old * 100 / work if work else None,
                                      total_dependency_ratio=(young + old) * 100 / work if work else None)
    assert set(got) == set(exp) and len([k for k in exp if k[0] == "community"]) == 6
    for k, e in exp.items():
        for col, v in e.items():
            assert got[k][col] == (v if isinstance(v, (int,)) or v is None else pytest.approx(v)), (k, col)
    assert got[("district", "130102")]["population"] == 6 and got[("district", "130104")]["population"] == 5
    with pytest.raises(ValueError):
        themes.population_structure(_persons(spark), SNAP, ("province",))


def test_areas_on_the_authalic_sphere_and_density(spark):
    r = themes.AUTHALIC_RADIUS_M
    ring = [[114.4, 38.0], [114.5, 38.0], [114.5, 38.1], [114.4, 38.1], [114.4, 38.0]]
    rect = r * r * math.radians(0.1) * (math.sin(math.radians(38.1)) - math.sin(math.radians(38.0)))
    assert themes.ring_area_m2(ring) == pytest.approx(rect, rel=1e-12)
    hole = [[114.42, 38.02], [114.44, 38.02], [114.44, 38.04], [114.42, 38.04], [114.42, 38.02]]
    hole_m2 = r * r * math.radians(0.02) * (math.sin(math.radians(38.04)) - math.sin(math.radians(38.02)))
    geo = {"features": [
        {"properties": {"gb": "156130102", "name": "长安区"},
         "geometry": {"type": "Polygon", "coordinates": [ring, hole]}},
        {"properties": {"gb": "156130105", "name": "新华区"},
         "geometry": {"type": "MultiPolygon", "coordinates": [[ring]]}},
    ]}
    areas = themes.district_areas_km2(geo)
    assert [a[:2] for a in areas] == [("130102", "长安区"), ("130105", "新华区")]
    assert areas[0][2] == pytest.approx((rect - hole_m2) / 1e6, rel=1e-12)
    real = themes.district_areas_km2(
        json.loads((REFERENCE_DIR / "boundaries" / "districts_130100.geojson").read_text()))
    assert len(real) == 22 and abs(sum(a[2] for a in real) / 14_464 - 1) < 0.05  # 石家庄市 land area 14,464 km²
    dens = themes.population_density(themes.population_structure(_persons(spark), SNAP, ("district",)),
                                     spark.createDataFrame(areas, "district_code string, district_name string, "
                                                                  "area_km2 double"))
    got = {x.district_code: (x.population, x.area_km2, x.density_per_km2) for x in dens.collect()}
    assert got["130102"] == (6, pytest.approx(areas[0][2]), pytest.approx(6 / areas[0][2]))
    assert got["130105"] == (0, pytest.approx(areas[1][2]), 0.0)
    assert got["130104"] == (5, None, None)  # residents without a boundary


def test_household_structure_lone_and_elderly_only(spark):
    got = {r.district_code: r.asDict() for r in themes.household_structure(_persons(spark), SNAP).collect()}
    p = _ppdf()
    p = p[p["is_current"] & p["household_no"].notna()]
    exp = {}
    for d, g in p.groupby(p.groupby("household_no")["district_code"].transform("min")):
        sizes = g.groupby("household_no").size()
        old = g.assign(o=[(_age(b) or -1) >= 60 for b in g["birth_date"]]).groupby("household_no")["o"].sum()
        exp[d] = dict(households=len(sizes), persons=len(g), size_1=(sizes == 1).sum(), size_2=(sizes == 2).sum(),
                      size_3=(sizes == 3).sum(), size_5_plus=(sizes >= 5).sum(),
                      elderly_living_alone=((sizes == 1) & (old == 1)).sum(),
                      elderly_only_households=((sizes >= 2) & (old == sizes)).sum(),
                      elderly_only_persons=sizes[(sizes >= 2) & (old == sizes)].sum(), elderly_persons=old.sum())
    for d, e in exp.items():
        assert {k: got[d][k] for k in e} == e, d
    assert (got["130102"]["elderly_living_alone"], got["130102"]["elderly_only_households"]) == (1, 1)
    assert (got["130104"]["elderly_living_alone"], got["130104"]["elderly_only_households"]) == (0, 1)


def _all_persons(spark):
    return spark.createDataFrame(PERSONS + MORE_PERSONS, PERSON_SCHEMA)


def _counted_pdf() -> pd.DataFrame:
    """Counted residents (current, birth date, sex, district) of PERSONS + MORE_PERSONS with age and area codes."""
    p = pd.DataFrame(PERSONS + MORE_PERSONS, columns=[c.split()[0] for c in PERSON_SCHEMA.split(", ")])
    p["age"] = [_age(b) for b in p["birth_date"]]
    p = p[p["is_current"] & p["age"].notna()].copy()
    ok = [c.isdigit() and len(c) == 12 for c in p["community_code"]]
    p["district"] = p["district_code"]
    p["street"] = [c[:9] if k else "0" * 9 for c, k in zip(p["community_code"], ok, strict=False)]
    p["community"] = [c if k else "0" * 12 for c, k in zip(p["community_code"], ok, strict=False)]
    return p


def test_education_and_marital_structure_census_floors(spark):
    got = {(r.area_level, r.area_code, r.dimension, r.code): r
           for r in themes.education_marital_structure(_all_persons(spark), SNAP).collect()}
    p = _counted_pdf()
    edu = p[p["age"] >= 6].assign(dimension="education",
                                  code=[c[0] + "0" if c else "unknown" for c in p[p["age"] >= 6]["education_code"]])
    mar = p[p["age"] >= 15].assign(dimension="marital_status",
                                   code=[("20" if c in ("21", "22", "23") else c) if c else "unknown"
                                         for c in p[p["age"] >= 15]["marital_status_code"]])
    exp = {}
    for level in ("district", "street", "community"):
        for rows in (edu, mar):
            base = rows.groupby(level).size()
            for (area, code), g in rows.groupby([level, "code"]):
                exp[(level, area, rows["dimension"].iloc[0], code)] = (
                    len(g), int((g["sex_code"] == "1").sum()), int((g["sex_code"] == "2").sum()), int(base[area]),
                    len(g) / base[area])
    assert set(got) == set(exp)
    for k, (n, m, f, base, share) in exp.items():
        r = got[k]
        assert (r.persons, r.male, r.female, r.base_population) == (n, m, f, base), k
        assert r.share == pytest.approx(share) and r.snapshot_date == SNAP, k
    # hand-checked: 130102 education 6+ = p1..p5 (p6 is 5: its code 80 is not counted); 21 → 20, 14 → 10
    assert {k[3]: got[k].persons for k in got if k[:3] == ("district", "130102", "education")} == {
        "20": 1, "80": 2, "90": 1, "10": 1}
    # 130104 marital status 15+: p7 40, p8 90, p11 10, p12 20, p13 21→20, p14 30, p15 20, p16 10, p17 20
    assert {k[3]: got[k].persons for k in got if k[:3] == ("district", "130104", "marital_status")} == {
        "40": 1, "90": 1, "10": 2, "20": 4, "30": 1}
    assert got[("district", "130104", "education", "unknown")].name_zh == "不详"  # p7 has no code
    assert got[("district", "130102", "education", "20")].name_zh == "大学本科教育"
    assert got[("district", "130104", "marital_status", "20")].name_zh == "已婚"
    assert got[("street", "000000000", "education", "30")].district_code == "130104"  # p11, bad community code


def test_registered_and_floating_population(spark):
    got = {(r.area_level, r.area_code): r for r in themes.registration_structure(_all_persons(spark), SNAP).collect()}
    p = _counted_pdf()
    exp = {}
    for level in ("district", "street", "community"):
        for area, g in p.groupby(level):
            reg, flo = g[g["registration_type"] == "户籍"], g[g["registration_type"] == "流动"]
            exp[(level, area)] = (len(g), len(reg), int((reg["sex_code"] == "1").sum()),
                                  int((reg["sex_code"] == "2").sum()), len(flo), int((flo["sex_code"] == "1").sum()),
                                  int((flo["sex_code"] == "2").sum()), len(g) - len(reg) - len(flo))
    assert set(got) == set(exp)
    for k, e in exp.items():
        r = got[k]
        assert (r.population, r.registered, r.registered_male, r.registered_female, r.floating, r.floating_male,
                r.floating_female, r.registration_unknown) == e, k
        known = e[1] + e[4]
        assert r.floating_share == (pytest.approx(e[4] / known) if known else None), k
        assert r.registration_coverage == pytest.approx(known / e[0]), k
    # 130102: p1 p2 registered, p3-p6 floating; 130104: p7 unknown, p17 floating, 7 registered (p9 has no birth date)
    assert (got[("district", "130102")].registered, got[("district", "130102")].floating) == (2, 4)
    assert (got[("district", "130104")].population, got[("district", "130104")].registered,
            got[("district", "130104")].floating, got[("district", "130104")].registration_unknown) == (9, 7, 1, 1)
    assert got[("district", "130104")].floating_share == pytest.approx(1 / 8)


def test_household_generations_and_persons_without_relatives(spark):
    got = {r.district_code: r.asDict() for r in themes.household_generations(
        _all_persons(spark), spark.createDataFrame(EDGES, EDGE_SCHEMA), SNAP).collect()}
    # independent plain-Python rule: generation of each relation code relative to the head
    def gen(code):
        if code in ("01", "02") or code[0] in "17" or code in ("91", "92"):
            return 0
        if code[0] in "23" or code in ("93", "94", "95", "96"):
            return -1
        if code[0] == "4":
            return -3 if code in ("47", "48") else -2
        if code[0] == "5" or "81" <= code <= "90":
            return 1
        if code[0] == "6":
            return 3 if code in ("66", "67", "68") else 2
        return None
    rows = [r for r in PERSONS + MORE_PERSONS if r[6] and r[3]]
    households = defaultdict(list)
    for r in rows:
        households[r[3]].append(r)
    alive = {r[0] for r in PERSONS + MORE_PERSONS if r[6]}
    linked = {x for a, b, *_ in EDGES if a in alive and b in alive for x in (a, b)}
    exp = defaultdict(Counter)
    for members in households.values():
        d = min(m[5] for m in members)
        gens = {gen(m[9]) for m in members} - {None}
        e = exp[d]
        e["households"] += 1
        e[{0: "generation_unknown", 1: "one_generation", 2: "two_generation"}.get(len(gens),
                                                                                  "three_plus_generation")] += 1
        e["skip_generation"] += len(gens) == 2 and max(gens) - min(gens) >= 2
        e["persons"] += len(members)
        e["persons_without_relatives"] += len(members) == 1 and members[0][0] not in linked
    assert set(got) == set(exp)
    for d, e in exp.items():
        assert {k: got[d][k] for k in e} == dict(e), d
    # hand-checked: 130104 = h4 (one), h5 (head + grandmother 61: two, skip), h7 (one), h8 (02/20/40: three),
    # h9 (99 only: unknown); without relatives: p3 (edge to a non-current person only) and p17; p7 has p8
    assert {k: got["130104"][k] for k in ("households", "one_generation", "two_generation", "three_plus_generation",
                                          "generation_unknown", "skip_generation", "persons",
                                          "persons_without_relatives")} == {
        "households": 5, "one_generation": 2, "two_generation": 1, "three_plus_generation": 1,
        "generation_unknown": 1, "skip_generation": 1, "persons": 9, "persons_without_relatives": 1}
    assert (got["130102"]["one_generation"], got["130102"]["two_generation"],
            got["130102"]["persons_without_relatives"]) == (2, 1, 1)
    assert got["130104"]["three_plus_share"] == pytest.approx(1 / 4)
    assert got["130104"]["one_generation_share"] == pytest.approx(2 / 4)
    assert got["130102"]["share_without_relatives"] == pytest.approx(1 / 6)


def test_relationship_edges_by_type_and_district(spark):
    # plus edges stated only by a marriage registration (no household: the persons' district) or a birth
    # certificate between a current and a non-current person (the current one's district), or between persons
    # of whom none is current ('000000')
    extra = [("p7", "p11", "spouse", None, ["civil"]), ("p10", "p4", "parent_child", None, ["health"]),
             ("p10", "p99", "spouse", None, ["civil"])]
    got = {(r.district_code, r.relationship, r.sources): (r.edges, r.edges_between_current, r.persons, r.households)
           for r in themes.relationship_summary(_all_persons(spark), spark.createDataFrame(EDGES + extra, EDGE_SCHEMA),
                                                SNAP).collect()}
    assert got == {
        ("130102", "spouse", "civil+hukou"): (1, 1, 2, 1),
        # p4-p5 (h3) and p3-p10: household h6 has no current member left → p3's district
        ("130102", "parent_child", "hukou"): (2, 1, 4, 2),
        ("130102", "parent_child", "health+hukou"): (1, 1, 2, 1),
        ("130104", "spouse", "hukou"): (1, 1, 2, 1), ("130104", "parent_child", "hukou"): (2, 2, 4, 2),
        ("000000", "spouse", "civil"): (1, 0, 2, 0),  # p10 not current, p99 unknown
        ("130104", "spouse", "civil"): (1, 1, 2, 0),  # p7 130104, p11 130104: no household counted
        ("130102", "parent_child", "health"): (1, 0, 2, 0),  # p10 not current: p4's district
    }


def test_migration_flows_and_rates(spark):
    hist = [("P1", "130102", D("2024-01-01"), D("2025-02-10")), ("P1", "130104", D("2025-02-10"), D("2025-04-05")),
            ("P1", "130105", D("2025-04-05"), None), ("P2", "130104", D("2024-05-01"), D("2025-02-20")),
            ("P2", "130102", D("2025-02-20"), None), ("P3", "130102", D("2023-01-01"), None),
            ("P4", "130105", D("2025-03-15"), None)]
    flows, rates = themes.migration_by_district(
        spark.createDataFrame(hist, "person_id string, district_code string, valid_from date, valid_to date"))
    by_person = defaultdict(list)
    for h in sorted(hist, key=lambda h: (h[0], h[2])):
        by_person[h[0]].append(h)
    moves = [(b[2].replace(day=1), a[1], b[1], a[0]) for spells in by_person.values()
             for a, b in zip(spells, spells[1:], strict=False) if a[1] != b[1]]
    exp_flows = Counter((m, o, d) for m, o, d, _ in moves)
    assert {(r.month, r.origin_district_code, r.destination_district_code): r.moves
            for r in flows.collect()} == exp_flows
    months = [D("2025-02-01"), D("2025-03-01"), D("2025-04-01")]
    exp_rates = {}
    for m, dist in product(months, {h[1] for h in hist}):
        pop = sum(1 for h in hist if h[1] == dist and h[2] <= m and (h[3] is None or h[3] > m))
        i = sum(1 for mm, _, d, _ in moves if mm == m and d == dist)
        o = sum(1 for mm, s, _, _ in moves if mm == m and s == dist)
        exp_rates[(m, dist)] = (pop, i, o, i - o, (i - o) * 1000 / pop if pop else None)
    got = {(r.month, r.district_code): (r.population_start, r.in_moves, r.out_moves, r.net_moves, r.net_rate)
           for r in rates.collect()}
    assert got.keys() == exp_rates.keys()
    for k, e in exp_rates.items():
        assert got[k][:4] == e[:4] and got[k][4] == (pytest.approx(e[4]) if e[4] is not None else None), k


def test_migration_in_period_counts_moves_dated_in_the_period(spark):
    # P1 moves 长安→桥西 on the first day and 桥西→新华 on the last day of the period; P2 moved before it;
    # P3 moves 长安→桥西 in it; P4 changes address within 新华区 (not a move); P5 only has a first spell (not a move);
    # P6 moves the day after the period
    hist = [("P1", "130102", D("2024-01-01")), ("P1", "130104", D("2025-06-03")), ("P1", "130105", D("2025-06-30")),
            ("P2", "130102", D("2024-01-01")), ("P2", "130104", D("2025-06-02")),
            ("P3", "130102", D("2023-05-01")), ("P3", "130104", D("2025-06-15")),
            ("P4", "130105", D("2022-01-01")), ("P4", "130105", D("2025-06-10")),
            ("P5", "130102", D("2025-06-20")),
            ("P6", "130105", D("2024-01-01")), ("P6", "130102", D("2025-07-01"))]
    res = spark.createDataFrame(hist, "person_id string, district_code string, valid_from date")
    got = sorted(tuple(r) for r in themes.migration_in_period(res, D("2025-06-03"), SNAP).collect())
    assert got == [(D("2025-06-03"), SNAP, "130102", "130104", 2, 2),
                   (D("2025-06-03"), SNAP, "130104", "130105", 1, 1)]
    with pytest.raises(ValueError, match="after"):
        themes.migration_in_period(res, SNAP, D("2025-06-03"))


# -------------------------------------------------------------------------------- grid-management theme

def test_hot_fields_growth_and_top_n(spark):
    got = {(r.district_code, r.rank): r for r in themes.hot_fields(_events(spark), SNAP, days=7, top_n=2).collect()}
    e = _epdf()
    cur = e[(e["report_date"] >= D("2025-06-24")) & (e["report_date"] <= SNAP)]
    prev = e[(e["report_date"] >= D("2025-06-17")) & (e["report_date"] <= D("2025-06-23"))]
    keys = ["category_l1", "category_l2", "category_l3"]
    exp = {}
    for area, c, pv in [(d, cur[cur.district == d], prev[prev.district == d]) for d in sorted(set(cur.district))] + \
            [("130100", cur, prev)]:
        cc, pc = Counter(map(tuple, c[keys].values)), Counter(map(tuple, pv[keys].values))
        ranked = sorted(cc, key=lambda k: (-cc[k], pc.get(k, 0), k))[:2]
        for rank, k in enumerate(ranked, 1):
            p = pc.get(k, 0)
            exp[(area, rank)] = (k, cc[k], p, (cc[k] - p) / p if p else None, cc[k] / len(c))
    assert set(got) == set(exp)
    for k, (cat, n, p, growth, share) in exp.items():
        r = got[k]
        assert ((r.category_l1, r.category_l2, r.category_l3), r.events, r.prev_events) == (cat, n, p), k
        assert r.growth == (pytest.approx(growth) if growth is not None else None) and r.share == pytest.approx(share)
    assert got[("130100", 1)].events == 3 and got[("130100", 1)].growth == pytest.approx(2.0)  # A/a1/x: 3 vs 1


def test_gi_star_hotspots_against_numpy_formula(spark):
    residents = spark.createDataFrame([(G1, 50), (G2, 20), ("130104001002001", 10)], "cell_code string, residents long")
    rows = themes.grid_hotspots(_events(spark), D("2025-06-24"), SNAP, "grid_code", 9, residents).collect()
    e = _epdf()
    cells = sorted(set(e["grid_code"].dropna()) | {G1, G2, "130104001002001"})
    x = {c: int(((e["grid_code"] == c) & (e["report_date"] >= D("2025-06-24"))).sum()) for c in cells}
    n = len(cells)
    mean = sum(x.values()) / n
    s = math.sqrt(sum(v * v for v in x.values()) / n - mean ** 2)
    got = {r.cell_code: r for r in rows}
    assert set(got) == set(cells)
    for c in cells:
        nb = [d for d in cells if d[:9] == c[:9]]
        k = len(nb)
        z = (sum(x[d] for d in nb) - mean * k) / (s * math.sqrt((n * k - k * k) / (n - 1)))
        r = got[c]
        assert (r.events, r.neighbours) == (x[c], k), c
        assert r.gi_star_z == pytest.approx(z, rel=1e-9) and r.p_value == pytest.approx(2 * norm.sf(abs(z)), abs=1e-6)
    assert got[G1].events_per_1000_residents == pytest.approx(1000 * 2 / 50)
    assert got[G3].residents is None and got[G3].events_per_1000_residents is None
    assert {r.hotspot for r in rows} == {"not significant"}


def _doc(history: list[tuple[str, str]]) -> str:
    return json.dumps({"status_history": [{"status": s, "at": {"$date": t}} for s, t in history]}, ensure_ascii=False)


def test_grid_workflow_and_worker_stats(spark):
    # (event_no, worker, reported, [(status, at)], logical_date); times UTC. as_of = 2025-07-01 00:00 +08 = 06-30 16:00Z
    docs = [
        ("A", "W1", "2025-06-24T08:00:00Z", [("已受理", "2025-06-24T08:00:00Z")], D("2025-06-24")),  # old version
        ("A", "W1", "2025-06-24T08:00:00Z", [("已受理", "2025-06-24T08:00:00Z"), ("处理中", "2025-06-24T09:00:00Z"),
                                             ("已结案", "2025-06-25T08:00:00Z")], D("2025-06-25")),
        ("B", "W1", "2025-06-26T00:00:00Z", [("已受理", "2025-06-26T00:00:00Z"), ("已结案", "2025-07-05T00:00:00Z")],
         D("2025-07-05")),                                                         # closed after as_of
        ("C", "W1", "2025-06-10T00:00:00Z", [("已受理", "2025-06-10T00:00:00Z")], D("2025-06-10")),  # before period
        ("D", "W2", "2025-06-24T02:00:00Z", [("已受理", "2025-06-24T02:00:00Z"), ("已结案", "2025-06-30T02:00:00Z")],
         D("2025-06-30")),                                                         # 144 h: late
        ("E", "W2", "2025-06-25T00:00:00Z", [("已受理", "2025-06-25T00:00:00Z")], D("2025-06-25")),  # overdue, open
    ]
    rows = [(no, w, G1, json.dumps({"$date": rep}), json.dumps({"$date": h[-1][1]}), _doc(h), ld)
            for no, w, rep, h, ld in docs]
    staging = spark.createDataFrame(rows, "event_no string, worker_id string, grid_code string, reported_at string, "
                                          "updated_at string, document string, _logical_date date") \
        .withColumn("closed_at", F.lit(None).cast("string"))
    wf = themes.grid_workflow(staging)
    stats = {r.worker_id: r for r in themes.grid_worker_stats(wf, D("2025-06-24"), SNAP, 120).collect()}
    # independent computation
    ts = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    as_of = datetime(2025, 6, 30, 16, tzinfo=UTC)
    latest = {}
    for no, w, rep, h, ld in docs:
        if no not in latest or ld > latest[no][4]:
            latest[no] = (no, w, rep, h, ld)
    exp = defaultdict(lambda: Counter())
    hours = defaultdict(list)
    for _no, w, rep, h, _ in latest.values():
        rep_t = ts(rep)
        if not (D("2025-06-24") <= (rep_t + timedelta(hours=8)).date() <= SNAP):
            continue
        acc = ts(dict(h)["已受理"])
        closed = ts(dict(h)["已结案"]) if "已结案" in dict(h) and ts(dict(h)["已结案"]) < as_of else None
        deadline = acc + timedelta(hours=120)
        c = exp[w]
        c["reported"] += 1
        c["accepted"] += acc < as_of
        c["closed"] += closed is not None
        c["due"] += closed is not None or deadline < as_of
        c["closed_on_time"] += closed is not None and closed <= deadline
        if closed:
            hours[w].append((closed - acc).total_seconds() / 3600)
    assert set(stats) == set(exp) == {"W1", "W2"}
    for w, c in exp.items():
        r = stats[w]
        assert (r.reported, r.accepted, r.closed, r.due, r.closed_on_time, r.open_at_end) == (
            c["reported"], c["accepted"], c["closed"], c["due"], c["closed_on_time"], c["reported"] - c["closed"]), w
        assert r.closure_rate == pytest.approx(c["closed"] / c["reported"])
        assert r.on_time_closure_rate == pytest.approx(c["closed_on_time"] / c["due"])
        assert r.mean_handling_hours == pytest.approx(sum(hours[w]) / len(hours[w]))
        assert r.median_handling_hours == pytest.approx(sorted(hours[w])[len(hours[w]) // 2])
        assert r.events_per_week == pytest.approx(c["reported"])  # 7-day period
    assert (stats["W1"].due, stats["W2"].on_time_closure_rate) == (1, 0.0)


def test_repeat_complaints_rule(spark) -> None:
    rep = themes.repeat_complaints(_events(spark), window_days=5)
    rows = {r.event_id: r for r in rep.collect()}
    summary = {r.district_code: r for r in themes.repeat_complaint_summary(rep, D("2025-06-24"), SNAP).collect()}
    e = _epdf().dropna(subset=["grid_code"]).sort_values(["reported_at", "event_id"])
    last: dict = {}
    exp = {}
    for _, r in e.iterrows():
        key = (r.grid_code, r.category_l1, r.category_l2, r.category_l3)
        prev = last.get(key)
        gap = (r.reported_at - prev[1]).total_seconds() / 86400 if prev else None
        exp[r.event_id] = (prev[0] if prev else None, gap is not None and gap <= 5)
        last[key] = (r.event_id, r.reported_at)
    assert {k: (v.previous_event_id, v.is_repeat) for k, v in rows.items()} == exp
    assert sorted(k for k, (_, rp) in exp.items() if rp) == ["e2"] and "e7" not in rows  # e1: 6 days after e3
    assert rows["e1"].days_since_previous == pytest.approx(6.0) and rows["e1"].chain_position == 2
    assert (summary["130102"].events, summary["130102"].repeat_events, summary["130102"].places) == (4, 1, 1)
    assert (summary["130104"].events, summary["130104"].repeat_events) == (1, 0)  # e6: 7 days after e5


def test_keywords_and_cross_cube(spark):
    texts = spark.createDataFrame([("k1", "道路井盖破损，夜间行人容易摔倒，请尽快维修井盖。"), ("k2", None)],
                                  "event_id string, text string")
    kw = themes.event_keywords(texts).collect()
    assert [(r.event_id, r.keyword, r.position) for r in kw] == [("k1", "井盖", 1), ("k1", "破损", 2),
                                                                  ("k1", "摔倒", 3)]
    keywords = [("e1", "垃圾"), ("e1", "环卫"), ("e2", "垃圾"), ("e4", "井盖"), ("e3", "垃圾")]
    cube = themes.cross_cube(_events(spark), spark.createDataFrame(keywords, "event_id string, keyword string"),
                             D("2025-06-24"), SNAP, max_keywords=2).collect()
    e = _epdf()
    e = e[(e["report_date"] >= D("2025-06-24")) & (e["report_date"] <= SNAP)]
    in_period = set(e["event_id"])
    counts = Counter(k for i, k in keywords if i in in_period)
    top = set(sorted(counts, key=lambda k: (-counts[k], k))[:2])
    kws = defaultdict(set)
    for i, k in keywords:
        if i in in_period:
            kws[i].add(k if k in top else themes.OTHER_KEYWORD)
    rows = [(r.event_id, r.report_date - timedelta(days=r.report_date.weekday()), r.district, r.category_l1, k)
            for _, r in e.iterrows() for k in (kws.get(r.event_id) or {themes.NO_KEYWORD})]
    exp = {}
    for mask in range(16):  # bit 3 week, 2 district, 1 category, 0 keyword (set = rolled up)
        cells = defaultdict(set)
        for eid, *dims in rows:
            key = tuple(None if mask & (1 << (3 - j)) else v for j, v in enumerate(dims))
            cells[key].add(eid)
        exp.update({(mask, *k): len(v) for k, v in cells.items()})
    got = {(r.grouping_id, r.week_start, r.district_code, r.category_l1, r.keyword): r.events for r in cube}
    assert got == exp
    assert got[(15, None, None, None, None)] == len(in_period) == 6
    assert got[(14, None, None, None, "垃圾")] == 2 and got[(14, None, None, None, themes.NO_KEYWORD)] == 3


# ----------------------------------------------------------------------------- contracts and entry point

_SPARK_TYPES = {"STRING": "string", "DATE": "date", "LONG": "bigint", "INT": "int", "DOUBLE": "double",
                "BOOLEAN": "boolean", "TIMESTAMP": "timestamp"}


def test_contracts_and_theme_configurations(spark):
    geo = json.loads((REFERENCE_DIR / "boundaries" / "districts_130100.geojson").read_text(encoding="utf-8"))
    hist = spark.createDataFrame([], "person_id string, district_code string, valid_from date, valid_to date")
    staging = spark.createDataFrame([], "event_no string, worker_id string, grid_code string, reported_at string, "
                                        "closed_at string, updated_at string, document string, _logical_date date")
    divisions = spark.createDataFrame([("130102", "长安区")], "district_code string, district_name string")
    inputs = {"unified.person": _persons(spark), "unified.event": _events(spark),
              "unified.residence_history": hist, "staging.wangge_events": staging,
              "unified.person_relationship": spark.createDataFrame(EDGES, EDGE_SCHEMA),
              "reference.divisions": divisions}
    tables = themes.build_theme_tables(spark, inputs, SNAP, themes.load_themes(), geo)  # lazy: schemas only
    assert themes.list_themes() == ["grid", "population"]
    for name, df in tables.items():
        layer, table = name.split(".", 1)
        if layer == "analysis":
            service = next(s for s in services.SERVICES if f"_{s}_" in table)
            contract_name = f"analysis.service_{service}"
        else:
            contract_name = name
        contract = yaml.safe_load((TABLES_DIR / f"{contract_name}.yaml").read_text(encoding="utf-8"))
        assert contract["name"] == contract_name
        declared = [(c["name"], _SPARK_TYPES[c["type"]]) for c in contract["columns"]]
        assert declared == [(f.name, f.dataType.simpleString()) for f in df.schema.fields], name
        assert all(set(c) == {"name", "type", "unit", "nullable", "description"} for c in contract["columns"]), name
        assert set(contract["primary_key"]) <= {c["name"] for c in contract["columns"]}, name
        assert contract["kpis"] and all({"name", "definition", "numerator", "denominator", "period", "exclusions"}
                                        <= set(k) for k in contract["kpis"]), name
    assert len(tables) == 29  # 16 population + 13 grid tables (first-cut marts included)
    assert themes.write_order(tables)[:3] == list(themes.FIRST_TABLES)
    with pytest.raises(KeyError, match="reference.divisions"):
        themes.build_theme_tables(spark, {k: v for k, v in inputs.items() if k != "reference.divisions"}, SNAP,
                                  themes.load_themes(["population"]))


def test_run_themes_writes_registers_and_is_idempotent(spark, settings, tmp_path):
    own = Settings(**{**settings.__dict__, "lakehouse": str(tmp_path / "lake")})
    _persons(spark).write.format("delta").save(own.table_path("unified", "person"))
    _events(spark).write.format("delta").save(own.table_path("unified", "event"))
    lake.record_publication(spark, own, "unified", SNAP, ["person", "event"])  # what unify records
    pubs = own.table_path("ops", "publications")
    assert lake.table_version(spark, pubs) == 0
    lake.record_publication(spark, own, "unified", SNAP, ["person", "event"], run_id="rerun")
    assert lake.table_version(spark, pubs) == 0  # same versions again: nothing new is published
    first = themes.run_themes(spark, own, SNAP, themes=["population"])
    assert set(first) == {"marts.population_by_district_sex_age", "marts.population_exclusions",
                          "marts.population_natural_structure", "marts.population_density",
                          "marts.population_households", "marts.population_education_marital",
                          "marts.population_registration", "analysis.population_category_ethnic_by_district",
                          "analysis.population_time_birth_month", "analysis.population_trend_new_records_by_district",
                          "analysis.population_subject_community_profile"} and all(first.values())
    again = themes.run_themes(spark, own, SNAP, themes=["population"])
    assert not any(again.values())  # rerun of the day writes nothing
    assert spark.catalog.tableExists("marts.population_natural_structure")  # registered for Spark SQL
    n = spark.read.format("delta").load(own.table_path("marts", "population_natural_structure")).where(
        "area_level = 'district'").agg(F.sum("population")).collect()[0][0]
    assert n == 11


def test_theme_findings_sentences():
    s = SNAP
    tables = {
        "marts.population_density": pd.DataFrame(
            [(s, "130102", "长安区", 300, 100.0, 3.0), (s, "130104", "桥西区", 200, 50.0, 4.0),
             (s, "130171", None, 0, None, None)],
            columns=["snapshot_date", "district_code", "district_name", "population", "area_km2", "density_per_km2"]),
        "marts.population_households": pd.DataFrame(
            [("130102", 100, 5, 2, 40), ("130104", 60, 3, 1, 20)],
            columns=["district_code", "households", "elderly_living_alone", "elderly_only_households",
                     "elderly_persons"]),
        "marts.population_registration": pd.DataFrame(
            [("district", "130102", 40, 10, 0.2), ("district", "130104", 20, 20, 0.5),
             ("district", "130105", 5, 20, 0.8), ("street", "130104001", 20, 20, 0.5)],
            columns=["area_level", "area_code", "registered", "floating", "floating_share"]),
        "marts.population_household_generations": pd.DataFrame(
            [("130102", 10, 1, 4, 3, 2, 30), ("130104", 10, 0, 2, 1, 1, 20)],
            columns=["district_code", "households", "generation_unknown", "one_generation", "three_plus_generation",
                     "persons_without_relatives", "persons"]),
        "marts.grid_hot_fields": pd.DataFrame(
            [(D("2025-06-03"), s, "city", "130100", 1, "A", "a1", "x", 12, 8, 0.5)],
            columns=["period_start", "period_end", "area_level", "district_code", "rank", "category_l1", "category_l2",
                     "category_l3", "events", "prev_events", "growth"]),
        "marts.grid_worker_stats": pd.DataFrame(
            [("W1", 10, 8, 8, 6, 10.0), ("W2", 10, 2, 4, 1, 40.0)],
            columns=["worker_id", "reported", "closed", "due", "closed_on_time", "mean_handling_hours"]),
    }
    assert findings.theme_findings(tables) == [
        "人口密度最高的区县是桥西区：每平方公里 4.0 人（200 人，50.0 平方公里）；全市 3.33 人/平方公里。",
        "全市 160 个家庭户中，独居老人（60岁及以上）8 人，占老年人的 13.3%；纯老户 3 户。",
        # 130105 has the highest share but only 25 registered residents (< 30): 130104 is named
        "常住人口中户籍人口 65 人、流动人口 50 人，流动人口占 43.5%（户籍类型已知者）；"
        "流动人口占比最高的区县（登记≥30人）是130104：50.0%。",
        "20 户中一代户 6 户（31.6%），三代及以上户 4 户（21.1%）；无登记亲属的在册人口 3 人（6.0%）。",
        "2025-06-03至2025-06-30全市第一热点领域是“A/a1/x”：12 件（上期 8 件，环比 +50.0%）。",
        "2 名网格员期内上报 20 件，结案率 50.0%，按期结案率 58.3%（时限 120 小时），平均处置 16.0 小时。",
    ]
    assert findings.theme_findings({}) == []
    named = findings.theme_findings(tables, {"130104": "桥西区", "130104001": "东华街道"})
    assert named[2].endswith("流动人口占比最高的区县（登记≥30人）是桥西区（130104）：50.0%。")


def test_run_themes_reads_the_grid_workflow_from_staging(spark, settings, tmp_path):
    """staging has no publications: run_themes reads ``staging.wangge_events`` by path, so the grid theme builds
    ``marts.grid_worker_stats`` (it did not while staging was read through publications)."""
    own = Settings(**{**settings.__dict__, "lakehouse": str(tmp_path / "lake")})
    _persons(spark).write.format("delta").save(own.table_path("unified", "person"))
    _events(spark).write.format("delta").save(own.table_path("unified", "event"))
    lake.record_publication(spark, own, "unified", SNAP, ["person", "event"])
    spark.createDataFrame([("E1", "W1", "130102001001", "2025-06-29T02:00:00Z", None, "2025-06-29T02:00:00Z",
                            json.dumps({"status_history": []}), SNAP)],
                          "event_no string, worker_id string, grid_code string, reported_at string, "
                          "closed_at string, updated_at string, document string, _logical_date date") \
        .write.format("delta").save(own.table_path("staging", "wangge_events"))
    written = themes.run_themes(spark, own, SNAP, themes=["grid"])
    assert "marts.grid_worker_stats" in written
    stats = spark.read.format("delta").load(own.table_path("marts", "grid_worker_stats")).collect()
    assert [(r.worker_id, r.reported) for r in stats] == [("W1", 1)]
