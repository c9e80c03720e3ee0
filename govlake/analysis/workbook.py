"""The run's Excel workbook (报表): the marts of a logical date as published for that date, one sheet per indicator
family, written to ``<GOVLAKE_HOME>/reports/baobiao/govlake_<logical date>.xlsx`` by the analysis stage.

Three layers, so that the figures are testable without Excel:

- :data:`FAMILIES`, the registry: one :class:`Family` per sheet (source table, sheet name, columns with their
  Chinese label and unit). A new mart family is one entry: ``Family("marts.x", "名称", (Col("a", "甲", "人"), ...))``.
  Most entries use the generic :func:`district_blocks`; the population pyramid, the ethnic composition and the
  events by category / status / week have their own builders.
- :func:`build_workbook_data`, pure: pandas frames of the sources (``layer.table`` → frame) → :class:`SheetData`
  per sheet (blocks of rows, each a pandas frame with its columns, units and charts).
- :func:`write_workbook`: the sheets → ``.xlsx`` bytes (openpyxl), deterministic: the same inputs and
  ``generated_at`` give the same bytes (document properties and zip entry times are pinned), written atomically
  (:func:`govlake.core.fsio.atomic_write_bytes`, left untouched when unchanged).

:func:`build_workbook` is the entry point (Spark reads, then the two above). The marts are read with
:func:`govlake.core.lake.read_published` at the versions the marts stage published for the logical date (the
versions the report and the findings read); a table partitioned by date (contract ``partition_by``) is filtered to
the logical date. Analysis tables have no publication: a whole analysis table (the ethnic composition service) is
read at its current version, only when the marts publication of the date is the latest one (a rerun of a past date
leaves it out: it holds the latest state). The cover (目录) lists every table read with its Delta version.

Units (header row 单位): 人 persons, 户 households, 件 events, % (a fraction 0–1 shown as a percentage with one
decimal), 小时 hours, 人/平方公里, 每百人 (per 100 aged 15–64), 每千人 (per 1,000 residents), 个 cells.
Definitions: the 指标说明 sheet, from the contracts (``tables/<layer>.<table>.yaml``: column descriptions and KPIs).

This module imports neither pyspark nor pandas nor openpyxl at import time.
"""
from __future__ import annotations

import datetime as dt
import io
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from govlake.core.config import REFERENCE_DIR, SAMPLE_CITY_CODE, TIME_ZONE, Settings

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import SparkSession

#: Folder of the workbooks under ``Settings.reports_dir``.
WORKBOOK_DIR = "baobiao"
#: Name of the city the workbook is about (GB/T 2260 :data:`SAMPLE_CITY_CODE`).
CITY_NAME = "石家庄市"
#: Complete ISO weeks of the event sheet: the period of the report (``analysis.top_event_categories_by_district``).
EVENT_WEEKS = 12
#: Number format of each unit (Excel format codes); units not listed get :data:`DECIMAL_FORMAT`.
UNIT_FORMATS = {"人": "#,##0", "户": "#,##0", "件": "#,##0", "个": "#,##0", "条": "#,##0", "%": "0.0%"}
DECIMAL_FORMAT = "#,##0.0"
#: Label of the total row of a per-district block.
TOTAL_LABEL = "全市合计"
UNKNOWN_DISTRICT_CODE = "000000"
UNKNOWN_DISTRICT_NAME = "未知区县"
#: Group key of a NULL value in the service tables (govlake.analysis.services.NULL_LABEL).
NULL_GROUP = "(空)"


def workbook_path(settings: Settings, logical_date: dt.date) -> Path:
    """``<reports>/baobiao/govlake_<logical date>.xlsx``."""
    return settings.reports_dir / WORKBOOK_DIR / f"govlake_{logical_date.isoformat()}.xlsx"


# ------------------------------------------------------------------------------------------------ the registry

@dataclass(frozen=True)
class Col:
    """One column of a sheet block.

    ``name``: column of the frame (of the mart, or computed by a builder); ``label``: Chinese header; ``unit``: one
    of the units of the module docstring ('' for a text column); ``total``: how the 全市合计 row gets its value —
    ``"sum"``, ``None`` (blank), or ``(numerator columns, denominator columns, scale)`` for a ratio recomputed from
    the summed columns (e.g. ``(("floating",), ("registered", "floating"), 1)``); ``source``: the contract column
    the definition is read from (default ``name``; ``""`` for none); ``note``: a definition written here instead
    (computed columns).
    """

    name: str
    label: str
    unit: str = ""
    total: Any = "sum"
    source: str | None = None
    note: str = ""

    @property
    def number_format(self) -> str | None:
        """The Excel number format of the unit (None for text)."""
        if not self.unit:
            return None
        return UNIT_FORMATS.get(self.unit, DECIMAL_FORMAT)


def _ratio(num: tuple[str, ...], den: tuple[str, ...], scale: float = 1.0) -> tuple:
    return (num, den, scale)


@dataclass(frozen=True)
class Chart:
    """A chart of a block: ``kind`` ``"bar"`` (horizontal bars), ``"col"`` (columns), ``"line"`` or ``"pyramid"``
    (horizontal bars, the first data column negative and shown without sign); categories are the block's first
    column, series the ``series`` columns."""

    kind: str
    title: str
    series: tuple[str, ...]
    y_title: str = ""


@dataclass
class Block:
    """A table on a sheet: title, frame (columns in ``cols`` order), columns, optional chart, and whether its last
    row is a total row (shown bold)."""

    title: str
    frame: pd.DataFrame
    cols: tuple[Col, ...]
    chart: Chart | None = None
    total_row: bool = False


@dataclass
class SheetData:
    """One sheet: name, title line, the tables it was built from (``layer.table``) and its blocks."""

    name: str
    title: str
    sources: tuple[str, ...]
    blocks: list[Block] = field(default_factory=list)


