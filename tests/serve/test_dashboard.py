"""The decision-support dashboard: its pure filters and aggregations (tiny inline frames, exact figures), delta-rs
reading what Spark's Delta Lake writes, the CLI's port check, and the page itself in headless Chromium offline."""
from __future__ import annotations

import datetime as dt
import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from govlake.analysis.tables import event_period
from govlake.core import lake
from govlake.core.config import REPO_ROOT, Settings
from govlake.serve import dashboard, dashboard_app
from govlake.serve import dashboard_data as data
from tests.browser import nonblank_fraction, offline_page

D = dt.date
DAY = D(2025, 6, 30)  # a Monday
PORT = 28501
ARTIFACTS = REPO_ROOT / "tests" / "artifacts"


# ----------------------------------------------------------------------------------- pure functions

def _pop() -> pd.DataFrame:
    return pd.DataFrame({
        "snapshot_date": [DAY] * 5,
        "district_code": ["130102", "130102", "130102", "130104", "130104"],
        "district_name": ["长安区", "长安区", "长安区", "桥西区", "桥西区"],
        "sex_code": ["1", "2", "2", "1", "9"],
        "age_group": ["65-69", "30-34", "85+", "00-04", "30-34"],
        "population": [3, 5, 2, 4, 1],
    })


def _events() -> pd.DataFrame:
    return pd.DataFrame({
        "week_start": [D(2025, 6, 23), D(2025, 6, 23), D(2025, 6, 30), D(2025, 6, 16), D(2025, 6, 30)],
        "district_code": ["130102", "130104", "130102", "130102", "000000"],
        "district_name": ["长安区", "桥西区", "长安区", "长安区", "未知区县"],
        "category_l1": ["城乡建设", "环境保护", "环境保护", "城乡建设", "未分类"],
        "channel": ["grid", "hotline", "grid", "grid", "hotline"],
        "events": [4, 2, 3, 7, 1],
        "closed": [1, 2, 0, 7, 0],
    })


def test_filter_districts_keeps_the_chosen_codes_and_everything_without_a_choice():
    assert list(data.filter_districts(_pop(), ["130104"])["population"]) == [4, 1]
    assert len(data.filter_districts(_pop(), [])) == 5


def test_weeks_in_period_keeps_the_weeks_a_period_touches():
    ev = _events()
    # Wed 2025-06-25 .. Mon 2025-06-30 touches the weeks of 06-23 and 06-30, not 06-16
    kept = data.weeks_in_period(ev, D(2025, 6, 25), D(2025, 6, 30))
    assert sorted(kept["events"]) == [1, 2, 3, 4]
    # Sun 2025-06-22 is the last day of the week of 06-16
    assert list(data.weeks_in_period(ev, D(2025, 6, 22), D(2025, 6, 22))["events"]) == [7]
    assert data.weeks_in_period(ev, D(2025, 7, 7), D(2025, 7, 31)).empty


def test_kpis_of_the_city_and_of_one_district():
    city = data.kpis(_pop(), _events())
    assert city == {"residents": 15, "share_65_plus": 5 / 15, "events": 17, "closed": 10,
                    "closure_rate": 10 / 17, "events_per_1000": 1000.0 * 16 / 15}
    one = data.kpis(data.filter_districts(_pop(), ["130102"]),
                    data.weeks_in_period(data.filter_districts(_events(), ["130102"]), D(2025, 6, 23), DAY))
    assert one == {"residents": 10, "share_65_plus": 0.5, "events": 7, "closed": 1, "closure_rate": 1 / 7,
                   "events_per_1000": 700.0}
    none = data.kpis(_pop().iloc[0:0], _events().iloc[0:0])
    assert none == {"residents": 0, "share_65_plus": None, "events": 0, "closed": 0, "closure_rate": None,
                    "events_per_1000": None}


def test_period_weeks_lists_every_monday_the_period_touches():
    assert data.period_weeks(D(2025, 6, 25), D(2025, 7, 7)) == [D(2025, 6, 23), D(2025, 6, 30), D(2025, 7, 7)]
    assert data.period_weeks(D(2025, 6, 30), D(2025, 6, 30)) == [D(2025, 6, 30)]
    assert data.period_weeks(D(2025, 7, 1), D(2025, 6, 30)) == []


