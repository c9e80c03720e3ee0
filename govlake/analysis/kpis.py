"""The decision-support report's tables and KPIs as pandas (no rendering): the required tables, the event period,
the district summary and the headline KPIs. Read by :mod:`govlake.analysis.report` (the page) and
:mod:`govlake.analysis.findings` (the sentences).
"""
from __future__ import annotations

from datetime import date, timedelta

import pandas as pd

from govlake.analysis.tables import AGEING_FLAG_ZH
from govlake.marts.population import AGE_GROUPS, UNKNOWN_DISTRICT_CODE

__all__ = ["AGEING_FLAG_ZH", "AGE_GROUPS", "UNKNOWN_DISTRICT_CODE"]

POPULATION = "marts.population_by_district_sex_age"
EVENTS = "marts.grid_events_by_district_category_week"
AGE_STRUCTURE = "analysis.age_structure_by_district"
TOP_CATEGORIES = "analysis.top_event_categories_by_district"
EXCLUSIONS = "marts.population_exclusions"
REQUIRED_TABLES = (POPULATION, EVENTS, AGE_STRUCTURE, TOP_CATEGORIES)
#: Theme marts charted when given (grid hotspots, grid-worker KPIs, migration flows between districts).
HOTSPOTS = "marts.grid_hotspots"
WORKERS = "marts.grid_worker_stats"
MIGRATION = "marts.population_migration_flows"
MIGRATION_PERIOD = "marts.population_migration_period_flows"
OPTIONAL_TABLES = (EXCLUSIONS, HOTSPOTS, WORKERS, MIGRATION, MIGRATION_PERIOD)

_EXCLUSION_REASON_ZH = {
    "missing_birth_date": "缺出生日期",
    "birth_after_snapshot": "出生日期晚于统计日",
    "missing_sex_code": "缺性别代码",
    "missing_district_code": "缺区县代码",
}
_PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}


# ----------------------------------------------------------------------------------------- helpers

