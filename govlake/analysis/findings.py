"""Headline findings of a run (Chinese sentences), in one place: the report's findings (the first-cut tables, also
shown in the decision-support report) and the theme findings (the theme marts).

Entry point: :func:`govlake.analysis.stage.findings` (the run summary, :mod:`govlake.summary`). The two parts are
pure functions of pandas frames: :func:`headline_findings` (``marts.population_by_district_sex_age``,
``analysis.age_structure_by_district`` …, see :mod:`govlake.analysis.kpis`) and :func:`theme_findings`
(:data:`FINDINGS_TABLES`).

This module imports neither pyspark nor pandas at import time.
"""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from govlake.core.config import Settings
from govlake.marts.theme_config import ThemeParams

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import SparkSession


# ============================================================================ report findings (first-cut tables)

def headline_findings(tables: dict[str, pd.DataFrame]) -> list[str]:
    """The three headline findings of the report, computed from the data (Chinese sentences).

    1. The most aged district (largest 65+ share; ties → smallest district code) against the city.
    2. The district with the most events in the report period (the unknown place ``'000000'`` is
       not a district; ties → smallest code), its events per 1,000 residents, the city's events and
       closure rate.
    3. The city's top first-level event category in the period (ties → smallest category name) and
       its share of all events.

    Args:
        tables: the report tables (see :mod:`govlake.analysis.report`).

    Returns:
        three strings; a finding without data says so (``…：无数据``).

    Raises:
        KeyError: a required table is missing.
    """
    from govlake.analysis import kpis as r

    tables = r._tables(tables)
    kpi = r.headline_kpis(tables)
    summary = r.district_summary(tables)
    findings: list[str] = []

    aged = summary[summary["population"] > 0].dropna(subset=["share_65_plus"])
    if aged.empty:
        findings.append("老龄化程度最高的区县：无数据。")
    else:
        top = r._first_by(aged, "share_65_plus", "district_code")
        findings.append(
            f"老龄化程度最高的区县是{top['district_name']}：65岁及以上人口占比 {r._pct(top['share_65_plus'])}"
            f"（{r.AGEING_FLAG_ZH.get(top['ageing_flag'], top['ageing_flag'])}），全市为 {r._pct(kpi['ageing_rate'])}。"
        )

    period = (f"{kpi['period_start'].isoformat()}至{kpi['period_end'].isoformat()}"
              if kpi["period_start"] else "统计期内")
    busy = summary[(summary["district_code"] != r.UNKNOWN_DISTRICT_CODE) & (summary["events"] > 0)]
    if busy.empty:
        findings.append(f"{period}事件最多的区县：无数据。")
    else:
        top = r._first_by(busy, "events", "district_code")
        findings.append(
            f"{period}事件最多的区县是{top['district_name']}：{r._int(top['events'])} 件，"
            f"每千名居民 {r._num(top['events_per_1000'])} 件；全市共 {r._int(kpi['events'])} 件，"
            f"结案率 {r._pct(kpi['closure_rate'])}。"
        )

    ev = r._events_in_period(tables)
    if ev.empty:
        findings.append(f"{period}全市事件类别：无数据。")
    else:
        cats = ev.groupby("category_l1", as_index=False)["events"].sum()
        top = r._first_by(cats, "events", "category_l1")
        findings.append(
            f"同期全市第一大事件类别是“{top['category_l1']}”：{r._int(top['events'])} 件，"
            f"占全部事件的 {r._pct(top['events'] / kpi['events'])}。"
        )
    return findings


# ================================================================================== theme findings (theme marts)

#: Theme tables the headline findings read (small: one period / snapshot each).
FINDINGS_TABLES = ("marts.population_density", "marts.population_households", "marts.population_natural_structure",
                   "marts.population_registration", "marts.population_household_generations",
                   "marts.grid_hot_fields", "marts.grid_hotspots", "marts.grid_worker_stats",
                   "marts.grid_repeat_summary")