#: A builder: (family, frames ``layer.table`` → pandas, context) → the sheet, or None when it has no data.
Builder = Callable[["Family", Mapping[str, "pd.DataFrame"], "Context"], "SheetData | None"]


@dataclass(frozen=True)
class Family:
    """One registry entry: a source table shown on one sheet.

    ``table``: ``layer.table`` (a mart: read as published; an analysis table: see the module docstring);
    ``sheet``: sheet name (≤ 31 characters); ``columns``: the value columns; ``where``: a pandas ``query`` selecting
    the rows (e.g. ``"area_level == 'district'"``); ``keys``: detail columns after the district (per grid, per
    worker, per month …): the sheet then shows a per-district summary of the ``"sum"`` columns plus the detail rows;
    ``count_label``: header of a count of detail rows in that summary (e.g. ``"网格数"``); ``trend``: a date key
    whose city totals get a line chart; ``district_from``: the column whose first 6 characters give the district
    when the table has no ``district_code``; ``build``: a builder other than :func:`district_blocks`.
    """

    table: str
    sheet: str
    columns: tuple[Col, ...] = ()
    where: str | None = None
    keys: tuple[Col, ...] = ()
    count_label: str = ""
    trend: str | None = None
    district_from: str | None = None
    build: Builder | None = None


@dataclass(frozen=True)
class Context:
    """What the builders need besides the frames: the logical date and the district names (GB/T 2260 code →
    name)."""

    logical_date: dt.date
    district_names: Mapping[str, str]


# ------------------------------------------------------------------------------------------------ helpers

@cache
def district_names(city_code: str = SAMPLE_CITY_CODE) -> dict[str, str]:
    """GB/T 2260 district code → name of the city's districts (``schemas/reference/divisions/areas.csv``), plus
    ``'000000'`` → 未知区县."""
    import csv

    with open(REFERENCE_DIR / "divisions" / "areas.csv", encoding="utf-8", newline="") as fh:
        names = {r["code"]: r["name"] for r in csv.DictReader(fh) if r["cityCode"] == city_code[:4]}
    return {**names, UNKNOWN_DISTRICT_CODE: UNKNOWN_DISTRICT_NAME}


@cache
def contract(name: str) -> dict:
    """The contract document ``tables/<name>.yaml`` (empty when there is none)."""
    import yaml

    from govlake.core.catalog import TABLES_DIR

    path = TABLES_DIR / f"{name}.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}


_DISTRICT_COLS = (Col("district_code", "区县代码（GB/T 2260）", total=None, source=""),
                  Col("district_name", "区县名称", total=None, source=""))


def _with_names(df: pd.DataFrame, names: Mapping[str, str]) -> pd.DataFrame:
    """``df`` with ``district_name`` from ``names`` (the frame's own name where the code is not listed)."""
    out = df.copy()
    own = out["district_name"] if "district_name" in out.columns else None
    out["district_name"] = out["district_code"].map(lambda c: names.get(c))
    if own is not None:
        out["district_name"] = out["district_name"].fillna(own)
    out["district_name"] = out["district_name"].fillna("")
    return out


def _total_value(df: pd.DataFrame, col: Col) -> Any:
    """The 全市合计 value of ``col`` over the rows of ``df`` (see :class:`Col`)."""
    if col.total == "sum":
        return df[col.name].sum() if len(df) else 0
    if isinstance(col.total, tuple):
        num, den, scale = col.total
        n = sum(df[c].sum() for c in num)
        d = sum(df[c].sum() for c in den)
        return None if not d else float(n) / float(d) * scale
    return None


def _with_total(df: pd.DataFrame, cols: tuple[Col, ...]) -> pd.DataFrame:
    """``df`` plus one 全市合计 row (district code = the city's code)."""
    import pandas as pd

    row: dict[str, Any] = {c.name: _total_value(df, c) for c in cols}
    row["district_code"], row["district_name"] = SAMPLE_CITY_CODE, TOTAL_LABEL
    return pd.concat([df, pd.DataFrame([row], columns=list(df.columns))], ignore_index=True)


def _latest_partition(df: pd.DataFrame, table: str, logical_date: dt.date) -> pd.DataFrame:
    """Rows of the logical date's partition when the contract partitions ``table`` by date, else ``df``."""
    import pandas as pd

    part = (contract(table).get("partition_by") or [None])[0]
    if not part or part not in df.columns or df.empty:
        return df
    return df[pd.to_datetime(df[part]).dt.date == logical_date]


# ------------------------------------------------------------------------------------------------ builders

