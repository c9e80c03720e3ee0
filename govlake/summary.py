"""The run summary: rows per table, headline findings (:func:`govlake.analysis.stage.findings`, re-exported here),
and its console rendering.
"""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from govlake.analysis.stage import findings
from govlake.core import lake
from govlake.core.config import Settings

if TYPE_CHECKING:  # annotations only: this module does not import pyspark at import time
    from pyspark.sql import SparkSession

__all__ = ["findings", "print_summary", "table_counts"]


def table_counts(spark: SparkSession, settings: Settings, logical_date: dt.date) -> dict[str, int]:
    """Rows per registered table (``layer.table`` -> rows), for the run summary."""
    names = lake.register_tables(spark, settings)
    return {name: spark.table(name).count() for name in names}


def print_summary(summary: dict) -> None:
    """Print the run summary as tables on the console (rich)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=120)
    console.rule(f"GovLake run for logical date {summary['logical_date']}")
    layers = Table(title="Rows per table", show_lines=False)
    for col in ("table", "rows"):
        layers.add_column(col, justify="right" if col == "rows" else "left")
    for name, n in summary["tables"].items():
        layers.add_row(name, f"{n:,}")
    console.print(layers)
    gate = Table(title="Quality gate: raw = accepted + quarantined")
    for col in ("raw table", "raw", "accepted", "quarantined"):
        gate.add_column(col, justify="left" if col == "raw table" else "right")
    for v in summary["validate"]:
        gate.add_row(v["table"], str(v["raw"]), str(v["accepted"]), str(v["quarantined"]))
    console.print(gate)
    rules = Table(title="Failed rows per rule")
    for col in ("rule", "action", "failed"):
        rules.add_column(col, justify="right" if col == "failed" else "left")
    for v in summary["validate"] + summary.get("unify", {}).get("quality", []):  # raw gates, then the unified audit
        for r in v["rules"]:
            if r["failed"]:
                rules.add_row(r["rule_id"], r["action"], str(r["failed"]))
    console.print(rules)
    if summary.get("stage_seconds"):
        console.print("Stage wall seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in summary["stage_seconds"].items()))
    console.print("[bold]Findings[/bold]")
    for f in summary["findings"]:
        console.print(f"  • {f}")
    if summary["analysis"].get("report"):
        console.print(f"Decision-support report: {summary['analysis']['report']}")
    docs = next((v["data_docs"] for v in summary["validate"] if v.get("data_docs")), None)
    if docs:
        console.print(f"Data Docs (validation results): {docs}")
    console.print(f"Tables: {summary['lakehouse']}  —  query: python -m govlake.pipeline sql \"SELECT ...\"")
