"""The raw quality gate (the ``validate`` stage) at N residents, next to the extraction it follows (issue #5).

For sizes where the whole pipeline does not run on this machine (``benchmarks/validation_overhead.py`` needs every
stage), this measures the two stages it can: in one SparkSession, on the sample municipality of N residents
(generated with the pipeline's default seed unless the same sample is already in ``<home>/sources``; Data Docs ON,
embedded sources):

- extract seconds E: ``govlake.extract.stage.run_extract`` for the logical date (raw written once per batch);
- validate seconds V: ``govlake.quality.stage.run_validate`` (evaluation, counts, staging/quarantine writes, results,
  GX validation results, Data Docs), with the same per-step breakdown as ``validation_overhead.py``, and each
  raw table's wall seconds and rows.

Reports V / E (the gate's seconds per second of extraction). Not the overhead figure of issue #5, which divides
by all the other stages; E is only part of them, so V / E is an upper bound of the raw gate's share of them.

Usage::

    PYTHONPATH=. .venv/bin/python benchmarks/validate_stage.py --residents 1000000

Writes ``benchmarks/results/validate_stage_<N>.txt`` (and prints it).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--residents", type=int, default=1_000_000)
    parser.add_argument("--home", default=None, help="GOVLAKE_HOME (default /tmp/govlake-valstage-<N>; its sample "
                                                     "is reused when it is the same, the rest is emptied)")
    args = parser.parse_args(argv)

    from validation_overhead import (
        StepClock,
        breakdown_lines,
        instrument,
        use_home,
        write_report,
    )

    use_home(Path(args.home or f"/tmp/govlake-valstage-{args.residents}"))

    from govlake.core.config import SAMPLE_LOGICAL_DATE, Settings
    from govlake.core.spark import get_spark
    from govlake.extract.stage import run_extract
    from govlake.quality import stage as validate_stage
    from sample.embedded import DEFAULT_SEED, ensure_sample_sources

    day = dt.date.fromisoformat(str(SAMPLE_LOGICAL_DATE))
    settings = Settings.from_env()
    t = time.monotonic()
    ensure_sample_sources(settings, day, args.residents, DEFAULT_SEED)
    gen_s = time.monotonic() - t
    spark = get_spark(settings, app_name="govlake-validate-stage")
    clock = StepClock()
    instrument(clock)
    per_table: list[tuple[str, float, int]] = []
    original = validate_stage.validate_table

    def timed_table(spark, settings, table, *a, **kw):  # validate_table's parameter names
        started = time.monotonic()
        out = original(spark, settings, table, *a, **kw)
        per_table.append((table, time.monotonic() - started, out["raw"]))
        return out

    validate_stage.validate_table = timed_table
    load0 = os.getloadavg()
    t = time.monotonic()
    run_extract(spark, settings, day)
    e = time.monotonic() - t
    t = time.monotonic()
    gate = validate_stage.run_validate(spark, settings, day)
    v = time.monotonic() - t
    load1 = os.getloadavg()
    commit = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%h %s"], capture_output=True,
                            text=True).stdout.strip()[:100]
    lines = [
        f"# benchmarks/validate_stage.py --residents {args.residents}",
        f"date: {dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%SZ}  host: {os.cpu_count()} cores  commit: {commit}",
        "load average (1/5/15 min): start " + " ".join(f"{x:.2f}" for x in load0)
        + "; end " + " ".join(f"{x:.2f}" for x in load1),
        f"sample generation (or reuse): {gen_s:.1f} s (excluded)",
        "",
        f"extract seconds E:  {e:.1f}",
        f"validate seconds V: {v:.1f}",
        f"V / E = {v / e:.3f}",
        "",
        "validate breakdown (exclusive wall seconds, calls, share of V):",
    ]
    lines += breakdown_lines(clock, v)
    lines += ["", "per raw table (wall seconds, raw rows):"]
    lines += [f"  {name:<32} {sec:7.1f} s  {rows:>10,}" for name, sec, rows in per_table]
    lines += ["", f"raw rows {sum(g['raw'] for g in gate):,}, accepted {sum(g['accepted'] for g in gate):,}, "
                  f"quarantined {sum(g['quarantined'] for g in gate):,}"]
    write_report(lines, f"validate_stage_{args.residents}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