def district_blocks(family: Family, frames: Mapping[str, pd.DataFrame], ctx: Context) -> SheetData | None:
    """The generic sheet of a registry entry: the rows of the logical date (``where`` applied), one block per
    district (code, name, columns, 全市合计); with ``keys``, a per-district summary of the ``"sum"`` columns (and
    ``count_label``) first, then the detail rows by district and keys; with ``trend``, city totals per date.

    Returns:
        the sheet, or None when the table is missing from ``frames``.
    """
    import pandas as pd

    src = frames.get(family.table)
    if src is None:
        return None
    df = _latest_partition(src, family.table, ctx.logical_date)
    if family.where:
        df = df.query(family.where)
    df = df.copy()
    if "district_code" not in df.columns and family.district_from:
        df["district_code"] = df[family.district_from].str[:6].fillna(UNKNOWN_DISTRICT_CODE)
    df = _with_names(df, ctx.district_names)
    sheet = SheetData(family.sheet, f"{family.sheet}（{ctx.logical_date.isoformat()}）", (family.table,))
    values = family.columns
    if not family.keys:
        body = df[[c.name for c in _DISTRICT_COLS + values]].sort_values("district_code", kind="stable")
        sheet.blocks.append(Block("分区县", _with_total(body.reset_index(drop=True), values),
                                  _DISTRICT_COLS + values, total_row=True))
        return sheet
    summed = tuple(c for c in values if c.total == "sum" or isinstance(c.total, tuple))
    sum_cols = sorted({n for c in summed for n in ([c.name] if c.total == "sum" else [*c.total[0], *c.total[1]])})
    per = df.groupby(["district_code", "district_name"], as_index=False)[sum_cols].sum() if sum_cols else (
        df[["district_code", "district_name"]].drop_duplicates())
    per_cols = summed
    if family.count_label:
        counts = df.groupby("district_code").size().rename("_rows").reset_index()
        per = per.merge(counts, on="district_code", how="left")
        per_cols = (Col("_rows", family.count_label, "个", source="", note="明细行数"),) + summed
    for c in summed:
        if isinstance(c.total, tuple):
            num, den, scale = c.total
            d = per[list(den)].sum(axis=1)
            per[c.name] = (per[list(num)].sum(axis=1) / d.where(d != 0)) * scale
    per = per.sort_values("district_code", kind="stable").reset_index(drop=True)
    sheet.blocks.append(Block("分区县汇总", _with_total(per[[c.name for c in _DISTRICT_COLS + per_cols]], per_cols),
                              _DISTRICT_COLS + per_cols, total_row=True))
    if family.trend:
        key = family.trend
        t = df.groupby(key, as_index=False)[[c.name for c in values if c.total == "sum"]].sum()
        t = t.sort_values(key, kind="stable").reset_index(drop=True)
        key_col = next(k for k in family.keys if k.name == key)
        trend_cols = tuple(c for c in values if c.total == "sum")
        sheet.blocks.append(Block("全市趋势", t[[key] + [c.name for c in trend_cols]], (key_col,) + trend_cols,
                                  chart=Chart("line", f"全市{family.sheet}趋势", tuple(c.name for c in trend_cols))))
    detail_cols = _DISTRICT_COLS + family.keys + values
    detail = df.sort_values(["district_code"] + [k.name for k in family.keys], kind="stable")
    sheet.blocks.append(Block("明细", pd.DataFrame(detail[[c.name for c in detail_cols]]).reset_index(drop=True),
                              detail_cols))
    return sheet


def population_sheet(family: Family, frames: Mapping[str, pd.DataFrame], ctx: Context) -> SheetData | None:
    """人口结构 from ``marts.population_by_district_sex_age`` at the logical date: per district (population, male,
    female, sex ratio, 0–14 / 15–64 / 65+ and the 65+ share, broad groups as :mod:`govlake.marts.population`), the
    city's age groups × sex with a pyramid chart, and per district × age group."""
    import pandas as pd

    from govlake.marts.population import AGE_GROUPS, OLD_AGE_MIN, WORKING_AGE_MIN

    src = frames.get(family.table)
    if src is None:
        return None
    pop = _latest_partition(src, family.table, ctx.logical_date).copy()
    lower = pop["age_group"].map(lambda g: 85 if g == "85+" else int(g[:2]))
    pop["male"] = pop["population"].where(pop["sex_code"] == "1", 0)
    pop["female"] = pop["population"].where(pop["sex_code"] == "2", 0)
    pop["age_0_14"] = pop["population"].where(lower < WORKING_AGE_MIN, 0)
    pop["age_15_64"] = pop["population"].where((lower >= WORKING_AGE_MIN) & (lower < OLD_AGE_MIN), 0)
    pop["age_65_plus"] = pop["population"].where(lower >= OLD_AGE_MIN, 0)
    counts = ["population", "male", "female", "age_0_14", "age_15_64", "age_65_plus"]
    per = pop.groupby("district_code", as_index=False)[counts].sum()
    per = _with_names(per, ctx.district_names).sort_values("district_code", kind="stable").reset_index(drop=True)
    per["sex_ratio"] = per["male"] / per["female"].where(per["female"] != 0) * 100
    per["share_65_plus"] = per["age_65_plus"] / per["population"].where(per["population"] != 0)
    cols = (Col("population", "常住人口", "人"),
            Col("male", "男", "人", source="", note="性别代码 '1'（男）的常住人口"),
            Col("female", "女", "人", source="", note="性别代码 '2'（女）的常住人口"),
            Col("sex_ratio", "性别比", "每百名女性", _ratio(("male",), ("female",), 100), source="",
                note="男性人口 / 女性人口 × 100（性别代码 GB/T 2261.1 '1'/'2'）"),
            Col("age_0_14", "0–14岁", "人", source="", note="周岁 0–14 的常住人口"),
            Col("age_15_64", "15–64岁", "人", source="", note="周岁 15–64 的常住人口"),
            Col("age_65_plus", "65岁及以上", "人", source="", note="周岁 65 及以上的常住人口"),
            Col("share_65_plus", "65岁及以上占比（老龄化率）", "%", _ratio(("age_65_plus",), ("population",)),
                source="", note="65岁及以上人口 / 常住人口"))
    sheet = SheetData(family.sheet, f"人口结构（统计日 {ctx.logical_date.isoformat()}）", (family.table,))
    sheet.blocks.append(Block("分区县人口", _with_total(per[[c.name for c in _DISTRICT_COLS + cols]], cols),
                              _DISTRICT_COLS + cols, total_row=True))
    grid = pop.groupby("age_group")[["male", "female"]].sum()
    pyramid = pd.DataFrame({"age_group": list(AGE_GROUPS)})
    pyramid["male"] = [int(grid["male"].get(g, 0)) for g in AGE_GROUPS]
    pyramid["female"] = [int(grid["female"].get(g, 0)) for g in AGE_GROUPS]
    pyramid["population"] = pyramid["male"] + pyramid["female"]
    pyramid["male_chart"] = -pyramid["male"]
    pcols = (Col("age_group", "年龄组（岁）", total=None, source="age_group"), cols[1], cols[2],
             Col("population", "男女合计", "人", source="", note="男 + 女（不含性别代码 0/9 的人口）"),
             Col("male_chart", "男（作图用，负值）", "人", total=None, source="", note="金字塔图左侧：男性人口取负值"))
    sheet.blocks.append(Block("全市人口金字塔（年龄组 × 性别）", pyramid, pcols,
                              chart=Chart("pyramid", "全市人口金字塔", ("male_chart", "female"), "人")))
    matrix = pop.pivot_table(index="district_code", columns="age_group", values="population", aggfunc="sum",
                             fill_value=0).reindex(columns=list(AGE_GROUPS), fill_value=0)
    matrix.columns = [f"age_{g}" for g in AGE_GROUPS]
    matrix = _with_names(matrix.reset_index(), ctx.district_names)
    acols = tuple(Col(f"age_{g}", f"{g}岁", "人", source="", note=f"周岁 {g} 的常住人口（男女及性别不详合计）")
                  for g in AGE_GROUPS)
    matrix = matrix.sort_values("district_code", kind="stable").reset_index(drop=True)
    sheet.blocks.append(Block("分区县 × 年龄组", _with_total(matrix[[c.name for c in _DISTRICT_COLS + acols]], acols),
                              _DISTRICT_COLS + acols, total_row=True))
    return sheet