def test_pyramid_has_every_age_group_in_order_and_leaves_out_unknown_sex():
    p = data.pyramid(_pop())
    assert list(p["age_group"]) == list(data.AGE_GROUPS)
    assert p.set_index("age_group").loc[["00-04", "30-34", "65-69", "85+"]].to_dict("list") == {
        "male": [4, 0, 3, 0], "female": [0, 5, 0, 2]}
    assert (int(p["male"].sum()), int(p["female"].sum())) == (7, 7)  # the sex '9' person is not drawn


def test_events_by_category_and_weekly_events():
    cats = data.events_by_category(_events())
    assert cats.to_dict("list") == {"category_l1": ["城乡建设", "环境保护", "未分类"], "events": [11, 5, 1],
                                    "closed": [8, 2, 0]}
    weekly = data.weekly_events(_events())
    assert weekly.to_dict("list") == {
        "week_start": [D(2025, 6, 16), D(2025, 6, 23), D(2025, 6, 23), D(2025, 6, 30), D(2025, 6, 30)],
        "category_l1": ["城乡建设", "城乡建设", "环境保护", "未分类", "环境保护"],
        "events": [7, 4, 2, 1, 3]}


def test_district_options_add_codes_the_marts_hold():
    divisions = pd.DataFrame({"district_code": ["130102", "130105"], "district_name": ["长安区", "新华区"]})
    opts = data.district_options(divisions, _pop(), _events())
    assert opts.to_dict("list") == {
        "district_code": ["000000", "130102", "130104", "130105"],
        "district_name": ["未知区县", "长安区", "桥西区", "新华区"],
        "label": ["000000 未知区县", "130102 长安区", "130104 桥西区", "130105 新华区"]}


def test_district_options_of_the_sample_city():
    from govlake.marts.reference import city_divisions

    opts = data.district_options(city_divisions("130100"))
    assert len(opts) == 24  # GB/T 2260 county-level divisions of 石家庄市 in areas.csv
    assert list(opts["label"][:2]) == ["130102 长安区", "130104 桥西区"]
    assert list(opts["label"][-1:]) == ["130184 新乐市"]


def test_district_map_joins_population_and_events_without_the_unknown_place():
    opts = data.district_options(pd.DataFrame({"district_code": [], "district_name": []}), _pop(), _events())
    m = data.district_map(_pop(), _events(), opts)
    assert m[["district_code", "district_name", "residents", "events", "location"]].to_dict("list") == {
        "district_code": ["130102", "130104"], "district_name": ["长安区", "桥西区"], "residents": [10, 5],
        "events": [14, 2], "location": ["156130102", "156130104"]}
    assert list(m["share_65_plus"]) == [0.5, 0.0]
    assert list(m["events_per_1000"]) == [1400.0, 400.0]


def test_grid_cells_of_the_chosen_districts():
    hot = pd.DataFrame({"cell_level": ["grid", "grid", "community"],
                        "cell_code": ["130104001001002", "130102001001001", "130102001001"],
                        "district_code": ["130104", "130102", "130102"], "events": [2, 5, 5],
                        "gi_star_z": [None, 1.0, 1.0], "hotspot": ["not significant"] * 3})
    assert list(data.grid_cells(hot, [])["grid_code"]) == ["130102001001001", "130104001001002"]
    assert data.grid_cells(hot, ["130102"])[["grid_code", "events"]].to_dict("list") == {
        "grid_code": ["130102001001001"], "events": [5]}


def test_publication_takes_the_latest_date_on_or_before():
    pubs = pd.DataFrame({"logical_date": [D(2025, 6, 29), D(2025, 6, 29), D(2025, 6, 30)],
                         "table": ["a", "b", "a"], "version": [1, 4, 2]})
    assert data.publication(pubs) == (D(2025, 6, 30), {"a": 2})
    assert data.publication(pubs, D(2025, 6, 29)) == (D(2025, 6, 29), {"a": 1, "b": 4})
    assert data.publication(pubs, D(2025, 6, 1)) is None
    assert data.published_dates(pubs) == [D(2025, 6, 30), D(2025, 6, 29)]


