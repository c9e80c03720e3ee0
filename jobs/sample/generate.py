"""Deterministic generator of the sample municipality's departmental sources (石家庄市, 130100).

Usage::

    python -m jobs.sample.generate --residents 2000 --seed 20250630 --logical-date 2025-06-30 \\
        --target embedded --out var/sources
    python -m jobs.sample.generate --target servers --pg-url postgresql+psycopg://... \\
        --mongo-url mongodb://127.0.0.1:27018/

Layouts, conventions and fault kinds: docs/sample_municipality.md.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Mapping

from faker import Faker
from shapely.geometry import Point
from shapely.ops import unary_union
from shapely.prepared import prep

from jobs.config import REFERENCE_DIR, SAMPLE_LOGICAL_DATE, Settings
from jobs.sample import departments as dept
from jobs.sample import faults as flt
from jobs.sample import reference as ref
from jobs.sample import writers
from jobs.sample.population import Population

DEFAULT_RESIDENTS = 2000
DEFAULT_SEED = 20250630
TARGETS = ("embedded", "servers")
TRUTH_PERSON_COLUMNS = ("person_key", "id_no", "name", "sex_code", "birth_date", "ethnic_code", "household_no",
                        "community_code", "district_code", "lng", "lat")


def _outside_point_factory(districts: list[ref.District], rng: random.Random):
    """A function drawing points (lng, lat, 6 decimals) within 0.5° of the city's bounds but in no district."""
    union = unary_union([d.geometry for d in districts])
    inside = prep(union)
    minx, miny, maxx, maxy = union.bounds

    def draw() -> tuple[float, float]:
        while True:
            lng = round(rng.uniform(minx - 0.5, maxx + 0.5), 6)
            lat = round(rng.uniform(miny - 0.5, maxy + 0.5), 6)
            if not inside.intersects(Point(lng, lat)):
                return lng, lat
    return draw