def ethnic_sheet(family: Family, frames: Mapping[str, pd.DataFrame], ctx: Context) -> SheetData | None:
    """民族构成 from the category service table of ethnic groups per district (``group_key`` = district code,
    ``category`` = GB/T 3304 code, ``n`` = current residents): per district one column per ethnic group (ordered by
    the city's count, then code), the total and the minority share (GB/T 3304 codes other than 01 汉族 over all
    residents, those without a code included in the denominator); residents without a district under 000000."""
    from govlake.codes.code_lists import load_code_list

    src = frames.get(family.table)
    if src is None:
        return None
    names = load_code_list("ethnicity")
    df = src.rename(columns={"group_key": "district_code"})
    # residents without a district (the service's NULL label '(空)') under the unknown place, as in the event mart
    df["district_code"] = df["district_code"].replace(NULL_GROUP, UNKNOWN_DISTRICT_CODE)
    order = (df.groupby("category", as_index=False)["n"].sum()
             .sort_values(["n", "category"], ascending=[False, True], kind="stable")["category"].tolist())
    wide = df.pivot_table(index="district_code", columns="category", values="n", aggfunc="sum", fill_value=0)
    wide = wide.reindex(columns=order, fill_value=0)
    wide.columns = [f"eth_{c}" for c in order]
    wide = _with_names(wide.reset_index(), ctx.district_names)
    minority = [f"eth_{c}" for c in order if c in names and c != "01"]
    wide["total"] = wide[[f"eth_{c}" for c in order]].sum(axis=1)
    wide["minority"] = wide[minority].sum(axis=1) if minority else 0
    wide["minority_share"] = wide["minority"] / wide["total"].where(wide["total"] != 0)
    cols = tuple(Col(f"eth_{c}", names.get(c, c), "人", source="", note=f"民族代码 {c}（GB/T 3304）的常住人口")
                 for c in order)
    cols += (Col("total", "合计", "人", source="", note="各民族及民族不详人口之和"),
             Col("minority", "少数民族", "人", source="", note="GB/T 3304 代码非 01（汉族）的人口"),
             Col("minority_share", "少数民族占比", "%", _ratio(("minority",), ("total",)), source="",
                 note="少数民族人口 / 合计"))
    wide = wide.sort_values("district_code", kind="stable").reset_index(drop=True)
    sheet = SheetData(family.sheet, f"民族构成（{ctx.logical_date.isoformat()}）", (family.table,))
    sheet.blocks.append(Block("分区县民族构成", _with_total(wide[[c.name for c in _DISTRICT_COLS + cols]], cols),
                              _DISTRICT_COLS + cols, total_row=True))
    return sheet


