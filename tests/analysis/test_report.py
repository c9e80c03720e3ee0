"""The decision-support report's charts and embedded font, from the small inline tables of report_fixtures
(no Spark, no browser: tests/analysis/test_report_browser.py renders the page)."""
from __future__ import annotations

import base64
import re
import unicodedata
from datetime import date

import pytest
from shapely.geometry import Polygon, shape

from govlake.analysis import fonts, report
from govlake.analysis.kpis import _tables
from govlake.core import config
from govlake.marts.population import AGE_GROUPS
from tests.analysis import report_fixtures as fx


def test_pyramid_age_groups_are_a_category_axis():
    fig = report._pyramid(_tables(fx.tables()))
    assert fig.layout.yaxis.type == "category"
    assert list(fig.layout.yaxis.categoryarray) == list(AGE_GROUPS)
    assert list(fig.data[0].y) == list(AGE_GROUPS)
    # 3 districts × 10 men aged 00-04, drawn to the left
    assert fig.data[0].x[0] == -30 and fig.data[1].x[0] == 36


def test_weekly_chart_shows_the_report_period_only_with_gaps_unjoined():
    weeks, series = report.weekly_series(_tables(fx.tables()))
    assert weeks == [date(2025, 6, 2), date(2025, 6, 9), date(2025, 6, 16), date(2025, 6, 23)]
    # the 2019 week is outside the period; 2025-06-16 has no row at all (a gap, None); the unknown place counts
    assert series == {"城市管理": [5, 3, None, 1], "社会治安": [2, 0, None, 4]}
    fig = report._weekly(_tables(fx.tables()))
    assert list(fig.layout.xaxis.range) == ["2025-05-29", "2025-06-27"]
    assert fig.layout.xaxis.type == "date"
    assert [t.connectgaps for t in fig.data] == [False, False]
    assert list(fig.data[0].x) == ["2025-06-02", "2025-06-09", "2025-06-16", "2025-06-23"]


def test_legends_sit_in_the_bottom_margin():
    t = _tables(fx.tables())
    for fig in (report._pyramid(t), report._weekly(t), report._workers(t)):
        assert (fig.layout.legend.orientation, fig.layout.legend.yref, fig.layout.legend.y) == ("h", "container", 0)
        assert fig.layout.margin.b >= 110


def test_rings_are_wound_clockwise_for_plotly():
    ccw = [[114.0, 38.0], [114.1, 38.0], [114.1, 38.1], [114.0, 38.1], [114.0, 38.0]]
    hole_cw = [[114.02, 38.02], [114.02, 38.05], [114.05, 38.05], [114.05, 38.02], [114.02, 38.02]]
    gj = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"gb": "1"}, "geometry": {"type": "Polygon", "coordinates": [ccw, hole_cw]}},
        {"type": "Feature", "properties": {"gb": "2"},
         "geometry": {"type": "MultiPolygon", "coordinates": [[ccw]]}},
        {"type": "Feature", "properties": {"gb": "3"}, "geometry": None},
    ]}
    out = report.plotly_geojson(gj)
    assert [f["properties"]["gb"] for f in out["features"]] == ["1", "2"]
    poly = shape(out["features"][0]["geometry"])
    assert isinstance(poly, Polygon)
    assert poly.exterior.is_ccw is False and poly.interiors[0].is_ccw is True
    assert shape(out["features"][1]["geometry"]).geoms[0].exterior.is_ccw is False
    assert poly.area == pytest.approx(0.01 - 0.0009)
    grids = report.plotly_geojson(fx.grid_geojson())
    assert [shape(f["geometry"]).exterior.is_ccw for f in grids["features"]] == [False, False, False]


def test_migration_matrix_sums_the_months_of_the_period():
    t = _tables(fx.tables())
    t.pop("marts.population_migration_period_flows")
    m, label = report.migration_matrix(t, fx.DISTRICTS)
    assert list(m.index) == ["新华区", "桥西区", "长安区"] and list(m.columns) == ["桥西区", "长安区"]
    assert m.values.tolist() == [[0, 1], [0, 3], [2, 0]]  # May's 7 moves are before the period
    assert label == "2025-06 至 2025-06"


def test_migration_matrix_prefers_the_period_mart():
    m, label = report.migration_matrix(_tables(fx.tables()), fx.DISTRICTS)
    assert label == "2025-06-03 至 2025-06-30"
    assert list(m.index) == ["桥西区", "长安区"] and list(m.columns) == ["新华区", "桥西区"]
    assert m.values.tolist() == [[1, 0], [0, 4]]


def _cjk(ch: str) -> bool:
    return unicodedata.name(ch, "").startswith(("CJK", "FULLWIDTH", "IDEOGRAPHIC"))


def test_embedded_font_covers_every_cjk_character_of_the_page(tmp_path):
    path = report.build_report(fx.tables(), fx.district_geojson(), tmp_path, fx.DAY, grid_geojson=fx.grid_geojson())
    page = path.read_text(encoding="utf-8")
    faces = re.findall(r'@font-face\{font-family:"GovLake CJK".*?base64,([A-Za-z0-9+/=]+)\)', page)
    assert len(faces) == 1
    woff2 = base64.b64decode(faces[0])
    assert woff2[:4] == b"wOF2"
    from plotly.offline import get_plotlyjs

    own = page.replace(get_plotlyjs(), "")
    used = {c for c in report.page_characters(own) if _cjk(c)}
    assert {"石", "家", "庄", "网", "格", "员", "迁", "（", "，"} <= used
    assert used - fonts.covered(woff2) == set()
    assert len(woff2) < 200_000  # a subset, not the 4 MB font
    assert 'font-family:"GovLake CJK",sans-serif' in own and '\\"GovLake CJK\\", sans-serif' in own
    assert "cdn.plot.ly" not in own
    again = report.build_report(fx.tables(), fx.district_geojson(), tmp_path / "again", fx.DAY,
                                grid_geojson=fx.grid_geojson())
    assert again.read_bytes() == path.read_bytes()  # deterministic, font subset included


def test_missing_font_is_a_clear_error(tmp_path):
    missing = tmp_path / "nope.ttf"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing)) + ".*GOVLAKE_CJK_FONT"):
        fonts.load_cjk_font(missing)
    assert config.cjk_font_path({"GOVLAKE_CJK_FONT": str(missing)}) == missing
    assert config.cjk_font_path({}) == config.DEFAULT_CJK_FONT
