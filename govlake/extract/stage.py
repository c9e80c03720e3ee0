"""The extract stage: every registered object of the source registry into ``raw.<source>_<object>``,
with the exchange ledger (``ops.exchange_ledger``).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from typing import TYPE_CHECKING

from govlake.core import config
from govlake.core.config import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def run_extract(spark: SparkSession, settings: Settings, logical_date: dt.date, sources: list[str] | None = None,
                data_interval: tuple[dt.datetime, dt.datetime] | None = None, backfill: bool = False,
                redeliver: bool = False) -> list[dict]:
    """Extract every registered object (or those of ``sources``) for ``logical_date`` into raw.

    Each batch reads its window ``data_interval`` (default: the business day ``logical_date`` in
    Asia/Shanghai) by the object's watermark; the first run of an object, ``backfill=True`` or
    ``GOVLAKE_EXTRACT_MODE=backfill`` read everything before the window end, and
    ``GOVLAKE_EXTRACT_MODE=snapshot`` does so on every run (the embedded demo's former behaviour:
    each partition is the snapshot as of the window end). See :func:`govlake.extract.raw.resolve_window`.

    A batch already delivered for the date stays as delivered (status ``kept``, the source is not read): a rerun
    of a past date reproduces it. ``redeliver`` (the department delivers the date again) or ``backfill`` read
    every object again and replace its batch when it changed; a file drop whose manifest lists another file is
    read again anyway (:func:`govlake.extract.raw.extract_batch`).

    An object whose extraction fails (its source unreachable, its drop rejected, its reconciliation
    failed, ...) fails alone: the other objects are still extracted, and every batch, failed ones included
    (status ``failed`` with its reason, :func:`govlake.extract.raw.failed_batch`), is recorded in the exchange ledger.

    Returns:
        one dict per batch (:class:`govlake.extract.raw.BatchResult` fields).

    Raises:
        govlake.extract.registry.ExtractionFailed: after every object was attempted, when any failed; names each failed
            ``source.object`` with its reason (chained to the first failure).
        ValueError: unknown ``GOVLAKE_EXTRACT_MODE`` (incremental, backfill, snapshot).
    """

    from govlake.core.failpoints import failpoint
    from govlake.extract.raw import extract_batch, failed_batch, record_batches
    from govlake.extract.registry import ExtractionFailed, Window, load_registry

    mode = config.extract_mode()
    full = backfill or mode in ("backfill", "snapshot")
    if data_interval:
        window = Window.for_interval(*data_interval, full=full)
        if window.logical_date != logical_date:
            raise ValueError(f"data interval {data_interval} does not start on business day {logical_date}")
    else:
        window = Window.for_date(logical_date, full=full)
    results, errors = [], []
    try:
        for name, spec in load_registry().items():
            if sources and name not in sources:
                continue
            for obj in spec.objects.values():
                started = dt.datetime.now(dt.UTC)
                try:
                    results.append(extract_batch(spark, settings, spec, obj, window, redeliver or backfill))
                except Exception as exc:  # one object's failure must not stop the others
                    results.append(failed_batch(spec, obj, window, exc, started))
                    errors.append(exc)
    finally:
        record_batches(spark, settings, results)  # what was attempted is recorded even if the loop was interrupted
    failpoint("extract.after_ledger")
    if errors:
        failures = {f"{r.source}.{r.object}": r.error for r in results if r.status == "failed"}
        raise ExtractionFailed.of(window.logical_date, failures, len(results)) from errors[0]
    return [asdict(r) for r in results]


def raw_tables(sources: list[str] | None = None) -> list[str]:
    """Names (without layer) of the raw tables of the registry: ``<source>_<object>``."""
    from govlake.extract.registry import load_registry

    return [f"{name}_{obj}" for name, spec in load_registry().items() if not sources or name in sources
            for obj in spec.objects]


def raw_watermark(table: str) -> str | None:
    """The watermark column (``schemas/sources/<source>.yaml`` ``watermark:``, e.g. ``updated_at``) of the object
    whose raw table is ``table`` (``<source>_<object>``, as :func:`raw_tables`): what orders the versions of a
    record, so the validate stage keeps the newest copy of a key (:func:`govlake.quality.rules.evaluate`
    ``newest_first``).
    None when the object has no watermark or ``table`` is not a registered object (a test's own table)."""
    from govlake.extract.registry import load_registry

    for name, spec in load_registry().items():
        for obj in spec.objects.values():
            if f"{name}_{obj.name}" == table:
                return obj.watermark
    return None
