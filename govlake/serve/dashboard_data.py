"""The dashboard's data: the published marts read from Delta with delta-rs, and the filters and aggregations the
page shows, as pure pandas functions (pandas in → pandas out, no Streamlit, no Spark).

Reading. The marts are read straight from their Delta tables with the ``deltalake`` package (delta-rs), with no
Spark JVM. GovLake's tables may use reader features (deletion vectors, column mapping) that delta-rs' pyarrow
dataset path (``DeltaTable.to_pandas``) refuses; :func:`read_delta` therefore reads through ``DeltaTable.scan``,
delta-rs' DataFusion engine, which applies both (``tests/serve/test_dashboard.py`` checks it on a table Spark wrote
with both features, deleted rows and a renamed column).

Published state. A reader sees the marts a marts run *published* (:func:`govlake.core.lake.record_publication`):
:func:`publication` reproduces :func:`govlake.core.lake.published_versions` on ``ops.publications`` (the rows of
layer ``marts`` of the latest logical date on or before a date give each table's Delta version), and every mart is
read at that version, so a run killed between two table commits is never half-shown.

Tables read (contracts in ``tables/``): ``marts.population_by_district_sex_age`` (the snapshot of the publication's
date), ``marts.grid_events_by_district_category_week`` (whole table), ``marts.grid_hotspots`` (``cell_level`` =
``grid``, the 28-day period ending on the publication's date).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from govlake.core.config import Settings
from govlake.marts.population import AGE_GROUPS, OLD_AGE_MIN, UNKNOWN_DISTRICT_CODE

__all__ = ["AGE_GROUPS", "UNKNOWN_DISTRICT_CODE"]

POPULATION = "population_by_district_sex_age"
EVENTS = "grid_events_by_district_category_week"
HOTSPOTS = "grid_hotspots"
#: Weeks shown first: the report's event period, the 12 complete ISO weeks ending on or before the publication's
#: date (:func:`govlake.analysis.tables.event_period`).
DEFAULT_WEEKS = 12


# ------------------------------------------------------------------------------------------------ reading

def lakehouse_dir(settings: Settings) -> str:
    """The lakehouse root as delta-rs takes it (a local path without ``file:``, or an object-store URI)."""
    root = settings.lakehouse
    return root[5:] if root.startswith("file:") else root


def table_dir(settings: Settings, layer: str, table: str) -> str:
    """Storage path of ``<layer>.<table>`` (as :meth:`Settings.table_path`, ``file:`` removed)."""
    return f"{lakehouse_dir(settings).rstrip('/')}/{layer}/{table}"


def read_delta(path: str, version: int | None = None, predicate: str | None = None) -> pd.DataFrame:
    """The Delta table at ``path`` (at ``version``; default the latest) as pandas, read with delta-rs' DataFusion
    scan (deletion vectors and column mapping applied).

    Args:
        path: table folder or URI.
        version: Delta version to time-travel to.
        predicate: DataFusion SQL filter applied while reading (e.g. ``"layer = 'marts'"``).

    Returns:
        the table's columns with their Delta types: STRING → object (str), DATE → object (``datetime.date``),
        LONG/INT → int64/int32 (float64 when NULLs), DOUBLE → float64.

    Raises:
        deltalake.exceptions.TableNotFoundError: no Delta table at ``path``.
        deltalake.exceptions.DeltaError: ``version`` does not exist (vacuumed or never written).
    """
    import pyarrow as pa
    from deltalake import DeltaTable

    table = DeltaTable(path, version=version)
    arrow = pa.table(table.scan(predicate=predicate).read_all())
    # string_view columns (DataFusion's default) to plain strings: pandas turns both into Python str objects
    arrow = arrow.cast(pa.schema([pa.field(f.name, pa.string() if pa.types.is_string_view(f.type) else f.type)
                                  for f in arrow.schema]))
    return arrow.to_pandas()


def is_delta_table(path: str) -> bool:
    """True when ``path`` holds a Delta table (delta-rs finds a commit or checkpoint)."""
    from deltalake import DeltaTable

    return bool(DeltaTable.is_deltatable(path))


def read_publications(settings: Settings, layer: str = "marts") -> pd.DataFrame:
    """The rows of ``ops.publications`` for ``layer``: ``logical_date`` (date), ``table`` (str), ``version``
    (int64); empty (those columns) when the table does not exist yet."""
    path = table_dir(settings, "ops", "publications")
    if not is_delta_table(path):
        return pd.DataFrame({"logical_date": pd.Series(dtype=object), "table": pd.Series(dtype=object),
                             "version": pd.Series(dtype="int64")})
    pubs = read_delta(path, predicate=f"layer = '{layer}'")
    return pubs[["logical_date", "table", "version"]].astype({"version": "int64"})


def publication(pubs: pd.DataFrame, as_of: dt.date | None = None) -> tuple[dt.date, dict[str, int]] | None:
    """The publication that holds for ``as_of`` (default the latest): that of the latest logical date on or before
    it, as ``(logical date, {table: version})``; None when there is none. The rule of
    :func:`govlake.core.lake.published_versions`.

    Args:
        pubs: :func:`read_publications` (``logical_date``, ``table``, ``version``).
    """
    if pubs.empty:
        return None
    days = _dates(pubs["logical_date"])
    if as_of is not None:
        pubs, days = pubs[days <= as_of], days[days <= as_of]
    if pubs.empty:
        return None
    day = days.max()
    rows = pubs[days == day]
    return day, {str(t): int(v) for t, v in zip(rows["table"], rows["version"], strict=True)}


def published_dates(pubs: pd.DataFrame) -> list[dt.date]:
    """The logical dates with a publication, latest first."""
    return sorted(set(_dates(pubs["logical_date"])), reverse=True)


def read_geojson(path: Path) -> dict | None:
    """The GeoJSON FeatureCollection at ``path``; None when the file does not exist."""
    import json

    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def subset_geojson(geojson: dict, key: str, ids: Iterable[str]) -> dict:
    """The FeatureCollection with only the features whose ``properties[key]`` is in ``ids`` (in the file's order):
    a figure carries its GeoJSON to the browser on every rerun, and the sample city's grid file alone is ~0.5 MB."""
    wanted = set(ids)
    return {**geojson, "features": [f for f in geojson.get("features", [])
                                    if str(f.get("properties", {}).get(key)) in wanted]}


def fit_view(geojson: dict, key: str, ids: Iterable[str], width_px: int = 600, height_px: int = 520
             ) -> tuple[dict[str, float], float]:
    """Centre and zoom of a plotly ``map`` (Web Mercator, 512-px tiles at zoom 0) that show the features of
    ``geojson`` whose ``properties[key]`` is in ``ids`` in a ``width_px`` × ``height_px`` plot: plotly's ``map``
    subplot has no ``fitbounds`` (only ``geo`` has, and ``geo`` fetches a world topojson from cdn.plot.ly).

    Returns:
        (``{"lon", "lat"}`` of the bounding box's centre in degrees, zoom level with a 0.2 margin); the whole
        collection's box when no feature matches; ``({"lon": 114.5, "lat": 38.0}, 7.5)`` (the sample city) when
        the collection is empty.
    """
    import math

    wanted = set(ids)
    lons: list[float] = []
    lats: list[float] = []

    def walk(c) -> None:
        if c and isinstance(c[0], (int, float)):
            lons.append(float(c[0]))
            lats.append(float(c[1]))
        else:
            for part in c:
                walk(part)

    features = [f for f in geojson.get("features", []) if f.get("geometry")]
    chosen = [f for f in features if str(f.get("properties", {}).get(key)) in wanted] or features
    for feature in chosen:
        walk(feature["geometry"].get("coordinates", []))
    if not lons:
        return {"lon": 114.5, "lat": 38.0}, 7.5
    lon0, lon1, lat0, lat1 = min(lons), max(lons), min(lats), max(lats)
    y0, y1 = (math.log(math.tan(math.pi / 4 + math.radians(v) / 2)) for v in (lat0, lat1))
    zoom_x = math.log2(width_px * 360.0 / (512.0 * max(lon1 - lon0, 1e-6)))
    zoom_y = math.log2(height_px * 2 * math.pi / (512.0 * max(y1 - y0, 1e-9)))
    return {"lon": round((lon0 + lon1) / 2, 6), "lat": round((lat0 + lat1) / 2, 6)}, round(min(zoom_x, zoom_y) - 0.2, 3)


# ---------------------------------------------------------------------------------------- pure transforms

def _dates(series: pd.Series) -> pd.Series:
    """Any date-like column (``datetime.date``, ISO strings, Timestamps) → ``datetime.date``."""
    return pd.to_datetime(series).dt.date


def district_options(divisions: pd.DataFrame, *frames: pd.DataFrame) -> pd.DataFrame:
    """The districts offered by the filter: every division of the city plus any other code the marts hold (named by
    the mart, or by the code alone), sorted by code.

    Args:
        divisions: ``district_code``, ``district_name`` (GB/T 2260, :func:`govlake.marts.reference` areas).
        frames: marts with ``district_code`` and ``district_name`` columns.

    Returns:
        ``district_code`` (str), ``district_name`` (str), ``label`` (``'<code> <name>'``).
    """
    names = dict(zip(divisions["district_code"], divisions["district_name"], strict=True))
    for frame in frames:
        if frame.empty:
            continue
        for code, name in zip(frame["district_code"], frame["district_name"], strict=True):
            if code not in names or not isinstance(names[code], str):
                names[code] = name if isinstance(name, str) else None
    out = pd.DataFrame({"district_code": sorted(names)})
    out["district_name"] = [names[c] or c for c in out["district_code"]]
    out["label"] = out["district_code"] + " " + out["district_name"]
    return out


def filter_districts(df: pd.DataFrame, codes: Iterable[str]) -> pd.DataFrame:
    """Rows of ``df`` whose ``district_code`` is one of ``codes``; all rows when ``codes`` is empty (no filter)."""
    codes = list(codes)
    return df if not codes else df[df["district_code"].isin(codes)]


def weeks_in_period(events: pd.DataFrame, start: dt.date, end: dt.date) -> pd.DataFrame:
    """Rows of the weekly event mart whose ISO week (``week_start`` Monday to Sunday) overlaps [``start``, ``end``]
    (both inclusive): the mart counts whole weeks, so a period is widened to the weeks it touches.
    ``week_start`` is returned as ``datetime.date``."""
    out = events.copy()
    out["week_start"] = _dates(out["week_start"]) if not out.empty else out["week_start"]
    if out.empty:
        return out
    week_end = out["week_start"] + dt.timedelta(days=6)
    return out[(out["week_start"] <= end) & (week_end >= start)]


def period_weeks(start: dt.date, end: dt.date) -> list[dt.date]:
    """The Mondays of the ISO weeks that [``start``, ``end``] touches, in order (empty when ``end`` < ``start``)."""
    monday = start - dt.timedelta(days=start.weekday())
    weeks: list[dt.date] = []
    while monday <= end and start <= end:
        weeks.append(monday)
        monday += dt.timedelta(weeks=1)
    return weeks


def _age_lower(age_group: pd.Series) -> pd.Series:
    """Lower bound in years of an age-group label (``'05-09'`` → 5, ``'85+'`` → 85)."""
    return age_group.str.slice(0, 2).astype(int)


def kpis(population: pd.DataFrame, events: pd.DataFrame) -> dict:
    """Headline figures of the filtered marts (definitions as the report's, :mod:`govlake.analysis.kpis`).

    Args:
        population: population mart rows of one snapshot (``district_code``, ``sex_code``, ``age_group``,
            ``population``), already filtered by district.
        events: weekly event mart rows (``district_code``, ``events``, ``closed``), already filtered by district
            and period.

    Returns:
        ``residents`` (int, persons), ``share_65_plus`` (float 0–1 or None when no residents), ``events`` (int,
        both channels; the unknown place ``'000000'`` included), ``closed`` (int, status 已结案 now),
        ``closure_rate`` (float 0–1 or None when no events), ``events_per_1000`` (float: 1000 × events of districts
        with a code other than ``'000000'`` / residents; None when no residents).
    """
    residents = int(population["population"].sum()) if not population.empty else 0
    old = int(population.loc[_age_lower(population["age_group"]) >= OLD_AGE_MIN, "population"].sum()) \
        if not population.empty else 0
    n_events = int(events["events"].sum()) if not events.empty else 0
    closed = int(events["closed"].sum()) if not events.empty else 0
    placed = int(events.loc[events["district_code"] != UNKNOWN_DISTRICT_CODE, "events"].sum()) \
        if not events.empty else 0
    return {
        "residents": residents,
        "share_65_plus": old / residents if residents else None,
        "events": n_events,
        "closed": closed,
        "closure_rate": closed / n_events if n_events else None,
        "events_per_1000": 1000.0 * placed / residents if residents else None,
    }


def pyramid(population: pd.DataFrame) -> pd.DataFrame:
    """Persons per five-year age group and sex for a population pyramid.

    Returns:
        one row per age group of :data:`AGE_GROUPS` in order (zero-filled): ``age_group`` (str), ``male`` (int,
        GB/T 2261.1 code '1'), ``female`` (int, code '2'); persons of sex '0'/'9' are not shown.
    """
    out = pd.DataFrame({"age_group": list(AGE_GROUPS)})
    for column, code in (("male", "1"), ("female", "2")):
        counts = population[population["sex_code"] == code].groupby("age_group")["population"].sum()
        out[column] = [int(counts.get(g, 0)) for g in AGE_GROUPS]
    return out


def events_by_category(events: pd.DataFrame) -> pd.DataFrame:
    """Events per first-level category: ``category_l1``, ``events``, ``closed`` (int), most events first (ties by
    category name)."""
    if events.empty:
        return pd.DataFrame({"category_l1": pd.Series(dtype=object), "events": pd.Series(dtype="int64"),
                             "closed": pd.Series(dtype="int64")})
    out = events.groupby("category_l1", as_index=False)[["events", "closed"]].sum()
    return out.sort_values(["events", "category_l1"], ascending=[False, True], kind="stable").reset_index(drop=True)


def weekly_events(events: pd.DataFrame) -> pd.DataFrame:
    """Events per ISO week and first-level category: ``week_start`` (date), ``category_l1``, ``events`` (int);
    sorted by week then category. Only non-empty cells."""
    if events.empty:
        return pd.DataFrame({"week_start": pd.Series(dtype=object), "category_l1": pd.Series(dtype=object),
                             "events": pd.Series(dtype="int64")})
    ev = events.assign(week_start=_dates(events["week_start"]))
    out = ev.groupby(["week_start", "category_l1"], as_index=False)["events"].sum()
    return out.sort_values(["week_start", "category_l1"], kind="stable").reset_index(drop=True)


def district_map(population: pd.DataFrame, events: pd.DataFrame, options: pd.DataFrame) -> pd.DataFrame:
    """One row per district with residents or events (the unknown place ``'000000'`` left out: it has no area).

    Args:
        population: population mart rows of one snapshot (filtered by district).
        events: weekly event mart rows (filtered by district and period).
        options: :func:`district_options` (names).

    Returns:
        ``district_code``, ``district_name``, ``residents`` (int), ``share_65_plus`` (float 0–1, NaN without
        residents), ``events`` (int), ``events_per_1000`` (float, NaN without residents), ``location``
        (``'156' + code``: the boundary file's ``properties.gb``); sorted by code.
    """
    pop = population.assign(old=lambda d: d["population"].where(_age_lower(d["age_group"]) >= OLD_AGE_MIN, 0)) \
        if not population.empty else population.assign(old=pd.Series(dtype="int64"))
    per_pop = pop.groupby("district_code")[["population", "old"]].sum()
    per_ev = events.groupby("district_code")["events"].sum() if not events.empty else pd.Series(dtype="int64")
    codes = sorted((set(per_pop.index) | set(per_ev.index)) - {UNKNOWN_DISTRICT_CODE})
    names = dict(zip(options["district_code"], options["district_name"], strict=True))
    out = pd.DataFrame({"district_code": codes})
    out["district_name"] = [names.get(c, c) for c in codes]
    out["residents"] = [int(per_pop["population"].get(c, 0)) for c in codes]
    old = pd.Series([int(per_pop["old"].get(c, 0)) for c in codes], dtype="float64")
    res = out["residents"].astype("float64").where(out["residents"] > 0)
    out["share_65_plus"] = old / res
    out["events"] = [int(per_ev.get(c, 0)) for c in codes]
    out["events_per_1000"] = 1000.0 * out["events"] / res
    out["location"] = "156" + out["district_code"]
    return out


def grid_cells(hotspots: pd.DataFrame, codes: Iterable[str]) -> pd.DataFrame:
    """The 网格 grid cells of ``marts.grid_hotspots`` in the selected districts (all when ``codes`` is empty).

    Returns:
        ``grid_code``, ``district_code``, ``events`` (int, grid-channel events in the mart's period),
        ``gi_star_z`` (float, NaN when undefined), ``hotspot`` (class); sorted by grid code.
    """
    cells = hotspots[hotspots["cell_level"] == "grid"] if not hotspots.empty else hotspots
    cells = filter_districts(cells, codes)
    out = cells.rename(columns={"cell_code": "grid_code"})[["grid_code", "district_code", "events", "gi_star_z",
                                                           "hotspot"]]
    return out.sort_values("grid_code", kind="stable").reset_index(drop=True)
