"""What the quality gate (the ``validate`` stage) adds to the pipeline's time (issue #5 speed target).

Runs the whole pipeline (``govlake.pipeline.run_all``: extract, validate, unify, marts, analysis; Data Docs ON,
embedded sources) in one SparkSession on the sample municipality of N residents (default 20,000; generated
first with the pipeline's default seed, so deterministic, as ``benchmarks/pipeline_100k.sh`` does), in a fresh
GOVLAKE_HOME, and reports:

- pipeline seconds P: the sum of the five stages' wall seconds (``stage_seconds`` of the run summary; sample
  generation and SparkSession start are excluded and reported apart);
- validate seconds V: the validate stage's wall seconds, and its breakdown per step, each step's EXCLUSIVE
  wall time (time inside a nested step is counted once, for the innermost step), measured by wrapping the
  functions the stage calls (the production code carries no timing code):

  ============================  ==========================================================================
  step                          wrapped functions
  ============================  ==========================================================================
  evaluation + rule counts      ``govlake.quality.rules.count_rules`` / ``rule_counts`` (the first action on the cached
                                evaluated frame: row-level evaluation of every rule + row and per-rule counts)
  staging/quarantine writes     ``govlake.core.lake.replace_partition``, ``govlake.core.lake.replace_partition_counted``
                                (the latter includes reading its commit's row count from the history)
  count checks                  ``DataFrame.count`` called directly by the stage
  results write                 ``govlake.core.lake.retry_on_conflict`` (``ops.validation_results``)
  GX result / checkpoint        ``govlake.quality.rules.save_validation_result`` (the default: the GX result
                                built from the gate's counts) or ``govlake.quality.rules.run_checkpoint``
                                (``GOVLAKE_GX_ENGINE=spark``), minus Data Docs inside it
  Data Docs build               GX ``AbstractDataContext.build_data_docs`` (from ``UpdateDataDocsAction``
                                or ``govlake.quality.rules.build_data_docs``)
  other                         V minus the above (suite loading, release columns, results frame, ...)
  ============================  ==========================================================================

- unified gate seconds U: the unified layer's audit inside the unify stage, inclusive wall seconds of
  ``govlake.unified.stage.validate_unified`` (evaluation of every unified suite on the tables' new states, counts,
  results write) and ``govlake.unified.stage.unified_checkpoints`` (their GX results and Data Docs pages). The
  states are cached frames that the writes read afterwards; the benchmark fills those caches just before the gate
  (a ``count`` per state, charged to unify, as the writes would have filled them), so U is the gate's own work
  only;
- the overhead figure: ``overhead = (V + U) / (P - V - U)``, i.e. the seconds of both gates relative to the
  seconds of the rest of the same run. The target of issue #5 is overhead <= 0.15 at 1M residents. Reports
  before 2026-12-01 gave ``V / (P - V)`` (the raw gate only); it is printed too.
  Honest caveat: P - V - U is not exactly the time of a pipeline without a gate. Without the gate, unify would
  read raw instead of staging (same rows, so roughly the same cost), but SOME step would still have to make the
  rows readable by unify; we do not credit the gate with that, i.e. the whole validate stage counts as
  overhead (an upper bound on the gate's true cost).

The machine is shared (load varies): ``os.getloadavg()`` is recorded before and after each stage, and runs
should be compared by their ratios rather than absolute seconds.

Usage::

    PYTHONPATH=. .venv/bin/python benchmarks/validation_overhead.py [--residents 20000] [--suffix before]

Writes ``benchmarks/results/validation_overhead_<N>[_<suffix>].txt`` (and prints it).
"""
from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

STEPS = ("evaluation + rule counts", "staging/quarantine writes", "count checks", "results write",
         "GX result / checkpoint", "Data Docs build")
#: The unified layer's gate, timed inside the unify stage (wall seconds, inclusive).
UNIFIED_STEPS = ("unified gate (validate_unified)", "unified GX results + Data Docs (unified_checkpoints)")