def events_sheet(family: Family, frames: Mapping[str, pd.DataFrame], ctx: Context) -> SheetData | None:
    """网格事件 from ``marts.grid_events_by_district_category_week`` over the report's period (the
    :data:`EVENT_WEEKS` complete ISO weeks ending on or before the logical date,
    :func:`govlake.analysis.tables.event_period`): the city by first-level category and status (closed = current
    status 已结案, open = the rest) with a bar chart; per district (events, closed, open, closure rate, grid and
    hotline channels, events per 1,000 residents of ``marts.population_by_district_sex_age``); per district ×
    category; weekly totals per channel with a line chart."""
    import pandas as pd

    from govlake.analysis.tables import event_period

    src = frames.get(family.table)
    if src is None:
        return None
    start, end = event_period(ctx.logical_date, EVENT_WEEKS)
    ev = src.copy()
    ev["week_start"] = pd.to_datetime(ev["week_start"]).dt.date
    ev = ev[(ev["week_start"] >= start) & (ev["week_start"] <= end)]
    ev["grid"] = ev["events"].where(ev["channel"] == "grid", 0)
    ev["hotline"] = ev["events"].where(ev["channel"] == "hotline", 0)
    closure = _ratio(("closed",), ("events",))
    sheet = SheetData(family.sheet, f"网格事件（{start.isoformat()} 至 {end.isoformat()}，{EVENT_WEEKS} 个完整周）",
                      (family.table, "marts.population_by_district_sex_age"))

    cat = ev.groupby("category_l1", as_index=False)[["events", "closed"]].sum()
    cat = cat.sort_values(["events", "category_l1"], ascending=[False, True], kind="stable").reset_index(drop=True)
    cat["open"] = cat["events"] - cat["closed"]
    cat["closure_rate"] = cat["closed"] / cat["events"].where(cat["events"] != 0)
    status_cols = (Col("events", "事件数", "件"), Col("closed", "已结案", "件"),
                   Col("open", "未结案", "件", source="", note="事件数 − 已结案（当前状态非“已结案”）"),
                   Col("closure_rate", "结案率", "%", closure, source="", note="已结案 / 事件数"))
    cat_cols = (Col("category_l1", "一级类别", total=None),) + status_cols
    sheet.blocks.append(Block("全市按类别、状态", cat[[c.name for c in cat_cols]], cat_cols,
                              chart=Chart("bar", "全市事件数（按一级类别）", ("events",), "件")))

    per = ev.groupby("district_code", as_index=False)[["events", "closed", "grid", "hotline"]].sum()
    per = _with_names(per, ctx.district_names)
    per["open"] = per["events"] - per["closed"]
    per["closure_rate"] = per["closed"] / per["events"].where(per["events"] != 0)
    pop_src = frames.get("marts.population_by_district_sex_age")
    if pop_src is not None:
        pop = _latest_partition(pop_src, "marts.population_by_district_sex_age", ctx.logical_date)
        residents = pop.groupby("district_code")["population"].sum()
        per["residents"] = per["district_code"].map(residents).fillna(0).astype("int64")
    else:
        per["residents"] = 0
    per["per_1000"] = per["events"] / per["residents"].where(per["residents"] != 0) * 1000
    per = per.sort_values("district_code", kind="stable").reset_index(drop=True)
    dcols = status_cols + (
        Col("grid", "网格上报", "件", source="", note="channel = 'grid'（网格员巡查上报）"),
        Col("hotline", "热线", "件", source="", note="channel = 'hotline'（市民热线、留言板）"),
        Col("residents", "常住人口", "人", source="", note="marts.population_by_district_sex_age 统计日人口"),
        Col("per_1000", "每千人事件数", "每千人", _ratio(("events",), ("residents",), 1000), source="",
            note="1000 × 事件数 / 常住人口（未知区县无人口，空白）"))
    sheet.blocks.append(Block("分区县", _with_total(per[[c.name for c in _DISTRICT_COLS + dcols]], dcols),
                              _DISTRICT_COLS + dcols, total_row=True))

    categories = cat["category_l1"].tolist()
    matrix = ev.pivot_table(index="district_code", columns="category_l1", values="events", aggfunc="sum",
                            fill_value=0).reindex(columns=categories, fill_value=0)
    matrix.columns = [f"cat_{i}" for i in range(len(categories))]
    matrix = _with_names(matrix.reset_index(), ctx.district_names).sort_values("district_code", kind="stable")
    mcols = tuple(Col(f"cat_{i}", c, "件", source="", note=f"一级类别“{c}”的事件数") for i, c in enumerate(categories))
    sheet.blocks.append(Block("分区县 × 一级类别",
                              _with_total(matrix[[c.name for c in _DISTRICT_COLS + mcols]].reset_index(drop=True),
                                          mcols), _DISTRICT_COLS + mcols, total_row=True))

    weeks = ev.groupby("week_start", as_index=False)[["grid", "hotline", "events"]].sum()
    weeks = weeks.sort_values("week_start", kind="stable").reset_index(drop=True)
    wcols = (Col("week_start", "周一（ISO 周）", total=None),
             Col("grid", "网格上报", "件", source=""), Col("hotline", "热线", "件", source=""),
             Col("events", "合计", "件"))
    sheet.blocks.append(Block("全市每周事件数", weeks[[c.name for c in wcols]], wcols,
                              chart=Chart("line", "全市每周事件数", ("grid", "hotline", "events"), "件")))
    return sheet


# ------------------------------------------------------------------------------------------------ the registry

_D = "area_level == 'district'"

#: The sheets, in order: one entry per mart family (see :class:`Family`). Adding a mart = adding an entry.
FAMILIES: tuple[Family, ...] = (
    Family("marts.population_by_district_sex_age", "人口结构", build=population_sheet),
    Family("analysis.population_category_ethnic_by_district", "民族构成", build=ethnic_sheet),
    Family("marts.population_natural_structure", "抚养比与老龄化", (
        Col("population", "常住人口", "人"),
        Col("child_dependency_ratio", "少儿抚养比", "每百人", _ratio(("age_0_14",), ("age_15_64",), 100)),
        Col("old_age_dependency_ratio", "老年抚养比", "每百人", _ratio(("age_65_plus",), ("age_15_64",), 100)),
        Col("total_dependency_ratio", "总抚养比", "每百人",
            _ratio(("age_0_14", "age_65_plus"), ("age_15_64",), 100)),
        Col("ageing_rate_65", "老龄化率", "%", _ratio(("age_65_plus",), ("population",))),
        Col("age_0_14", "0–14岁", "人"), Col("age_15_64", "15–64岁", "人"), Col("age_65_plus", "65岁及以上", "人")),
        where=_D),
    Family("marts.population_households", "家庭户", (
        Col("households", "户数", "户"), Col("persons", "户内人口", "人"),
        Col("mean_household_size", "平均家庭户规模", "人/户", _ratio(("persons",), ("households",))),
        Col("size_1", "一人户", "户"), Col("size_2", "二人户", "户"), Col("size_3", "三人户", "户"),
        Col("size_4", "四人户", "户"), Col("size_5_plus", "五人及以上户", "户"),
        Col("elderly_living_alone", "独居老人", "人"), Col("elderly_only_households", "纯老户", "户"),
        Col("elderly_only_persons", "纯老户人口", "人"), Col("elderly_persons", "老年人口", "人"))),
    Family("marts.population_household_generations", "户代际结构", (
        Col("households", "户数", "户"), Col("one_generation", "一代户", "户"), Col("two_generation", "二代户", "户"),
        Col("three_plus_generation", "三代及以上户", "户"), Col("skip_generation", "隔代户", "户"),
        Col("three_plus_share", "三代及以上户占比", "%",
            _ratio(("three_plus_generation",), ("one_generation", "two_generation", "three_plus_generation"))),
        Col("persons_without_relatives", "无登记亲属人口", "人"))),
    Family("marts.population_registration", "户籍与流动人口", (
        Col("population", "常住人口", "人"), Col("registered", "户籍人口", "人"), Col("floating", "流动人口", "人"),
        Col("registration_unknown", "户籍类型不详", "人"),
        Col("floating_share", "流动人口占比", "%", _ratio(("floating",), ("registered", "floating")))),
        where=_D),
    Family("marts.population_density", "人口密度", (
        Col("population", "常住人口", "人"), Col("area_km2", "土地面积", "平方公里"),
        Col("density_per_km2", "人口密度", "人/平方公里", None))),
    Family("marts.population_education_marital", "受教育程度", (
        Col("persons", "人口", "人"), Col("share", "占6岁及以上人口比重", "%", None)),
        where="area_level == 'district' and dimension == 'education'",
        keys=(Col("code", "受教育程度代码（GB/T 4658）", total=None), Col("name_zh", "受教育程度", total=None))),
    Family("marts.population_migration_rates", "人口迁移", (
        Col("in_moves", "迁入", "人次"), Col("out_moves", "迁出", "人次"), Col("net_moves", "净迁入", "人次"),
        Col("net_rate", "净迁移率", "每千人", None)),
        keys=(Col("month", "月份", total=None),), trend="month"),
    Family("marts.grid_events_by_district_category_week", "网格事件", build=events_sheet),
    Family("marts.grid_hotspots", "网格热点", (
        Col("events", "事件数", "件"), Col("gi_star_z", "Gi* z 值", "z", None), Col("p_value", "p 值", "概率", None)),
        where="cell_level == 'grid'", count_label="网格数",
        keys=(Col("cell_code", "网格编码", total=None), Col("hotspot", "热点类别", total=None))),
    Family("marts.grid_worker_stats", "网格员绩效", (
        Col("reported", "上报事件", "件"), Col("closed", "已结案", "件"),
        Col("closure_rate", "结案率", "%", _ratio(("closed",), ("reported",))),
        Col("due", "应结案数", "件"),
        Col("on_time_closure_rate", "按期结案率", "%", _ratio(("closed_on_time",), ("due",))),
        Col("closed_on_time", "按期结案", "件"),
        Col("median_handling_hours", "处置时长中位数", "小时", None), Col("open_at_end", "期末未结案", "件")),
        keys=(Col("worker_id", "网格员", total=None), Col("grid_code", "网格编码", total=None)),
        count_label="网格员数", district_from="grid_code"),
    Family("marts.grid_repeat_summary", "重复投诉", (
        Col("events", "事件数", "件"), Col("repeat_events", "重复投诉", "件"),
        Col("repeat_rate", "重复投诉率", "%", _ratio(("repeat_events",), ("events",))),
        Col("places", "重复投诉点位", "个"))),
)