def test_fit_view_centres_and_zooms_on_the_chosen_features():
    def box(code, x0, y0, x1, y1):
        return {"type": "Feature", "properties": {"gb": code},
                "geometry": {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}}

    gj = {"type": "FeatureCollection", "features": [box("a", 0.0, 0.0, 1.0, 1.0), box("b", 10.0, 0.0, 12.0, 1.0)]}
    # a 1°-wide box in 512 px: 512 · 360 / (512 · 1) = 2^8.49…, the height (1° of latitude at the equator) limits
    # less; minus the 0.2 margin
    assert data.fit_view(gj, "gb", ["a"], 512, 2048) == ({"lon": 0.5, "lat": 0.5}, round(math.log2(360) - 0.2, 3))
    assert data.fit_view(gj, "gb", ["a", "b"], 512, 2048)[0] == {"lon": 6.0, "lat": 0.5}
    assert data.fit_view(gj, "gb", ["zzz"], 512, 2048)[0] == {"lon": 6.0, "lat": 0.5}  # no match: all features
    assert data.fit_view({"features": []}, "gb", []) == ({"lon": 114.5, "lat": 38.0}, 7.5)
    assert data.subset_geojson(gj, "gb", ["b", "c"]) == {"type": "FeatureCollection", "features": [gj["features"][1]]}


def test_pyramid_figure_uses_a_category_axis_in_age_order():
    fig = dashboard_app.pyramid_figure(data.pyramid(_pop()))
    assert fig.layout.yaxis.type == "category"
    assert list(fig.layout.yaxis.categoryarray) == list(data.AGE_GROUPS)
    assert list(fig.data[0].x[:2]) == [-4, 0] and list(fig.layout.xaxis.ticktext) == ["6", "4", "2", "0", "2", "4",
                                                                                       "6"]


def test_district_figure_draws_on_a_blank_map_style():
    opts = data.district_options(pd.DataFrame({"district_code": [], "district_name": []}), _pop(), _events())
    geo = data.read_geojson(dashboard_app.DISTRICT_BOUNDARIES)
    fig = dashboard_app.district_figure(data.district_map(_pop(), _events(), opts), geo, "events_per_1000")
    assert fig.layout.map.style == "white-bg"  # a background layer only: no tile server
    assert 113.5 < fig.layout.map.center.lon < 115.5 and 37.5 < fig.layout.map.center.lat < 38.5
    assert [f["properties"]["gb"] for f in fig.data[0].geojson["features"]] == ["156130104", "156130102"]  # file order
    assert list(fig.data[0].locations) == ["156130102", "156130104"] and list(fig.data[0].z) == [1400.0, 400.0]


# ------------------------------------------------------------------------ delta-rs on Spark's tables

def test_delta_rs_reads_deletion_vectors_column_mapping_and_versions(spark, tmp_path):
    path = str(tmp_path / "dv_cm")
    rows = [(i, f"n{i}", i % 2) for i in range(6)]
    (spark.createDataFrame(rows, "id INT, name STRING, g INT").write.format("delta")
        .option("delta.enableDeletionVectors", "true").option("delta.columnMapping.mode", "name")
        .option("delta.checkpointInterval", "2").partitionBy("g").save(path))
    spark.sql(f"DELETE FROM delta.`{path}` WHERE id = 3")  # a deletion vector, no file rewrite
    spark.sql(f"ALTER TABLE delta.`{path}` RENAME COLUMN name TO label")  # column mapping: physical names differ
    features = spark.sql(f"DESCRIBE DETAIL delta.`{path}`").collect()[0]["tableFeatures"]
    assert {"deletionVectors", "columnMapping"} <= set(features)

    latest = data.read_delta(path).sort_values("id").reset_index(drop=True)
    assert latest.to_dict("list") == {"id": [0, 1, 2, 4, 5], "label": ["n0", "n1", "n2", "n4", "n5"],
                                      "g": [0, 1, 0, 0, 1]}
    assert sorted(data.read_delta(path, version=0)["id"]) == [0, 1, 2, 3, 4, 5]
    assert sorted(data.read_delta(path, predicate="g = 1")["id"]) == [1, 5]
    spark_rows = sorted(tuple(r) for r in spark.read.format("delta").load(path).collect())
    assert spark_rows == sorted(tuple(r) for r in latest[["id", "label", "g"]].itertuples(index=False))


# --------------------------------------------------------------------------- a tiny published lakehouse

