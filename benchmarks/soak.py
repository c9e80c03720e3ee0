"""Soak: random kill points over many trials, each rerun and compared with an uninterrupted run.

Builds an uninterrupted reference run at N residents (embedded sources, every stage in this process, the lakehouse
kept after each stage), counting how often each failpoint is reached per stage. Then each trial draws (seeded) a
stage, one of its failpoints, the hit at which to fire (among the hits the reference made) and, for ``unify.merge``,
a delay that lands the kill inside the MERGE; runs the stage in a child process killed there; reruns the stage here;
and compares every table with the reference after that stage (tests/fault_harness.py). Prints one line per trial
and the tally; writes the same to ``benchmarks/results/soak_<N>.txt``.

    .venv/bin/python benchmarks/soak.py --residents 20000 --trials 20 [--seed 7] [--home DIR]
    .venv/bin/python benchmarks/soak.py ... --resume     # after an interruption: same reference, same draws

The results file is rewritten after every trial. ``--resume`` keeps the reference of ``--home`` (its
``reference.json``: stage seconds and failpoint hits) and the trial lines already in the results file, draws the
same seeded kill points and runs only the trials not yet there, so the tally is the one an uninterrupted soak gives.

Exit code 1 when a trial was killed and its rerun differs (or left an unreadable report file).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from govlake.core import failpoints  # noqa: E402
from govlake.core.config import Settings  # noqa: E402
from govlake.core.fsio import atomic_write_text  # noqa: E402
from govlake.core.spark import get_spark  # noqa: E402
from govlake.pipeline import STAGES  # noqa: E402
from sample.embedded import DEFAULT_SEED  # noqa: E402
from tests import fault_harness  # noqa: E402

DAY = dt.date(2025, 6, 30)
RESULTS = Path(__file__).resolve().parent / "results"
TRIAL_LINE = re.compile(r"^\s*(\d+)\. (PASS|FAIL|NOT KILLED)\b")


def stage_failpoints(ref_hits: dict[str, dict[str, int]]) -> list[tuple[str, str, int]]:
    """``(stage, failpoint, hits)`` for every failpoint an uninterrupted stage reached."""
    return [(stage, name, n) for stage in STAGES for name, n in sorted(ref_hits.get(stage, {}).items()) if n]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--residents", type=int, default=20000)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7, help="seed of the kill points drawn")
    parser.add_argument("--home", type=Path, default=Path("/tmp/govlake-soak"))
    parser.add_argument("--resume", action="store_true",
                        help="keep --home's reference and the trials already in the results file")
    args = parser.parse_args(argv)
    out = RESULTS / f"soak_{args.residents}.txt"
    ref_home = args.home / "reference"
    saved = ref_home / "reference.json"
    if args.resume and not saved.is_file():
        parser.error(f"--resume: no {saved} (the reference was not completed)")
    if not args.resume and args.home.exists():
        shutil.rmtree(args.home)
    args.home.mkdir(parents=True, exist_ok=True)
    settings = Settings.from_env({**os.environ, "GOVLAKE_HOME": str(ref_home)})
    spark = get_spark(settings, app_name="govlake-soak")

    if args.resume:
        lines = out.read_text(encoding="utf-8").splitlines()
        lines = [line for line in lines if not line.startswith("trials ")]
        lines.append(f"resumed {time.strftime('%Y-%m-%d %H:%M')}, load {os.getloadavg()[0]:.1f}")
        state = json.loads(saved.read_text(encoding="utf-8"))
        ref = fault_harness.Reference(ref_home, DAY, [Path(p) for p in state["snapshots"]], state["seconds"])
        hits: dict[str, dict[str, int]] = state["hits"]
        print("\n".join(lines), flush=True)
    else:
        lines = [f"soak: {args.trials} trials at {args.residents} residents, kill points seeded {args.seed}, "
                 f"logical date {DAY}, {time.strftime('%Y-%m-%d %H:%M')}, load {os.getloadavg()[0]:.1f}"]
        print(lines[0], flush=True)
        hits = {}
        stage_hits_before: dict[str, int] = {}

        def record(stage: str) -> None:
            now = dict(failpoints.reached)
            hits[stage] = {k: v - stage_hits_before.get(k, 0) for k, v in now.items()
                           if v - stage_hits_before.get(k, 0)}
            stage_hits_before.update(now)

        started = time.monotonic()
        ref = fault_harness.build_reference(spark, ref_home, DAY, args.residents, DEFAULT_SEED, after_stage=record)
        atomic_write_text(saved, json.dumps({"snapshots": [str(p) for p in ref.snapshots], "seconds": ref.seconds,
                                             "hits": hits}))
        lines.append(f"reference run: {time.monotonic() - started:.0f} s, stages {ref.seconds}")
        lines.append("failpoints reached per stage: " + "; ".join(
            f"{s}: " + ", ".join(f"{k} x{v}" for k, v in sorted(h.items())) for s, h in hits.items()))
        print("\n".join(lines[1:]), flush=True)
    done = {int(m.group(1)): m.group(2) for line in lines if (m := TRIAL_LINE.match(line))}

    rng = random.Random(args.seed)
    choices = stage_failpoints(hits)
    verdicts = dict(done)
    RESULTS.mkdir(exist_ok=True)
    for i in range(args.trials):
        stage, name, n = rng.choice(choices)
        hit = rng.randint(1, n)
        spec = f"{name}@{hit}" + (f"=kill-after:{rng.uniform(0.2, 3.0):.1f}" if name == "unify.merge" else "")
        if i + 1 in done:
            continue  # drawn as before, run before the interruption
        trial = fault_harness.run_trial(spark, ref, stage, spec, args.home / f"trial{i:02d}")
        verdicts[i + 1] = trial.line().split()[0] if trial.killed else "NOT KILLED"
        lines.append(f"{i + 1:2d}. {trial.line()}")
        print(lines[-1], flush=True)
        atomic_write_text(out, "\n".join(lines) + "\n")
        shutil.rmtree(args.home / f"trial{i:02d}", ignore_errors=True)
    killed = [v for v in verdicts.values() if v != "NOT KILLED"]
    passed = [v for v in killed if v == "PASS"]
    lines.append(f"trials {len(verdicts)}, killed {len(killed)}, content-equal after rerun {len(passed)} of "
                 f"{len(killed)}; load {os.getloadavg()[0]:.1f}")
    print(lines[-1])
    atomic_write_text(out, "\n".join(lines) + "\n")
    return 0 if len(passed) == len(killed) else 1

if __name__ == "__main__":
    sys.exit(main())