# ------------------------------------------------------------------------------------------------ pure: frames → sheets

def build_workbook_data(frames: Mapping[str, pd.DataFrame], logical_date: dt.date,
                        families: tuple[Family, ...] = FAMILIES) -> list[SheetData]:
    """The sheets of the workbook from the source frames (pure; no I/O).

    Args:
        frames: ``layer.table`` → pandas frame of the table as read for the run (a missing table gives no sheet).
        logical_date: the run's logical date (partition filter, event period).
        families: the registry.

    Returns:
        one :class:`SheetData` per family with a table in ``frames``, in registry order.
    """
    ctx = Context(logical_date, district_names())
    sheets = []
    for family in families:
        sheet = (family.build or district_blocks)(family, frames, ctx)
        if sheet is not None:
            sheets.append(sheet)
    return sheets


def definitions(sheets: list[SheetData]) -> list[tuple[str, str, str, str, str]]:
    """Rows of the 指标说明 sheet: (sheet, indicator, unit, source table.column, definition) for every value column
    of every sheet (from the contract's column description, or the column's ``note``), then (``指标定义``, KPI label,
    unit, table, definition; numerator; denominator; period; exclusions) for every KPI of the source contracts."""
    rows: list[tuple[str, str, str, str, str]] = []
    tables: list[str] = []
    for sheet in sheets:
        seen: set[str] = set()
        for block in sheet.blocks:
            for c in block.cols:
                if c.name in seen or c in _DISTRICT_COLS:
                    continue
                seen.add(c.name)
                source = c.name if c.source is None else c.source
                doc = contract(sheet.sources[0])
                desc = next((d.get("description", "") for d in doc.get("columns", []) if d["name"] == source), "")
                text = c.note or str(desc).strip()
                where = f"{sheet.sources[0]}.{source}" if source else sheet.sources[0]
                rows.append((sheet.name, c.label, c.unit, where, text))
        tables += [t for t in sheet.sources if t not in tables]
    for t in tables:
        for k in contract(t).get("kpis", []) or []:
            text = "；".join(f"{lab}：{k[key]}" for key, lab in (("definition", "定义"), ("numerator", "分子"),
                                                                 ("denominator", "分母"), ("period", "统计期"),
                                                                 ("exclusions", "排除"))
                            if k.get(key))
            label, unit = str(k.get("label_zh", k["name"])), str(k.get("unit", ""))
            rows.append(("指标定义", label, unit, f"{t}.{k['name']}", text))
    return rows


# ------------------------------------------------------------------------------------------------ writer

def _width(value: Any) -> int:
    """Display width of a cell value (CJK characters count 2)."""
    text = value if isinstance(value, str) else (f"{value:,.1f}" if isinstance(value, float) else str(value))
    return sum(2 if ord(ch) > 0x2E7F else 1 for ch in text)


def _cell(value: Any) -> Any:
    """A frame value as an openpyxl cell value (NaN/None → empty, numpy numbers → Python, dates → dates)."""
    import pandas as pd

    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    if isinstance(value, dt.datetime):
        return value.date() if value.time() == dt.time(0) else value
    return value