def _tables(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """``tables`` keyed by ``layer.name``; bare names (``population_by_district_sex_age``) are accepted.

    Raises:
        KeyError: a required table is missing.
    """
    out = dict(tables)
    for key in REQUIRED_TABLES + OPTIONAL_TABLES:
        bare = key.split(".", 1)[1]
        if key not in out and bare in out:
            out[key] = out[bare]
    missing = [k for k in REQUIRED_TABLES if k not in out]
    if missing:
        raise KeyError(f"report tables missing: {', '.join(missing)}")
    return out


def _as_dates(series: pd.Series) -> pd.Series:
    """Any date-like column (datetime.date objects, strings, Timestamps) → datetime.date."""
    return pd.to_datetime(series).dt.date


def _pct(x: float | None) -> str:
    return "–" if x is None or pd.isna(x) else f"{x * 100:.1f}%"


def _int(x) -> str:
    return "–" if x is None or pd.isna(x) else f"{int(x):,}"


def _num(x, digits: int = 1) -> str:
    return "–" if x is None or pd.isna(x) else f"{float(x):,.{digits}f}"


def _latest(df: pd.DataFrame, col: str) -> pd.DataFrame:
    """Rows of ``df`` at the latest value of date column ``col`` (all rows when empty)."""
    if df.empty:
        return df.copy()
    out = df.copy()
    out[col] = _as_dates(out[col])
    return out[out[col] == out[col].max()]


def _age_rows(tables) -> tuple[pd.DataFrame, pd.Series | None]:
    """(district rows, city row or None) of the latest snapshot of the age-structure table."""
    age = _latest(tables[AGE_STRUCTURE], "snapshot_date")
    # without area_level, a city row has a code ending in '00' at county level (GB/T 2260)
    is_city = (age["area_level"] == "city" if "area_level" in age.columns
               else age["district_code"].str.endswith("00"))
    city = age[is_city]
    districts = age[~is_city].sort_values("district_code", kind="stable")
    return districts, (city.iloc[0] if len(city) else None)


def event_period_of(tables: dict[str, pd.DataFrame]) -> tuple[date | None, date | None]:
    """The event period of the report: that of ``analysis.top_event_categories_by_district``.

    When that table is empty, all weeks of the event mart (first Monday to last Sunday).

    Returns:
        (period_start, period_end) as dates, or (None, None) when there are no events at all.
    """
    tables = _tables(tables)
    top = _latest(tables[TOP_CATEGORIES], "period_end")
    if not top.empty:
        return max(_as_dates(top["period_start"])), top["period_end"].iloc[0]
    ev = tables[EVENTS]
    if ev.empty:
        return None, None
    weeks = _as_dates(ev["week_start"])
    return min(weeks), max(weeks) + timedelta(days=6)


def _events_in_period(tables) -> pd.DataFrame:
    ev = tables[EVENTS].copy()
    start, end = event_period_of(tables)
    if start is None:
        return ev.iloc[0:0]
    ev["week_start"] = _as_dates(ev["week_start"])
    return ev[(ev["week_start"] >= start) & (ev["week_start"] <= end)]


def _first_by(df: pd.DataFrame, value: str, key: str) -> pd.Series:
    """Row with the largest ``value``; ties broken by the smallest ``key``."""
    return df.sort_values([value, key], ascending=[False, True], kind="stable").iloc[0]


def district_summary(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per district of the age-structure table with its events in the report period.

    Returns:
        pandas DataFrame: the latest-snapshot district rows of ``analysis.age_structure_by_district``
        plus ``events`` (int, events in :func:`event_period_of`, both channels), ``closed`` (int),
        ``events_per_1000`` (float, events per 1,000 residents of the mart; NaN when population is 0)
        and ``top_category`` (rank-1 ``category_l1`` of the period or ``''``); sorted by code.

    Raises:
        KeyError: a required table is missing.
    """
    tables = _tables(tables)
    districts, _ = _age_rows(tables)
    ev = _events_in_period(tables)
    per = (ev.groupby("district_code", as_index=False)[["events", "closed"]].sum()
           if not ev.empty else pd.DataFrame({"district_code": pd.Series(dtype=object),
                                              "events": pd.Series(dtype="int64"),
                                              "closed": pd.Series(dtype="int64")}))
    out = districts.merge(per, on="district_code", how="left")
    out[["events", "closed"]] = out[["events", "closed"]].fillna(0).astype("int64")
    pop = out["population"].astype("float64")
    out["events_per_1000"] = (out["events"] / pop.where(pop > 0)) * 1000.0
    top = _latest(tables[TOP_CATEGORIES], "period_end")
    first = top[top["rank"] == 1][["district_code", "category_l1"]] if not top.empty else None
    if first is not None and not first.empty:
        out = out.merge(first.rename(columns={"category_l1": "top_category"}), on="district_code", how="left")
        out["top_category"] = out["top_category"].fillna("")
    else:
        out["top_category"] = ""
    return out.sort_values("district_code", kind="stable").reset_index(drop=True)


def headline_kpis(tables: dict[str, pd.DataFrame]) -> dict:
    """Headline KPIs of the report (definitions in the analysis contracts).

    Returns:
        dict with ``snapshot_date`` (date|None), ``residents`` (int, persons in the population mart
        at the latest snapshot), ``ageing_rate`` (float 0–1, city share of persons aged 65+, or
        None), ``ageing_flag`` (str|None), ``period_start``/``period_end`` (date|None, see
        :func:`event_period_of`), ``events`` (int, events in the period, all districts including
        the unknown place, both channels), ``closed`` (int, of which status 已结案 now) and
        ``closure_rate`` (float 0–1 = closed / events, None when no events).

    Raises:
        KeyError: a required table is missing.
    """
    tables = _tables(tables)
    pop = _latest(tables[POPULATION], "snapshot_date")
    _, city = _age_rows(tables)
    ev = _events_in_period(tables)
    start, end = event_period_of(tables)
    events = int(ev["events"].sum()) if not ev.empty else 0
    closed = int(ev["closed"].sum()) if not ev.empty else 0
    return {
        "snapshot_date": (pop["snapshot_date"].iloc[0] if not pop.empty else None),
        "residents": int(pop["population"].sum()) if not pop.empty else 0,
        "ageing_rate": (None if city is None or pd.isna(city["share_65_plus"]) else float(city["share_65_plus"])),
        "ageing_flag": None if city is None else city["ageing_flag"],
        "period_start": start,
        "period_end": end,
        "events": events,
        "closed": closed,
        "closure_rate": (closed / events) if events else None,
    }


# ------------------------------------------------------------------------------------------ charts
