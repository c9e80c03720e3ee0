"""Content digests of a lakehouse: is every table equal to another run's?

Two lakehouses are content-equal when every Delta table holds the same rows (as multisets) with the same columns,
leaving out the columns that only say *when* a run ran (:data:`VOLATILE_COLUMNS`). The fault-injection tests
compare a killed-and-rerun lakehouse with an uninterrupted run this way; a restructuring or a cluster run is
compared with a local run the same way.

Command line::

    python -m jobs.digest write --out digests.json      # digests of every table under $GOVLAKE_LAKEHOUSE
    python -m jobs.digest compare a.json b.json          # exit 1 and list the tables that differ
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

#: Columns whose values record when or by which run something happened, not what the data is.
VOLATILE_COLUMNS = frozenset({"_extracted_at", "extracted_at", "duration_s", "published_at", "run_id"})
#: Per table, further columns that legitimately differ between runs with the same outcome: the Delta versions a
#: publication names depend on how many commits the tables took (a killed run's partial commits add versions).
VOLATILE_BY_TABLE = {"ops.publications": frozenset({"version"})}


def table_digest(df, exclude: frozenset[str] = frozenset()) -> dict:
    """Order-independent digest of a table's rows, in one aggregation.

    Args:
        df: the table.
        exclude: columns left out.

    Returns:
        ``{"rows": n, "columns": [[name, type], ...] (sorted by name), "digest": "<sum1>:<sum2>"}``: two sums of
        independent 64-bit hashes (xxhash64 with two seeds' worth of prefixes) of each row's JSON text over the
        kept columns in name order; equal multisets of rows give equal digests.
    """
    from pyspark.sql import functions as F

    cols = sorted(c for c in df.columns if c not in exclude)
    types = dict(df.dtypes)
    text = F.to_json(F.struct(*[F.col(f"`{c}`") for c in cols]), {"ignoreNullFields": "false"})
    row = df.agg(F.count(F.lit(1)).alias("n"),
                 F.sum(F.xxhash64(F.lit("a"), text).cast("decimal(38,0)")).alias("a"),
                 F.sum(F.xxhash64(F.lit("b"), text).cast("decimal(38,0)")).alias("b")).collect()[0]
    return {"rows": int(row["n"]), "columns": [[c, types[c]] for c in cols], "digest": f"{row['a'] or 0}:{row['b'] or 0}"}


def lakehouse_digests(spark, lakehouse: str, layers: tuple[str, ...] | None = None) -> dict[str, dict]:
    """:func:`table_digest` of every Delta table ``<lakehouse>/<layer>/<table>`` (``layers``: default every layer of
    :data:`jobs.lake.LAYERS`), volatile columns left out; ``layer.table`` -> digest, sorted."""
    from jobs import lake

    root = Path(lakehouse[5:] if lakehouse.startswith("file:") else lakehouse)
    out = {}
    for layer in layers or lake.LAYERS:
        folder = root / layer
        if not folder.is_dir():
            continue
        for table in sorted(p for p in folder.iterdir() if lake.exists(spark, str(p))):
            name = f"{layer}.{table.name}"
            df = spark.read.format("delta").load(str(table))
            out[name] = table_digest(df, VOLATILE_COLUMNS | VOLATILE_BY_TABLE.get(name, frozenset()))
    return out


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
    parser = argparse.ArgumentParser(prog="python -m jobs.digest", description=__doc__.split("\n")[0])
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
    from jobs.config import Settings
    from jobs.spark import get_spark

    settings = Settings.from_env()
    digests = lakehouse_digests(get_spark(settings, app_name="govlake-digest"), settings.lakehouse)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(digests, ensure_ascii=False, indent=1, sort_keys=True), encoding="utf-8")
    print(f"{len(digests)} tables -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