def _chart(spec: Chart, ws, header_row: int, first_row: int, last_row: int, col_of: dict[str, int]):
    """The openpyxl chart of ``spec`` over the block's rows (categories: the block's first column)."""
    from openpyxl.chart import BarChart, LineChart, Reference

    chart: Any
    if spec.kind == "line":
        chart = LineChart()
    else:
        chart = BarChart()
        chart.type = "col" if spec.kind == "col" else "bar"
        if spec.kind == "pyramid":
            chart.overlap = 100
            chart.gapWidth = 10
            chart.x_axis.scaling.orientation = "minMax"
            chart.y_axis.number_format = "#,##0;#,##0"  # the male bars are negative: shown without sign
            chart.x_axis.tickLblPos = "low"  # age labels at the left edge, clear of the bars
    chart.title = spec.title
    chart.y_axis.title = spec.y_title
    chart.height, chart.width = 9, 16
    first_col = min(col_of.values())
    for name in spec.series:
        data = Reference(ws, min_col=col_of[name], min_row=header_row, max_row=last_row)
        chart.add_data(data, titles_from_data=True)
    chart.set_categories(Reference(ws, min_col=first_col, min_row=first_row, max_row=last_row))
    chart.x_axis.delete = False
    chart.y_axis.delete = False
    return chart


def _write_sheet(ws, sheet: SheetData) -> None:
    """Blocks one under another: title row, header row, units row, rows (the total row bold); charts to the right;
    panes frozen below the first block's units row and right of its first label columns; column widths fitted."""
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    bold, head_fill = Font(bold=True), PatternFill("solid", fgColor="DDEBF7")
    ws.cell(row=1, column=1, value=sheet.title).font = Font(bold=True, size=14)
    widths: dict[int, int] = {}
    row, max_col, freeze = 3, 1, None
    pending = []
    for block in sheet.blocks:
        ws.cell(row=row, column=1, value=block.title).font = Font(bold=True, size=12)
        header, units = row + 1, row + 2
        col_of = {}
        for j, c in enumerate(block.cols, start=1):
            col_of[c.name] = j
            h = ws.cell(row=header, column=j, value=c.label)
            h.font, h.fill, h.alignment = bold, head_fill, Alignment(wrap_text=True, vertical="center")
            u = ws.cell(row=units, column=j, value=f"单位：{c.unit}" if c.unit else "")
            u.font = Font(italic=True, color="555555")
            widths[j] = max(widths.get(j, 0), min(_width(c.label), 30), _width(u.value or ""))
        max_col = max(max_col, len(block.cols))
        first = units + 1
        values = block.frame[[c.name for c in block.cols]].itertuples(index=False, name=None)
        n = 0
        for i, rec in enumerate(values):
            n += 1
            for j, (c, v) in enumerate(zip(block.cols, rec, strict=True), start=1):
                cell = ws.cell(row=first + i, column=j, value=_cell(v))
                if c.number_format and isinstance(cell.value, (int, float)):
                    cell.number_format = ("#,##0;#,##0" if c.name.endswith("_chart") else c.number_format)
                elif isinstance(cell.value, dt.date):
                    cell.number_format = "yyyy-mm-dd"
                widths[j] = max(widths.get(j, 0), min(_width(cell.value if cell.value is not None else ""), 40))
        last = first + n - 1
        if block.total_row and n:
            for j in range(1, len(block.cols) + 1):
                ws.cell(row=last, column=j).font = bold
        if freeze is None:
            label_cols = sum(1 for c in block.cols if not c.unit)
            freeze = f"{get_column_letter(label_cols + 1)}{first}"
        if block.chart is not None and n:
            data_last = last - 1 if block.total_row else last
            pending.append((block.chart, header, first, data_last, col_of, row))
        row = last + 3
    for spec, header, first, last, col_of, anchor_row in pending:
        chart = _chart(spec, ws, header, first, last, col_of)
        ws.add_chart(chart, f"{get_column_letter(max_col + 2)}{anchor_row}")
    for j, w in widths.items():
        ws.column_dimensions[get_column_letter(j)].width = max(8, w + 2)
    if freeze:
        ws.freeze_panes = freeze


def _cover(ws, sheets: list[SheetData], logical_date: dt.date, run_id: str | None, generated_at: dt.datetime,
           versions: Mapping[str, tuple[int, str]]) -> None:
    from openpyxl.styles import Font
    from openpyxl.worksheet.hyperlink import Hyperlink

    local = generated_at.astimezone(ZoneInfo(TIME_ZONE))
    ws.cell(row=1, column=1, value=f"{CITY_NAME}政务数据共享统计报表").font = Font(bold=True, size=16)
    lines = [("统计日（逻辑日期）", logical_date), ("运行编号", run_id or ""),
             ("生成时间（Asia/Shanghai）", local.strftime("%Y-%m-%d %H:%M:%S")),
             ("说明", "数据取自该统计日已发布的专题库版本（ops.publications），与决策支持报告一致")]
    for i, (k, v) in enumerate(lines, start=3):
        ws.cell(row=i, column=1, value=k).font = Font(bold=True)
        cell = ws.cell(row=i, column=2, value=v)
        if isinstance(v, dt.date):
            cell.number_format = "yyyy-mm-dd"
    row = 3 + len(lines) + 1
    ws.cell(row=row, column=1, value="来源表").font = Font(bold=True, size=12)
    for j, h in enumerate(("表", "Delta 版本", "读取方式"), start=1):
        ws.cell(row=row + 1, column=j, value=h).font = Font(bold=True)
    row += 2
    for t in sorted(versions):
        v, how = versions[t]
        ws.cell(row=row, column=1, value=t)
        ws.cell(row=row, column=2, value=v)
        ws.cell(row=row, column=3, value=how)
        row += 1
    row += 1
    ws.cell(row=row, column=1, value="工作表目录").font = Font(bold=True, size=12)
    row += 1
    for s in sheets + [SheetData("指标说明", "指标口径、单位与来源（数据契约 tables/*.yaml）", ())]:
        cell = ws.cell(row=row, column=1, value=s.name)
        cell.hyperlink = Hyperlink(ref=cell.coordinate, location=f"'{s.name}'!A1")
        cell.font = Font(color="0563C1", underline="single")
        ws.cell(row=row, column=2, value=s.title)
        row += 1
    ws.column_dimensions["A"].width = 52
    ws.column_dimensions["B"].width = 60
    ws.column_dimensions["C"].width = 36


