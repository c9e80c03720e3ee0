"""Small inline report tables (3 districts, 2 categories, 3 grids, 3 workers) for the report's unit and browser
tests. Logical date 2025-06-30; the report period is the four ISO weeks 2025-06-02 .. 2025-06-29, with no event
at all in the week of 2025-06-16 (a delivery gap) and one stray week in 2019 outside the period."""
from __future__ import annotations

import json
from datetime import date

import pandas as pd

from govlake.core.config import REFERENCE_DIR

DAY = date(2025, 6, 30)
SNAP = date(2025, 6, 30)
DISTRICTS = {"130102": "长安区", "130104": "桥西区", "130105": "新华区"}
GRIDS = ("130102001001001", "130102001001002", "130102001002001")


def district_geojson() -> dict:
    return json.loads((REFERENCE_DIR / "boundaries" / "districts_130100.geojson").read_text(encoding="utf-8"))


def grid_geojson() -> dict:
    """Three 0.01° squares side by side in 长安区, rings counter-clockwise (RFC 7946 winding)."""
    from shapely.geometry import shape

    dist = next(f for f in district_geojson()["features"] if f["properties"]["gb"] == "156130102")
    c = shape(dist["geometry"]).representative_point()
    x0, y0 = round(c.x, 3) - 0.015, round(c.y, 3) - 0.005
    features = []
    for i, code in enumerate(GRIDS):
        x = x0 + 0.01 * i
        ring = [[x, y0], [x + 0.01, y0], [x + 0.01, y0 + 0.01], [x, y0 + 0.01], [x, y0]]
        features.append({"type": "Feature", "properties": {"grid_code": code, "community_code": code[:12],
                                                            "district_code": "130102"},
                         "geometry": {"type": "Polygon", "coordinates": [ring]}})
    return {"type": "FeatureCollection", "features": features}


def tables() -> dict[str, pd.DataFrame]:
    pop_rows = []
    for code, name in DISTRICTS.items():
        for sex, n in (("1", 10), ("2", 12)):
            pop_rows += [(SNAP, code, name, sex, "00-04", n), (SNAP, code, name, sex, "30-34", 2 * n),
                         (SNAP, code, name, sex, "85+", n // 2)]
    pop = pd.DataFrame(pop_rows, columns=["snapshot_date", "district_code", "district_name", "sex_code", "age_group",
                                          "population"])
    age_cols = ["snapshot_date", "area_level", "district_code", "district_name", "population", "male", "female",
                "sex_ratio", "share_0_14", "share_15_64", "share_65_plus", "child_dependency_ratio",
                "old_age_dependency_ratio", "total_dependency_ratio", "ageing_flag"]
    age = pd.DataFrame([
        (SNAP, "district", "130102", "长安区", 77, 35, 42, 83.3, 22 / 77, 44 / 77, 11 / 77, 50.0, 25.0, 75.0,
         "aged society"),
        (SNAP, "district", "130104", "桥西区", 77, 35, 42, 83.3, 22 / 77, 44 / 77, 11 / 77, 50.0, 25.0, 75.0,
         "aged society"),
        (SNAP, "district", "130105", "新华区", 77, 35, 42, 83.3, 22 / 77, 44 / 77, 11 / 77, 50.0, 25.0, 75.0,
         "aged society"),
        (SNAP, "city", "130100", "石家庄市", 231, 105, 126, 83.3, 66 / 231, 132 / 231, 33 / 231, 50.0, 25.0, 75.0,
         "aged society"),
    ], columns=age_cols)
    ev_cols = ["week_start", "district_code", "district_name", "category_l1", "channel", "events", "closed"]
    ev = pd.DataFrame([
        (date(2019, 1, 7), "130102", "长安区", "城市管理", "grid", 9, 9),
        (date(2025, 6, 2), "130102", "长安区", "城市管理", "grid", 5, 4),
        (date(2025, 6, 2), "130104", "桥西区", "社会治安", "hotline", 2, 1),
        (date(2025, 6, 9), "130105", "新华区", "城市管理", "grid", 3, 3),
        (date(2025, 6, 23), "130102", "长安区", "社会治安", "grid", 4, 2),
        (date(2025, 6, 23), "000000", None, "城市管理", "hotline", 1, 0),
    ], columns=ev_cols)
    top = pd.DataFrame([
        (date(2025, 6, 2), date(2025, 6, 29), "130102", "长安区", 1, "城市管理", 5, 5 / 9),
        (date(2025, 6, 2), date(2025, 6, 29), "130102", "长安区", 2, "社会治安", 4, 4 / 9),
        (date(2025, 6, 2), date(2025, 6, 29), "130104", "桥西区", 1, "社会治安", 2, 1.0),
        (date(2025, 6, 2), date(2025, 6, 29), "130105", "新华区", 1, "城市管理", 3, 1.0),
    ], columns=["period_start", "period_end", "district_code", "district_name", "rank", "category_l1", "events",
                "share"])
    p0, p1 = date(2025, 6, 3), date(2025, 6, 30)
    hot = pd.DataFrame([
        (p0, p1, "grid", GRIDS[0], "130102001", "130102", 6, None, None, 3, 1.2, 0.23, "not significant"),
        (p0, p1, "grid", GRIDS[1], "130102001", "130102", 1, None, None, 3, -0.4, 0.69, "not significant"),
        (p0, p1, "grid", GRIDS[2], "130102001", "130102", 0, None, None, 3, None, None, "not significant"),
        (p0, p1, "community", "130102001001", "130102001", "130102", 7, 40, 175.0, 2, None, None, "not significant"),
    ], columns=["period_start", "period_end", "cell_level", "cell_code", "parent_code", "district_code", "events",
                "residents", "events_per_1000_residents", "neighbours", "gi_star_z", "p_value", "hotspot"])
    workers = pd.DataFrame([
        (p0, p1, "W" + GRIDS[0], GRIDS[0], 6, 6, 5, 5 / 6, 6, 4, 4 / 6, 30.0, 24.5, 1, 1.5),
        (p0, p1, "W" + GRIDS[1], GRIDS[1], 1, 1, 1, 1.0, 1, 1, 1.0, 10.0, 10.0, 0, 0.25),
        (p0, p1, "W" + GRIDS[2], GRIDS[2], 2, 1, 0, 0.0, 0, 0, None, None, None, 2, 0.5),
    ], columns=["period_start", "period_end", "worker_id", "grid_code", "reported", "accepted", "closed",
                "closure_rate", "due", "closed_on_time", "on_time_closure_rate", "mean_handling_hours",
                "median_handling_hours", "open_at_end", "events_per_week"])
    flows = pd.DataFrame([
        (date(2025, 5, 1), "130102", "130104", 7, 7),   # before the period: not shown
        (date(2025, 6, 1), "130102", "130104", 2, 2),
        (date(2025, 6, 1), "130105", "130102", 1, 1),
        (date(2025, 6, 1), "130104", "130102", 3, 2),
    ], columns=["month", "origin_district_code", "destination_district_code", "moves", "movers"])
    period_flows = pd.DataFrame([
        (p0, p1, "130102", "130104", 4, 3),
        (p0, p1, "130104", "130105", 1, 1),
    ], columns=["period_start", "period_end", "origin_district_code", "destination_district_code", "moves", "movers"])
    return {"marts.population_migration_period_flows": period_flows,
            "marts.population_by_district_sex_age": pop, "marts.grid_events_by_district_category_week": ev,
            "analysis.age_structure_by_district": age, "analysis.top_event_categories_by_district": top,
            "marts.grid_hotspots": hot, "marts.grid_worker_stats": workers,
            "marts.population_migration_flows": flows}