class StepClock:
    """Exclusive wall seconds per step, while the validate stage runs (a stack of active steps per thread: the
    stage validates tables in parallel threads, ``GOVLAKE_VALIDATE_THREADS``, so the steps' seconds are summed over
    the threads and can add up to more than the stage's wall seconds)."""

    def __init__(self) -> None:
        import threading

        self.seconds: dict[str, float] = dict.fromkeys(STEPS, 0.0)
        self.calls: dict[str, int] = dict.fromkeys(STEPS, 0)
        self._local = threading.local()
        self._lock = threading.Lock()
        self.in_validate = False
        self.unified: dict[str, float] = {}

    @property
    def stack(self) -> list[list]:
        """This thread's active steps: [step, started, child seconds]."""
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        return self._local.stack

    def wrap(self, owner, name: str, step: str, only_direct: bool = False) -> None:
        """Replace ``owner.name`` by a wrapper timing it as ``step`` (only inside the validate stage;
        ``only_direct``: only when no other step is active, e.g. DataFrame.count called by the stage itself)."""
        original = getattr(owner, name, None)
        if original is None:
            return
        clock = self

        @functools.wraps(original)
        def timed(*args, **kwargs):
            if not clock.in_validate or (only_direct and clock.stack):
                return original(*args, **kwargs)
            clock.stack.append([step, time.monotonic(), 0.0])
            try:
                return original(*args, **kwargs)
            finally:
                s, started, child = clock.stack.pop()
                total = time.monotonic() - started
                with clock._lock:
                    clock.seconds[s] += total - child
                    clock.calls[s] += 1
                if clock.stack:
                    clock.stack[-1][2] += total

        setattr(owner, name, timed)


def instrument(clock: StepClock) -> None:
    from great_expectations.data_context.data_context.abstract_data_context import (
        AbstractDataContext,
    )
    DataFrame: type
    try:  # Spark 4: the DataFrame of a classic (non-Connect) session
        from pyspark.sql.classic.dataframe import DataFrame
    except ImportError:
        from pyspark.sql import DataFrame

    from govlake import pipeline
    from govlake.core import lake
    from govlake.quality import rules as quality
    from govlake.unified import stage as unify_stage

    clock.wrap(quality, "count_rules", "evaluation + rule counts")
    clock.wrap(quality, "rule_counts", "evaluation + rule counts")
    clock.wrap(lake, "replace_partition", "staging/quarantine writes")
    clock.wrap(lake, "replace_partition_counted", "staging/quarantine writes")
    clock.wrap(DataFrame, "count", "count checks", only_direct=True)
    clock.wrap(lake, "retry_on_conflict", "results write")
    clock.wrap(quality, "run_checkpoint", "GX result / checkpoint")
    clock.wrap(quality, "save_validation_result", "GX result / checkpoint")
    clock.wrap(AbstractDataContext, "build_data_docs", "Data Docs build")

    original = pipeline.run_validate

    @functools.wraps(original)
    def run_validate(*args, **kwargs):
        clock.in_validate = True
        try:
            return original(*args, **kwargs)
        finally:
            clock.in_validate = False

    pipeline.run_validate = run_validate

    def timed_unified(name: str, step: str, materialise: bool) -> None:
        original = getattr(unify_stage, name)

        @functools.wraps(original)
        def wrapper(spark, settings, states, *args, **kwargs):
            if materialise:  # the states are cached frames: fill the cache outside the gate's time (the writes
                for state in states.values():  # read it afterwards either way), so the gate is charged only its own
                    state.count()  # evaluation, counts and results write
            started = time.monotonic()
            try:
                return original(spark, settings, states, *args, **kwargs)
            finally:
                clock.unified[step] = clock.unified.get(step, 0.0) + time.monotonic() - started

        setattr(unify_stage, name, wrapper)

    timed_unified("validate_unified", UNIFIED_STEPS[0], materialise=True)
    timed_unified("unified_checkpoints", UNIFIED_STEPS[1], materialise=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--residents", type=int, default=20000)
    parser.add_argument("--suffix", default="", help="added to the result file name (e.g. before, after)")
    parser.add_argument("--home", default=None, help="GOVLAKE_HOME (default /tmp/govlake-valbench-<N>; emptied but "
                                                     "for its sample sources, reused when they are the same sample)")
    args = parser.parse_args(argv)

    use_home(Path(args.home or f"/tmp/govlake-valbench-{args.residents}"))

    from govlake import pipeline
    from govlake.core.config import SAMPLE_LOGICAL_DATE, Settings
    from govlake.core.spark import get_spark
    from sample.embedded import DEFAULT_SEED, ensure_sample_sources

    day = dt.date.fromisoformat(str(SAMPLE_LOGICAL_DATE))
    settings = Settings.from_env()
    load0 = os.getloadavg()
    t = time.monotonic()
    ensure_sample_sources(settings, day, args.residents, DEFAULT_SEED)
    gen_s = time.monotonic() - t
    t = time.monotonic()
    spark = get_spark(settings, app_name="govlake-validation-overhead")
    spark_s = time.monotonic() - t

    clock = StepClock()
    instrument(clock)
    loads = {"start": load0}
    original_validate = pipeline.run_validate

    def validate_with_load(*a, **kw):
        loads["validate start"] = os.getloadavg()
        try:
            return original_validate(*a, **kw)
        finally:
            loads["validate end"] = os.getloadavg()

    pipeline.run_validate = validate_with_load
    t = time.monotonic()
    summary = pipeline.run_all(settings, day, spark=spark, data_docs=True)
    wall = time.monotonic() - t
    loads["end"] = os.getloadavg()

    stages = summary["stage_seconds"]
    p = sum(stages.values())
    v = stages["validate"]
    u = sum(clock.unified.values())
    gate = summary["validate"]
    docs = next((g["data_docs"] for g in gate if g.get("data_docs")), None)
    commit = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%h %s"], capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "govlake"], capture_output=True,
                           text=True).stdout.strip()
    fmt_load = lambda x: " ".join(f"{a:.2f}" for a in x)  # noqa: E731
    lines = [
        f"# benchmarks/validation_overhead.py --residents {args.residents}"
        + (f" --suffix {args.suffix}" if args.suffix else ""),
        f"date: {dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%SZ}  host: {os.cpu_count()} cores  "
        f"commit: {commit}{' (govlake/ modified)' if dirty else ''}",
        "load average (1/5/15 min): " + "; ".join(f"{k} {fmt_load(x)}" for k, x in loads.items()),
        f"sample generation: {gen_s:.1f} s (excluded)   SparkSession start: {spark_s:.1f} s (excluded)",
        f"run_all wall (stages + summary/findings): {wall:.1f} s",
        "",
        "stage seconds: " + ", ".join(f"{k} {s:.1f}" for k, s in stages.items()),
        f"pipeline seconds P (sum of stages): {p:.1f}",
        f"validate seconds V:                 {v:.1f}",
        f"unified gate seconds U (inside unify): {u:.1f} = "
        + " + ".join(f"{clock.unified.get(k, 0.0):.1f} {k}" for k in UNIFIED_STEPS),
        f"overhead = (V + U) / (P - V - U) = {v + u:.1f} / {p - v - u:.1f} = {(v + u) / (p - v - u):.3f}   "
        "(target of issue #5: <= 0.15 at 1M residents)",
        f"raw gate alone (the figure of earlier reports): V / (P - V) = {v:.1f} / {p - v:.1f} = {v / (p - v):.3f}",
        f"validation share of pipeline (V + U) / P = {(v + u) / p:.3f}",
        "",
        "validate breakdown (exclusive wall seconds, calls, share of V):",
    ]
    lines += breakdown_lines(clock, v)
    lines += ["", f"raw tables validated: {len(gate)}; raw rows {sum(g['raw'] for g in gate)}, accepted "
              f"{sum(g['accepted'] for g in gate)}, quarantined {sum(g['quarantined'] for g in gate)}",
              f"Data Docs index: {docs}"]
    write_report(lines, f"validation_overhead_{args.residents}" + (f"_{args.suffix}" if args.suffix else ""))
    return 0