def generate(residents: int = DEFAULT_RESIDENTS, seed: int = DEFAULT_SEED,
             logical_date: date = date.fromisoformat(SAMPLE_LOGICAL_DATE), target: str = "embedded",
             out: Path | str | None = None, pg_url: str | None = None, mongo_url: str | None = None,
             *, fault_rates: Mapping[str, float] | None = None, default_fault_rate: float = flt.DEFAULT_RATE,
             fault_min_rows: int = 1, reference_dir: Path = REFERENCE_DIR) -> dict[str, int]:
    """Generate the sample municipality's sources and their ground truth.

    Args:
        residents: number of residents (≥ 1); all are in the household registry.
        seed: seed of every random draw (``random.Random`` streams and ``Faker('zh_CN')``).
        logical_date: the business date the sources are current on (Asia/Shanghai).
        target: ``'embedded'`` — ``<out>/hukou.sqlite``, ``<out>/civil.sqlite``, ``<out>/grid_events.jsonl``;
            ``'servers'`` — PostgreSQL schemas ``hukou`` and ``civil`` at ``pg_url`` and MongoDB database
            ``wangge`` collection ``events`` at ``mongo_url``. Both write ``<out>/inbox/zhengwu/<date>/`` and
            ``<out>/truth/``.
        out: output folder (created); default ``Settings.from_env().sources_dir`` (``$GOVLAKE_HOME/sources``).
        pg_url, mongo_url: server URLs, required for ``target='servers'``.
        fault_rates: {fault_kind: share of a table's rows}, overriding ``default_fault_rate`` (0.015) per kind
            (a kind's rate applies in every table that has it).
        fault_min_rows: a table with at least this many rows gets at least one instance of each of its fault
            kinds that has an eligible row (default 1; the brief's minimum guarantee is 50).
        reference_dir: the reference data folder (default ``schemas/reference``).

    Returns:
        delivered rows per table: {"hukou.persons", "hukou.households", "civil.subsistence_allowance",
        "wangge.events", "zhengwu.messages", "truth.persons", "truth.faults"}.
    Raises:
        ValueError: unknown ``target``, ``residents`` < 1, or a server URL missing for ``target='servers'``.
    Same arguments give byte-identical embedded output (no wall clock, no unseeded randomness).
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, not {target!r}")
    if target == "servers" and not (pg_url and mongo_url):
        raise ValueError("target 'servers' needs pg_url and mongo_url")
    if residents < 1:
        raise ValueError("residents must be at least 1")
    out = Path(out) if out is not None else Settings.from_env().sources_dir
    out.mkdir(parents=True, exist_ok=True)

    districts = ref.load_districts(reference_dir)
    fake = Faker("zh_CN")
    fake.seed_instance(seed)
    pop = Population(districts, residents, seed, logical_date, fake).build()

    persons = dept.person_rows(pop)
    households = dept.household_rows(pop)
    allowances = dept.allowance_rows(pop, seed, logical_date)
    header, messages = ref.load_messages(reference_dir)
    events = dept.event_docs(pop, seed, logical_date, ref.load_categories(reference_dir),
                             ref.load_labeled_messages(reference_dir), messages)
    hotline = dept.hotline_subset(header, messages, residents, seed)

    fault_rng = random.Random(f"{seed}:faults")
    planner = flt.Planner(fault_rng, fault_rates, default_fault_rate, fault_min_rows)
    persons, person_faults = flt.inject_person_faults(persons, planner)
    civil_faults = flt.inject_civil_faults(allowances, planner)
    event_faults = flt.inject_event_faults(events, planner, _outside_point_factory(districts, fault_rng))
    faults = person_faults + civil_faults + event_faults

    if target == "embedded":
        writers.write_sqlite(out / "hukou.sqlite", "hukou", {"persons": persons, "households": households})
        writers.write_sqlite(out / "civil.sqlite", "civil", {"subsistence_allowance": allowances})
        writers.write_jsonl(out / "grid_events.jsonl", events)
    else:
        writers.write_postgres(pg_url, "hukou", {"persons": persons, "households": households})
        writers.write_postgres(pg_url, "civil", {"subsistence_allowance": allowances})
        writers.write_mongo(mongo_url, "wangge", "events", events)
    day = logical_date.isoformat()
    writers.write_file_drop(out / "inbox" / "zhengwu" / day, "zhengwu", day, "messages.csv", header, hotline)

    truth = out / "truth"
    writers.write_csv(truth / "persons.csv", TRUTH_PERSON_COLUMNS, (
        (p.person_no, p.id_no, p.name, p.sex_code, p.birth.isoformat(), p.ethnic_code, p.household_no,
         p.community_code, p.district_code, f"{h.lng:.6f}", f"{h.lat:.6f}")
        for h in pop.households for p in h.members))
    writers.write_csv(truth / "faults.csv", flt.FAULT_COLUMNS, (tuple(asdict(f).values()) for f in faults))
    writers.write_csv(truth / "grids.csv", ("grid_code", "community_code", "worker_id", "worker_name"),
                      ((g.grid_code, g.community_code, g.worker_id, g.worker_name)
                       for g in sorted(pop.grids.values(), key=lambda g: g.grid_code)))

    counts = {"hukou.persons": len(persons), "hukou.households": len(households),
              "civil.subsistence_allowance": len(allowances), "wangge.events": len(events),
              "zhengwu.messages": len(hotline), "truth.persons": len(pop.persons), "truth.faults": len(faults)}
    by_kind: dict[str, dict[str, int]] = {}
    for (src, table, kind), n in sorted(Counter((f.source, f.table, f.fault_kind) for f in faults).items()):
        by_kind.setdefault(f"{src}.{table}", {})[kind] = n
    summary = {"seed": seed, "residents": residents, "logical_date": day, "target": target,
               "counts": counts, "faults": by_kind}
    (truth / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2, sort_keys=True) + "\n",
                                        encoding="utf-8")
    return counts


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; prints the counts as JSON. Returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m jobs.sample.generate", description=__doc__.splitlines()[0])
    parser.add_argument("--residents", type=int, default=DEFAULT_RESIDENTS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--logical-date", type=date.fromisoformat, default=date.fromisoformat(SAMPLE_LOGICAL_DATE))
    parser.add_argument("--target", choices=TARGETS, default="embedded")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: $GOVLAKE_HOME/sources, i.e. var/sources)")
    parser.add_argument("--pg-url", default=None)
    parser.add_argument("--mongo-url", default=None)
    parser.add_argument("--fault-rate", type=float, default=flt.DEFAULT_RATE,
                        help="share of rows per fault kind (default 0.015)")
    parser.add_argument("--fault-min-rows", type=int, default=1,
                        help="tables with at least this many rows get every fault kind at least once")
    args = parser.parse_args(argv)
    try:
        counts = generate(args.residents, args.seed, args.logical_date, args.target, args.out, args.pg_url,
                          args.mongo_url, default_fault_rate=args.fault_rate, fault_min_rows=args.fault_min_rows)
    except ValueError as exc:
        parser.error(str(exc))
    print(json.dumps(counts, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