def _write_marts(spark, settings: Settings) -> None:
    """The three marts from tiny unified inputs through their real transforms, published for :data:`DAY`."""
    from pyspark.sql import functions as F

    from govlake.marts import population, themes

    person = spark.createDataFrame([
        ("p1", "1", D(1950, 1, 1), "130102", True), ("p2", "2", D(1990, 5, 5), "130102", True),
        ("p3", "1", D(2000, 7, 1), "130102", True), ("p4", "2", D(1955, 6, 30), "130102", True),
        ("p5", "1", D(1980, 1, 1), "130104", True), ("p6", "2", D(2010, 1, 1), "130104", True),
        ("p7", "2", D(1970, 1, 1), "130104", False),
    ], "person_id STRING, sex_code STRING, birth_date DATE, district_code STRING, is_current BOOLEAN")
    g1, g2 = "130102001001001", "130104001001001"
    event = spark.createDataFrame([
        ("e1", "grid", D(2025, 6, 24), "130102", "城乡建设", "已结案", g1),
        ("e2", "grid", D(2025, 6, 25), "130102", "环境保护", "处理中", g1),
        ("e3", "grid", D(2025, 6, 26), "130104", "城乡建设", "已结案", g2),
        ("e4", "hotline", D(2025, 6, 30), "130104", "城乡建设", "已受理", None),
        ("e5", "hotline", D(2025, 5, 6), "130102", "环境保护", "已结案", None),
        ("e6", "hotline", D(2025, 6, 27), None, None, "已受理", None),
        ("e7", "grid", D(2025, 3, 4), "130102", "城乡建设", "已结案", g1),
    ], "event_id STRING, channel STRING, report_date DATE, district_code STRING, category_l1 STRING, "
       "status STRING, grid_code STRING").withColumn("reported_at", F.to_timestamp("report_date"))
    divisions = spark.createDataFrame([("130102", "长安区"), ("130104", "桥西区")],
                                      "district_code STRING, district_name STRING")
    pop = population.population_by_district_sex_age(person, divisions, DAY)
    lake.replace_partition(pop, settings.table_path("marts", data.POPULATION), "snapshot_date", DAY)
    weekly = population.grid_events_by_district_category_week(event, divisions)
    weekly.write.format("delta").mode("overwrite").save(settings.table_path("marts", data.EVENTS))
    hot = themes.grid_hotspots(event.where("channel = 'grid'"), DAY - dt.timedelta(days=27), DAY, "grid_code", 9)
    lake.replace_partition(hot, settings.table_path("marts", data.HOTSPOTS), "period_end", DAY)
    lake.record_publication(spark, settings, "marts", DAY, [data.POPULATION, data.EVENTS, data.HOTSPOTS])
    # a later, unpublished rewrite of the population mart (a run killed before its publication): never shown
    lake.replace_partition(pop.where("district_code = '130104'"), settings.table_path("marts", data.POPULATION),
                           "snapshot_date", DAY)


