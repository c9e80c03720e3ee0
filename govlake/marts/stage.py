"""The marts stage: the topic marts of a logical date from the unified layer as published for that date.
"""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from govlake.core import catalog, lake
from govlake.core.config import Settings

if TYPE_CHECKING:  # annotations only: this module does not import pyspark at import time
    from pyspark.sql import SparkSession


def _is_historical(spark: SparkSession, settings: Settings, layer: str, logical_date: dt.date) -> bool:
    """True when ``layer`` was already published for a later date than ``logical_date`` (a rerun of a past day)."""
    latest = lake.latest_published_date(spark, settings, layer)
    return latest is not None and latest > logical_date


def _publish_stage(spark: SparkSession, settings: Settings, layer: str, logical_date: dt.date, written: list[str],
                   historical: bool, run_id: str | None) -> None:
    """Record ``layer``'s publication for ``logical_date``: every table of the layer at its current version; for a
    historical date only the (partition-rewritten) ``written`` tables move, the others keep the versions recorded
    for that date before (their current versions hold later dates' state)."""
    from pathlib import Path as _Path

    root = settings.lakehouse[5:] if settings.lakehouse.startswith("file:") else settings.lakehouse
    layer_dir = _Path(root) / layer
    tables = sorted(p.name for p in layer_dir.iterdir() if lake.exists(spark, str(p))) if layer_dir.is_dir() else []
    if historical:
        before = lake.published_versions(spark, settings, layer, logical_date)
        kept = before[1] if before and before[0] == logical_date else {}
        tables = sorted(set(written) | set(kept))
        versions = {**kept, **{t: v for t in written
                               if (v := lake.table_version(spark, settings.table_path(layer, t))) is not None}}
        lake.record_publication(spark, settings, layer, logical_date, tables, run_id, versions=versions)
    else:
        lake.record_publication(spark, settings, layer, logical_date, tables, run_id)


def run_marts(spark: SparkSession, settings: Settings, logical_date: dt.date, run_id: str | None = None) -> dict:
    """Rebuild the topic marts for ``logical_date`` from the unified layer as published for that date
    (:func:`govlake.core.lake.read_published`), then record the marts' publication for the date.

    Every table — the first-cut marts (population_by_district_sex_age, population_exclusions,
    grid_events_by_district_category_week), the theme marts and the theme service tables (``analysis.*``) — is
    built and written by :func:`govlake.marts.themes.run_themes` from ``schemas/themes/*.yaml``. Snapshot / period
    tables replace the date's partition; whole-table marts are rewritten when changed, except on a rerun of a past
    date (the layer was published for a later date): they hold the latest state and stay as they are.

    Returns:
        ``{"population_rows", "event_mart_rewritten", "theme_tables_rewritten", "historical"}``;
        ``theme_tables_rewritten`` is ``layer.table`` → rewritten for every table written (first-cut marts included).

    Raises:
        RuntimeError: the unified layer was never published on or before ``logical_date``.
    """
    from govlake.marts import themes

    historical = _is_historical(spark, settings, "marts", logical_date)
    written = themes.run_themes(spark, settings, logical_date, historical=historical)
    written_tables = [n.split(".", 1)[1] for n in written if n.startswith("marts.")]
    _publish_stage(spark, settings, "marts", logical_date, written_tables, historical, run_id)
    pop = spark.read.format("delta").load(settings.table_path("marts", "population_by_district_sex_age"))
    population_rows = pop.where(pop[catalog.partition_column("marts.population_by_district_sex_age")]
                                == logical_date).count()
    return {"population_rows": population_rows,
            "event_mart_rewritten": written.get("marts.grid_events_by_district_category_week", False),
            "theme_tables_rewritten": written, "historical": historical}
