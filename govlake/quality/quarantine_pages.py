"""Quarantine extracts next to the Data Docs: per logical date, raw table and rule, a small self-contained HTML page
of the rows that rule sent to quarantine (the first :data:`ROW_LIMIT` by delivery order, with the total), at
``<reports>/quarantine/<date>/<table>/<rule_id>.html``. The validation page of the batch links each failed rule to
its page (:mod:`govlake.quality.offline_docs`).

The pages show a row's source key (business key, ``|``-joined), its ``_row_number`` in the batch and the rule's
message (which quotes the failing value); the whole row stays in ``quarantine.<table>``. Personal values are masked
(issue #21): the messages are masked by ``govlake.quality.rules.split``, the key here
(:func:`govlake.governance.masking.mask_key`); still, serve the reports folder to auditors only.
"""
from __future__ import annotations

import datetime as dt
import html
from pathlib import Path
from typing import TYPE_CHECKING

from govlake.core import fsio

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from govlake.quality.rules import Suite

#: Rows shown per rule page.
ROW_LIMIT = 1000
#: Folder of the extracts under the reports folder.
QUARANTINE_DIR = "quarantine"


def rule_rows(quarantined: DataFrame, limit: int = ROW_LIMIT) -> DataFrame:
    """The first ``limit`` quarantined rows of every rule, with the rule's total (pure transform, lazy).

    Args:
        quarantined: rows as ``govlake.quality.rules.split`` gives them (``_source_key: string``,
            ``_rule_ids: array<string>``, ``_messages: array<string>`` aligned with ``_rule_ids``,
            ``_row_number: long``).
        limit: rows kept per rule.

    Returns:
        ``rule_id: string, total: long`` (rows the rule quarantined), ``rank: int`` (1-based, by ``_row_number``
        then ``_source_key``), ``source_key: string``, ``row_number: long``, ``message: string``; ``rank <= limit``.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    exploded = quarantined.select(
        F.posexplode("_rule_ids").alias("pos", "rule_id"), F.col("_source_key").alias("source_key"),
        F.col("_row_number").cast("long").alias("row_number"), F.col("_messages"))
    by_rule = Window.partitionBy("rule_id")
    return (exploded
            .select("rule_id", "source_key", "row_number",
                    F.element_at("_messages", F.col("pos") + 1).alias("message"),
                    F.count(F.lit(1)).over(by_rule).alias("total"),
                    F.row_number().over(by_rule.orderBy("row_number", "source_key")).alias("rank"))
            .where(F.col("rank") <= limit)
            .select("rule_id", "total", "rank", "source_key", "row_number", "message"))


def collect_extracts(quarantined: DataFrame, limit: int = ROW_LIMIT) -> dict[str, dict]:
    """Run :func:`rule_rows` (one Spark job) and group it: ``{rule_id: {"total": int, "rows": [(source_key,
    row_number, message), ...]}}``, rows in rank order."""
    out: dict[str, dict] = {}
    for r in sorted(rule_rows(quarantined, limit).collect(), key=lambda r: (r["rule_id"], r["rank"])):
        entry = out.setdefault(r["rule_id"], {"total": int(r["total"]), "rows": []})
        entry["rows"].append((r["source_key"], r["row_number"], r["message"]))
    return out


def extract_path(reports_dir: Path, logical_date: dt.date, table: str, rule_id: str) -> Path:
    """``<reports_dir>/quarantine/<date>/<table>/<rule_id>.html`` (``table`` without its layer)."""
    return Path(reports_dir) / QUARANTINE_DIR / logical_date.isoformat() / table / f"{rule_id}.html"


def render_page(table: str, logical_date: dt.date, rule_id: str, notes: str | None, total: int,
                rows: list[tuple]) -> str:
    """The HTML of one rule's extract (no external resource; the key cells carry ``class="key"``)."""
    e = html.escape
    body = "\n".join(f'<tr><td class="key">{e(str(k))}</td><td class="num">{e(str(n))}</td><td>{e(str(m or ""))}</td>'
                     "</tr>" for k, n, m in rows)
    shown = (f"all {total} rows" if len(rows) == total else f"the first {len(rows)} of {total} rows")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Quarantine {e(table)} {logical_date.isoformat()} {e(rule_id)}</title>
<style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.2em .5em;text-align:left}}td.num{{text-align:right}}</style></head>
<body>
<h1>quarantine.{e(table)} &middot; {logical_date.isoformat()}</h1>
<p>Rule <code id="rule-id">{e(rule_id)}</code>{(" &mdash; " + e(notes)) if notes else ""}</p>
<p>Rows quarantined by this rule: <strong id="total">{total}</strong>; shown: {shown} (by row number in the
batch). Every row: <code>SELECT * FROM quarantine.{e(table)} WHERE _logical_date = DATE'{logical_date.isoformat()}'
AND array_contains(_rule_ids, '{e(rule_id)}')</code></p>
<table id="rows"><thead><tr><th>source key</th><th>row number</th><th>message</th></tr></thead>
<tbody>
{body}
</tbody></table>
</body></html>
"""


def write_extracts(reports_dir: Path, table: str, logical_date: dt.date, suite: Suite,
                   extracts: dict[str, dict]) -> list[Path]:
    """Write one page per rule of ``extracts`` (:func:`collect_extracts`) for ``table`` (no layer) and
    ``logical_date``, and remove the pages of rules that quarantined nothing this time (a rerun's pages are those of
    its own quarantine). Atomic writes, unchanged pages left as they are. Keys are shown masked per
    ``suite.key_columns`` (:func:`govlake.governance.masking.mask_key`).

    Returns:
        the pages written or kept, sorted.
    """
    from govlake.governance.masking import mask_key, scrub_text

    notes = {r.rule_id: r.notes for r in suite.rules}
    pages = []
    for rule_id, entry in extracts.items():
        path = extract_path(reports_dir, logical_date, table, rule_id)
        # issue #21: keys masked per key column; messages arrive masked, scrubbed again in case of an old batch
        rows = [(mask_key(suite.key_columns, k), n, scrub_text(m) if m is not None else m) for k, n, m in entry["rows"]]
        fsio.atomic_write_text(path, render_page(table, logical_date, rule_id, notes.get(rule_id), entry["total"],
                                                 rows), skip_unchanged=True)
        pages.append(path)
    folder = extract_path(reports_dir, logical_date, table, "x").parent
    if folder.is_dir():
        for stale in folder.glob("*.html"):
            if stale not in pages:
                stale.unlink()
    return sorted(pages)