def _pinned_zip(data: bytes) -> bytes:
    """The zip ``data`` with every entry's time set to 1980-01-01 (the zip epoch) in its own order, so that equal
    content gives equal bytes."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            pinned = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            pinned.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(pinned, src.read(info.filename))
    return out.getvalue()


def workbook_bytes(sheets: list[SheetData], logical_date: dt.date, run_id: str | None, generated_at: dt.datetime,
                   versions: Mapping[str, tuple[int, str]]) -> bytes:
    """The ``.xlsx`` of ``sheets``: the cover 目录 first, the sheets, then 指标说明 (:func:`definitions`).

    Args:
        generated_at: the run's time (timezone-aware; shown in Asia/Shanghai and used as the document's created /
            modified time): the only value that differs between two runs of one date with the same marts.
        versions: ``layer.table`` → (Delta version read, how it was read), for the cover.

    Returns:
        the file's bytes; equal arguments give equal bytes.
    """
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font
    from openpyxl.writer.excel import ExcelWriter

    wb = Workbook()
    cover = wb.active
    cover.title = "目录"
    for sheet in sheets:
        _write_sheet(wb.create_sheet(sheet.name), sheet)
    ws = wb.create_sheet("指标说明")
    title = ws.cell(row=1, column=1, value="指标说明（口径来自数据契约 tables/<layer>.<table>.yaml）")
    title.font = Font(bold=True, size=14)
    for j, h in enumerate(("工作表", "指标", "单位", "来源（表.字段）", "定义"), start=1):
        ws.cell(row=3, column=j, value=h).font = Font(bold=True)
    for i, rec in enumerate(definitions(sheets), start=4):
        for j, v in enumerate(rec, start=1):
            ws.cell(row=i, column=j, value=v).alignment = Alignment(wrap_text=(j == 5), vertical="top")
    for letter, w in zip("ABCDE", (16, 28, 14, 56, 100), strict=True):
        ws.column_dimensions[letter].width = w
    ws.freeze_panes = "A4"
    _cover(cover, sheets, logical_date, run_id, generated_at, versions)
    utc = generated_at.astimezone(dt.UTC).replace(tzinfo=None, microsecond=0)
    wb.properties.created = wb.properties.modified = utc
    wb.properties.creator = wb.properties.lastModifiedBy = "GovLake"
    wb.properties.title = f"{CITY_NAME}政务数据共享统计报表 {logical_date.isoformat()}"
    buf = io.BytesIO()
    # openpyxl's save_workbook stamps the modified time with now: its writer is called directly instead
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        ExcelWriter(wb, archive).save()
    return _pinned_zip(buf.getvalue())


# ------------------------------------------------------------------------------------------------ entry point

def read_sources(spark: SparkSession, settings: Settings, logical_date: dt.date,
                 families: tuple[Family, ...] = FAMILIES) -> tuple[dict[str, pd.DataFrame], dict[str, tuple[int, str]]]:
    """The registry's tables as pandas frames, and the Delta version each was read at.

    Marts: :func:`govlake.core.lake.read_published` for ``logical_date`` (partitioned ones filtered to the date in
    Spark before ``toPandas``); analysis tables: the current version, only when the marts' latest publication is for
    ``logical_date`` or earlier (not on a rerun of a past date). A table without a publication or a Delta table is
    left out.

    Returns:
        (``layer.table`` → frame, ``layer.table`` → (version, 读取方式)).

    Raises:
        RuntimeError: a published version is no longer readable (see :func:`read_published`).
    """
    from pyspark.sql import functions as F

    from govlake.core import lake

    frames: dict[str, pd.DataFrame] = {}
    versions: dict[str, tuple[int, str]] = {}
    pub = lake.published_versions(spark, settings, "marts", logical_date)
    latest = lake.latest_published_date(spark, settings, "marts")
    tables = [f.table for f in families] + ["marts.population_by_district_sex_age"]
    for name in dict.fromkeys(tables):
        layer, table = name.split(".", 1)
        if layer == "marts":
            df = lake.read_published(spark, settings, layer, table, logical_date)
            if df is None or pub is None:
                continue
            how = f"发布版本（{pub[0].isoformat()} 的发布）"
            version = pub[1][table]
        else:
            path = settings.table_path(layer, table)
            if (latest is not None and latest > logical_date) or not lake.exists(spark, path):
                continue
            version = lake.table_version(spark, path) or 0
            df = spark.read.format("delta").option("versionAsOf", version).load(path)
            how = "当前版本（整表，最新状态）"
        part = (contract(name).get("partition_by") or [None])[0]
        if part and part in df.columns:
            df = df.where(F.col(part) == F.lit(logical_date))
        frames[name] = df.toPandas()
        versions[name] = (int(version), how)
    return frames, versions


def build_workbook(spark: SparkSession, settings: Settings, logical_date: dt.date, run_id: str | None = None,
                   generated_at: dt.datetime | None = None) -> Path:
    """Write the workbook of ``logical_date`` (:func:`workbook_path`): :func:`read_sources`,
    :func:`build_workbook_data`, :func:`workbook_bytes`, written atomically and left untouched when its bytes are
    unchanged.

    Args:
        run_id: the run (shown on the cover).
        generated_at: the run's time (default now); a naive value is taken as UTC.

    Returns:
        the path of the ``.xlsx`` file.
    """
    from govlake.core.fsio import atomic_write_bytes

    when = generated_at or dt.datetime.now(dt.UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    frames, versions = read_sources(spark, settings, logical_date)
    data = workbook_bytes(build_workbook_data(frames, logical_date), logical_date, run_id, when, versions)
    path = workbook_path(settings, logical_date)
    atomic_write_bytes(path, data, skip_unchanged=True)
    return path