def _grid_geojson(path: Path) -> None:
    """Two grid rectangles (counter-clockwise, as RFC 7946 writes them) in 长安区 and 桥西区."""
    def box(x0, y0, x1, y1):
        return [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]

    features = [
        {"type": "Feature", "properties": {"grid_code": "130102001001001", "district_code": "130102"},
         "geometry": {"type": "Polygon", "coordinates": box(114.53, 38.05, 114.56, 38.08)}},
        {"type": "Feature", "properties": {"grid_code": "130104001001001", "district_code": "130104"},
         "geometry": {"type": "Polygon", "coordinates": box(114.44, 38.02, 114.47, 38.05)}},
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8")


@pytest.fixture(scope="module")
def published_home(spark, tmp_path_factory) -> Settings:
    home = tmp_path_factory.mktemp("dashboard-home")
    settings = Settings.from_env({**os.environ, "GOVLAKE_HOME": str(home)})
    _write_marts(spark, settings)
    _grid_geojson(settings.sources_dir / dashboard_app.GRID_BOUNDARIES)
    return settings


def test_published_marts_are_read_at_their_published_versions(spark, published_home):
    pubs = data.read_publications(published_home)
    found = data.publication(pubs)
    assert found == lake.published_versions(spark, published_home, "marts")
    day, versions = found
    pop = data.read_delta(data.table_dir(published_home, "marts", data.POPULATION), versions[data.POPULATION])
    latest = data.read_delta(data.table_dir(published_home, "marts", data.POPULATION))
    assert (day, int(pop["population"].sum()), int(latest["population"].sum())) == (DAY, 6, 2)
    ev = data.read_delta(data.table_dir(published_home, "marts", data.EVENTS), versions[data.EVENTS])
    start, end = event_period(DAY, data.DEFAULT_WEEKS)  # the page's first period: the report's
    assert (start, end) == (D(2025, 4, 7), D(2025, 6, 29))
    assert data.kpis(pop, data.weeks_in_period(ev, start, end)) == {
        "residents": 6, "share_65_plus": 2 / 6, "events": 5, "closed": 3, "closure_rate": 0.6,
        "events_per_1000": 1000.0 * 4 / 6}


# ------------------------------------------------------------------------------------------- the CLI

def _cli(settings: Settings, *args: str, port: int = PORT) -> subprocess.CompletedProcess:
    env = {**os.environ, "GOVLAKE_HOME": str(settings.home), "GOVLAKE_DASHBOARD_PORT": str(port),
           "PYTHONPATH": str(REPO_ROOT)}
    env.pop("GOVLAKE_LAKEHOUSE", None)
    return subprocess.run([sys.executable, "-m", "govlake.serve.dashboard", *args], env=env, capture_output=True,
                          text=True, timeout=150)


def test_start_refuses_a_port_another_program_owns(tmp_path):
    settings = Settings.from_env({**os.environ, "GOVLAKE_HOME": str(tmp_path)})
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _cli(settings, "start", port=port)
    assert result.returncode == 1
    assert f"port 127.0.0.1:{port} is in use by pid {os.getpid()}" in result.stderr
    assert not dashboard.pid_file(settings).exists()
    assert _cli(settings, "status").returncode == 3


# ------------------------------------------------------------------------------------- the page, offline

#: The locations of every plotly ``choroplethmap`` trace on the page, per chart (plotly keeps a chart's traces on its
#: graph div as ``.data``; the maps draw into a canvas, so the DOM has no feature paths to count).
_MAP_LOCATIONS = """() => Array.from(document.querySelectorAll('.js-plotly-plot'))
  .filter(gd => (gd.data || []).some(t => t.type === 'choroplethmap'))
  .map(gd => gd.data.map(t => Array.from(t.locations)))"""


def _metric(page, label: str):
    return page.locator('[data-testid="stMetric"]').filter(has_text=label).locator('[data-testid="stMetricValue"]')


def test_dashboard_filters_a_district_offline(browser, published_home):
    import psutil
    from playwright.sync_api import expect

    started = _cli(published_home, "start")
    assert started.returncode == 0, started.stderr
    record = json.loads(dashboard.pid_file(published_home).read_text())
    try:
        assert _cli(published_home, "status").stdout.startswith(f"dashboard running: pid={record['pid']}")
        with offline_page(browser, width=1400, height=2600) as op:
            page = op.page
            page.goto(f"http://127.0.0.1:{PORT}/", wait_until="domcontentloaded")
            expect(_metric(page, "居民 residents")).to_have_text("6", timeout=60_000)
            expect(_metric(page, "事件 events")).to_have_text("5")  # 12 complete weeks: not e4 (06-30), e7 (03-04)
            expect(page.locator(".maplibregl-canvas")).to_have_count(2, timeout=30_000)
            page.wait_for_function(f"({_MAP_LOCATIONS})().length === 2", timeout=30_000)
            # district map: both districts; grid map: their outlines, then both grid cells
            assert page.evaluate(_MAP_LOCATIONS) == [
                [["156130102", "156130104"]],
                [["156130102", "156130104"], ["130102001001001", "130104001001001"]]]

            page.get_by_test_id("stMultiSelect").click()
            page.get_by_role("option", name="130102 长安区").click()
            page.keyboard.press("Escape")
            expect(_metric(page, "居民 residents")).to_have_text("4", timeout=30_000)
            expect(_metric(page, "事件 events")).to_have_text("3")
            expect(_metric(page, "结案率 closure rate")).to_have_text("66.7%")
            expect(_metric(page, "每千名居民事件 per 1,000")).to_have_text("750.0")
            expect(_metric(page, "65岁及以上占比 aged 65+")).to_have_text("50.0%")
            page.wait_for_function(f"JSON.stringify(({_MAP_LOCATIONS})()[0]) === '[[\"156130102\"]]'",
                                   timeout=30_000)
            assert page.evaluate(_MAP_LOCATIONS) == [[["156130102"]], [["156130102"], ["130102001001001"]]]
            page.wait_for_timeout(1000)  # let the charts finish their transitions before the screenshot
            png = page.screenshot(full_page=True)
            assert op.blocked == []
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "dashboard_district.png").write_bytes(png)
        assert nonblank_fraction(png) > 0.05
    finally:
        stopped = _cli(published_home, "stop")
    assert stopped.returncode == 0 and stopped.stdout.startswith(f"dashboard stopped: pid={record['pid']}")
    assert not dashboard.pid_file(published_home).exists()
    gone = not psutil.pid_exists(record["pid"]) or psutil.Process(record["pid"]).status() == psutil.STATUS_ZOMBIE
    assert gone
    assert dashboard.port_owner(PORT) is None
    assert _cli(published_home, "status").returncode == 3