def use_home(home: Path) -> None:
    """Make ``home`` this process's GOVLAKE_HOME (Data Docs on), emptied but for its ``sources`` folder (a sample
    of the same seed and size is reused by ``sample.embedded.ensure_sample_sources``, another one regenerated)."""
    if home.exists():
        for child in home.iterdir():
            if child.name != "sources":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    home.mkdir(parents=True, exist_ok=True)
    os.environ.update({"GOVLAKE_HOME": str(home), "GOVLAKE_DATA_DOCS": "1"})
    os.environ.pop("GOVLAKE_LAKEHOUSE", None)


def breakdown_lines(clock: StepClock, v: float) -> list[str]:
    """The validate stage's per-step lines (exclusive seconds summed over the stage's threads, calls, share of
    ``v``), then ``other`` (V minus the steps: negative when the threads overlapped more than the rest took)."""
    from govlake.quality.stage import validate_threads

    other = v - sum(clock.seconds.values())
    return [f"  (tables validated {validate_threads()} at a time: a step's seconds are summed over the threads)"] + [
        f"  {s:<28} {clock.seconds[s]:8.1f} s  {clock.calls[s]:4d} calls  {clock.seconds[s] / v:6.1%}"
        for s in STEPS] + [f"  {'other':<28} {other:8.1f} s              {other / v:6.1%}"]


def write_report(lines: list[str], name: str) -> None:
    """Write ``benchmarks/results/<name>.txt`` and print it."""
    text = "\n".join(lines) + "\n"
    out = REPO / "benchmarks" / "results" / f"{name}.txt"
    out.write_text(text, encoding="utf-8")
    print(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
