"""Content digests of a lakehouse: is every table equal to another run's?

Two lakehouses are content-equal when every Delta table holds the same rows (as multisets) with the same columns,
leaving out the columns that only say *when* a run ran (:data:`VOLATILE_COLUMNS`). The fault-injection tests
compare a killed-and-rerun lakehouse with an uninterrupted run this way; a restructuring or a cluster run is
compared with a local run the same way.

Command line::

    python -m govlake.core.digest write --out digests.json      # digests of every table under $GOVLAKE_LAKEHOUSE
    python -m govlake.core.digest compare a.json b.json          # exit 1 and list the tables that differ
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from govlake.core import fsio

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

#: Columns whose values record when or by which run something happened, not what the data is.
VOLATILE_COLUMNS = frozenset({"_extracted_at", "extracted_at", "duration_s", "published_at", "run_id"})
#: Per table, further columns that legitimately differ between runs with the same outcome: the Delta versions a
#: publication names depend on how many commits the tables took (a killed run's partial commits add versions).
VOLATILE_BY_TABLE = {"ops.publications": frozenset({"version"})}


def _row_hashes(df: DataFrame, exclude: frozenset[str], name: str) -> DataFrame:
    """``(name, a, b)`` per row of ``df``: two independent 64-bit hashes of the row's JSON text over its columns
    in name order, ``exclude`` left out."""
    from pyspark.sql import functions as F

    cols = sorted(c for c in df.columns if c not in exclude)
    text = F.to_json(F.struct(*[F.col(f"`{c}`") for c in cols]), {"ignoreNullFields": "false"})
    return df.select(F.lit(name).alias("table"), F.xxhash64(F.lit("a"), text).cast("decimal(38,0)").alias("a"),
                     F.xxhash64(F.lit("b"), text).cast("decimal(38,0)").alias("b"))


def digests_of(frames: dict[str, DataFrame], exclude: dict[str, frozenset[str]] | None = None) -> dict[str, dict]:
    """Order-independent digests of several tables in ONE Spark job.

    Args:
        frames: name -> DataFrame.
        exclude: name -> columns left out (default: none).

    Returns:
        name -> ``{"rows": n, "columns": [[name, type], ...] (sorted by name), "digest": "<sum a>:<sum b>"}``:
        equal multisets of rows (over the kept columns) give equal digests.
    """
    from functools import reduce

    from pyspark.sql import functions as F

    exclude = exclude or {}
    if not frames:
        return {}
    hashes = reduce(lambda x, y: x.unionByName(y),
                    [_row_hashes(df, exclude.get(n, frozenset()), n) for n, df in frames.items()])
    sums = {r["table"]: r for r in hashes.groupBy("table").agg(
        F.count(F.lit(1)).alias("n"), F.sum("a").alias("a"), F.sum("b").alias("b")).collect()}
    out = {}
    for name, df in frames.items():
        types = dict(df.dtypes)
        row = sums.get(name)
        out[name] = {"rows": int(row["n"]) if row else 0,
                     "columns": [[c, types[c]] for c in sorted(types) if c not in exclude.get(name, frozenset())],
                     "digest": f"{row['a'] or 0}:{row['b'] or 0}" if row else "0:0"}
    return out


def table_digest(df: DataFrame, exclude: frozenset[str] = frozenset()) -> dict:
    """:func:`digests_of` of one table."""
    return digests_of({"t": df}, {"t": exclude})["t"]


def lakehouse_digests(spark: SparkSession, lakehouse: str, layers: tuple[str, ...] | None = None) -> dict[str, dict]:
    """:func:`digests_of` every Delta table ``<lakehouse>/<layer>/<table>`` (``layers``: default every layer of
    :data:`govlake.core.lake.LAYERS`), volatile columns left out; ``layer.table`` -> digest, sorted."""
    from govlake.core import lake

    root = Path(lakehouse[5:] if lakehouse.startswith("file:") else lakehouse)
    frames, exclude = {}, {}
    for layer in layers or lake.LAYERS:
        folder = root / layer
        if not folder.is_dir():
            continue
        for table in sorted(p for p in folder.iterdir() if lake.exists(spark, str(p))):
            name = f"{layer}.{table.name}"
            frames[name] = spark.read.format("delta").load(str(table))
            exclude[name] = VOLATILE_COLUMNS | VOLATILE_BY_TABLE.get(name, frozenset())
    return dict(sorted(digests_of(frames, exclude).items()))


def differences(a: dict[str, dict], b: dict[str, dict]) -> list[str]:
    """One line per table whose digest, rows or columns differ between ``a`` and ``b``, or that only one has."""
    out = []
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            out.append(f"{name}: only in {'the second' if name not in a else 'the first'}")
        elif a[name] != b[name]:
            what = [k for k in ("rows", "columns", "digest") if a[name][k] != b[name][k]]
            out.append(f"{name}: {', '.join(what)} differ (rows {a[name]['rows']} vs {b[name]['rows']})")
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m govlake.core.digest", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write", help="write the digests of every table of the lakehouse as JSON")
    w.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("compare", help="compare two digest files; exit 1 when a table differs")
    c.add_argument("first", type=Path)
    c.add_argument("second", type=Path)
    args = parser.parse_args(argv)
    if args.command == "compare":
        diff = differences(*(json.loads(p.read_text(encoding="utf-8")) for p in (args.first, args.second)))
        print("\n".join(diff) if diff else "content-equal")
        return 1 if diff else 0
    from govlake.core.config import Settings
    from govlake.core.spark import get_spark

    settings = Settings.from_env()
    digests = lakehouse_digests(get_spark(settings, app_name="govlake-digest"), settings.lakehouse)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fsio.atomic_write_text(args.out, json.dumps(digests, ensure_ascii=False, indent=1, sort_keys=True))
    print(f"{len(digests)} tables -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