#: Minimum residents of a street for the "highest ageing rate" finding (smaller streets are too noisy).
MIN_STREET_RESIDENTS = 30
#: Minimum residents of known registration type (户籍 + 流动) of a district for the "highest floating share" finding.
MIN_DISTRICT_REGISTERED = 30


def read_findings_tables(spark: SparkSession, settings: Settings, logical_date: dt.date) -> dict:
    """The :data:`FINDINGS_TABLES` that exist, as pandas frames (snapshot tables at ``logical_date``)."""
    from pyspark.sql import functions as F

    from govlake.core import lake

    out = {}
    for name in FINDINGS_TABLES:
        path = settings.table_path(*name.split(".", 1))
        if not lake.exists(spark, path):
            continue
        df = spark.read.format("delta").load(path)
        if "snapshot_date" in df.columns:
            df = df.where(F.col("snapshot_date") == F.lit(logical_date))
        elif "period_end" in df.columns:
            df = df.where(F.col("period_end") == F.lit(logical_date))
        out[name] = df.toPandas()
    return out


def _pct(x) -> str:
    return "–" if x is None or x != x else f"{x * 100:.1f}%"


def theme_findings(tables: dict, names: dict[str, str] | None = None,
                   grid: ThemeParams | None = None) -> list[str]:
    """Headline findings (Chinese sentences) of the population and grid themes, 2–4 per theme.

    Args:
        tables: ``layer.table`` → pandas DataFrame of :data:`FINDINGS_TABLES` (missing or empty tables
            are skipped), as returned by :func:`read_findings_tables`.
        names: GB/T 2260 district (6-digit) and street (9-digit) code → name, e.g. from
            :func:`govlake.unified.address.load_gazetteer`; a named area is written ``长安区（130102）``, an
            unknown code as the code alone.
        grid: the grid theme's parameters (the deadline and repeat window named in the sentences; default the
            defaults of :class:`~govlake.marts.theme_config.ThemeParams`).

    Returns:
        list of sentences, population first; deterministic (ties broken by code).
    """
    names = names or {}
    grid = grid or ThemeParams()

    def area(code: str) -> str:
        return f"{names[code]}（{code}）" if code in names else code

    out: list[str] = []
    dens = tables.get("marts.population_density")
    if dens is not None and len(dens.dropna(subset=["density_per_km2"])):
        d = dens.dropna(subset=["density_per_km2"]).sort_values(["density_per_km2", "district_code"],
                                                                 ascending=[False, True]).iloc[0]
        total_pop, total_area = int(dens["population"].sum()), float(dens["area_km2"].sum())
        out.append(f"人口密度最高的区县是{d.district_name}：每平方公里 {d.density_per_km2:.1f} 人"
                   f"（{int(d.population)} 人，"
                   f"{d.area_km2:.1f} 平方公里）；全市 {total_pop / total_area:.2f} 人/平方公里。")
    hh = tables.get("marts.population_households")
    if hh is not None and len(hh):
        alone, only, households = int(hh["elderly_living_alone"].sum()), int(hh["elderly_only_households"].sum()), \
            int(hh["households"].sum())
        elderly = int(hh["elderly_persons"].sum())
        out.append(f"全市 {households} 个家庭户中，独居老人（60岁及以上）{alone} 人，占老年人的 "
                   f"{_pct(alone / elderly if elderly else None)}；纯老户 {only} 户。")
    reg = tables.get("marts.population_registration")
    if reg is not None and len(reg[reg["area_level"] == "district"]):
        d = reg[reg["area_level"] == "district"]
        r, f = int(d["registered"].sum()), int(d["floating"].sum())
        top = d[(d["registered"] + d["floating"]) >= MIN_DISTRICT_REGISTERED].dropna(subset=["floating_share"])
        tail = ""
        if len(top):
            t = top.sort_values(["floating_share", "area_code"], ascending=[False, True]).iloc[0]
            tail = (f"；流动人口占比最高的区县（登记≥{MIN_DISTRICT_REGISTERED}人）是{area(t.area_code)}："
                    f"{_pct(t.floating_share)}")
        out.append(f"常住人口中户籍人口 {r} 人、流动人口 {f} 人，流动人口占 {_pct(f / (r + f) if r + f else None)}"
                   f"（户籍类型已知者）{tail}。")
    gen = tables.get("marts.population_household_generations")
    if gen is not None and len(gen):
        hh, three = int(gen["households"].sum()), int(gen["three_plus_generation"].sum())
        known = hh - int(gen["generation_unknown"].sum())
        one, alone, persons = int(gen["one_generation"].sum()), int(gen["persons_without_relatives"].sum()), \
            int(gen["persons"].sum())
        out.append(f"{hh} 户中一代户 {one} 户（{_pct(one / known if known else None)}），三代及以上户 {three} 户"
                   f"（{_pct(three / known if known else None)}）；无登记亲属的在册人口 {alone} 人"
                   f"（{_pct(alone / persons if persons else None)}）。")
    st = tables.get("marts.population_natural_structure")
    if st is not None and len(st):
        streets = st[(st["area_level"] == "street") & (st["area_code"] != "0" * 9)]
        big = streets[streets["population"] >= MIN_STREET_RESIDENTS]
        if len(big):
            s = big.sort_values(["ageing_rate_65", "area_code"], ascending=[False, True]).iloc[0]
            out.append(f"老龄化率最高的街道（常住≥{MIN_STREET_RESIDENTS}人）是{area(s.area_code)}：65岁及以上占 "
                       f"{_pct(s.ageing_rate_65)}，老年抚养比 {s.old_age_dependency_ratio:.1f}。")
    hot = tables.get("marts.grid_hot_fields")
    if hot is not None and len(hot[hot["area_level"] == "city"]):
        h = hot[(hot["area_level"] == "city")].sort_values("rank").iloc[0]
        growth = "上期无" if h.prev_events == 0 else f"环比 {h.growth * 100:+.1f}%"
        out.append(f"{h.period_start}至{h.period_end}全市第一热点领域是“{h.category_l1}/{h.category_l2}/{h.category_l3}”："
                   f"{int(h.events)} 件（上期 {int(h.prev_events)} 件，{growth}）。")
    spots = tables.get("marts.grid_hotspots")
    if spots is not None and len(spots):
        g = spots[spots["cell_level"] == "grid"]
        hot95 = g[g["hotspot"].isin(["hot 99%", "hot 95%"])]
        top = g.dropna(subset=["gi_star_z"]).sort_values(["gi_star_z", "cell_code"], ascending=[False, True])
        if len(top):
            t = top.iloc[0]
            out.append(f"热点检验（Getis–Ord Gi*，同街道网格为邻域）：{len(g)} 个网格中 {len(hot95)} 个为95%显著热点；"
                       f"最突出的是网格 {t.cell_code}（{int(t.events)} 件，z={t.gi_star_z:.2f}，p={t.p_value:.3f}）。")
    ws = tables.get("marts.grid_worker_stats")
    if ws is not None and len(ws):
        rep, closed, due, ontime = (int(ws[c].sum()) for c in ("reported", "closed", "due", "closed_on_time"))
        hours = (ws["mean_handling_hours"] * ws["closed"]).sum() / closed if closed else None
        out.append(f"{len(ws)} 名网格员期内上报 {rep} 件，结案率 {_pct(closed / rep if rep else None)}，按期结案率 "
                   f"{_pct(ontime / due if due else None)}（时限 {grid.deadline_hours:g} 小时），平均处置 "
                   f"{'–' if hours is None else f'{hours:.1f}'} 小时。")
    rs = tables.get("marts.grid_repeat_summary")
    if rs is not None and len(rs):
        ev, rp = int(rs["events"].sum()), int(rs["repeat_events"].sum())
        out.append(f"重复投诉（同一网格、同一三级类别 {grid.repeat_window_days} 天内再次发生）{rp} 件，占有地点事件的 "
                   f"{_pct(rp / ev if ev else None)}。")
    return out
