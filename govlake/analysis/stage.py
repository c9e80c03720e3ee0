"""The analysis stage: the analysis tables of a logical date from the marts as published for that date, the
decision-support report and the Excel workbook (报表, :mod:`govlake.analysis.workbook`).
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING

from govlake.core import lake
from govlake.core.catalog import partition_column
from govlake.core.config import REFERENCE_DIR, Settings

if TYPE_CHECKING:  # annotations only: this module imports neither pyspark nor pandas at import time
    import pandas as pd
    from pyspark.sql import SparkSession


def run_analysis(spark: SparkSession, settings: Settings, logical_date: dt.date, report: bool = True,
                 run_id: str | None = None, run_time: dt.datetime | None = None) -> dict:
    """Compute the analysis tables of ``logical_date`` from the marts as published for that date, then build the
    decision-support report and the workbook (:func:`govlake.analysis.workbook.build_workbook`).

    Args:
        report: build the report and the workbook (False: the analysis tables only).
        run_id: the run, shown on the workbook's cover.
        run_time: when the run started (timezone-aware; default now): the workbook's generated-at, so a rerun of
            the same run (an Airflow task retry) writes the same bytes.

    Returns:
        ``{"report": <index.html path> | None, "workbook": <.xlsx path> | None}``.
    """
    from pyspark.sql import functions as F

    from govlake.analysis import tables as analysis
    from govlake.core.failpoints import failpoint

    pop = (lake.require_published(spark, settings, "marts", "population_by_district_sex_age", logical_date)
           .where(f"snapshot_date = DATE'{logical_date.isoformat()}'"))
    ev = lake.require_published(spark, settings, "marts", "grid_events_by_district_category_week", logical_date)
    ages = analysis.age_structure_by_district(pop)
    lake.replace_partition_if_changed(spark, ages, settings.table_path("analysis", "age_structure_by_district"),
                                      partition_column("analysis.age_structure_by_district"), logical_date)
    top = analysis.top_event_categories_by_district(ev, logical_date)
    top = top.withColumn("logical_date", F.lit(logical_date).cast("date"))
    lake.replace_partition_if_changed(spark, top, settings.table_path("analysis", "top_event_categories_by_district"),
                                      partition_column("analysis.top_event_categories_by_district"), logical_date)
    failpoint("analysis.before_report")
    out: dict[str, str | None] = {"report": None, "workbook": None}
    if report:
        from govlake.analysis.workbook import build_workbook

        out["report"] = str(build_report(spark, settings, logical_date))
        out["workbook"] = str(build_workbook(spark, settings, logical_date, run_id=run_id, generated_at=run_time))
    return out


def report_tables(spark: SparkSession, settings: Settings, logical_date: dt.date) -> dict[str, pd.DataFrame]:
    """The tables the report reads, as pandas frames (small: marts and analysis only; marts as published for
    ``logical_date``): the four required tables and, when published, ``grid_hotspots`` and ``grid_worker_stats`` (the
    date's period), ``population_migration_period_flows`` (the date's period) and
    ``population_migration_flows``."""
    d = logical_date.isoformat()
    marts_ = lambda name: lake.require_published(spark, settings, "marts", name, logical_date)  # noqa: E731
    analysis_ = lambda name: spark.read.format("delta").load(settings.table_path("analysis", name))  # noqa: E731
    tables = {
        "population_by_district_sex_age":
            marts_("population_by_district_sex_age").where(f"snapshot_date = DATE'{d}'").toPandas(),
        "grid_events_by_district_category_week": marts_("grid_events_by_district_category_week").toPandas(),
        "age_structure_by_district":
            analysis_("age_structure_by_district").where(f"snapshot_date = DATE'{d}'").toPandas(),
        "top_event_categories_by_district":
            analysis_("top_event_categories_by_district").where(f"logical_date = DATE'{d}'").drop("logical_date")
            .toPandas(),
    }
    # theme marts charted when present: grid hotspots and worker KPIs of the date's period, migration flows
    for name, where in (("grid_hotspots", f"period_end = DATE'{d}'"), ("grid_worker_stats", f"period_end = DATE'{d}'"),
                        ("population_migration_period_flows", f"period_end = DATE'{d}'"),
                        ("population_migration_flows", None)):
        df = lake.read_published(spark, settings, "marts", name, logical_date)
        if df is not None:
            tables[name] = (df.where(where) if where else df).toPandas()
    return tables


def build_report(spark: SparkSession, settings: Settings, logical_date: dt.date) -> Path:
    """Write the decision-support report for ``logical_date``; returns the index.html path. Grid polygons come from
    ``<sources>/reference/grid_boundaries.geojson`` when that file exists (else the grid map says it is missing).

    Raises:
        FileNotFoundError: the CJK font to embed is missing (:func:`govlake.analysis.fonts.load_cjk_font`)."""
    from govlake.analysis import report
    from govlake.unified import address

    geojson = json.loads((REFERENCE_DIR / "boundaries" / "districts_130100.geojson").read_text(encoding="utf-8"))
    # the grid-management centre's grid polygons (the same file the unify stage assigns grids with), when published
    grid_file = settings.sources_dir / address.BOUNDARIES_FILE
    grids = json.loads(grid_file.read_text(encoding="utf-8")) if grid_file.is_file() else None
    return report.build_report(report_tables(spark, settings, logical_date), geojson,
                               settings.reports_dir / "decision_support" / logical_date.isoformat(), logical_date,
                               grid_geojson=grids)


def findings(spark: SparkSession, settings: Settings, logical_date: dt.date) -> list[str]:
    """Every headline finding of ``logical_date``: :func:`headline_findings` of the report tables, then
    :func:`theme_findings` of the theme marts (area names from the gazetteer, parameters from the grid theme)."""
    from govlake.analysis.findings import headline_findings, read_findings_tables, theme_findings
    from govlake.marts.themes import list_themes, load_theme
    from govlake.unified import address

    gaz = address.load_gazetteer()
    grid = load_theme("grid").params if "grid" in list_themes() else None
    return (headline_findings(report_tables(spark, settings, logical_date))
            + theme_findings(read_findings_tables(spark, settings, logical_date),
                             {**gaz.district_names, **gaz.street_names}, grid))
