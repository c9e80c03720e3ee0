"""What each rule of a raw or unified table's suite costs: JVM CPU seconds per rule and per gate step (issue #5).

On a lakehouse that already holds ``raw.<table>`` for the logical date (e.g. the home of
``benchmarks/validate_stage.py`` or ``validation_overhead.py``), for each table given (``unified.<table>``: the
whole unified table, as the unified gate evaluates it: cached first, then the rules, the suite evaluated and
counted, and the suite counted as the unified gate does, :func:`govlake.quality.rules.tally`; no writes):

- reading every column once (the floor), and the hidden GB 11643 columns (normalised ID and its validity);
- each non-uniqueness rule alone (one aggregation counting its failures);
- the whole suite: evaluated without and with ranking duplicate copies, then cached and counted as the gate does;
- the gate's two writes (quarantine, staging) from that cache, into a scratch folder (the lakehouse is only read),
  and the total of those three steps;
- the zero-copy variant (issue #5's notes): ONE pass over the batch that counts every rule while it writes the
  quarantined rows (Spark ``observe``), with no staging copy of the accepted rows.

``--gate-only``: for raw tables, only the read, the gate and the zero-copy variant (no per-rule lines).

CPU seconds are read from ``/proc/<jvm pid>/stat`` (user + system of the Spark JVM), so the figures hold on a busy
machine, where wall seconds do not; wall seconds are printed next to them.

Usage::

    PYTHONPATH=. .venv/bin/python benchmarks/rule_cost.py --home /tmp/govlake-valstage-1000000 \\
        hrss_social_insurance hukou_persons

Writes ``benchmarks/results/rule_cost_<tables>.txt`` when ``--out`` is given (and prints it).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("tables", nargs="+", help="raw table names, e.g. hukou_persons, or unified.<table> (the "
                        "unified gate: the whole table, counts only, no writes), e.g. unified.person_link")
    parser.add_argument("--home", required=True, help="GOVLAKE_HOME whose lakehouse holds the raw tables")
    parser.add_argument("--date", default="2025-06-30")
    parser.add_argument("--out", default=None, help="also write the report to this file")
    parser.add_argument("--gate-only", action="store_true", help="raw tables: measure only the gate as "
                        "validate_table runs it and the zero-copy variant (no per-rule lines)")
    args = parser.parse_args(argv)

    scratch = Path("/tmp/govlake-rule-cost")
    shutil.rmtree(scratch, ignore_errors=True)
    os.environ["GOVLAKE_HOME"] = str(scratch / "home")
    os.environ.pop("GOVLAKE_LAKEHOUSE", None)

    from pyspark.sql import functions as F

    from govlake.core import lake
    from govlake.core.config import Settings
    from govlake.core.spark import get_spark
    from govlake.extract.raw import RAW_STATS_COLUMNS
    from govlake.extract.stage import raw_watermark
    from govlake.quality import rules as quality

    spark = get_spark(Settings.from_env(), app_name="govlake-rule-cost")
    jvm = spark.sparkContext._jvm
    assert jvm is not None  # a classic (non-Connect) session has its JVM gateway
    jvm_pid = int(jvm.ProcessHandle.current().pid())
    ticks = os.sysconf("SC_CLK_TCK")

    def cpu() -> float:
        fields = Path(f"/proc/{jvm_pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks

    day = dt.date.fromisoformat(args.date)
    raw_dir = Path(args.home) / "lakehouse" / "raw"
    commit = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%h %s"], capture_output=True,
                            text=True).stdout.strip()[:100]
    flags = " --gate-only" if args.gate_only else ""
    lines = [f"# benchmarks/rule_cost.py{flags} --home {args.home} {' '.join(args.tables)}",
             f"date: {dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%SZ}  host: {os.cpu_count()} cores  "
             f"commit: {commit}",
             f"load average (1/5/15 min) at start: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}", ""]

    def measure(label: str, action) -> tuple[float, float]:
        """Run ``action``, report and return its (JVM CPU, wall) seconds."""
        c0, t0 = cpu(), time.perf_counter()
        action()
        spent = (cpu() - c0, time.perf_counter() - t0)
        lines.append(f"  {label:44s} cpu {spent[0]:7.1f} s   wall {spent[1]:7.1f} s")
        print(lines[-1], flush=True)
        return spent

    totals = {"gate": [0.0, 0.0], "zero-copy": [0.0, 0.0]}  # cpu, wall seconds over the raw tables

    def gate_lines(table: str, suite, batch) -> None:
        """The raw gate as govlake.quality.stage.validate_table runs it (ranked evaluation cached, counted,
        quarantine and staging written from the cache), then the zero-copy variant of issue #5's notes: ONE pass
        that counts the rules while it writes the quarantined rows (Spark ``observe``), and no staging copy of the
        accepted rows."""
        from pyspark.sql import Observation

        newest_first = raw_watermark(table)  # copies of a key ranked newest first, as validate_table ranks them

        def gate():
            evaluated = quality.evaluate(batch, suite, newest_first=newest_first).cache()
            measure("suite, ranked, cached, counted (the gate)", lambda: quality.count_rules(evaluated, suite))
            accepted, quarantined = quality.split(evaluated, suite)
            # the writes as govlake.quality.stage.validate_table makes them (file statistics on the same columns)
            measure("quarantine write (from the cache)", lambda: lake.replace_partition_counted(
                spark, quarantined, str(scratch / "quarantine" / table), "_logical_date", day,
                stats_columns=f"_source_key,{RAW_STATS_COLUMNS}"))
            measure("staging write (from the cache)", lambda: lake.replace_partition_counted(
                spark, accepted, str(scratch / "staging" / table), "_logical_date", day,
                stats_columns=RAW_STATS_COLUMNS))
            evaluated.unpersist()

        zero_copy_rows: dict[str, tuple[int, int]] = {}

        def zero_copy():
            obs = Observation(f"zero_copy_{table}")  # the gate's own aggregation, computed during the write
            _, held = quality.split(quality.evaluate(batch, suite, newest_first=newest_first)
                                    .observe(obs, *quality._rule_aggregates(suite)), suite)
            n_quar = lake.replace_partition_counted(spark, held, str(scratch / "zero_copy_quarantine" / table),
                                                    "_logical_date", day,
                                                    stats_columns=f"_source_key,{RAW_STATS_COLUMNS}")
            zero_copy_rows["rows"] = (int(obs.get["n"]), n_quar)

        for name, spent in (("gate", measure("gate as validate_table runs it, total", gate)),
                            ("zero-copy", measure("zero-copy: one pass, counts observed, quarantine only",
                                                  zero_copy))):
            totals[name] = [a + b for a, b in zip(totals[name], spent, strict=False)]
        n_counted, n_quarantined = zero_copy_rows["rows"]
        lines.append(f"  (zero-copy pass: {n_counted:,} rows counted, {n_quarantined:,} quarantined)")

    for table in args.tables:
        if table.startswith("unified."):
            suite = quality.load_suite(table)
            batch = spark.read.format("delta").load(str(raw_dir.parent / "unified" / table.split(".", 1)[1])).cache()
            label = table
        else:
            suite = quality.load_suite(f"raw.{table}")
            batch = (spark.read.format("delta").load(str(raw_dir / table))
                     .where(F.col("_logical_date") == F.lit(day)))
            label = f"raw.{table}"
        lines.append(f"{label}: {batch.count():,} rows, {len(suite.rules)} rules")
        measure("read every column", lambda batch=batch: batch.agg(F.sum(F.xxhash64(*batch.columns))).collect())
        if args.gate_only and not table.startswith("unified."):
            gate_lines(table, suite, batch)
            continue
        ids = quality._with_normalized_ids(batch, suite)
        hidden = [c for c in ids.columns if c.startswith("__govlake_")]
        if hidden:
            measure("hidden GB 11643 columns (norm, validity)",
                    lambda ids=ids, hidden=hidden: ids.agg(F.sum(F.xxhash64(*hidden))).collect())
        for rule in suite.rules:
            if rule.expectation_type in quality._UNIQUE_TYPES:
                continue  # a window over the key: see the whole-suite figures
            measure(f"rule {rule.rule_id.split('.', 1)[1]}", lambda ids=ids, rule=rule: ids.agg(F.count_if(F.coalesce(
                quality._applies(rule) & quality._value_check(rule), F.lit(False)))).collect())
        measure("suite, duplicates not ranked, counted",
                lambda batch=batch, suite=suite: quality.count_rules(quality.evaluate(batch, suite,
                                                                                     rank_duplicates=False), suite))
        measure("suite, counted without flags (quality.tally)",
                lambda batch=batch, suite=suite: quality.tally(batch, suite))
        if table.startswith("unified."):  # the unified gate counts only (pipeline.validate_unified)
            batch.unpersist()
            lines.append("")
            continue
        gate_lines(table, suite, batch)
    if any(totals["gate"]):
        lines.append("raw tables above, summed (one table at a time):")
        for name, (c, w) in totals.items():
            lines.append(f"  {name:10s} cpu {c:7.1f} s   wall {w:7.1f} s")
        print("\n".join(lines[-3:]), flush=True)
    spark.stop()
    shutil.rmtree(scratch, ignore_errors=True)
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
